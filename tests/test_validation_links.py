"""Input validation of the attach APIs: every integer that ends up in a BPF_LINK_CREATE,
BPF_PROG_ATTACH, BPF_RAW_TRACEPOINT_OPEN or perf_event_open attr, in a cookie/offset
array, or in a netlink tc/XDP request is checked for type and range before anything is
created, with an `InvalidArgumentError` naming the argument; no descriptor is left
open and nothing is attached.

Every call runs inside a throwaway network namespace (interfaces named or numbered here
are its own loopback), so that a check that failed to fire could not attach anything to
the host's interfaces.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf import AttachType, asm, link, perf
from ebpf.errors import InvalidArgumentError
from ebpf.maps import Map, MapSpec, MapType
from ebpf.programs import Program, ProgramSpec, ProgramType

pytestmark = [pytest.mark.kernel, pytest.mark.hostonly]

U32 = 2**32 - 1
U64 = 2**64 - 1
NOWHERE = "/nonexistent-ebpf-cgroup"  # reached only if a check failed to fire


def _program(ptype: ProgramType, **kw: Any) -> Program:
    return Program(ProgramSpec(type=ptype, license="GPL", name="linkcheck",
                               instructions=[asm.mov_imm(asm.R0, 0), asm.exit()], **kw))


@pytest.fixture(scope="module")
def progs() -> Iterator[dict[str, Any]]:
    """One loaded program per hook family (and a sockmap), closed at the end."""
    made: dict[str, Any] = {}
    try:
        made["raw_tp"] = _program(ProgramType.RAW_TRACEPOINT)
        made["tp"] = _program(ProgramType.TRACEPOINT)
        made["kprobe"] = _program(ProgramType.KPROBE)
        made["perf"] = _program(ProgramType.PERF_EVENT)
        made["xdp"] = _program(ProgramType.XDP)
        made["cls"] = _program(ProgramType.SCHED_CLS)
        made["cgroup"] = _program(ProgramType.CGROUP_SKB,
                                  attach_type=AttachType.CGROUP_INET_INGRESS)
        made["iter"] = _program(ProgramType.TRACING, attach_type=AttachType.TRACE_ITER,
                                attach_to="task")
        made["nf"] = _program(ProgramType.NETFILTER, attach_type=AttachType.NETFILTER)
        made["sk_msg"] = _program(ProgramType.SK_MSG)
        made["flow"] = _program(ProgramType.FLOW_DISSECTOR)
        made["sk_lookup"] = _program(ProgramType.SK_LOOKUP, attach_type=AttachType.SK_LOOKUP)
        made["sockmap"] = Map(MapSpec(type=MapType.SOCKMAP, key_size=4, value_size=4,
                                      max_entries=2, name="linkcheck"))
        yield made
    finally:
        for obj in made.values():
            obj.close()


@pytest.fixture(scope="module")
def scratch_netns() -> Iterator[str]:
    """An empty network namespace (loopback only), deleted afterwards."""
    name = f"ebpf-val-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True,
                       capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _refused(call: Callable[[], Any], netns: str) -> str:
    """Run `call` in `netns`; it must raise InvalidArgumentError and leave no descriptor
    open. Returns the message."""
    before = _fds()
    with link.in_netns(netns):
        try:
            result = call()
        except InvalidArgumentError as e:
            message = str(e)
        else:  # a check that did not fire: undo what it made, then fail
            result.close()
            pytest.fail(f"accepted: {result!r}")
    assert _fds() - before == set(), "a descriptor was left open"
    return message


EXE = sys.executable

# (id, call, what the message must name). `p` is the `progs` fixture's dict.
CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    # BPF_RAW_TRACEPOINT_OPEN
    ("raw_tracepoint-cookie-big",
     lambda p: link.raw_tracepoint(p["raw_tp"], "sys_enter", cookie=2**64),
     f"cookie must be in 0..{U64}, got {2**64}"),
    ("raw_tracepoint-cookie-str",
     lambda p: link.raw_tracepoint(p["raw_tp"], "sys_enter", cookie="1"),
     "cookie must be an integer"),
    ("raw_tracepoint-name-int", lambda p: link.raw_tracepoint(p["raw_tp"], 5),
     "raw tracepoint name must be a str"),
    ("raw_tracepoint-name-nul", lambda p: link.raw_tracepoint(p["raw_tp"], "sys_enter\0x"),
     "contains a NUL byte"),
    # tracing links (cookie, attach type)
    ("tracing-cookie-neg", lambda p: link.tracing(p["iter"], cookie=-1),
     f"cookie must be in 0..{U64}, got -1"),
    ("tracing-attach-type", lambda p: link.tracing(p["iter"], cookie=1, attach_type=2**32),
     f"tracing: attach_type must be in 0..{U32}"),
    # perf events: tracepoints, sampling events
    ("tracepoint-cookie", lambda p: link.tracepoint(p["tp"], "syscalls", "sys_enter_getpid",
                                                    cookie=-5),
     f"cookie must be in 0..{U64}, got -5"),
    ("perf_event-period", lambda p: link.perf_event(p["perf"], sample_period=-1),
     f"sample_period must be in 0..{U64}"),
    ("perf_event-frequency", lambda p: link.perf_event(p["perf"], frequency=2.5),
     "frequency must be an integer"),
    ("perf_event-pid", lambda p: link.perf_event(p["perf"], frequency=1, pid=None),
     "pid must be an integer"),
    ("perf_event-type", lambda p: link.perf_event(p["perf"], 2**32, frequency=1, cpus=0),
     f"type must be in 0..{U32}"),
    ("perf_event-config", lambda p: link.perf_event(p["perf"], 1, -1, frequency=1, cpus=0),
     f"config must be in 0..{U64}"),
    ("perf_event-cpu", lambda p: link.perf_event(p["perf"], frequency=1, cpus=[2**31]),
     "cpu must be in -1..2147483647"),
    ("perf_event-cookie", lambda p: link.perf_event(p["perf"], frequency=1, cpus=0, cookie=2**64),
     f"cookie must be in 0..{U64}"),
    # kprobes (checked before the kernel is asked whether it has kprobes)
    ("kprobe-offset", lambda p: link.kprobe(p["kprobe"], "do_nanosleep", -1),
     f"offset must be in 0..{U64}"),
    ("kprobe-address", lambda p: link.kprobe(p["kprobe"], address=2**64),
     f"address must be in 0..{U64}"),
    ("kprobe-cookie", lambda p: link.kprobe(p["kprobe"], "do_nanosleep", cookie=None),
     "cookie must be an integer"),
    ("kprobe-symbol", lambda p: link.kprobe(p["kprobe"], b"do_nanosleep"),
     "symbol must be a function name"),
    ("kretprobe-maxactive", lambda p: link.kretprobe(p["kprobe"], "do_nanosleep",
                                                     maxactive=-1),
     f"maxactive must be in 0..{U32}"),
    ("kprobe_multi-cookies", lambda p: link.kprobe_multi(p["kprobe"], ["a", "b"],
                                                         cookies=[1, 2**64]),
     f"cookies[1] must be in 0..{U64}, got {2**64}"),
    ("kprobe_multi-addresses", lambda p: link.kprobe_multi(p["kprobe"], addresses=[-1]),
     f"addresses[0] must be in 0..{U64}, got -1"),
    ("kprobe_multi-cookies-str", lambda p: link.kprobe_multi(p["kprobe"], ["a"], cookies="1"),
     "cookies must be a sequence of integers"),
    # uprobes
    ("uprobe-offset", lambda p: link.uprobe(p["kprobe"], EXE, offset=-1),
     f"offset must be in 0..{U64}, got -1"),
    ("uprobe-cookie", lambda p: link.uprobe(p["kprobe"], EXE, offset=0, cookie=2**64),
     f"cookie must be in 0..{U64}"),
    ("uprobe-ref_ctr", lambda p: link.uprobe(p["kprobe"], EXE, offset=0, ref_ctr_offset=-8),
     f"ref_ctr_offset must be in 0..{U64}"),
    ("uprobe-pid", lambda p: link.uprobe(p["kprobe"], EXE, offset=0, pid="1"),
     "pid must be an integer"),
    ("uprobe_multi-offsets", lambda p: link.uprobe_multi(p["kprobe"], EXE, offsets=[0, -1]),
     f"offsets[1] must be in 0..{U64}, got -1"),
    ("uprobe_multi-cookies", lambda p: link.uprobe_multi(p["kprobe"], EXE, offsets=[0],
                                                         cookies=[None]),
     "cookies[0] must be an integer"),
    ("uprobe_multi-ref_ctr", lambda p: link.uprobe_multi(p["kprobe"], EXE, offsets=[0],
                                                         ref_ctr_offsets=[2**64]),
     f"ref_ctr_offsets[0] must be in 0..{U64}"),
    ("uprobe_multi-pid", lambda p: link.uprobe_multi(p["kprobe"], EXE, offsets=[0], pid=2**31),
     "pid must be in -2147483648..2147483647"),
    ("usdt-cookie", lambda p: link.usdt(p["kprobe"], EXE, "python", "function__entry",
                                        cookie=2**64),
     f"usdt: cookie must be in {-(2**63)}..{U64}"),
    # iterators
    ("iter-tid", lambda p: link.iter(p["iter"], tid=-1), f"tid must be in 0..{U32}"),
    ("iter-pid", lambda p: link.iter(p["iter"], pid=2**32), f"pid must be in 0..{U32}"),
    ("iter-pid_fd", lambda p: link.iter(p["iter"], pid_fd=1.0), "pid_fd must be an integer"),
    ("iter-cgroup_id", lambda p: link.iter(p["iter"], cgroup_id=-1),
     f"cgroup_id must be in 0..{U64}"),
    ("iter-order", lambda p: link.iter(p["iter"], cgroup_id=1, order=2**32),
     f"order must be in 0..{U32}"),
    # XDP: bpf_link and netlink
    ("xdp-ifindex-big", lambda p: link.xdp(p["xdp"], 2**31), "ifindex must be in 1..2147483647"),
    ("xdp-ifindex-none", lambda p: link.xdp(p["xdp"], None), "ifindex must be an integer"),
    ("xdp-ifindex-float", lambda p: link.xdp(p["xdp"], 1.0, netlink=True),
     "ifindex must be an integer"),
    ("xdp-mode", lambda p: link.xdp(p["xdp"], "lo", 2.0), "xdp: mode must be an integer"),
    ("xdp_info-ifindex", lambda p: link.xdp_info(-3), "ifindex must be in 1..2147483647"),
    # tcx / netkit (bpf_mprog): revision, relative id
    ("tcx-revision", lambda p: link.tcx(p["cls"], "lo", "ingress", expected_revision=-1),
     f"expected_revision must be in 0..{U64}"),
    ("tcx-after-id", lambda p: link.tcx(p["cls"], "lo", "ingress", after=2**32),
     f"tcx: program id must be in 0..{U32}"),
    ("tcx-ifindex", lambda p: link.tcx(p["cls"], 0, "ingress"),
     "ifindex must be in 1..2147483647, got 0"),
    ("tcx_programs-ifindex", lambda p: link.tcx_programs(None, "ingress"),
     "ifindex must be an integer"),
    ("netkit-revision", lambda p: link.netkit(p["cls"], "lo", "primary",
                                              expected_revision=2**64),
     f"expected_revision must be in 0..{U64}"),
    ("netkit-before-id", lambda p: link.netkit(p["cls"], "lo", "peer", before=-1),
     f"netkit: program id must be in 0..{U32}"),
    # classic tc over netlink
    ("tc-priority", lambda p: link.tc(p["cls"], "lo", "ingress", priority=2**16),
     "tc: priority must be in 0..65535"),
    ("tc-priority-none", lambda p: link.tc(p["cls"], "lo", "ingress", priority=None),
     "tc: priority must be an integer"),
    ("tc-handle", lambda p: link.tc(p["cls"], "lo", "ingress", handle=-1),
     f"tc: handle must be in 0..{U32}"),
    ("tc-protocol", lambda p: link.tc(p["cls"], "lo", "ingress", protocol=2**16),
     "tc: protocol must be in 0..65535"),
    ("tc-classid", lambda p: link.tc(p["cls"], "lo", "ingress", classid=2**32),
     f"tc: classid must be in 0..{U32}"),
    ("tc-name", lambda p: link.tc(p["cls"], "lo", "ingress", name=5),
     "tc: name must be a str"),
    ("tc_delete-priority", lambda p: link.tc_delete("lo", "ingress", -1, 1),
     "priority must be in 0..65535"),
    ("tc_delete-handle", lambda p: link.tc_delete("lo", "ingress", 1, 2**32),
     f"handle must be in 0..{U32}"),
    # cgroups: BPF_LINK_CREATE and BPF_PROG_ATTACH
    ("cgroup-flags", lambda p: link.cgroup(p["cgroup"], NOWHERE, flags=2**32),
     f"cgroup: flags must be in 0..{U32}"),
    ("cgroup-flags-str", lambda p: link.cgroup(p["cgroup"], NOWHERE, flags="multi"),
     "cgroup: flags must be an integer"),
    ("cgroup-attach-type", lambda p: link.cgroup(p["cgroup"], NOWHERE, 2**32),
     f"cgroup: attach_type must be in 0..{U32}"),
    ("cgroup-attach-type-unknown", lambda p: link.cgroup(p["cgroup"], NOWHERE, 100000),
     "cgroup: unknown attach type 100000"),
    ("cgroup-after-id", lambda p: link.cgroup(p["cgroup"], NOWHERE, after=2**32),
     f"cgroup: program id must be in 0..{U32}"),
    ("cgroup-path-none", lambda p: link.cgroup(p["cgroup"], None),
     "cgroup must be a str, bytes or os.PathLike, got NoneType"),
    ("cgroup-fd", lambda p: link.cgroup(p["cgroup"], -1), "cgroup fd must be in 0..2147483647"),
    ("cgroup_programs-attach-type", lambda p: link.cgroup_programs("/", None),
     "attach_type must be an integer"),
    # netfilter
    ("netfilter-priority", lambda p: link.netfilter(p["nf"], "input", priority=2**31 - 1),
     "netfilter: priority must be in -2147483647..2147483646"),
    ("netfilter-priority-none", lambda p: link.netfilter(p["nf"], "input", priority=None),
     "netfilter: priority must be an integer"),
    ("netfilter-hook", lambda p: link.netfilter(p["nf"], 7), "netfilter: hook must be in 0..4"),
    ("netfilter-family", lambda p: link.netfilter(p["nf"], "input", family=None),
     "netfilter: family must be an integer"),
    # sockmap, network namespaces
    ("sockmap-attach-type", lambda p: link.sockmap(p["sk_msg"], p["sockmap"], 2**32),
     f"sockmap: attach_type must be in 0..{U32}"),
    ("sk_lookup-netns-fd", lambda p: link.sk_lookup(p["sk_lookup"], -1),
     "network namespace fd must be in 0..2147483647"),
    ("flow_dissector-netns", lambda p: link.flow_dissector(p["flow"], 1.5, link=False),
     "network namespace must be a str, bytes or os.PathLike"),
    ("netns_programs-attach-type", lambda p: link.netns_programs("x"),
     "attach_type must be an integer"),
]


@pytest.mark.parametrize(("call", "expected"), [pytest.param(c, e, id=i) for i, c, e in CASES])
def test_attach_argument_refused(call: Callable[[dict[str, Any]], Any], expected: str,
                                 progs: dict[str, Any], scratch_netns: str) -> None:
    message = _refused(lambda: call(progs), scratch_netns)
    assert expected in message, message


def test_every_public_attach_function_is_covered() -> None:
    """Each public attach function of ebpf.link has a case above (or a reason not to)."""
    without_integers = {"socket_filter", "reuseport", "struct_ops", "lsm", "ksyscall",
                        "kretsyscall", "uretprobe", "attach_perf_event"}
    covered = {i.split("-")[0] for i, _, _ in CASES}
    attach = {"raw_tracepoint", "tracing", "tracepoint", "perf_event", "kprobe", "kretprobe",
              "kprobe_multi", "uprobe", "uprobe_multi", "usdt", "iter", "xdp", "tcx", "netkit",
              "tc", "tc_delete", "cgroup", "netfilter", "sockmap", "sk_lookup",
              "flow_dissector"}
    assert attach - covered == set()
    assert all(callable(getattr(link, n)) for n in attach | without_integers)


def _outside(bits: int, signed: bool = False) -> st.SearchStrategy[int]:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return st.one_of(st.integers(max_value=lo - 1), st.integers(min_value=hi + 1))


COOKIE_CALLS: dict[str, Callable[[dict[str, Any], int], Any]] = {
    "raw_tracepoint": lambda p, c: link.raw_tracepoint(p["raw_tp"], "sys_enter", cookie=c),
    "tracepoint": lambda p, c: link.tracepoint(p["tp"], "syscalls", "sys_enter_getpid",
                                               cookie=c),
    "perf_event": lambda p, c: link.perf_event(p["perf"], frequency=1, cpus=0, cookie=c),
    "uprobe": lambda p, c: link.uprobe(p["kprobe"], EXE, offset=0, cookie=c),
    "kprobe_multi": lambda p, c: link.kprobe_multi(p["kprobe"], ["a"], cookies=[c]),
    "uprobe_multi": lambda p, c: link.uprobe_multi(p["kprobe"], EXE, offsets=[0], cookies=[c]),
}


@pytest.mark.parametrize("api", sorted(COOKIE_CALLS))
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cookie_out_of_u64(api: str, data: st.DataObject, progs: dict[str, Any],
                           scratch_netns: str) -> None:
    cookie = data.draw(_outside(64))
    message = _refused(lambda: COOKIE_CALLS[api](progs, cookie), scratch_netns)
    assert f"must be in 0..{U64}, got {cookie}" in message
    assert "cookie" in message


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(revision=_outside(64), ifindex=st.one_of(_outside(32, signed=True),
                                                st.integers(max_value=0)))
def test_tcx_integers_out_of_range(revision: int, ifindex: int, progs: dict[str, Any],
                                   scratch_netns: str) -> None:
    message = _refused(lambda: link.tcx(progs["cls"], ifindex, "ingress",
                                        expected_revision=revision), scratch_netns)
    assert message.startswith("ifindex must be in 1..2147483647"), message
    message = _refused(lambda: link.tcx(progs["cls"], "lo", "ingress",
                                        expected_revision=revision), scratch_netns)
    assert message == f"expected_revision must be in 0..{U64}, got {revision}"


def test_valid_arguments_still_attach(progs: dict[str, Any], scratch_netns: str) -> None:
    """The checks refuse only what does not fit: in-range values at the edges attach."""
    with link.in_netns(scratch_netns):
        with link.tc(progs["cls"], "lo", "ingress", priority=0xFFFF, handle=1) as tc:
            assert (tc.priority, tc.handle) == (0xFFFF, 1)
        with link.xdp(progs["xdp"], "lo", "generic", netlink=True) as x:
            assert x.info().generic_prog_id == progs["xdp"].id
    with link.raw_tracepoint(progs["raw_tp"], "sys_enter") as lk:
        assert lk.info().prog_id == progs["raw_tp"].id
    with link.iter(progs["iter"], tid=os.getpid()) as it:
        assert isinstance(it.read(), bytes)


def test_link_update_flags_are_checked(progs: dict[str, Any]) -> None:
    from ebpf._sys import link as _syslink

    with pytest.raises(InvalidArgumentError, match=rf"^flags must be in 0..{U32}, got -1$"):
        _syslink.link_update(0, 0, 0, -1)
    with pytest.raises(InvalidArgumentError, match="link_fd must be an integer"):
        _syslink.link_update(None, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"watermark": None}, "watermark must be an integer"),
    ({"watermark": -1}, "watermark must be in 0..262143, got -1"),
    ({"watermark": 1 << 18}, "watermark must be in 0..262143, got 262144"),
    ({"wakeup_events": 2**32}, f"wakeup_events must be in 0..{U32}"),
    ({"wakeup_events": 1.0}, "wakeup_events must be an integer"),
])
def test_perf_reader_event_attrs(kwargs: dict[str, Any], expected: str) -> None:
    """The perf buffer's events (perf_event_open attrs) are checked the same way."""
    before = _fds()
    with Map(MapSpec(type=MapType.PERF_EVENT_ARRAY, key_size=4, value_size=4,
                     name="linkcheck")) as events:
        with pytest.raises(InvalidArgumentError) as ei:
            perf.Reader(events, 64 * 4096, **kwargs)
    assert expected in str(ei.value)
    assert _fds() - before == set()
