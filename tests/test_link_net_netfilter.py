"""Netfilter bpf_links: a program on the LOCAL_IN / LOCAL_OUT hooks of a network
namespace drops UDP packets to one port; other namespaces are unaffected."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from kernelmatrix import requires
from test_link_net_util import A_ADDR, B_ADDR, load, recv_count, send_udp, udp_socket, warm_arp
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf.link import NetfilterHook, in_netns, netfilter

pytestmark = pytest.mark.kernel
nf_links = requires("netfilter links", min_kernel="6.4", config="NETFILTER_BPF_LINK")

PORT = 9600
NF_DROP, NF_ACCEPT = 0, 1


def load_nf(**variables: Any) -> ebpf.Collection:
    return load("net_nf", extra_flags=(f"-I{vmlinux_include_dir()}",), **variables)


@pytest.fixture(autouse=True)
def _need_netfilter_links() -> None:
    if not ebpf.features.have_link_type(ebpf.LinkType.NETFILTER):
        pytest.skip("kernel without netfilter bpf_links (6.4+, CONFIG_NETFILTER_BPF_LINK)")


@nf_links
def test_netfilter_local_in_drop(netns: str) -> None:
    peer = netns + "-peer"
    warm_arp(netns)
    with load_nf(port=PORT, verdict=NF_DROP) as coll, \
            contextlib.closing(udp_socket(netns, A_ADDR, PORT)) as rx, \
            contextlib.closing(udp_socket(peer, "127.0.0.1", PORT)) as peer_rx:
        prog = coll.programs["nf_udp"]
        with in_netns(netns):
            link = netfilter(prog, "input", priority=-100)
        with link:
            info = link.info()
            assert info.type == ebpf.LinkType.NETFILTER
            assert (info.netfilter.pf, info.netfilter.hooknum, info.netfilter.priority) == \
                (2, NetfilterHook.LOCAL_IN, -100)
            send_udp(peer, A_ADDR, PORT, 7)
            assert recv_count(rx, 7, timeout=0.5) == 0
            assert coll.variables["seen"].get() == 7
            # the peer namespace has its own hooks
            send_udp(peer, "127.0.0.1", PORT, 2)
            assert recv_count(peer_rx, 2) == 2
            with pytest.raises(ebpf.errors.NotSupportedError):
                link.update(prog)  # nf links cannot be updated
        send_udp(peer, A_ADDR, PORT, 3)
        assert recv_count(rx, 3) == 3
        assert coll.variables["seen"].get() == 7


@nf_links
def test_netfilter_local_out_and_accept(netns: str) -> None:
    """On LOCAL_OUT the drop makes sendto fail; two programs at different priorities
    both see the packet when the first accepts it."""
    peer = netns + "-peer"
    warm_arp(netns)
    with load_nf(port=PORT, verdict=NF_ACCEPT) as accept, load_nf(port=PORT) as drop, \
            contextlib.closing(udp_socket(netns, A_ADDR, PORT)) as rx:
        with in_netns(peer):
            stack = contextlib.ExitStack()
            stack.enter_context(netfilter(accept.programs["nf_udp"], NetfilterHook.LOCAL_OUT,
                                          priority=10))
            stack.enter_context(netfilter(drop.programs["nf_udp"], "output", family="ipv4",
                                          priority=20))
        with stack, contextlib.closing(udp_socket(peer)) as tx:
            with pytest.raises(PermissionError):
                tx.sendto(b"x", (A_ADDR, PORT))
            assert accept.variables["seen"].get() == 1
            assert drop.variables["seen"].get() == 1
        assert recv_count(rx, 1, timeout=0.3) == 0
        send_udp(peer, A_ADDR, PORT, 1)
        assert recv_count(rx, 1) == 1
    _ = B_ADDR


def test_netfilter_arguments() -> None:
    with load_nf() as coll:
        prog = coll.programs["nf_udp"]
        for kwargs in ({"hook": "sideways"}, {"hook": "input", "family": "ipx"},
                       {"hook": "input", "priority": -(1 << 31)}):
            with pytest.raises(ebpf.errors.InvalidArgumentError):
                netfilter(prog, **kwargs)
