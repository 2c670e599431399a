"""Attachments without a bpf_link (BPF_PROG_ATTACH: cgroup with explicit flags, flow
dissector, sockmap; netlink XDP) keep their own reference on the program: closing the
`Program` first and the attachment afterwards really detaches it (the hook shows no
program, the program itself is gone from the kernel), leaks no descriptor, and the same
holds at garbage collection and interpreter exit (but not in a forked child's exit)."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import leaked_descriptors, open_fds

import ebpf
from ebpf import asm
from ebpf.errors import KeyNotFoundError
from ebpf.link import (
    CgroupAttachFlags,
    ProgAttachLink,
    XDPNetlinkLink,
    cgroup_programs,
    flow_dissector,
    in_netns,
    netns_programs,
    sockmap,
    xdp,
    xdp_info,
)
from ebpf.maps import Map
from ebpf.programs import Program

pytestmark = pytest.mark.kernel

AT = ebpf.AttachType
PT = ebpf.ProgramType


def trivial(ptype: PT, at: AT | None, ret: int, name: str = "t") -> Program:
    """A program returning `ret`."""
    spec = ebpf.ProgramSpec(name=name, type=ptype, attach_type=at, license="GPL",
                            instructions=[asm.mov_imm(asm.R0, ret), asm.exit()])
    return Program(spec)


def program_gone(prog_id: int) -> bool:
    """True once the kernel dropped program `prog_id` (nothing references it)."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            Program.from_id(prog_id).close()
        except KeyNotFoundError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


@pytest.fixture
def fd_check() -> Iterator[Callable[[], None]]:
    """Call the yielded function at the end of the test: no descriptor left open."""
    before = open_fds()

    def check() -> None:
        leaked = leaked_descriptors(before)
        assert not leaked, f"leaked descriptors: {leaked}"

    return check


@pytest.mark.parametrize("flags", [CgroupAttachFlags.NONE, CgroupAttachFlags.ALLOW_OVERRIDE,
                                   CgroupAttachFlags.ALLOW_MULTI],
                         ids=["exclusive", "override", "multi"])
def test_cgroup_prog_attach(cgroup: str, flags: CgroupAttachFlags,
                            fd_check: Callable[[], None]) -> None:
    prog = trivial(PT.CGROUP_SKB, AT.CGROUP_INET_EGRESS, 1)
    pid = prog.id
    link = ebpf.link.cgroup(prog, cgroup, flags=flags)
    assert isinstance(link, ProgAttachLink)
    prog.close()
    assert cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).prog_ids == (pid,)
    link.close()
    assert link.closed
    assert cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).prog_ids == ()
    assert program_gone(pid)
    link.close()  # idempotent
    fd_check()


def test_cgroup_update_then_close_both_programs(cgroup: str,
                                                fd_check: Callable[[], None]) -> None:
    """After update() the attachment detaches the new program; the replaced one is
    released (not kept alive by the attachment)."""
    p1 = trivial(PT.CGROUP_SKB, AT.CGROUP_INET_EGRESS, 1, "p1")
    p2 = trivial(PT.CGROUP_SKB, AT.CGROUP_INET_EGRESS, 1, "p2")
    id1, id2 = p1.id, p2.id
    link = ebpf.link.cgroup(p1, cgroup, flags=CgroupAttachFlags.ALLOW_MULTI)
    p1.close()
    link.update(p2)  # replaces p1 (BPF_F_REPLACE) although p1's Program is closed
    assert program_gone(id1)
    p2.close()
    assert cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).prog_ids == (id2,)
    link.close()
    assert cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).prog_ids == ()
    assert program_gone(id2)
    fd_check()


def test_cgroup_attachment_garbage_collected(cgroup: str,
                                             fd_check: Callable[[], None]) -> None:
    prog = trivial(PT.CGROUP_SKB, AT.CGROUP_INET_INGRESS, 1)
    pid = prog.id
    link = ebpf.link.cgroup(prog, cgroup, flags=CgroupAttachFlags.ALLOW_MULTI)
    prog.close()
    with pytest.warns(ResourceWarning, match="unclosed"):
        del link
        gc.collect()
    assert cgroup_programs(cgroup, AT.CGROUP_INET_INGRESS).prog_ids == ()
    assert program_gone(pid)
    fd_check()


_EXIT_SCRIPT = textwrap.dedent("""
    import os, sys
    import ebpf
    from ebpf import asm
    from ebpf.link import CgroupAttachFlags, cgroup, cgroup_programs
    AT, PT = ebpf.AttachType, ebpf.ProgramType
    spec = ebpf.ProgramSpec(name="atexit", type=PT.CGROUP_SKB,
                            attach_type=AT.CGROUP_INET_EGRESS, license="GPL",
                            instructions=[asm.mov_imm(asm.R0, 1), asm.exit()])
    prog = ebpf.programs.Program(spec)
    link = cgroup(prog, sys.argv[1], flags=CgroupAttachFlags.NONE)
    prog.close()
    child = os.fork()
    if child == 0:
        sys.exit(0)  # the child's exit must leave its parent's attachment alone
    os.waitpid(child, 0)
    print(list(cgroup_programs(sys.argv[1], AT.CGROUP_INET_EGRESS).prog_ids), flush=True)
    # exits with the attachment open: interpreter exit detaches it
""")


@pytest.mark.hostonly  # interpreter exit: library behaviour (a Python start costs ~8 s in a guest)
def test_cgroup_attachment_detached_at_exit_not_by_child(cgroup: str) -> None:
    out = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, cgroup], capture_output=True,
                         text=True, timeout=60, check=True)
    ids = eval(out.stdout.strip())  # a list of ints
    assert len(ids) == 1, out  # still attached after the forked child exited
    assert cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).prog_ids == ()
    assert program_gone(ids[0])


