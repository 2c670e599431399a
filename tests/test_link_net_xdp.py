"""XDP links with real packets between two network namespaces (veth pair).

The program acts on UDP datagrams to one port and counts them per action; the
receiver socket in the first namespace says what got through.
"""

from __future__ import annotations

import contextlib

import pytest
from test_link_net_util import (
    A_ADDR,
    extra_veth,
    ifindex_in,
    load,
    recv_count,
    send_udp,
    udp_socket,
    warm_arp,
)

import ebpf
from ebpf.link import XDPMode, in_netns, xdp, xdp_info
from ebpf.programs import Program

pytestmark = pytest.mark.kernel

XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 1, 2, 3, 4
PORT = 9100
N = 20


def counts(coll: ebpf.Collection) -> list[int]:
    return list(coll.variables["counts"].get())


@pytest.mark.parametrize("mode", ["generic", "driver"])
@pytest.mark.parametrize("action", [XDP_PASS, XDP_DROP])
def test_xdp_pass_drop(netns: str, mode: str, action: int) -> None:
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_xdp", port=PORT, action=action) as coll, \
            contextlib.closing(udp_socket(netns, A_ADDR, PORT)) as rx:
        prog = coll.programs["xdp_act"]
        with in_netns(netns):
            link = xdp(prog, "veth0", mode)
        assert isinstance(link, ebpf.link.XDPLink)
        with link:
            assert link.info().xdp.ifindex == ifindex_in(netns, "veth0")
            with in_netns(netns):
                info = xdp_info("veth0")
            want = info.generic_prog_id if mode == "generic" else info.driver_prog_id
            assert want == prog.id
            send_udp(peer, A_ADDR, PORT, N)
            got = recv_count(rx, N, timeout=0.5 if action == XDP_DROP else 2.0)
            assert counts(coll)[action] == N
            assert got == (N if action == XDP_PASS else 0)
        with in_netns(netns):
            assert xdp_info("veth0").prog_ids == ()
        # detached: traffic flows again, uncounted
        send_udp(peer, A_ADDR, PORT, N)
        assert recv_count(rx, N) == N
        assert counts(coll)[action] == N


@pytest.mark.parametrize("mode", ["generic", "driver"])
def test_xdp_redirect(netns: str, mode: str) -> None:
    """Packets arriving on veth0 are redirected out of vethr0 and counted by a second
    XDP program on its peer vethr1, never reaching veth0's socket."""
    peer = netns + "-peer"
    warm_arp(netns)
    with extra_veth(netns, "vethr0", "vethr1"):
        target = ifindex_in(netns, "vethr0")
        with load("net_xdp", port=PORT, action=XDP_REDIRECT, redirect_ifindex=target) as red, \
                load("net_xdp", port=PORT, action=XDP_PASS) as cnt, \
                contextlib.closing(udp_socket(netns, A_ADDR, PORT)) as rx:
            with in_netns(netns):
                stack = contextlib.ExitStack()
                stack.enter_context(xdp(cnt.programs["xdp_act"], "vethr1", mode))
                stack.enter_context(xdp(red.programs["xdp_act"], "veth0", mode))
            with stack:
                send_udp(peer, A_ADDR, PORT, N)
                assert recv_count(rx, N, timeout=0.5) == 0
                assert counts(red)[XDP_REDIRECT] == N
                assert counts(cnt)[XDP_PASS] == N


def test_xdp_update_and_pin(netns: str, pin_dir: str) -> None:
    """Link.update swaps pass for drop atomically; a pinned link outlives close()."""
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_xdp", port=PORT, action=XDP_PASS) as passing, \
            load("net_xdp", port=PORT, action=XDP_DROP) as dropping, \
            contextlib.closing(udp_socket(netns, A_ADDR, PORT)) as rx:
        with in_netns(netns):
            link = xdp(passing.programs["xdp_act"], "veth0", XDPMode.GENERIC)
        assert isinstance(link, ebpf.link.XDPLink)
        with link:
            send_udp(peer, A_ADDR, PORT, 5)
            assert recv_count(rx, 5) == 5
            link.update(dropping.programs["xdp_act"])
            assert link.info().prog_id == dropping.programs["xdp_act"].id
            send_udp(peer, A_ADDR, PORT, 5)
            assert recv_count(rx, 5, timeout=0.5) == 0
            assert counts(dropping)[XDP_DROP] == 5
            # update with the wrong "old" program fails and changes nothing
            with pytest.raises(ebpf.errors.SyscallError):
                link.update(passing.programs["xdp_act"], old=passing.programs["xdp_act"])
            link.pin(f"{pin_dir}/xdp")
        # closed but pinned: still dropping
        send_udp(peer, A_ADDR, PORT, 3)
        assert recv_count(rx, 3, timeout=0.5) == 0
        again = ebpf.link.open_pinned(f"{pin_dir}/xdp")
        with again:
            assert again.info().prog_id == dropping.programs["xdp_act"].id
            again.unpin()
        with in_netns(netns):
            assert xdp_info("veth0").prog_ids == ()


def test_xdp_second_attach_refused(netns: str) -> None:
    with load("net_xdp", port=PORT) as coll:
        prog = coll.programs["xdp_act"]
        with in_netns(netns):
            with xdp(prog, "veth0", "generic"):
                with pytest.raises(ebpf.errors.SyscallError):
                    xdp(prog, "veth0", "generic")


def test_xdp_netlink_fallback(netns: str) -> None:
    """The IFLA_XDP path (kernels before 5.9): attach, replace, detach."""
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_xdp", port=PORT, action=XDP_PASS) as passing, \
            load("net_xdp", port=PORT, action=XDP_DROP) as dropping, \
            contextlib.closing(udp_socket(netns, A_ADDR, PORT)) as rx:
        with in_netns(netns):
            link = xdp(passing.programs["xdp_act"], "veth0", "generic", netlink=True)
        assert isinstance(link, ebpf.link.XDPNetlinkLink)
        with link:
            assert link.info().generic_prog_id == passing.programs["xdp_act"].id
            with in_netns(netns):  # no second program over netlink either
                with pytest.raises(ebpf.errors.SyscallError):
                    xdp(dropping.programs["xdp_act"], "veth0", "generic", netlink=True)
            link.update(dropping.programs["xdp_act"])
            send_udp(peer, A_ADDR, PORT, 4)
            assert recv_count(rx, 4, timeout=0.5) == 0
            assert counts(dropping)[XDP_DROP] == 4
        with in_netns(netns):
            assert xdp_info("veth0").prog_ids == ()


def test_xdp_rejects_wrong_program_type() -> None:
    from ebpf import asm

    spec = ebpf.ProgramSpec(type=ebpf.ProgramType.SOCKET_FILTER, license="GPL",
                            instructions=[asm.mov_imm(asm.R0, 0), asm.exit()])
    with Program(spec) as prog, pytest.raises(ebpf.errors.InvalidArgumentError):
        xdp(prog, "lo")
