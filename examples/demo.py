#!/usr/bin/env python3
"""The ebpf demo: two real programs in the kernel, showing live data.

Part 1 counts packets by IP protocol with a socket filter built by ebpf.asm.
Part 2 (examples/execsnoop.py) traces every exec with a CO-RE program compiled by
clang, configured through .rodata, streaming events through a ring buffer.

A BPF program written with the assembler DSL is loaded into the kernel and
attached (SO_ATTACH_BPF) to a raw packet socket on the loopback interface. For
every IPv4 packet it bumps a counter in an ARRAY map indexed by the IP protocol
number; this script reads the map and prints a live table while it sends a mix of
UDP, TCP and ICMP traffic to 127.0.0.1 itself.

    sudo python3 examples/demo.py [--seconds 4] [--interface lo] [--quiet-traffic]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import ebpf
from ebpf import asm

ETH_P_ALL = 0x0003
PROTOCOLS = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 58: "ICMPv6", 132: "SCTP"}


def build_filter(counts: ebpf.Map) -> list[asm.Instruction]:
    """r6 = skb; if eth type != IPv4 return 0; counts[ip.protocol] += 1; return 0."""
    return [
        asm.mov_reg(asm.R6, asm.R1),                 # LD_ABS wants the skb in r6
        asm.load_abs(12, asm.H),                     # r0 = ethertype (network order)
        asm.jne_imm(asm.R0, 0x0800, "out"),
        asm.load_abs(14 + 9, asm.B),                 # r0 = IPv4 protocol
        asm.store_mem(asm.R10, -4, asm.R0, asm.W),   # key on the stack
        asm.ld_map_fd(asm.R1, counts.fileno()),
        asm.mov_reg(asm.R2, asm.R10),
        asm.add_imm(asm.R2, -4),
        asm.call("map_lookup_elem"),
        asm.jeq_imm(asm.R0, 0, "out"),
        asm.mov_imm(asm.R1, 1),
        asm.atomic_add(asm.R0, 0, asm.R1, asm.DW),   # lock *(u64 *)(r0 + 0) += 1
        asm.label("out"),
        asm.mov_imm(asm.R0, 0),                      # keep nothing in the socket's queue
        asm.exit(),
    ]


def traffic(stop: threading.Event) -> None:
    """UDP datagrams, TCP connections and ICMP echoes to 127.0.0.1, until stopped."""
    udp_rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_rx.bind(("127.0.0.1", 0))
    tcp_srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp_srv.bind(("127.0.0.1", 0))
    tcp_srv.listen(64)
    udp_tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        icmp: socket.socket | None = socket.socket(socket.AF_INET, socket.SOCK_RAW,
                                                   socket.IPPROTO_ICMP)
    except PermissionError:
        icmp = None
    echo = bytes.fromhex("0800f7fe00010000")  # type 8, checksum for id 1 seq 0
    with udp_rx, tcp_srv, udp_tx:
        i = 0
        while not stop.is_set():
            udp_tx.sendto(b"x" * 32, udp_rx.getsockname())
            if i % 4 == 0:
                with socket.create_connection(tcp_srv.getsockname()) as c:
                    conn, _ = tcp_srv.accept()
                    conn.close()
                    c.close()
            if icmp is not None and i % 2 == 0:
                icmp.sendto(echo, ("127.0.0.1", 0))
            i += 1
            time.sleep(0.01)
        if icmp is not None:
            icmp.close()


def render(counts: ebpf.Map, elapsed: float) -> str:
    rows = []
    for key, value in counts.items():
        n = int.from_bytes(value, "little") if isinstance(value, bytes) else int(value)
        proto = int.from_bytes(key, "little") if isinstance(key, bytes) else int(key)
        if n:
            rows.append((n, proto))
    lines = [f"packets on the interface by IP protocol, {elapsed:4.1f}s",
             f"{'protocol':<10}{'number':>8}{'packets':>12}"]
    for n, proto in sorted(rows, reverse=True):
        lines.append(f"{PROTOCOLS.get(proto, '?'):<10}{proto:>8}{n:>12}")
    if not rows:
        lines.append("(no IPv4 packets yet)")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--interface", default="lo")
    ap.add_argument("--quiet-traffic", action="store_true",
                    help="do not generate traffic; only count what the interface sees")
    args = ap.parse_args()

    spec = ebpf.MapSpec(type=ebpf.MapType.ARRAY, key_size=4, value_size=8, max_entries=256,
                        name="proto_counts")
    with contextlib.ExitStack() as stack:
        counts = stack.enter_context(ebpf.Map(spec))
        insns = build_filter(counts)
        prog = stack.enter_context(ebpf.Program(ebpf.ProgramSpec(
            name="count_protos", type=ebpf.ProgramType.SOCKET_FILTER, license="GPL",
            instructions=insns)))
        print(f"loaded socket filter {prog.name!r} (id {prog.id}):")
        print(asm.disassemble(insns), "\n")
        sock = stack.enter_context(socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                                 socket.htons(ETH_P_ALL)))
        sock.bind((args.interface, 0))
        stack.enter_context(ebpf.link.socket_filter(prog, sock))
        stop = threading.Event()
        if not args.quiet_traffic:
            t = threading.Thread(target=traffic, args=(stop,), daemon=True)
            t.start()
        start = time.monotonic()
        tty = sys.stdout.isatty()
        try:
            while (elapsed := time.monotonic() - start) < args.seconds:
                table = render(counts, elapsed)
                if tty:
                    print("\033[H\033[J" + table, flush=True)
                time.sleep(0.5)
        finally:
            stop.set()
        print(render(counts, time.monotonic() - start))
        total = sum(int.from_bytes(v, "little") for v in counts.values())
        if total == 0:
            print("no packets were counted", file=sys.stderr)
            return 1
    print("\n--- part 2: execsnoop (CO-RE, tracepoint, ring buffer) ---\n")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import execsnoop

    return execsnoop.main(["--seconds", str(args.seconds)])


if __name__ == "__main__":
    raise SystemExit(main())
