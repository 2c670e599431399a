"""tcx links (ordering, update) and classic clsact + cls_bpf filters over rtnetlink
(list, replace, delete), with real packets between two network namespaces."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import fork_while_held
from kernelmatrix import requires
from test_link_net_util import A_ADDR, load, recv_count, send_udp, udp_socket, warm_arp

import ebpf
from ebpf.link import in_netns, tc, tc_delete, tc_filters, tcx, tcx_programs
from ebpf.link._attach import query
from ebpf.link.tc import TCX_DROP, TCX_NEXT, TCX_PASS

pytestmark = pytest.mark.kernel

TC_ACT_OK, TC_ACT_SHOT = 0, 2
PORT = 9200


def qdiscs(netns: str, dev: str) -> str:
    return subprocess.run(["tc", "-n", netns, "qdisc", "show", "dev", dev], check=True,
                          capture_output=True, text=True).stdout


def have_tcx() -> bool:
    return ebpf.features.have_link_type(ebpf.LinkType.TCX)


def needs_tcx(f: Callable[..., None]) -> Callable[..., None]:
    """Skip without tcx links; the kernel matrix checks that 6.6+ has them."""
    f = pytest.mark.skipif("not have_tcx()", reason="kernel without tcx links (6.6+)")(f)
    return requires("tcx links", min_kernel="6.6", config="NET_XGRESS")(f)


# -- tcx ---------------------------------------------------------------------------------

def test_tcx_on_a_kernel_without_it(netns: str) -> None:
    """Where tcx links are missing (before 6.6) attach and query say so; where they
    exist this is the attach every other tcx test makes."""
    with load("net_tc", ["tcx_act"], port=PORT, verdict=TCX_PASS) as coll, in_netns(netns):
        prog = coll.programs["tcx_act"]
        if have_tcx():
            with tcx(prog, "veth0", "ingress") as link:
                assert tcx_programs("veth0", "ingress").link_ids == (link.id,)
            return
        with pytest.raises(ebpf.errors.NotSupportedError, match=r"tcx links .* Linux 6\.6"):
            tcx(prog, "veth0", "ingress")
        with pytest.raises(ebpf.errors.NotSupportedError, match="tcx links"):
            tcx_programs("veth0", "egress")


@needs_tcx
def test_tcx_verdicts_and_update(netns: str) -> None:
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_tc", ["tcx_act"], port=PORT, verdict=TCX_PASS) as passing, \
            load("net_tc", ["tcx_act"], port=PORT, verdict=TCX_DROP) as dropping, \
            contextlib.closing(udp_socket(netns, A_ADDR, PORT)) as rx:
        with in_netns(netns):
            link = tcx(passing.programs["tcx_act"], "veth0", "ingress")
        with link:
            assert link.info().tcx.ifindex == link.ifindex
            send_udp(peer, A_ADDR, PORT, 10)
            assert recv_count(rx, 10) == 10
            assert passing.variables["hits"].get() == 10
            link.update(dropping.programs["tcx_act"])
            send_udp(peer, A_ADDR, PORT, 10)
            assert recv_count(rx, 10, timeout=0.5) == 0
            assert dropping.variables["hits"].get() == 10
            with in_netns(netns):
                q = tcx_programs("veth0", "ingress")
            assert q.prog_ids == (dropping.programs["tcx_act"].id,)
            assert q.link_ids == (link.id,)
            # opened by id it is a TCXLink again, knowing where it is
            with ebpf.link.from_id(link.id) as again:
                assert isinstance(again, ebpf.link.TCXLink)
                assert (again.ifindex, again.direction) == (link.ifindex, "ingress")
            # a query the kernel refuses (EINVAL) does not cost later queries their
            # link ids
            with in_netns(netns), pytest.raises(ebpf.errors.SyscallError, match="EINVAL"):
                query(target_ifindex=link.ifindex, attach_type=0x7FFF)
            with in_netns(netns):
                assert tcx_programs("veth0", "ingress").link_ids == (link.id,)
        with in_netns(netns):
            assert tcx_programs("veth0", "ingress").prog_ids == ()
        send_udp(peer, A_ADDR, PORT, 3)
        assert recv_count(rx, 3) == 3


@needs_tcx
def test_tcx_egress(netns: str) -> None:
    """An egress program on veth1 (in the peer namespace) drops what the peer sends."""
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_tc", ["tcx_act"], port=PORT, verdict=TCX_DROP) as coll, \
            contextlib.closing(udp_socket(netns, A_ADDR, PORT)) as rx:
        with in_netns(peer), tcx(coll.programs["tcx_act"], "veth1", "egress"):
            send_udp(peer, A_ADDR, PORT, 5)
            assert recv_count(rx, 5, timeout=0.5) == 0
            assert coll.variables["hits"].get() == 5


@needs_tcx
def test_tcx_ordering(netns: str) -> None:
    """before/after/first/last place programs; one packet records the run order."""
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_tc", ["tcx_a", "tcx_b", "tcx_c", "tcx_d"], port=PORT) as coll, \
            contextlib.closing(udp_socket(netns, A_ADDR, PORT)) as rx:
        a, b, c, d = (coll.programs[f"tcx_{x}"] for x in "abcd")
        with contextlib.ExitStack() as stack, in_netns(netns):
            la = stack.enter_context(tcx(a, "veth0", "ingress"))             # [a]
            stack.enter_context(tcx(b, "veth0", "ingress", before=la))       # [b a]
            stack.enter_context(tcx(c, "veth0", "ingress", first=True))      # [c b a]
            stack.enter_context(tcx(d, "veth0", "ingress", after=b))         # [c b d a]
            q = tcx_programs("veth0", "ingress")
            assert q.prog_ids == (c.id, b.id, d.id, a.id)
            # a stale revision is refused
            with pytest.raises(ebpf.errors.SyscallError):
                tcx(a, "veth0", "ingress", last=True, expected_revision=q.revision - 1)
            send_udp(peer, A_ADDR, PORT, 1)
            assert recv_count(rx, 1) == 1
            assert list(coll.variables["order"].get())[:4] == [3, 2, 4, 1]
            assert coll.variables["order_len"].get() == 4
            # a program runs at most once per hook
            with pytest.raises(ebpf.errors.SyscallError, match="EEXIST"):
                tcx(a, "veth0", "ingress", last=True)
            # move it: by program id
            la.close()
            stack.enter_context(tcx(a, "veth0", "ingress", after=c.id))     # [c a b d]
            assert tcx_programs("veth0", "ingress").prog_ids == (c.id, a.id, b.id, d.id)
        with in_netns(netns):
            assert tcx_programs("veth0", "ingress").prog_ids == ()


@needs_tcx
def test_tcx_next_falls_through(netns: str) -> None:
    """TCX_NEXT from the first program lets the second decide."""
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_tc", ["tcx_act"], port=PORT, verdict=TCX_NEXT) as first, \
            load("net_tc", ["tcx_act"], port=PORT, verdict=TCX_DROP) as second, \
            contextlib.closing(udp_socket(netns, A_ADDR, PORT)) as rx:
        with in_netns(netns), tcx(first.programs["tcx_act"], "veth0", "ingress"), \
                tcx(second.programs["tcx_act"], "veth0", "ingress"):
            send_udp(peer, A_ADDR, PORT, 4)
            assert recv_count(rx, 4, timeout=0.5) == 0
        assert first.variables["hits"].get() == 4
        assert second.variables["hits"].get() == 4


# -- classic tc --------------------------------------------------------------------------

def test_tc_filter_lifecycle(netns: str) -> None:
    """clsact is created on demand, filters listed/replaced/deleted, and everything is
    gone after close."""
    peer = netns + "-peer"
    warm_arp(netns)
    assert "clsact" not in qdiscs(netns, "veth0")
    with load("net_tc", ["tc_act"], port=PORT, verdict=TC_ACT_OK) as ok, \
            load("net_tc", ["tc_act"], port=PORT, verdict=TC_ACT_SHOT) as shot, \
            contextlib.closing(udp_socket(netns, A_ADDR, PORT)) as rx:
        pok, pshot = ok.programs["tc_act"], shot.programs["tc_act"]
        with in_netns(netns):
            link = tc(pok, "veth0", "ingress")
        with link:
            assert "clsact" in qdiscs(netns, "veth0")
            assert link.priority > 0 and link.handle > 0
            with in_netns(netns):
                (f,) = tc_filters("veth0", "ingress")
                assert tc_filters("veth0", "egress") == []
            assert (f.prog_id, f.priority, f.handle) == (pok.id, link.priority, link.handle)
            assert f.direct_action and f.name == "tc_act"
            # `tc` itself agrees
            out = subprocess.run(["tc", "-n", netns, "filter", "show", "dev", "veth0",
                                  "ingress"], check=True, capture_output=True, text=True).stdout
            assert "direct-action" in out and f"id {pok.id}" in out
            send_udp(peer, A_ADDR, PORT, 6)
            assert recv_count(rx, 6) == 6
            assert ok.variables["hits"].get() == 6
            # atomic replacement keeps priority and handle
            link.update(pshot)
            assert link.info().prog_id == pshot.id
            send_udp(peer, A_ADDR, PORT, 6)
            assert recv_count(rx, 6, timeout=0.5) == 0
            assert shot.variables["hits"].get() == 6
            with pytest.raises(ebpf.errors.SyscallError):
                link.update(pok, old=pok)  # not the current program
            with pytest.raises(ebpf.errors.NotSupportedError):
                link.pin("/sys/fs/bpf/nope")
        assert "clsact" not in qdiscs(netns, "veth0")
        with in_netns(netns):
            assert tc_filters("veth0") == []
        send_udp(peer, A_ADDR, PORT, 2)
        assert recv_count(rx, 2) == 2


def test_tc_replace_and_delete_explicit(netns: str) -> None:
    """Filters at chosen priority/handle: a second add collides, replace=True takes over,
    tc_delete removes one left behind; the qdisc lives until our last filter goes."""
    with load("net_tc", ["tc_act"], port=PORT) as c1, load("net_tc", ["tc_act"], port=PORT) as c2:
        p1, p2 = c1.programs["tc_act"], c2.programs["tc_act"]
        with in_netns(netns):
            l1 = tc(p1, "veth0", "egress", priority=10, handle=1, name="first")
            l2 = tc(p1, "veth0", "egress", priority=20, handle=1)
            with pytest.raises(ebpf.errors.SyscallError):
                tc(p2, "veth0", "egress", priority=10, handle=1)
            l3 = tc(p2, "veth0", "egress", priority=10, handle=1, replace=True, name="second")
            fs = {(f.priority, f.handle): f for f in tc_filters("veth0", "egress")}
            assert fs[(10, 1)].prog_id == p2.id and fs[(10, 1)].name == "second"
            assert fs[(20, 1)].prog_id == p1.id
            l1.close()  # deletes the filter at 10:1, which l3 also owned
            l3.close()  # already gone: fine
            assert [(f.priority, f.prog_id) for f in tc_filters("veth0")] == [(20, p1.id)]
            assert "clsact" in qdiscs(netns, "veth0")
            tc_delete("veth0", "egress", 20, 1)
            assert tc_filters("veth0") == []
            l2.close()
        assert "clsact" not in qdiscs(netns, "veth0")


def test_tc_keeps_foreign_qdisc(netns: str) -> None:
    """A clsact qdisc made by someone else is used and left in place."""
    subprocess.run(["tc", "-n", netns, "qdisc", "add", "dev", "veth0", "clsact"], check=True)
    with load("net_tc", ["tc_act"], port=PORT) as coll:
        with in_netns(netns), tc(coll.programs["tc_act"], "veth0", "ingress"):
            assert len(tc_filters("veth0", "ingress")) == 1
    assert "clsact" in qdiscs(netns, "veth0")
    with in_netns(netns):
        assert tc_filters("veth0") == []


def test_tc_bad_arguments(netns: str) -> None:
    with load("net_tc", ["tc_act"], port=PORT) as coll:
        prog = coll.programs["tc_act"]
        with pytest.raises(ebpf.errors.InvalidArgumentError):
            tc(prog, "veth0", "sideways")
        with pytest.raises(ebpf.errors.InvalidArgumentError):
            tc(prog, "no-such-iface0", "ingress")
        with pytest.raises(ebpf.errors.InvalidArgumentError):
            tc(prog, "lo", "ingress", replace=True)


def test_forgotten_tc_filter_warns_and_detaches(netns: str) -> None:
    """A tc filter outlives the process, so a link left to the garbage collector warns
    (ResourceWarning) and removes its filter."""
    import gc
    import warnings

    with load("net_tc", ["tc_act"], port=PORT, verdict=TC_ACT_OK) as coll:
        with in_netns(netns):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                tc(coll.programs["tc_act"], "veth0", "ingress")  # dropped at once
                gc.collect()
            assert any(issubclass(w.category, ResourceWarning) for w in caught)
            assert tc_filters("veth0") == []


def test_a_child_forked_while_a_thread_asks_the_filter_closes_it(netns: str) -> None:
    """A thread inside a tc link's netlink request (`info()`, `update()`) when another
    forks: the child's `close()` of its copy (and its exit) does not hang on the
    request's lock, which the child's copy of the socket inherited held."""
    with load("net_tc", ["tc_act"], port=PORT) as coll:
        with in_netns(netns):
            link = tc(coll.programs["tc_act"], "veth0", "ingress")
        with link:
            sock = link._sock
            assert sock is not None
            # (its lock held: where a thread is during its request; None: the child hung)
            assert fork_while_held(sock._lock, link.close) == 0
            # the child's close left the parent's filter in place
            with in_netns(netns):
                assert [f.prog_id for f in tc_filters("veth0", "ingress")] == \
                    [coll.programs["tc_act"].id]


def test_tc_update_racing_close_leaves_no_filter(netns: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`close()` while an `update()` runs in another thread: the filter is gone
    afterwards. The update used to put it back (NLM_F_CREATE) right after close's
    delete, where nothing would ever remove it."""
    from ebpf._sys.netlink import NetlinkSocket

    with load("net_tc", ["tc_act"], port=PORT) as c1, load("net_tc", ["tc_act"], port=PORT) as c2:
        with in_netns(netns):
            link = tc(c1.programs["tc_act"], "veth0", "ingress")
        add, delete = NetlinkSocket.add_bpf_filter, NetlinkSocket.del_filter
        inside, deleted = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def add_after_the_delete(self: NetlinkSocket, *args: Any, **kw: Any) -> Any:
            inside.set()
            deleted.wait(0.5)  # (until close() has deleted the filter, if it can)
            return add(self, *args, **kw)

        def delete_then_let_the_update_in(self: NetlinkSocket, *args: Any, **kw: Any) -> None:
            delete(self, *args, **kw)
            deleted.set()
            updating.join(0.5)  # (done by now, unless it waits for this close)

        def update() -> None:
            try:
                link.update(c2.programs["tc_act"])
            except BaseException as e:
                errors.append(e)

        monkeypatch.setattr(NetlinkSocket, "add_bpf_filter", add_after_the_delete)
        monkeypatch.setattr(NetlinkSocket, "del_filter", delete_then_let_the_update_in)
        updating = threading.Thread(target=update)
        updating.start()
        assert inside.wait(5)
        link.close()
        updating.join(5)
        monkeypatch.undo()
        with in_netns(netns):
            assert tc_filters("veth0") == []
        assert "clsact" not in qdiscs(netns, "veth0")
        assert all(isinstance(e, ebpf.errors.ClosedError) for e in errors), errors
