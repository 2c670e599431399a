#!/usr/bin/env python3
"""opensnoop: every file opened on the system (openat), with the result.

Like BCC's opensnoop: tracepoints on the entry and exit of openat(2) — the entry keeps
the name pointer and flags per thread in a hash map, the exit reads the name and sends
an event with the descriptor or the error through a ring buffer. --pid and --failed
are .rodata settings, fixed before loading.

    sudo python3 examples/opensnoop.py [--duration 5] [--pid PID] [--failed] [--count N]
"""

from __future__ import annotations

import time

from common import Clock, comm, load_spec, parser, tracefs

import ebpf


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    p.add_argument("-p", "--pid", type=int, default=0, help="only this process")
    p.add_argument("-x", "--failed", action="store_true", help="only failed opens")
    p.add_argument("-T", "--timestamp", action="store_true", help="include a timestamp")
    p.add_argument("-U", "--print-uid", action="store_true", help="include the uid")
    args = p.parse_args(argv)

    spec = load_spec("opensnoop")
    spec.variables["target_pid"].set(args.pid)
    spec.variables["failed_only"].set(args.failed)
    shown = 0
    with tracefs(), ebpf.Collection(spec) as coll:
        links = coll.attach_all()
        try:
            with ebpf.ringbuf.Reader(coll.maps["events"], btf=spec.btf,
                                     record_type="struct event") as reader:
                head = f"{'TIME(s)':<14}" if args.timestamp else ""
                head += f"{'UID':<6} " if args.print_uid else ""
                print(f"{head}{'PID':<7} {'COMM':<16} {'FD':>3} {'ERR':>3} PATH", flush=True)
                start = time.monotonic()

                def show(rec: ebpf.ringbuf.Record) -> None:
                    nonlocal shown
                    if args.count and shown >= args.count:
                        return
                    e = reader.decode(rec)
                    fd, err = (e.ret, 0) if e.ret >= 0 else (-1, -e.ret)
                    line = f"{time.monotonic() - start:<14.6f}" if args.timestamp else ""
                    line += f"{e.uid:<6} " if args.print_uid else ""
                    print(f"{line}{e.pid:<7} {comm(e.comm):<16} {fd:>3} {err:>3} "
                          f"{comm(e.fname)}", flush=True)
                    shown += 1

                clock = Clock(args.duration)
                while clock.running and not (args.count and shown >= args.count):
                    reader.poll(show, timeout=clock.left())
        except KeyboardInterrupt:
            pass
        finally:
            for link in links:
                link.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