def test_flow_dissector_prog_attach(netns: str, fd_check: Callable[[], None]) -> None:
    prog = trivial(PT.FLOW_DISSECTOR, AT.FLOW_DISSECTOR, 0)  # BPF_OK
    pid = prog.id
    link = flow_dissector(prog, netns, link=False)
    assert isinstance(link, ProgAttachLink)
    prog.close()
    assert netns_programs(AT.FLOW_DISSECTOR, netns).prog_ids == (pid,)
    link.close()
    assert netns_programs(AT.FLOW_DISSECTOR, netns).prog_ids == ()
    assert program_gone(pid)
    fd_check()


@pytest.mark.parametrize("at", [AT.SK_SKB_STREAM_VERDICT, AT.SK_SKB_STREAM_PARSER,
                                AT.SK_MSG_VERDICT], ids=lambda at: at.name)
def test_sockmap_prog_attach(at: AT, fd_check: Callable[[], None]) -> None:
    ptype = PT.SK_MSG if at == AT.SK_MSG_VERDICT else PT.SK_SKB
    with Map(ebpf.MapSpec(name="socks", type=ebpf.MapType.SOCKMAP, key_size=4,
                          value_size=4, max_entries=2)) as m:
        prog = trivial(ptype, at, 1)
        pid = prog.id
        link = sockmap(prog, m, at, link=False)
        assert isinstance(link, ProgAttachLink)
        prog.close()
        assert not program_gone(pid)  # the map holds it
        link.close()
        assert program_gone(pid)  # detached: nothing holds it any more
    fd_check()


def test_xdp_netlink(netns: str, fd_check: Callable[[], None]) -> None:
    p1 = trivial(PT.XDP, None, 2, "p1")  # XDP_PASS
    p2 = trivial(PT.XDP, None, 2, "p2")
    id1, id2 = p1.id, p2.id
    with in_netns(netns):
        link = xdp(p1, "veth0", "generic", netlink=True)
    assert isinstance(link, XDPNetlinkLink)
    p1.close()
    assert link.info().generic_prog_id == id1
    link.update(p2)  # the expected program named by the link's own reference
    p2.close()
    assert program_gone(id1)
    with in_netns(netns):
        assert xdp_info("veth0").generic_prog_id == id2
    link.close()
    with in_netns(netns):
        assert xdp_info("veth0").prog_ids == ()
    assert program_gone(id2)
    fd_check()


def test_xdp_netlink_garbage_collected(netns: str, fd_check: Callable[[], None]) -> None:
    prog = trivial(PT.XDP, None, 2)
    pid = prog.id
    with in_netns(netns):
        link = xdp(prog, "veth0", "generic", netlink=True)
    prog.close()
    with pytest.warns(ResourceWarning, match="unclosed"):
        del link
        gc.collect()
    with in_netns(netns):
        assert xdp_info("veth0").prog_ids == ()
    assert program_gone(pid)
    fd_check()


def test_cgroup_update_racing_close(cgroup: str, fd_check: Callable[[], None]) -> None:
    """update() in one thread while another closes the attachment: the updates either
    happen before the close or raise ClosedError; the cgroup ends with no program and
    no descriptor is left open."""
    import threading

    progs = [trivial(PT.CGROUP_SKB, AT.CGROUP_INET_EGRESS, 1, f"p{i}") for i in range(4)]
    try:
        for _ in range(5):
            link = ebpf.link.cgroup(progs[0], cgroup, flags=CgroupAttachFlags.ALLOW_MULTI)
            errors: list[BaseException] = []

            def updates(link: ProgAttachLink = link, errors: list[BaseException] = errors
                        ) -> None:
                for i in range(40):
                    try:
                        link.update(progs[i % 4])
                    except ebpf.errors.ClosedError:
                        return
                    except BaseException as e:  # pragma: no cover - reported below
                        errors.append(e)
                        return

            t = threading.Thread(target=updates)
            t.start()
            link.close()
            t.join()
            assert not errors
            assert link.closed
            assert cgroup_programs(cgroup, AT.CGROUP_INET_EGRESS).prog_ids == ()
    finally:
        for p in progs:
            p.close()
    fd_check()


_TC_EXIT_SCRIPT = textwrap.dedent("""
    import os, sys
    import ebpf
    from ebpf import asm
    from ebpf.link import in_netns, tc
    spec = ebpf.ProgramSpec(name="atexit", type=ebpf.ProgramType.SCHED_CLS, license="GPL",
                            instructions=[asm.mov_imm(asm.R0, 0), asm.exit()])
    prog = ebpf.programs.Program(spec)
    with in_netns(sys.argv[1]):
        link = tc(prog, "veth0", "ingress")
    prog.close()
    child = os.fork()
    if child == 0:
        sys.exit(0)  # the child's exit must leave its parent's filter alone
    os.waitpid(child, 0)
    print(link.info().prog_id, flush=True)
    # exits with the filter in place: interpreter exit deletes it (and the qdisc)
""")


@pytest.mark.hostonly  # interpreter exit: library behaviour (a Python start costs ~8 s in a guest)
def test_tc_filter_deleted_at_exit_not_by_child(netns: str) -> None:
    out = subprocess.run([sys.executable, "-c", _TC_EXIT_SCRIPT, netns], capture_output=True,
                         text=True, timeout=60, check=True)
    assert int(out.stdout)
    from ebpf._sys.netlink import NetlinkSocket  # the qdiscs (this host's ip has no tc)

    with in_netns(netns), NetlinkSocket() as sock:
        assert ebpf.link.tc_filters("veth0") == []
        assert [q.kind for q in sock.qdiscs(ebpf.link._attach.ifindex("veth0"))
                if q.kind == "clsact"] == []
