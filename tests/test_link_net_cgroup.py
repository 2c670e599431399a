"""cgroup v2 hooks, each triggered for real: sockets created by a process in a fresh
cgroup (this one, moved in for the moment, or a child) inside a network namespace."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from kernelmatrix import requires
from test_link_net_util import (
    A_ADDR,
    B_ADDR,
    in_cgroup,
    load,
    recv_count,
    run_child,
    send_udp,
    tcp_listener,
    udp_socket,
    warm_arp,
)

import ebpf
from ebpf.errors import InvalidArgumentError, NotSupportedError, SyscallError
from ebpf.link import CgroupAttachFlags, cgroup_programs, in_netns
from ebpf.link import cgroup as cg_attach
from ebpf.programs import Program

pytestmark = pytest.mark.kernel

PORT = 9300
REDIRECT = 9301
AT = ebpf.AttachType


def var(coll: ebpf.Collection, name: str) -> int:
    return int(coll.variables[name].get())


@pytest.mark.parametrize("deny", [0, 1])
def test_skb_egress(netns: str, cgroup: str, deny: int) -> None:
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_cgroup", ["skb_egress"], port=PORT, deny=deny) as coll, \
            contextlib.closing(udp_socket(peer, B_ADDR, PORT)) as rx:
        with cgroup_link(coll.programs["skb_egress"], cgroup) as link:
            assert isinstance(link, ebpf.link.CgroupLink)
            with in_cgroup(cgroup):
                tx = udp_socket(netns)
            with tx:
                errors = 0
                for _ in range(5):
                    try:
                        tx.sendto(b"hello", (B_ADDR, PORT))
                    except PermissionError:
                        errors += 1
            assert var(coll, "skb_out") == 5
            assert recv_count(rx, 5, timeout=0.5 if deny else 2) == (0 if deny else 5)
            assert errors == (5 if deny else 0)


@contextlib.contextmanager
def cgroup_link(prog: Program, cg: str, attach_type: AT | None = None) -> Iterator[Any]:
    """cgroup(...), checking that the hook is empty again after close."""
    link = cg_attach(prog, cg, attach_type)
    try:
        yield link
    finally:
        link.close()
    assert cgroup_programs(cg, link.attach_type).prog_ids == ()


def test_skb_ingress(netns: str, cgroup: str) -> None:
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_cgroup", ["skb_ingress"], port=PORT, deny=1) as coll:
        with in_cgroup(cgroup):
            rx = udp_socket(netns, A_ADDR, PORT)
        outside = udp_socket(netns, A_ADDR, PORT + 1)  # not in the cgroup
        with rx, outside, cgroup_link(coll.programs["skb_ingress"], cgroup):
            send_udp(peer, A_ADDR, PORT, 6)
            assert recv_count(rx, 6, timeout=0.5) == 0
            assert var(coll, "skb_in") == 6
            send_udp(peer, A_ADDR, PORT + 1, 3)
            assert recv_count(outside, 3) == 3
        # detached: delivered again
        with in_cgroup(cgroup):
            rx = udp_socket(netns, A_ADDR, PORT)
        with rx:
            send_udp(peer, A_ADDR, PORT, 2)
            assert recv_count(rx, 2) == 2


def test_sock_create(netns: str, cgroup: str) -> None:
    with load("net_cgroup", ["sock_create"], deny=1) as coll:
        prog = coll.programs["sock_create"]
        with cgroup_link(prog, cgroup), in_cgroup(cgroup), in_netns(netns):
            with pytest.raises(PermissionError):
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        assert var(coll, "sock_created") == 1
        with in_cgroup(cgroup), in_netns(netns):
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()


def test_connect4_rewrites_destination(netns: str, cgroup: str) -> None:
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_cgroup", ["connect4"], port=PORT, redirect_port=REDIRECT) as coll, \
            contextlib.closing(tcp_listener(peer, B_ADDR, REDIRECT)) as server:
        with cgroup_link(coll.programs["connect4"], cgroup):
            with in_cgroup(cgroup), in_netns(netns):
                client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with client:
                client.settimeout(2)
                client.connect((B_ADDR, PORT))  # nothing listens on PORT
                conn, (addr, _) = server.accept()
                with conn:
                    assert addr == A_ADDR
                    client.sendall(b"ping")
                    assert conn.recv(4) == b"ping"
        assert var(coll, "connects") == 1


def test_bind4_denied(netns: str, cgroup: str) -> None:
    with load("net_cgroup", ["bind4"], port=PORT, deny=1) as coll:
        with cgroup_link(coll.programs["bind4"], cgroup):
            with in_cgroup(cgroup):
                s = udp_socket(netns)
            with s:
                with pytest.raises(PermissionError):
                    s.bind((A_ADDR, PORT))
                s.bind((A_ADDR, PORT + 1))
        assert var(coll, "binds") == 1


def test_sendmsg4_rewrites_destination(netns: str, cgroup: str) -> None:
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_cgroup", ["sendmsg4"], port=PORT, redirect_port=REDIRECT) as coll, \
            contextlib.closing(udp_socket(peer, B_ADDR, REDIRECT)) as rx:
        with cgroup_link(coll.programs["sendmsg4"], cgroup):
            with in_cgroup(cgroup):
                tx = udp_socket(netns)
            with tx:
                for _ in range(3):
                    tx.sendto(b"to-port-9300", (B_ADDR, PORT))
            assert recv_count(rx, 3) == 3
        assert var(coll, "sendmsgs") == 3


def test_setsockopt_denied(netns: str, cgroup: str) -> None:
    with load("net_cgroup", ["setsockopt_tos"], deny=1) as coll:
        with cgroup_link(coll.programs["setsockopt_tos"], cgroup):
            with in_cgroup(cgroup):
                s = udp_socket(netns)
            with s:
                with pytest.raises(PermissionError):
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        assert var(coll, "sockopts") == 1


SYSCTL_CHILD = r"""
path = "/proc/sys/net/ipv4/ip_forward"
def write():
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)
def read():
    with open(path) as f:
        return f.read().strip()
