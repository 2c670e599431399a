"""Soak: a long-running process that re-parses and reloads a CO-RE object must stay flat.

Object: tests/bpf/soak.c (BPF_CORE_READ of task_struct fields, a ring buffer, an array
map, a .rodata template constant, .bss), compiled against the running kernel's
vmlinux.h. Each cycle (tests/soakcycle.py) does what a template-reloading agent does:

  parse the ELF again (`load_collection_spec`), set the `.rodata` variable, load it
  (`Collection`, CO-RE against the kernel BTF), attach the program to the `sys_enter`
  raw tracepoint, make one getpid() and read and decode its event from the ring
  buffer, then close the reader, the link and the collection.

After `--warmup` cycles (the first ones load the kernel BTF and fill the caches), it
runs `--cycles` more without forcing garbage collection and reports, before and after:

  - RSS (and after a final `gc.collect()`), its growth in MiB and KiB per cycle, and
    RSS samples along the way (a dropped spec and its types refer to each other, so
    they wait for the garbage collector's next full collection: RSS first rises to a
    plateau, `rss_growth_after_first_sample_mib` is the growth past the first sample);
  - open descriptors;
  - kernel objects: programs, maps and links from the kernel's id iteration
    (BPF_*_GET_NEXT_ID) with this run's unique name prefix (other processes on the
    machine do not disturb them), after waiting for the kernel's deferred frees; and
    the system-wide totals, for information (other processes do disturb those).

Prints one JSON object; `within_targets` checks RSS growth <= 16 MiB over the run and
descriptors and our kernel objects back to their start values. No libbpf counterpart:
C has no garbage to keep.

    sudo nice -n 10 python3 bench/soak.py [--cycles 10000] [--warmup 20]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

MIB = 1 << 20
TARGET_RSS_GROWTH_MIB = 16


def main() -> int:
    from soakcycle import Soak, kernel_objects, open_fds, rss_bytes, settled_kernel_objects

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--samples", type=int, default=20, help="RSS samples along the run")
    args = ap.parse_args()

    soak = Soak()
    rss_start = rss_bytes()
    totals_before = kernel_objects()
    for _ in range(args.warmup):
        soak.cycle()
    gc.collect()
    ours_before = settled_kernel_objects(soak.prefix)
    fds_before = open_fds()
    rss_before = rss_bytes()

    every = max(1, args.cycles // max(1, args.samples))
    samples: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    c0 = os.times()
    for i in range(1, args.cycles + 1):
        soak.cycle()
        if i % every == 0 or i == args.cycles:
            samples.append((i, round(rss_bytes() / MIB, 2)))
    seconds = time.perf_counter() - t0
    c1 = os.times()

    rss_after = rss_bytes()
    gc.collect()
    rss_after_gc = rss_bytes()
    fds_after = open_fds()
    ours_after = settled_kernel_objects(soak.prefix, ours_before)
    totals_after = kernel_objects()

    growth = (rss_after - rss_before) / MIB
    growth_gc = (rss_after_gc - rss_before) / MIB
    result = {
        "object": "tests/bpf/soak.c",
        "cycle": "parse + load (CO-RE) + attach raw_tp + getpid + ring buffer read/decode "
                 "+ close",
        "cycles": args.cycles,
        "warmup_cycles": args.warmup,
        "events_read": soak.events,
        "seconds": round(seconds, 2),
        "ms_per_cycle": round(seconds * 1e3 / max(1, args.cycles), 3),
        "user_cpu_ms_per_cycle": round((c1.user - c0.user) * 1e3 / max(1, args.cycles), 3),
        "system_cpu_ms_per_cycle": round((c1.system - c0.system) * 1e3 / max(1, args.cycles),
                                         3),
        "rss_mib": {
            "process_start": round(rss_start / MIB, 2),
            "before": round(rss_before / MIB, 2),
            "after": round(rss_after / MIB, 2),
            "after_gc_collect": round(rss_after_gc / MIB, 2),
            "growth": round(growth, 2),
            "growth_after_gc_collect": round(growth_gc, 2),
        },
        "rss_growth_kib_per_cycle": round(growth * 1024 / max(1, args.cycles), 3),
        # garbage (parsed specs refer to their types and back) waits for the collector's
        # next full collection, so RSS first rises to a plateau; past it, a leak shows
        "rss_growth_after_first_sample_mib": round(samples[-1][1] - samples[0][1], 2)
        if samples else 0.0,
        "rss_samples_mib": samples,
        "fds": {"before": fds_before, "after": fds_after, "growth": fds_after - fds_before},
        "kernel_objects_ours": {"name_prefix": soak.prefix, "before": ours_before,
                                "after": ours_after},
        "kernel_objects_system_total": {"before": totals_before, "after": totals_after,
                                        "note": "every process's objects, for information"},
        "targets": {"rss_growth_mib": TARGET_RSS_GROWTH_MIB, "fds_growth": 0,
                    "kernel_objects_ours": "back to before"},
        "within_targets": {
            "rss": growth <= TARGET_RSS_GROWTH_MIB,
            "fds": fds_after == fds_before,
            "kernel_objects": ours_after == ours_before,
        },
        "env": {"python": platform.python_version(), "kernel": platform.release(),
                "cpus": os.cpu_count(), "load_avg": os.getloadavg()[0]},
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
