#!/usr/bin/env python3
"""tcplife: TCP sessions when they close, with their duration and bytes sent/received.

Like BCC's tcplife (its tracepoint version): everything comes from the
sock:inet_sock_set_state tracepoint. A socket is stamped when its life starts
(SYN_SENT or SYN_RECV), its owner is noted where the tracepoint runs in the owning
process (connect(), and close() after the peer closed), and when it reaches CLOSE the
session goes through a ring buffer with the bytes acked and received from its
tcp_sock. Sessions that started before the tool are not shown.

    sudo python3 examples/tcplife.py [--duration 5] [--pid PID] [--count N]
"""

from __future__ import annotations

import time

from common import Clock, address, comm, load_spec, parser, tracefs

import ebpf


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    p.add_argument("-p", "--pid", type=int, default=0, help="only this process")
    p.add_argument("-T", "--time", action="store_true", help="include a time column")
    args = p.parse_args(argv)

    spec = load_spec("tcplife")
    spec.variables["target_tgid"].set(args.pid)
    shown = 0
    with tracefs(), ebpf.Collection(spec) as coll, \
            ebpf.link.tracepoint(coll.programs["handle_set_state"], "sock",
                                 "inet_sock_set_state"), \
            ebpf.ringbuf.Reader(coll.maps["events"], btf=spec.btf,
                                record_type="struct life_event") as reader:
        head = f"{'TIME':<8} " if args.time else ""
        print(f"{head}{'PID':<7} {'COMM':<12} {'LADDR':<15} {'LPORT':>5} {'RADDR':<15} "
              f"{'RPORT':>5} {'TX_KB':>5} {'RX_KB':>5} MS", flush=True)

        def show(rec: ebpf.ringbuf.Record) -> None:
            nonlocal shown
            if args.count and shown >= args.count:
                return
            e = reader.decode(rec)
            line = f"{time.strftime('%H:%M:%S')} " if args.time else ""
            print(f"{line}{e.pid:<7} {comm(e.comm):<12.12} "
                  f"{address(e.family, e.laddr):<15} {e.lport:>5} "
                  f"{address(e.family, e.raddr):<15} {e.rport:>5} "
                  f"{e.tx_bytes // 1024:>5} {e.rx_bytes // 1024:>5} "
                  f"{e.duration_ns / 1e6:.2f}", flush=True)
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