result = {"read": attempt(read), "write": attempt(write)}
"""


def test_sysctl_write_denied(netns: str, cgroup: str) -> None:
    with load("net_cgroup", ["sysctl_ro"], deny=1) as coll:
        with cgroup_link(coll.programs["sysctl_ro"], cgroup):
            got = run_child(SYSCTL_CHILD, netns=netns, cgroup=cgroup)
        assert got == {"read": "0", "write": "EPERM"}
        assert var(coll, "sysctl_writes") == 1
        got = run_child(SYSCTL_CHILD, netns=netns, cgroup=cgroup)
        assert got["write"] == "ok"


def test_device_filter(cgroup: str) -> None:
    """The cgroup v2 device filter of references/001 (runc), attached with a link."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    from device_filter import (  # type: ignore[import-not-found,unused-ignore]
        DeviceRule,
        device_filter_spec,
        try_open_in_cgroup,
    )

    rules = [DeviceRule("c", 1, 3, "rw"), DeviceRule("c", 1, 5, "r")]
    accesses = ["/dev/null:w", "/dev/zero:r", "/dev/zero:w", "/dev/urandom:r"]
    with Program(device_filter_spec(rules)) as prog:
        with cgroup_link(prog, cgroup) as link:  # attach type from the program type
            assert link.attach_type == AT.CGROUP_DEVICE
            got = try_open_in_cgroup(cgroup, accesses)
        assert got == {"/dev/null:w": "ok", "/dev/zero:r": "ok", "/dev/zero:w": "EPERM",
                       "/dev/urandom:r": "EPERM"}
        assert set(try_open_in_cgroup(cgroup, accesses).values()) == {"ok"}


def test_sockops(netns: str, cgroup: str) -> None:
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_cgroup", ["sockops_count"], port=PORT) as coll, \
            contextlib.closing(tcp_listener(peer, B_ADDR, PORT)) as server:
        with cgroup_link(coll.programs["sockops_count"], cgroup) as link:
            assert link.attach_type == AT.CGROUP_SOCK_OPS
            with in_cgroup(cgroup), in_netns(netns):
                client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with client:
                client.settimeout(2)
                client.connect((B_ADDR, PORT))
                conn, _ = server.accept()
                conn.close()
        assert var(coll, "sockops_connect") == 1
        assert var(coll, "sockops_active") == 1
        assert var(coll, "sockops_passive") == 0  # the server is not in the cgroup


