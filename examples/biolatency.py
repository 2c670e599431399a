#!/usr/bin/env python3
"""biolatency: block device I/O latency as a histogram.

Like BCC's biolatency: BTF-enabled tracepoints (tp_btf) on block_rq_issue and
block_rq_complete (and block_rq_insert with --queued) time every block I/O request;
the BPF side counts them in a log2 histogram, a hash map keyed by (disk, bucket),
which `ebpf.hist` reads and prints as BCC's print_log2_hist does, one histogram per
disk with --disks.

    sudo python3 examples/biolatency.py [--duration 5] [--interval 1] [--disks] [--disk vda]
"""

from __future__ import annotations

import os
import time

from common import Clock, load_spec, parser

import ebpf
from ebpf import hist

SYS_BLOCK = "/sys/class/block"


def disks() -> dict[int, str]:
    """Block devices by the number the BPF side computes (``major << 20 | minor``)."""
    out = {}
    for name in os.listdir(SYS_BLOCK):
        try:
            with open(os.path.join(SYS_BLOCK, name, "dev")) as f:
                major, minor = (int(x) for x in f.read().split(":"))
        except (OSError, ValueError):
            continue
        out[major << 20 | minor] = name
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("-i", "--interval", type=float, default=0.0, metavar="SECONDS",
                   help="print (and reset) the histogram every SECONDS")
    p.add_argument("-T", "--timestamp", action="store_true", help="timestamp each output")
    p.add_argument("-m", "--milliseconds", action="store_true", help="in milliseconds")
    p.add_argument("-Q", "--queued", action="store_true",
                   help="include the time queued in the kernel (from block_rq_insert)")
    p.add_argument("-D", "--disks", action="store_true", help="one histogram per disk")
    p.add_argument("--disk", metavar="NAME", help="only this disk (e.g. vda)")
    args = p.parse_args(argv)

    names = disks()
    spec = load_spec("biolatency")
    if args.disk:
        devs = [dev for dev, name in names.items() if name == args.disk]
        if not devs:
            p.error(f"no block device named {args.disk!r} in {SYS_BLOCK}")
        spec.variables["target_dev"].set(devs[0])
    spec.variables["queued_time"].set(args.queued)
    spec.variables["per_disk"].set(args.disks)
    spec.variables["milliseconds"].set(args.milliseconds)
    unit = "msecs" if args.milliseconds else "usecs"
    with ebpf.Collection(spec) as coll:
        links = coll.attach_all()
        try:
            print("Tracing block device I/O... Hit Ctrl-C to end.", flush=True)
            clock = Clock(args.duration)
            step = args.interval or args.duration or float("inf")
            try:
                while clock.running:
                    time.sleep(min(step, clock.left(step)) if clock.end else step)
                    if args.interval and clock.running:
                        report(coll.maps["hist"], unit, names, args.timestamp)
            except KeyboardInterrupt:
                pass
            report(coll.maps["hist"], unit, names, args.timestamp)
        finally:
            for link in links:
                link.close()
    return 0


def report(m: ebpf.Map, unit: str, names: dict[int, str], timestamp: bool) -> None:
    """Print the histogram (one per disk when the map has disks) and clear it."""
    print()
    if timestamp:
        print(time.strftime("%H:%M:%S"))
    h = hist.log2_hist(m)    # the key's `slot` member is the bucket, `dev` the section
    if set(h.sections) == {0}:                   # one histogram for all disks
        h = h.sections[0]
    h.print(unit, section_header="disk",
            section_format=lambda dev: names.get(dev, f"{dev >> 20}:{dev & 0xFFFFF}"))
    for key in list(m.keys()):
        del m[key]
    print(f"total: {h.total} I/O requests", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
