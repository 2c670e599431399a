#!/usr/bin/env python3
"""sockfilter: the IPv4 packets of an interface, seen by a socket filter.

Like libbpf-bootstrap's sockfilter: a SOCKET_FILTER program is attached to a raw
packet socket (AF_PACKET, every protocol) bound to one interface. For each IPv4 frame,
incoming or outgoing, it bumps a per-protocol counter in an array map and sends the
addresses and ports through a ring buffer; the script prints one line a packet and, at
the end, the packets counted per protocol.

    sudo python3 examples/sockfilter.py [--iface lo] [--duration 5] [--count N]
"""

from __future__ import annotations

import socket

from common import Clock, load_spec, parser

import ebpf

ETH_P_ALL = 0x0003
PROTOCOLS = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP",
             132: "SCTP"}


def packet_socket(iface: str) -> socket.socket:
    """A raw AF_PACKET socket receiving every frame of `iface`, in and out."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         socket.htons(ETH_P_ALL))
    try:
        sock.bind((iface, ETH_P_ALL))
    except OSError:
        sock.close()
        raise
    return sock


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    p.add_argument("-i", "--iface", default="lo", help="the interface (default: lo)")
    args = p.parse_args(argv)

    spec = load_spec("sockfilter")
    shown = 0
    with ebpf.Collection(spec) as coll, packet_socket(args.iface) as sock, \
            ebpf.link.socket_filter(coll.programs["socket_handler"], sock), \
            ebpf.ringbuf.Reader(coll.maps["events"], btf=spec.btf,
                                record_type="struct so_event") as reader:
        print(f"Filtering IPv4 packets on {args.iface} (Ctrl-C to stop).", flush=True)

        def show(rec: ebpf.ringbuf.Record) -> None:
            nonlocal shown
            if args.count and shown >= args.count:
                return
            e = reader.decode(rec)
            name = PROTOCOLS.get(e.protocol, str(e.protocol))
            src = socket.inet_ntoa(e.saddr.to_bytes(4, "little"))
            dst = socket.inet_ntoa(e.daddr.to_bytes(4, "little"))
            if e.sport or e.dport:
                src, dst = f"{src}:{e.sport}", f"{dst}:{e.dport}"
            print(f"interface: {socket.if_indextoname(e.ifindex)}\tprotocol: {name}\t"
                  f"{src}(src) -> {dst}(dst)", flush=True)
            shown += 1

        clock = Clock(args.duration)
        try:
            while clock.running and not (args.count and shown >= args.count):
                reader.poll(show, timeout=clock.left())
        except KeyboardInterrupt:
            pass
        print(f"\n{'PROTOCOL':<10} {'PACKETS':>8}")
        for proto, packets in sorted(coll.maps["counts"].items()):
            if packets:
                print(f"{PROTOCOLS.get(proto, str(proto)):<10} {packets:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
