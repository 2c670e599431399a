#!/usr/bin/env python3
"""runqlat: run queue (scheduler) latency as a histogram.

Like BCC's runqlat: BTF-enabled tracepoints (tp_btf) on sched_wakeup,
sched_wakeup_new and sched_switch measure how long each runnable task waited for a
CPU; the BPF side counts them in a log2 histogram (an array map indexed by bucket),
which `ebpf.hist` reads and prints as BCC's print_log2_hist does.

    sudo python3 examples/runqlat.py [--duration 5] [--interval 1] [--pid PID]
"""

from __future__ import annotations

import time

from common import Clock, load_spec, parser

import ebpf
from ebpf import hist


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("-p", "--pid", type=int, default=0, help="only this process")
    p.add_argument("-i", "--interval", type=float, default=0.0, metavar="SECONDS",
                   help="print (and reset) the histogram every SECONDS")
    p.add_argument("-T", "--timestamp", action="store_true", help="timestamp each output")
    args = p.parse_args(argv)

    spec = load_spec("runqlat")
    spec.variables["target_tgid"].set(args.pid)
    with ebpf.Collection(spec) as coll:
        links = coll.attach_all()
        try:
            print("Tracing run queue latency... Hit Ctrl-C to end.", flush=True)
            clock = Clock(args.duration)
            step = args.interval or args.duration or float("inf")
            try:
                while clock.running:
                    time.sleep(min(step, clock.left(step)) if clock.end else step)
                    if args.interval and clock.running:
                        report(coll.maps["hist"], args.timestamp)
            except KeyboardInterrupt:
                pass
            report(coll.maps["hist"], args.timestamp)
        finally:
            for link in links:
                link.close()
    return 0


def report(m: ebpf.Map, timestamp: bool) -> None:
    """Print the histogram and clear it for the next interval."""
    print()
    if timestamp:
        print(time.strftime("%H:%M:%S"))
    h = hist.log2_hist(m)
    h.print("usecs")
    for slot in range(m.max_entries):
        m[slot] = 0
    print(f"total: {h.total} wakeups", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