def test_multi_attach_and_update(netns: str, cgroup: str) -> None:
    """Two links and a BPF_PROG_ATTACH (ALLOW_MULTI) program on one hook all run;
    update swaps in place; an exclusive attach is refused while they are there."""
    peer = netns + "-peer"
    warm_arp(netns)
    progs = ["skb_egress"]
    with load("net_cgroup", progs, port=PORT, deny=0) as c1, \
            load("net_cgroup", progs, port=PORT, deny=0) as c2, \
            load("net_cgroup", progs, port=PORT, deny=0) as c3, \
            load("net_cgroup", progs, port=PORT, deny=1) as c4, \
            contextlib.closing(udp_socket(peer, B_ADDR, PORT)) as rx:
        p1, p2, p3, p4 = (c.programs["skb_egress"] for c in (c1, c2, c3, c4))
        with in_cgroup(cgroup):
            tx = udp_socket(netns)
        with tx, contextlib.ExitStack() as stack:
            l1 = stack.enter_context(cg_attach(p1, cgroup))
            stack.enter_context(cg_attach(p2, cgroup))
            legacy = stack.enter_context(cg_attach(p3, cgroup, flags=CgroupAttachFlags.ALLOW_MULTI))
            assert isinstance(legacy, ebpf.link.ProgAttachLink)
            q = cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS)
            assert sorted(q.prog_ids) == sorted([p1.id, p2.id, p3.id])
            eff = cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS, effective=True)
            assert sorted(eff.prog_ids) == sorted(q.prog_ids)
            tx.sendto(b"a", (B_ADDR, PORT))
            assert recv_count(rx, 1) == 1
            assert [var(c, "skb_out") for c in (c1, c2, c3)] == [1, 1, 1]
            with pytest.raises(SyscallError, match="incompatible flags"):
                cg_attach(p4, cgroup, flags=CgroupAttachFlags.NONE)
            # update the link to the denying program: sends now fail
            l1.update(p4)
            with pytest.raises(PermissionError):
                tx.sendto(b"b", (B_ADDR, PORT))
            assert var(c4, "skb_out") == 1
            l1.update(p1, old=p4)
            # the legacy attachment updates with BPF_F_REPLACE
            legacy.update(p4)
            assert p4.id in cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).prog_ids
            with pytest.raises(PermissionError):
                tx.sendto(b"c", (B_ADDR, PORT))
            legacy.update(p3)
            tx.sendto(b"d", (B_ADDR, PORT))
            assert recv_count(rx, 1) == 1
            with pytest.raises(NotSupportedError):
                legacy.pin("/sys/fs/bpf/x")
        assert cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).prog_ids == ()


def test_exclusive_and_override(cgroup: str) -> None:
    with load("net_cgroup", ["skb_egress"]) as c1, load("net_cgroup", ["skb_egress"]) as c2:
        p1, p2 = c1.programs["skb_egress"], c2.programs["skb_egress"]
        with cg_attach(p1, cgroup, flags=CgroupAttachFlags.NONE) as only:
            # exclusive mode: a multi-attach program is refused ...
            with pytest.raises(SyscallError, match="incompatible flags"):
                cg_attach(p2, cgroup)
            # ... and updating (attaching again) replaces the one program
            only.update(p2)
            assert cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).prog_ids == (p2.id,)
            assert only.program is p2
        with cg_attach(p1, cgroup, flags=CgroupAttachFlags.ALLOW_OVERRIDE):
            q = cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS)
            assert q.prog_ids == (p1.id,)
            assert q.attach_flags == CgroupAttachFlags.ALLOW_OVERRIDE
        assert cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).prog_ids == ()


def test_pinned_cgroup_link(cgroup: str, pin_dir: str) -> None:
    with load("net_cgroup", ["skb_ingress"]) as coll:
        prog = coll.programs["skb_ingress"]
        link = cg_attach(prog, cgroup)
        link.pin(f"{pin_dir}/cg")
        link.close()
        assert cgroup_programs(cgroup, AT.CGROUP_INET_INGRESS).prog_ids == (prog.id,)
        again = ebpf.link.open_pinned(f"{pin_dir}/cg")
        info = again.info()
        assert info.type == ebpf.LinkType.CGROUP
        assert info.cgroup.attach_type == AT.CGROUP_INET_INGRESS
        again.unpin()
        again.close()
        assert cgroup_programs(cgroup, AT.CGROUP_INET_INGRESS).prog_ids == ()


def test_cgroup_argument_errors(cgroup: str) -> None:
    with load("net_cgroup", ["skb_egress", "connect4"]) as coll:
        with pytest.raises(InvalidArgumentError):
            cg_attach(coll.programs["skb_egress"], cgroup + "-missing")
        with pytest.raises(InvalidArgumentError, match="not a cgroup attach type"):
            cg_attach(coll.programs["skb_egress"], cgroup, AT.XDP)
        with pytest.raises(SyscallError, match="must agree"):
            cg_attach(coll.programs["connect4"], cgroup, AT.CGROUP_INET_INGRESS)
        # by open fd
        fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with cg_attach(coll.programs["skb_egress"], fd) as link:
                assert link.info().cgroup.cgroup_id == os.stat(cgroup).st_ino
        finally:
            os.close(fd)


