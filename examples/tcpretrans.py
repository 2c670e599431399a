#!/usr/bin/env python3
"""tcpretrans: TCP retransmissions, with both ends of the connection and its state.

Like BCC's tcpretrans (its tracepoint version): the tcp:tcp_retransmit_skb tracepoint
sends each retransmitted segment's connection through a ring buffer. T is R for a
retransmit (BCC's tail loss probes, L with -l, need a kprobe and are left out). PID is
the task that was running when the kernel retransmitted: retransmits come from a
timer, which runs in whatever task it interrupts (0: the idle task).

    sudo python3 examples/tcpretrans.py [--duration 5] [-4|-6] [--count N]
"""

from __future__ import annotations

import time

from common import Clock, address, load_spec, parser, tracefs

import ebpf

AF_INET = 2

# the kernel's TCP states (include/net/tcp_states.h), named as BCC names them
STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
          6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
          11: "CLOSING", 12: "NEW_SYN_RECV"}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    family = p.add_mutually_exclusive_group()
    family.add_argument("-4", "--ipv4", action="store_true", help="only IPv4")
    family.add_argument("-6", "--ipv6", action="store_true", help="only IPv6")
    args = p.parse_args(argv)

    spec = load_spec("tcpretrans")
    shown = 0
    with tracefs(), ebpf.Collection(spec) as coll, \
            ebpf.link.tracepoint(coll.programs["handle_retransmit"], "tcp",
                                 "tcp_retransmit_skb"), \
            ebpf.ringbuf.Reader(coll.maps["events"], btf=spec.btf,
                                record_type="struct retrans_event") as reader:
        print("Tracing retransmits ... Hit Ctrl-C to end")
        print(f"{'TIME':<8} {'PID':<7} {'IP':<2} {'LADDR:LPORT':<20} T> {'RADDR:RPORT':<20} "
              "STATE", flush=True)

        def show(rec: ebpf.ringbuf.Record) -> None:
            nonlocal shown
            e = reader.decode(rec)
            ip = 4 if e.family == AF_INET else 6
            if (args.count and shown >= args.count) or (args.ipv4 and ip != 4) \
                    or (args.ipv6 and ip != 6):
                return
            print(f"{time.strftime('%H:%M:%S'):<8} {e.pid:<7} {ip:<2} "
                  f"{address(e.family, e.laddr) + f':{e.lport}':<20} R> "
                  f"{address(e.family, e.raddr) + f':{e.rport}':<20} "
                  f"{STATES.get(e.state, str(e.state))}", flush=True)
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
