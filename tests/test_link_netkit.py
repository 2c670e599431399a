"""netkit links: programs on the primary and peer side of a netkit pair (verdicts,
update, ordering, query), with real UDP packets between two network namespaces; typed
errors for non-netkit interfaces and for kernels without netkit.

iproute2 here (6.1) cannot create netkit devices, so `add_netkit` speaks rtnetlink
itself. The primary device (nk0, 10.78.0.1) lives in the `netns` fixture's namespace,
its peer (nk1, 10.78.0.2) in `<netns>-peer`; both go away with the namespaces.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import subprocess
from collections.abc import Iterator

import pytest
from kernelmatrix import requires
from test_link_net_util import ifindex_in, load, recv_count, send_udp, udp_socket

import ebpf
from ebpf import asm
from ebpf._sys.netlink import (
    NLM_F_CREATE,
    NLM_F_EXCL,
    RTM_NEWLINK,
    NetlinkSocket,
    attr,
    attr_s32,
    attr_str,
    attr_u32,
    nested,
    open_netns,
)
from ebpf.link import in_netns, netkit, netkit_programs, tcx, tcx_programs
from ebpf.link.netkit import NETKIT_DROP, NETKIT_NEXT, NETKIT_PASS

pytestmark = pytest.mark.kernel

PORT = 9300
NK_A, NK_B = "10.78.0.1", "10.78.0.2"

# include/uapi/linux/if_link.h
IFLA_IFNAME = 3
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_NETKIT_PEER_INFO = 1
IFLA_NETKIT_MODE = 5
NETKIT_L2, NETKIT_L3 = 0, 1

_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change

needs_netkit = requires("link_type:NETKIT", min_kernel="6.7", config="CONFIG_NETKIT")


def have_netkit() -> bool:
    return ebpf.features.have_link_type(ebpf.LinkType.NETKIT)


def add_netkit(netns: str, name: str, peer_name: str, peer_netns: str | None = None,
               mode: int = NETKIT_L3) -> None:
    """RTM_NEWLINK a netkit pair: primary `name` in `netns`, peer `peer_name` in
    `peer_netns` (default: the same namespace). Both start down."""
    peer_fd = open_netns(peer_netns) if peer_netns is not None else None
    try:
        peer_attrs = attr_str(IFLA_IFNAME, peer_name)
        if peer_fd is not None:
            peer_attrs += attr_s32(IFLA_NET_NS_FD, peer_fd)
        # IFLA_NETKIT_PEER_INFO is an ifinfomsg followed by the peer's IFLA_* attributes
        peer_info = attr(IFLA_NETKIT_PEER_INFO, _IFINFOMSG.pack(0, 0, 0, 0, 0) + peer_attrs)
        body = (_IFINFOMSG.pack(0, 0, 0, 0, 0) + attr_str(IFLA_IFNAME, name)
                + nested(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "netkit"),
                         nested(IFLA_INFO_DATA, peer_info, attr_u32(IFLA_NETKIT_MODE, mode))))
        with in_netns(netns), NetlinkSocket() as sock:
            sock.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body,
                         f"create netkit pair {name}/{peer_name}")
    finally:
        if peer_fd is not None:
            os.close(peer_fd)


def ip(netns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True)


@pytest.fixture
def nk_pair(netns: str) -> Iterator[tuple[str, str]]:
    """A netkit pair nk0 (primary, NS_A) <-> nk1 (peer, NS_B) in the `netns` fixture's
    namespaces, addressed and up. Yields (NS_A, NS_B)."""
    peer = netns + "-peer"
    add_netkit(netns, "nk0", "nk1", peer)
    ip(netns, "addr", "add", f"{NK_A}/24", "dev", "nk0")
    ip(peer, "addr", "add", f"{NK_B}/24", "dev", "nk1")
    ip(netns, "link", "set", "nk0", "up")
    ip(peer, "link", "set", "nk1", "up")
    yield netns, peer


# -- every kernel ---------------------------------------------------------------------------

def test_netkit_unsupported_or_not_netkit(netns: str) -> None:
    """Without netkit in the kernel the attach says so (NotSupportedError naming
    netkit); with it, a veth is refused as not being a netkit device."""
    with load("net_netkit", ["nk_primary", "nk_peer"]) as coll, in_netns(netns):
        prog = coll.programs["nk_primary"]
        if have_netkit():
            with pytest.raises(ebpf.errors.InvalidArgumentError,
                               match=r"'veth0' .* is not a netkit device"):
                netkit(prog, "veth0", "primary")
            with pytest.raises(ebpf.errors.InvalidArgumentError,
                               match="not a netkit device"):
                netkit_programs("veth0", "peer")
        else:
            with pytest.raises(ebpf.errors.NotSupportedError, match="netkit") as exc:
                netkit(prog, "veth0", "primary")
            assert exc.value.feature == "netkit"
            with pytest.raises(ebpf.errors.NotSupportedError, match="netkit"):
                netkit_programs("veth0", ebpf.AttachType.NETKIT_PEER)
            if ebpf.features.have_link_type(ebpf.LinkType.TCX):
                # the failed netkit query did not spoil other queries' link ids
                with tcx(prog, "veth0", "ingress") as link:
                    assert tcx_programs("veth0", "ingress").link_ids == (link.id,)
        # checked before the kernel is asked, on any kernel
        with pytest.raises(ebpf.errors.InvalidArgumentError, match="'primary' or 'peer'"):
            netkit(prog, "veth0", "ingress")
        with pytest.raises(ebpf.errors.InvalidArgumentError, match="no network interface"):
            netkit(prog, "nk-missing", "primary")
        with pytest.raises(ebpf.errors.InvalidArgumentError, match="at most one"):
            netkit(prog, "veth0", "primary", first=True, last=True)
        # netkit sections name no interface: no auto-attach (like tcx)
        assert prog.attach() is None
        assert coll.programs["nk_peer"].attach() is None


def test_netkit_wrong_program_type() -> None:
    spec = ebpf.ProgramSpec(name="sf", type=ebpf.ProgramType.SOCKET_FILTER, license="GPL",
                            instructions=[asm.mov_imm(asm.R0, 0), asm.exit()])
    with ebpf.Program(spec) as prog, \
            pytest.raises(ebpf.errors.InvalidArgumentError, match="not SCHED_CLS"):
        netkit(prog, "lo", "primary")


# -- with netkit ----------------------------------------------------------------------------

@needs_netkit
def test_netkit_primary_verdicts_update_close(nk_pair: tuple[str, str]) -> None:
    """A primary program sees what NS_A sends to NS_B: it passes, then (after an atomic
    update) drops; closing the link detaches it."""
    ns_a, ns_b = nk_pair
    with load("net_netkit", ["nk_primary"], port=PORT, verdict=NETKIT_PASS) as passing, \
            load("net_netkit", ["nk_primary"], port=PORT, verdict=NETKIT_DROP) as dropping, \
            contextlib.closing(udp_socket(ns_b, NK_B, PORT)) as rx:
        with in_netns(ns_a):
            link = netkit(passing.programs["nk_primary"], "nk0", "primary")
        with link:
            assert link.attach_type == ebpf.AttachType.NETKIT_PRIMARY
            assert link.side == "primary"
            assert link.ifindex == ifindex_in(ns_a, "nk0")
            assert repr(link).startswith(f"<NetkitLink ifindex {link.ifindex} primary fd=")
            assert link.type == ebpf.LinkType.NETKIT
            info = link.info()
            assert info.netkit.ifindex == link.ifindex
            assert info.netkit.attach_type == ebpf.AttachType.NETKIT_PRIMARY
            with ebpf.link.from_id(link.id) as again:   # typed again, knowing where it is
                assert isinstance(again, ebpf.link.NetkitLink)
                assert (again.ifindex, again.side) == (link.ifindex, "primary")
            send_udp(ns_a, NK_B, PORT, 10)
            assert recv_count(rx, 10) == 10
            assert passing.variables["hits"].get() == 10
            # B -> A does not go through the primary side
            with contextlib.closing(udp_socket(ns_a, NK_A, PORT)) as rx_a:
                send_udp(ns_b, NK_A, PORT, 3)
                assert recv_count(rx_a, 3) == 3
            assert passing.variables["hits"].get() == 10

            link.update(dropping.programs["nk_primary"])
            send_udp(ns_a, NK_B, PORT, 10)
            assert recv_count(rx, 10, timeout=0.5) == 0
            assert dropping.variables["hits"].get() == 10
            assert passing.variables["hits"].get() == 10
            with in_netns(ns_a):
                q = netkit_programs("nk0", "primary")
                assert netkit_programs("nk0", "peer").prog_ids == ()
            assert q.prog_ids == (dropping.programs["nk_primary"].id,)
            assert q.link_ids == (link.id,)
        assert link.closed
        with in_netns(ns_a):
            assert netkit_programs("nk0", ebpf.AttachType.NETKIT_PRIMARY).prog_ids == ()
        send_udp(ns_a, NK_B, PORT, 3)
        assert recv_count(rx, 3) == 3
        assert dropping.variables["hits"].get() == 10


@needs_netkit
def test_netkit_peer_side(nk_pair: tuple[str, str]) -> None:
    """A peer program (attached through the primary's interface) sees what NS_B sends
    to NS_A, and drops it; A -> B is untouched."""
    ns_a, ns_b = nk_pair
    with load("net_netkit", ["nk_peer"], port=PORT, verdict=NETKIT_DROP) as coll, \
            contextlib.closing(udp_socket(ns_a, NK_A, PORT)) as rx_a, \
            contextlib.closing(udp_socket(ns_b, NK_B, PORT)) as rx_b:
        prog = coll.programs["nk_peer"]
        index = ifindex_in(ns_a, "nk0")
        with in_netns(ns_a):
            link = netkit(prog, index, ebpf.AttachType.NETKIT_PEER)
        with link:
            assert (link.ifindex, link.attach_type) == (index, ebpf.AttachType.NETKIT_PEER)
            assert link.side == "peer"
            assert link.info().netkit.attach_type == ebpf.AttachType.NETKIT_PEER
            send_udp(ns_b, NK_A, PORT, 5)
            assert recv_count(rx_a, 5, timeout=0.5) == 0
            assert coll.variables["hits"].get() == 5
            send_udp(ns_a, NK_B, PORT, 5)
            assert recv_count(rx_b, 5) == 5
            assert coll.variables["hits"].get() == 5
            with in_netns(ns_a):
                assert netkit_programs(index, "peer").prog_ids == (prog.id,)
                assert netkit_programs(index, "primary").prog_ids == ()
        send_udp(ns_b, NK_A, PORT, 3)
        assert recv_count(rx_a, 3) == 3


@needs_netkit
def test_netkit_ordering(nk_pair: tuple[str, str]) -> None:
    """first/before/after place programs; one packet records the run order; a stale
    expected_revision and a second attach of the same program are refused."""
    ns_a, ns_b = nk_pair
    with load("net_netkit", ["nk_a", "nk_b", "nk_c"], port=PORT) as coll, \
            contextlib.closing(udp_socket(ns_b, NK_B, PORT)) as rx:
        a, b, c = (coll.programs[f"nk_{x}"] for x in "abc")
        with contextlib.ExitStack() as stack, in_netns(ns_a):
            la = stack.enter_context(netkit(a, "nk0", "primary"))             # [a]
            stack.enter_context(netkit(b, "nk0", "primary", before=la))       # [b a]
            q = netkit_programs("nk0", "primary")
            assert q.prog_ids == (b.id, a.id)
            with pytest.raises(ebpf.errors.SyscallError) as exc:
                netkit(c, "nk0", "primary", first=True, expected_revision=q.revision - 1)
            assert exc.value.errno == errno.ESTALE
            stack.enter_context(netkit(c, "nk0", "primary", after=b.id,
                                       expected_revision=q.revision))         # [b c a]
            assert netkit_programs("nk0", "primary").prog_ids == (b.id, c.id, a.id)
            with pytest.raises(ebpf.errors.SyscallError) as exc:
                netkit(a, "nk0", "primary", last=True)
            assert exc.value.errno == errno.EEXIST
            send_udp(ns_a, NK_B, PORT, 1)
            assert recv_count(rx, 1) == 1  # every program said NETKIT_NEXT: the policy passes
            assert list(coll.variables["order"].get())[:3] == [2, 3, 1]
            assert coll.variables["order_len"].get() == 3
        with in_netns(ns_a):
            assert netkit_programs("nk0", "primary").prog_ids == ()


@needs_netkit
def test_netkit_not_a_netkit_device(nk_pair: tuple[str, str]) -> None:
    """A veth and the pair's peer device are refused with typed errors."""
    ns_a, ns_b = nk_pair
    with load("net_netkit", ["nk_primary"], verdict=NETKIT_NEXT) as coll:
        prog = coll.programs["nk_primary"]
        with in_netns(ns_a):
            with pytest.raises(ebpf.errors.InvalidArgumentError,
                               match=r"'veth0' .* is not a netkit device") as exc:
                netkit(prog, "veth0", "primary")
            cause = exc.value.__cause__
            assert isinstance(cause, ebpf.errors.SyscallError)
            assert cause.errno == errno.ENXIO
        with in_netns(ns_b):
            with pytest.raises(ebpf.errors.InvalidArgumentError,
                               match=r"'nk1' .* is the peer of a netkit pair"):
                netkit(prog, "nk1", "peer")
            with pytest.raises(ebpf.errors.InvalidArgumentError, match="peer of a netkit"):
                netkit_programs("nk1", "primary")
