#!/usr/bin/env python3
"""tc: a classifier on an interface's ingress, printing each IPv4 packet.

Like libbpf-bootstrap's tc: a SCHED_CLS program on the ingress hook of an interface
reads the packet headers directly and prints "Got IP packet: tot_len: N, ttl: N" with
bpf_printk; the script shows those lines from trace_pipe. The program also counts
packets and bytes per IP protocol in a per-CPU array, printed (summed over CPUs) at
the end. It attaches through a tcx link where the kernel has them (6.6+), else as a
classic cls_bpf filter on a clsact qdisc, which it removes again on exit.

    sudo python3 examples/tc.py [--iface lo] [--duration 5] [--count N]
"""

from __future__ import annotations

import os

from common import Clock, load_spec, parser, tracefs

import ebpf
import ebpf.features
import ebpf.tracing
from ebpf import LinkType

PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 47: "GRE", 132: "SCTP"}


def attach(prog: ebpf.Program, iface: str, classic: bool) -> tuple[ebpf.link.Link, str]:
    """Attach `prog` to `iface`'s ingress: a tcx link if the kernel has them (and
    `classic` is false), else a cls_bpf filter (direct action) on the clsact qdisc.
    The link and how."""
    if not classic and ebpf.features.have_link_type(LinkType.TCX):
        return ebpf.link.tcx(prog, iface, "ingress"), "tcx"
    return ebpf.link.tc(prog, iface, "ingress"), "tc clsact"


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    p.add_argument("-i", "--iface", default="lo", help="the interface (default: lo)")
    p.add_argument("--classic", action="store_true",
                   help="attach as a cls_bpf filter even where tcx links exist")
    args = p.parse_args(argv)

    spec = load_spec("tc")
    spec.variables["tag"].set(os.getpid())
    marker = f"tc {os.getpid()}: "
    shown = 0
    with tracefs(), ebpf.Collection(spec) as coll, ebpf.tracing.trace_pipe() as pipe:
        link, how = attach(coll.programs["tc_ingress"], args.iface, args.classic)
        with link:
            print(f"Successfully started! Attached to {args.iface} ingress ({how}); "
                  "reading trace_pipe (Ctrl-C to stop).", flush=True)
            clock = Clock(args.duration)
            try:
                while clock.running and not (args.count and shown >= args.count):
                    try:
                        rec = pipe.read(timeout=clock.left())
                    except ebpf.DeadlineExceededError:
                        continue
                    if rec.message.startswith(marker):   # the buffer is system-wide
                        print(rec.raw.replace(marker, ""), flush=True)
                        shown += 1
            except KeyboardInterrupt:
                pass
        print(f"\n{'PROTOCOL':<10} {'PACKETS':>8} {'BYTES':>10}")
        for proto, per_cpu in sorted(coll.maps["counts"].items()):
            packets = sum(s.packets for s in per_cpu)
            if packets:
                print(f"{PROTOCOLS.get(proto, str(proto)):<10} {packets:>8} "
                      f"{sum(s.bytes for s in per_cpu):>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
