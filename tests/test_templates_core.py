"""tests/bpf/tc_template_core.c, bench/templates.py's default template: built against the
running kernel's vmlinux.h, so every packet header read is a CO-RE relocation; loaded
once per configuration, its verdicts and counters are the configuration's."""

from __future__ import annotations

import socket
import struct

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires
from vmlinux import vmlinux_include_dir

import ebpf

pytestmark = pytest.mark.kernel

TCX_PASS, TCX_DROP = 0, 2
RULE = struct.Struct("<BBHHHII")
CONFIG = struct.Struct("<IIIHBB")
SERVICE = 7000
STATS = struct.Struct("<6Q")  # packets, bytes, allowed, denied, service, generation


def addr(dotted: str) -> int:
    """An IPv4 address as the program compares it (network order, read as a u32)."""
    value: int = struct.unpack("<I", socket.inet_aton(dotted))[0]
    return value


def template() -> ebpf.CollectionSpec:
    obj = compile_bpf("tc_template_core", extra_flags=[f"-I{vmlinux_include_dir()}"])
    return ebpf.load_collection_spec(str(obj))


def config(endpoint: int, generation: int, rules: list[tuple[int, ...]],
           default: int = TCX_PASS) -> bytes:
    raw = bytearray(CONFIG.pack(endpoint, generation, 0, SERVICE, default, len(rules)))
    for r in rules:
        raw += RULE.pack(*r)
    return bytes(raw + bytes(RULE.size * (48 - len(rules))))


def l4(proto: int, dport: int, flags: int = 0) -> bytes:
    if proto == 17:
        return struct.pack("!HHHH", 1234, dport, 8, 0)
    if proto == 6:
        return struct.pack("!HHIIBBHHH", 1234, dport, 0, 0, 5 << 4, flags, 1024, 0, 0)
    return struct.pack("!BBHI", dport >> 8, dport & 0xFF, 0, 0)  # ICMP type, code


def ipv4(proto: int, dport: int, src: str = "10.1.2.3", vlan: bool = False) -> bytes:
    body = l4(proto, dport)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, proto, 0,
                     socket.inet_aton(src), socket.inet_aton("10.0.0.1"))
    eth = b"\x02" * 6 + b"\x04" * 6
    tag = b"\x81\x00\x00\x05" if vlan else b""
    return eth + tag + b"\x08\x00" + ip + body


def ipv6(proto: int, dport: int, ext: bool = False) -> bytes:
    body = l4(proto, dport)
    nxt = proto
    exthdr = b""
    if ext:  # a destination options header (8 bytes) before the L4 header
        exthdr = bytes([proto, 0]) + b"\x01\x04\x00\x00\x00\x00"
        nxt = 60
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(exthdr) + len(body), nxt, 64,
                      socket.inet_pton(socket.AF_INET6, "fd00::2"),
                      socket.inet_pton(socket.AF_INET6, "fd00::1"))
    return b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + ip6 + exthdr + body


@requires("link_type:TCX", min_kernel="6.6")  # (its section is tcx/ingress)
def test_template_has_core_relocations_and_each_configuration_decides() -> None:
    spec = template()
    prog = spec.programs["endpoint"]
    assert sum(1 for ins in prog.instructions if ins.meta and "core" in ins.meta) >= 20
    rules = [(17, TCX_PASS, SERVICE, SERVICE, 0, 0, 0),
             (6, TCX_DROP, 20, 25, 0, 0, 0),                      # ssh and smtp: drop
             (17, TCX_DROP, 5000, 5999, 0, addr("10.9.0.0"), addr("255.255.0.0")),
             (1, TCX_DROP, 0x0800, 0x0800, 0, 0, 0)]              # ICMP echo request
    shared = {name: ebpf.Map(spec.maps[name]) for name in ("stats", "flows")}
    try:
        cases = [
            (ipv4(17, SERVICE), TCX_PASS),
            (ipv4(6, 22), TCX_DROP),
            (ipv4(6, 22, vlan=True), TCX_DROP),          # behind a VLAN tag
            (ipv4(6, 80), TCX_PASS),                     # no rule: the default
            (ipv4(17, 5500, src="10.9.1.1"), TCX_DROP),  # the source prefix matches
            (ipv4(17, 5500, src="10.8.1.1"), TCX_PASS),  # ... and here not
            (ipv4(1, 0x0800), TCX_DROP),
            (ipv6(6, 25), TCX_DROP),
            (ipv6(6, 25, ext=True), TCX_DROP),           # past an extension header
            (ipv6(17, 5500), TCX_PASS),                  # prefix rules are IPv4 only
        ]
        for generation, endpoint in ((1, 3), (2, 4)):
            spec.variables["cfg"].set(config(endpoint, generation, rules))
            with ebpf.Collection(spec, map_replacements=shared) as coll:
                p = coll.programs["endpoint"]
                verdicts = [p.test_run(frame).retval for frame, _ in cases]
                assert verdicts == [want for _, want in cases], generation
            per_cpu = shared["stats"].lookup(endpoint, raw=True)
            st = [sum(v) for v in zip(*(STATS.unpack(c) for c in per_cpu), strict=True)]
            assert st[0] == len(cases)                           # packets
            assert st[2] == sum(w == TCX_PASS for _, w in cases)  # allowed
            assert st[3] == sum(w == TCX_DROP for _, w in cases)  # denied
            assert st[4] == 1                                    # service port, UDP
            assert st[5] == generation
        # a different default, no rules: everything policed is dropped
        spec.variables["cfg"].set(config(5, 3, [], default=TCX_DROP))
        with ebpf.Collection(spec, map_replacements=shared) as coll:
            assert coll.programs["endpoint"].test_run(ipv4(6, 80)).retval == TCX_DROP
            arp = b"\xff" * 6 + b"\x04" * 6 + b"\x08\x06" + bytes(28)
            assert coll.programs["endpoint"].test_run(arp).retval == TCX_PASS
    finally:
        for m in shared.values():
            m.close()


def test_replacement_map_is_checked_once_and_still_refused_when_closed_or_unfit() -> None:
    """A map reused at every load (`map_replacements`) is asked for its kernel facts
    once; a closed one or one of another shape is still refused by name."""
    spec = template()
    stats = ebpf.Map(spec.maps["stats"])
    try:
        spec.maps["stats"].check_compatible(stats)
        fixed = stats._fixed
        assert fixed is not None and fixed.value_size == spec.maps["stats"].value_size
        spec.maps["stats"].check_compatible(stats)
        assert stats._fixed is fixed  # no second query
        with pytest.raises(ebpf.errors.InvalidArgumentError,
                           match=r"map 'flows': existing map has type 6, spec wants 9"):
            spec.maps["flows"].check_compatible(stats)
    finally:
        stats.close()
    with pytest.raises(ebpf.errors.ClosedError):
        spec.maps["stats"].check_compatible(stats)
