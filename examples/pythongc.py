#!/usr/bin/env python3
"""pythongc: CPython garbage collections with their duration, from USDT probes.

CPython built with --with-dtrace (Debian's and Fedora's python3 are) has USDT probes;
this attaches to python:gc__start and python:gc__done of a Python binary, like BCC's
ugc, and prints each collection: when it started (seconds since this tool started),
how long it took and what it collected. The probes are gated by semaphores, which
attaching enables (the interpreter only fires them while they are set).

    sudo python3 examples/pythongc.py [--binary /usr/bin/python3] [--pid PID]
                                      [--duration 10]
"""

from __future__ import annotations

import os
import time

from common import Clock, load_spec, parser

import ebpf


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    p.add_argument("-b", "--binary", default="/usr/bin/python3",
                   help="the Python interpreter (default: /usr/bin/python3)")
    p.add_argument("-p", "--pid", type=int, default=None, help="only this process")
    p.add_argument("-m", "--minimum", type=float, default=0.0, metavar="US",
                   help="only collections longer than this many microseconds")
    args = p.parse_args(argv)

    binary = os.path.realpath(args.binary)
    spec = load_spec("pythongc")
    shown = 0
    with ebpf.Collection(spec) as coll, \
            ebpf.link.usdt(coll.programs["gc_start"], binary, "python", "gc__start",
                           pid=args.pid), \
            ebpf.link.usdt(coll.programs["gc_done"], binary, "python", "gc__done",
                           pid=args.pid), \
            ebpf.ringbuf.Reader(coll.maps["events"], btf=spec.btf,
                                record_type="struct event") as reader:
        print(f"Tracing garbage collections in {binary}... Ctrl-C to quit.")
        print(f"{'START':<10} {'PID':<7} {'TIME (us)':>10} DESCRIPTION", flush=True)
        origin = time.clock_gettime_ns(time.CLOCK_MONOTONIC)   # bpf_ktime_get_ns' clock

        def show(rec: ebpf.ringbuf.Record) -> None:
            nonlocal shown
            e = reader.decode(rec)
            elapsed_us = e.elapsed_ns / 1000
            if elapsed_us < args.minimum:
                return
            print(f"{(e.start_ns - origin) / 1e9:<10.5f} {e.pid:<7} {elapsed_us:>10.2f} "
                  f"gen {e.generation} GC collected {e.collected} objects", flush=True)
            shown += 1

        clock = Clock(args.duration)
        try:
            while clock.running and not (args.count and shown >= args.count):
                reader.poll(show, timeout=clock.left())
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
