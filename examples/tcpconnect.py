#!/usr/bin/env python3
"""tcpconnect: trace active TCP connections (connect(2)), IPv4 and IPv6.

Like BCC's tcpconnect, without kprobes: the sock:inet_sock_set_state tracepoint fires
for every TCP state change, and a socket going from CLOSE to SYN_SENT is a connect()
in progress, in the context of the process calling it. Each one is sent through a
ring buffer and printed with the process, the addresses and the destination port.
--pid and --port are .rodata filters, fixed before loading.

    sudo python3 examples/tcpconnect.py [--duration 5] [--pid PID] [--port PORT] [--count N]
"""

from __future__ import annotations

import time

from common import Clock, address, comm, load_spec, parser, tracefs

import ebpf

AF_INET = 2


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    p.add_argument("-p", "--pid", type=int, default=0, help="only this process")
    p.add_argument("-P", "--port", type=int, default=0, help="only this destination port")
    p.add_argument("-t", "--timestamp", action="store_true", help="include a timestamp")
    p.add_argument("-U", "--print-uid", action="store_true", help="include the uid")
    args = p.parse_args(argv)

    spec = load_spec("tcpconnect")
    spec.variables["target_tgid"].set(args.pid)
    spec.variables["target_dport"].set(args.port)
    shown = 0
    with tracefs(), ebpf.Collection(spec) as coll, \
            ebpf.link.tracepoint(coll.programs["handle_set_state"], "sock",
                                 "inet_sock_set_state"), \
            ebpf.ringbuf.Reader(coll.maps["events"], btf=spec.btf,
                                record_type="struct connect_event") as reader:
        head = f"{'TIME(s)':<9}" if args.timestamp else ""
        head += f"{'UID':<6} " if args.print_uid else ""
        print(f"{head}{'PID':<7} {'COMM':<12} {'IP':<2} {'SADDR':<16} {'DADDR':<16} DPORT",
              flush=True)
        start = time.monotonic()

        def show(rec: ebpf.ringbuf.Record) -> None:
            nonlocal shown
            if args.count and shown >= args.count:
                return
            e = reader.decode(rec)
            line = f"{time.monotonic() - start:<9.3f}" if args.timestamp else ""
            line += f"{e.uid:<6} " if args.print_uid else ""
            print(f"{line}{e.pid:<7} {comm(e.comm):<12.12} {4 if e.family == AF_INET else 6:<2} "
                  f"{address(e.family, e.saddr):<16} {address(e.family, e.daddr):<16} "
                  f"{e.dport}", flush=True)
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