def test_cgroup_link_ordering(cgroup: str) -> None:
    """bpf_mprog ordering of cgroup links (6.16+): first, last, before/after a link."""
    if cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).revision == 0:
        pytest.skip("cgroup hooks without bpf_mprog ordering (kernel before 6.16)")
    colls = [load("net_cgroup", ["skb_egress"]) for _ in range(4)]
    with contextlib.ExitStack() as stack:
        for c in colls:
            stack.enter_context(c)
        a, b, c, d = (x.programs["skb_egress"] for x in colls)
        la = stack.enter_context(cg_attach(a, cgroup))
        lb = stack.enter_context(cg_attach(b, cgroup, first=True))          # [b a]
        stack.enter_context(cg_attach(c, cgroup, after=lb))                 # [b c a]
        stack.enter_context(cg_attach(d, cgroup, last=True))                # [b c a d]
        assert cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).prog_ids == (b.id, c.id, a.id,
                                                                            d.id)
        la.close()
        assert cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).prog_ids == (b.id, c.id, d.id)
        with pytest.raises(InvalidArgumentError):
            cg_attach(a, cgroup, flags=CgroupAttachFlags.ALLOW_MULTI, first=True)
    assert cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).prog_ids == ()


def _trivial(ptype: ebpf.ProgramType, at: AT) -> Program:
    from ebpf import asm

    spec = ebpf.ProgramSpec(name=f"cg_{at.name.lower()}"[:15], type=ptype, attach_type=at,
                            license="GPL", instructions=[asm.mov_imm(asm.R0, 1), asm.exit()])
    return Program(spec)


_PT = ebpf.ProgramType
_CGROUP_PROGRAM_TYPES = {
    AT.CGROUP_INET_INGRESS: _PT.CGROUP_SKB, AT.CGROUP_INET_EGRESS: _PT.CGROUP_SKB,
    AT.CGROUP_SOCK_OPS: _PT.SOCK_OPS, AT.CGROUP_DEVICE: _PT.CGROUP_DEVICE,
    AT.CGROUP_SYSCTL: _PT.CGROUP_SYSCTL,
    AT.CGROUP_GETSOCKOPT: _PT.CGROUP_SOCKOPT, AT.CGROUP_SETSOCKOPT: _PT.CGROUP_SOCKOPT,
    **{at: _PT.CGROUP_SOCK for at in (
        AT.CGROUP_INET_SOCK_CREATE, AT.CGROUP_INET_SOCK_RELEASE,
        AT.CGROUP_INET4_POST_BIND, AT.CGROUP_INET6_POST_BIND)},
    **{at: _PT.CGROUP_SOCK_ADDR for at in ebpf.link.CGROUP_ATTACH_TYPES
       if at.name.startswith(("CGROUP_INET4_", "CGROUP_INET6_", "CGROUP_UDP", "CGROUP_UNIX"))
       and "POST_BIND" not in at.name},
}


def _attach_type_param(at: AT) -> Any:
    # Unix socket hooks came in 6.7; every other one is older than the oldest kernel
    # of the matrix.
    min_kernel = "6.7" if at.name.startswith("CGROUP_UNIX") else "5.10"
    feature = f"attach_type:{_CGROUP_PROGRAM_TYPES[at].name}:{at.name}"
    return pytest.param(at, id=at.name, marks=requires(feature, min_kernel=min_kernel))


@pytest.mark.parametrize("at", [_attach_type_param(at) for at in sorted(_CGROUP_PROGRAM_TYPES)])
def test_every_cgroup_attach_type(cgroup: str, at: AT) -> None:
    """Every cgroup attach type (but LSM_CGROUP, a trampoline): attach with a link and
    with BPF_PROG_ATTACH, visible to BPF_PROG_QUERY, gone after close."""
    with _trivial(_CGROUP_PROGRAM_TYPES[at], at) as prog:
        for flags in (None, CgroupAttachFlags.ALLOW_MULTI):
            with cg_attach(prog, cgroup, flags=flags) as link:
                assert cgroup_programs(cgroup, at).prog_ids == (prog.id,)
                if flags is None:
                    assert link.info().cgroup.attach_type == at
            assert cgroup_programs(cgroup, at).prog_ids == ()
