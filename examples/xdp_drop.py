#!/usr/bin/env python3
"""xdp_drop: drop packets from blocked IPv4 sources in XDP, with per-action stats.

The DDoS-mitigation pattern: an XDP program on the receiving interface looks each
IPv4 packet's source address up in a hash map and drops the packet there, before the
kernel spends anything on it. The map is the control plane: addresses are added
(--block, or later by any process through the map) while the program runs, without
reloading it. Every --interval the per-action counters (a per-CPU array, summed)
are printed as xdp-tutorial's xdp_stats does, followed by the drops per address.
Uses the typed bindings `ebpf gen` made (examples/xdp_drop_bpf.py).

    sudo python3 examples/xdp_drop.py --iface eth0 --block 192.0.2.7 [--duration 10]
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time

from common import Clock, parser
from xdp_drop_bpf import XdpDrop

import ebpf

ACTIONS = {1: "XDP_DROP", 2: "XDP_PASS"}


def address_key(addr: str) -> int:
    """The map key of an IPv4 address: its bytes in network order, read as a
    native-endian u32 (what the program reads from the packet header)."""
    value: int = struct.unpack("=I", ipaddress.IPv4Address(addr).packed)[0]
    return value


def totals(stats: ebpf.Map, action: int) -> tuple[int, int]:
    """(packets, bytes) of `action`, summed over CPUs."""
    per_cpu = stats[action]
    return (sum(r.packets for r in per_cpu), sum(r.bytes for r in per_cpu))


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("-i", "--iface", required=True, help="the interface to protect")
    p.add_argument("-b", "--block", action="append", default=[], metavar="ADDR",
                   help="an IPv4 source address to drop (repeatable)")
    p.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="seconds between reports (default: 1)")
    p.add_argument("--mode", choices=("generic", "driver"), default=None,
                   help="XDP mode (default: driver if the NIC supports it, else generic)")
    args = p.parse_args(argv)

    with XdpDrop.load() as objs:
        for addr in args.block:
            objs.blocklist[address_key(addr)] = 0
        with ebpf.link.xdp(objs.xdp_drop, args.iface, args.mode):
            print(f"XDP program attached to {args.iface}, dropping "
                  f"{', '.join(args.block) or 'nothing yet'}; Ctrl-C to stop", flush=True)
            clock = Clock(args.duration)
            last = {a: (0, 0) for a in ACTIONS}
            then = time.monotonic()
            try:
                while clock.running:
                    time.sleep(min(args.interval, clock.left(args.interval)) or 0.01)
                    now = time.monotonic()
                    period = now - then
                    print("XDP-action")
                    for action, name in ACTIONS.items():
                        pkts, nbytes = totals(objs.stats, action)
                        dp, db = pkts - last[action][0], nbytes - last[action][1]
                        last[action] = (pkts, nbytes)
                        print(f"{name:<12} {pkts:>10} pkts ({dp / period:>10.0f} pps) "
                              f"{nbytes / 1000:>10.0f} Kbytes ({db * 8 / period / 1e6:>6.0f} "
                              f"Mbits/s) period:{period:.6f}")
                    for key, drops in sorted(objs.blocklist.items()):
                        addr = socket.inet_ntoa(struct.pack("=I", key))
                        print(f"  blocked {addr:<15} {drops:>10} packets dropped")
                    print(flush=True)
                    then = now
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
