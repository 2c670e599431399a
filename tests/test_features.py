"""Feature probes against the real kernel, cross-checked with `bpftool feature probe`."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
from conftest import need_tool
from kernelmatrix import requires

import ebpf
from ebpf import AttachType, HelperFunc, LinkType, MapType, ProgramType, btf, features
from ebpf.errors import InvalidArgumentError, NotSupportedError

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def bpftool() -> dict[str, Any]:
    exe = need_tool("bpftool")
    out = subprocess.run([exe, "feature", "probe", "kernel", "-j"], check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    return features.probe_all()


def test_program_types_agree_with_bpftool(bpftool: dict[str, Any], ours: dict[str, Any]) -> None:
    theirs = {k.removeprefix("have_").removesuffix("_prog_type"): v
              for k, v in bpftool["program_types"].items()}
    assert theirs, "bpftool reported no program types"
    diff = {n: (v, ours["program_types"].get(n)) for n, v in theirs.items()
            if ours["program_types"].get(n) != v}
    assert not diff, f"(bpftool, ebpf) disagree: {diff}"


def test_map_types_agree_with_bpftool(bpftool: dict[str, Any], ours: dict[str, Any]) -> None:
    theirs = {k.removeprefix("have_").removesuffix("_map_type"): v
              for k, v in bpftool["map_types"].items()}
    assert theirs
    diff = {n: (v, ours["map_types"].get(n)) for n, v in theirs.items()
            if ours["map_types"].get(n) != v}
    assert not diff, f"(bpftool, ebpf) disagree: {diff}"


# Since Linux 6.x the verifier says "program of this type cannot use helper" for a
# known helper a program type may not call. bpftool built on libbpf < 1.3 only knows
# the older "unknown func" wording and so reports every such helper as available.
_NEW_REFUSAL = "program of this type cannot use helper "


def test_helpers_agree_with_bpftool(bpftool: dict[str, Any], ours: dict[str, Any]) -> None:
    known = {h for names in bpftool["helpers"].values() for h in names}
    assert known, "bpftool reported no helpers"
    problems = []
    for key, names in bpftool["helpers"].items():
        prog = key.removesuffix("_available_helpers")
        if prog not in ours["helpers"]:
            continue  # TRACING, EXT, LSM, STRUCT_OPS: not probeable with a plain call
        theirs, mine = set(names), set(ours["helpers"][prog]) & known
        for name in sorted(mine - theirs):
            problems.append(f"{prog}: ebpf says {name} is available, bpftool says not")
        pt = ProgramType[prog.upper()]
        for name in sorted(theirs - mine):
            log = features._helper_log(pt, HelperFunc[name.removeprefix("bpf_")])
            if _NEW_REFUSAL not in log:
                problems.append(f"{prog}: bpftool says {name} is available, ebpf says not; "
                                f"verifier: {log.strip().splitlines()[-2:]}")
    assert not problems, "\n".join(problems[:20])


def test_helpers_basic_facts() -> None:
    assert features.have_helper(ProgramType.SOCKET_FILTER, HelperFunc.map_lookup_elem)
    assert features.have_helper(ProgramType.XDP, HelperFunc.redirect_map)
    assert not features.have_helper(ProgramType.SOCKET_FILTER, HelperFunc.override_return)
    assert not features.have_helper(ProgramType.XDP, HelperFunc.override_return)
    with pytest.raises(InvalidArgumentError, match="TRACING"):
        features.have_helper(ProgramType.TRACING, HelperFunc.map_lookup_elem)


def test_basic_types_available() -> None:
    for pt in (ProgramType.SOCKET_FILTER, ProgramType.XDP, ProgramType.SCHED_CLS,
               ProgramType.KPROBE, ProgramType.TRACEPOINT):
        assert features.have_program_type(pt), pt
    for mt in (MapType.HASH, MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY,
               MapType.PERF_EVENT_ARRAY, MapType.LPM_TRIE, MapType.HASH_OF_MAPS):
        assert features.have_map_type(mt), mt
    assert not features.have_program_type(ProgramType.UNSPEC)
    assert not features.have_map_type(MapType.UNSPEC)


def test_results_are_cached() -> None:
    features.have_map_type.cache_clear()
    features.have_map_type(MapType.HASH)
    features.have_map_type(MapType.HASH)
    info = features.have_map_type.cache_info()
    assert info.hits == 1 and info.misses == 1


def test_require_raises_naming_the_feature(ours: dict[str, Any]) -> None:
    features.require_map_type(MapType.HASH)
    features.require_program_type(ProgramType.SOCKET_FILTER)
    features.require_helper(ProgramType.SOCKET_FILTER, HelperFunc.ktime_get_ns)
    features.require_btf_kind(btf.Kind.INT)
    features.require_misc("bounded_loops")
    with pytest.raises(NotSupportedError, match="override_return for SOCKET_FILTER"):
        features.require_helper(ProgramType.SOCKET_FILTER, HelperFunc.override_return)
    missing = [p for p, ok in ours["program_types"].items() if not ok]
    if not missing:
        pytest.skip("every program type is available here")
    with pytest.raises(NotSupportedError, match=f"program type {missing[0].upper()}") as ei:
        features.require_program_type(ProgramType[missing[0].upper()])
    assert "not supported by this kernel" in str(ei.value)


def test_attach_types() -> None:
    pt = ProgramType
    assert features.have_attach_type(pt.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_CONNECT)
    # recvmsg hooks only accept programs returning 1: the probe must return 1
    assert features.have_attach_type(pt.CGROUP_SOCK_ADDR, AttachType.CGROUP_UDP4_RECVMSG)
    assert features.have_attach_type(pt.CGROUP_SOCKOPT, AttachType.CGROUP_SETSOCKOPT)
    # an attach type of another program type is refused
    assert not features.have_attach_type(pt.CGROUP_SOCK_ADDR, AttachType.CGROUP_GETSOCKOPT)
    with pytest.raises(NotSupportedError, match="attach type CGROUP_GETSOCKOPT for "
                                                "CGROUP_SOCK_ADDR programs"):
        features.require_attach_type(pt.CGROUP_SOCK_ADDR, AttachType.CGROUP_GETSOCKOPT)
    with pytest.raises(InvalidArgumentError, match="need a BTF target"):
        features.have_attach_type(pt.TRACING, AttachType.TRACE_FENTRY)


def test_btf_kinds() -> None:
    # Every kind up to ENUM64 (6.0) is accepted by the kernels this library targets.
    for kind in btf.Kind:
        if kind != btf.Kind.UNKN:
            assert features.have_btf_kind(kind), kind.name


def test_misc() -> None:
    for name in ("large_insn_limit", "bounded_loops", "v2_isa_extension", "v3_isa_extension",
                 "map_batch_ops", "mmapable_maps", "object_names", "btf", "bpf_link"):
        assert features.have_misc(name), name
    assert features.have_bounded_loops() and features.have_v3_isa()
    assert features.have_ringbuf()
    with pytest.raises(InvalidArgumentError, match="unknown feature"):
        features.have_misc("warp_drive")


def test_misc_agrees_with_bpftool(bpftool: dict[str, Any], ours: dict[str, Any]) -> None:
    for key, value in bpftool["misc"].items():
        name = key.removeprefix("have_")
        if name in ours["misc"]:
            assert ours["misc"][name] == value, name


def test_link_types() -> None:
    assert features.have_link_type(LinkType.CGROUP)
    assert features.have_link_type(LinkType.PERF_EVENT)
    assert features.have_link_type(LinkType.RAW_TRACEPOINT)
    assert not features.have_link_type(LinkType.UNSPEC)
    # a link type needs its program type
    if not features.have_program_type(ProgramType.TRACING):
        assert not features.have_link_type(LinkType.TRACING)
    for lt in LinkType:
        assert isinstance(features.have_link_type(lt), bool)


def test_probe_all_shape(ours: dict[str, Any]) -> None:
    assert set(ours) == {"program_types", "map_types", "helpers", "link_types", "btf_kinds",
                         "misc"}
    json.dumps(ours)
    assert ours["program_types"]["socket_filter"] is True
    assert ours["map_types"]["cgroup_storage"] is True  # not "cgroup_storage_deprecated"
    assert "bpf_map_lookup_elem" in ours["helpers"]["xdp"]
    assert "bpf_trace_printk" not in ours["helpers"]["kprobe"]  # not probed, like bpftool


def test_format_text(ours: dict[str, Any]) -> None:
    text = features.format_text(ours)
    assert "eBPF program_type socket_filter is available" in text
    assert "eBPF map_type hash is available" in text
    assert "\t- bpf_map_lookup_elem" in text
    assert "bounded loops" in text
    assert text.endswith("\n")


def test_probes_leak_no_fds() -> None:
    for fn in (features.have_map_type, features.have_program_type, features.have_btf_kind,
               features.have_link_type, features.have_misc, features.have_helper,
               features._probe_helper):
        fn.cache_clear()
    # The process-wide kernel BTF (mapped, so one fd) is opened once and kept on purpose.
    btf.load_kernel_spec()
    before = set(os.listdir("/proc/self/fd"))
    features.probe_all(helpers=False)
    features.have_helper(ProgramType.XDP, HelperFunc.redirect_map)
    assert set(os.listdir("/proc/self/fd")) == before


@requires("iter_target:task", min_kernel="5.8")
def test_iter_targets() -> None:
    assert features.have_iter_target("task")
    assert not features.have_iter_target("ebpf_no_such_target")
    with pytest.raises(InvalidArgumentError, match="iterator target"):
        features.have_iter_target("")


def test_iter_target_probe_matches_loading_an_iterator() -> None:
    """The probe says yes exactly when an iterator program for the target loads: a
    kernel that refuses a target by policy (some 6.18 builds refuse bpf_map_elem)
    answers no, and loading raises a typed error instead of loading."""
    from ebpf import asm

    for target in ("task", "bpf_map", "bpf_map_elem"):
        spec = ebpf.ProgramSpec(
            name="probe_iter", type=ProgramType.TRACING, license="GPL",
            attach_type=AttachType.TRACE_ITER, attach_to=target,
            instructions=[asm.mov_imm(asm.R0, 0), asm.exit()])
        try:
            with ebpf.Program(spec):
                loaded = True
        except ebpf.Error as e:
            loaded = False
            assert not isinstance(e, ebpf.VerifierError), e
        assert features.have_iter_target(target) == loaded, target


def test_multi_attach_probes() -> None:
    assert features.have_multi_attach(AttachType.TRACE_UPROBE_MULTI) == \
        features.have_link_type(LinkType.UPROBE_MULTI)
    assert features.have_multi_attach(AttachType.TRACE_KPROBE_MULTI) == \
        features.have_link_type(LinkType.KPROBE_MULTI)
    if not features.have_multi_attach(AttachType.TRACE_UPROBE_MULTI):
        assert not features.have_multi_attach(AttachType.TRACE_UPROBE_SESSION)
    with pytest.raises(InvalidArgumentError, match="multi attach type"):
        features.have_multi_attach(AttachType.CGROUP_INET_INGRESS)


@requires("multi_attach:TRACE_UPROBE_SESSION", min_kernel="6.13")
def test_uprobe_session_probe_on_new_kernels() -> None:
    assert features.have_multi_attach(AttachType.TRACE_UPROBE_SESSION)
