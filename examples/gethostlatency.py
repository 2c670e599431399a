#!/usr/bin/env python3
"""gethostlatency: the latency of host name lookups (getaddrinfo) in every process.

A uprobe on libc's getaddrinfo() entry and a uretprobe on its return, like BCC's
gethostlatency: the entry program keeps the start time and the host name per thread,
the return program sends the latency through a ring buffer. Shows uprobe/uretprobe
attachment to a shared library by name (libc.so.6 is found through ld.so.cache).

    sudo python3 examples/gethostlatency.py [--duration 10] [--pid PID]
"""

from __future__ import annotations

import time

from common import Clock, comm, load_spec, parser

import ebpf


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    p.add_argument("-p", "--pid", type=int, default=0, help="only this process")
    p.add_argument("--libc", default="libc.so.6", help="the C library (default: libc.so.6)")
    args = p.parse_args(argv)

    spec = load_spec("gethostlatency")
    spec.variables["target_pid"].set(args.pid)
    shown = 0
    with ebpf.Collection(spec) as coll:
        pid = args.pid or None
        with ebpf.link.uprobe(coll.programs["lookup_entry"], args.libc, "getaddrinfo",
                              pid=pid), \
                ebpf.link.uretprobe(coll.programs["lookup_return"], args.libc,
                                    "getaddrinfo", pid=pid), \
                ebpf.ringbuf.Reader(coll.maps["events"], btf=spec.btf,
                                    record_type="struct event") as reader:
            print(f"{'TIME':<9} {'PID':<7} {'COMM':<16} {'LATms':>10} {'RET':>4} HOST",
                  flush=True)

            def show(rec: ebpf.ringbuf.Record) -> None:
                nonlocal shown
                e = reader.decode(rec)
                print(f"{time.strftime('%H:%M:%S'):<9} {e.pid:<7} {comm(e.comm):<16} "
                      f"{e.delta_ns / 1e6:>10.2f} {e.ret:>4} {comm(e.host)}", flush=True)
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
