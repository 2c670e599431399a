"""Versioned struct_ops types and struct_ops maps created only when used (issue 12,
cause 6), with a TCP congestion control (tests/bpf/struct_ops_versions.c).

- ``struct tcp_congestion_ops___v1`` / ``___v2`` both implement the kernel's
  ``struct tcp_congestion_ops`` (the flavor after ``___`` is dropped), sharing programs.
- A member the running kernel's struct lacks must be zero/NULL in every variable that
  is created: otherwise loading fails before any program is loaded, naming the member.
- As in libbpf: a variable in ``SEC("?.struct_ops...")`` is not created unless asked
  (`StructOpsSpec.autocreate`), and a struct_ops program loads exactly when one of
  the variables referring to it is created.

Registering needs BPF trampolines, which the host refuses by policy: those tests run
in the kernel matrix's VMs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires
from test_link_net_struct_ops import available, tcp_with_cc
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf.errors import NotSupportedError
from ebpf.link import require_struct_ops, struct_ops


def obj() -> Path:
    return compile_bpf("struct_ops_versions", extra_flags=[f"-I{vmlinux_include_dir()}"])


def need_links() -> None:
    try:
        require_struct_ops("tcp_congestion_ops", link=True)
    except NotSupportedError as e:
        pytest.skip(str(e))


def test_flavored_types_name_the_kernel_struct() -> None:
    spec = ebpf.load_collection_spec(obj())
    ops = spec.struct_ops
    assert set(ops) == {"vcc_v1", "vcc_v2", "vcc_spare"}
    assert {o.type_name for o in ops.values()} == {"tcp_congestion_ops"}
    assert ops["vcc_v1"].type.name == "tcp_congestion_ops___v1"
    assert ops["vcc_v2"].type.name == "tcp_congestion_ops___v2"
    assert [o.autocreate for o in ops.values()] == [True, True, False]
    assert ops["vcc_v2"].programs["future_op"] == "vcc_future"
    # programs shared by both versions implement one member of the kernel struct
    assert spec.programs["vcc_ssthresh"].attach_to == "tcp_congestion_ops:ssthresh"


@requires("struct_ops", min_kernel="5.6", config="BPF_JIT")
def test_member_the_kernel_lacks_fails_before_loading() -> None:
    spec = ebpf.load_collection_spec(obj())
    with pytest.raises(NotSupportedError) as ei:
        ebpf.Collection(spec)
    msg = str(ei.value)
    assert "struct_ops map 'vcc_v2'" in msg
    assert "tcp_congestion_ops.future_op" in msg and "vcc_future" in msg


@requires("struct_ops links", min_kernel="6.4", config="BPF_JIT")
def test_map_not_created_leaves_its_programs_unloaded(netns: str) -> None:
    """v2 not created: its program for the member the kernel lacks is not loaded (its
    autoload default is True), v1 is created and works; the optional map is not made."""
    need_links()
    spec = ebpf.load_collection_spec(obj())
    spec.struct_ops["vcc_v2"].autocreate = False
    assert spec.programs["vcc_future"].autoload
    with ebpf.Collection(spec) as coll:
        assert set(coll.programs) == {"vcc_ssthresh", "vcc_undo_cwnd", "vcc_cong_avoid"}
        assert "vcc_v2" not in coll.maps and "vcc_spare" not in coll.maps
        with struct_ops(coll.maps["vcc_v1"]):
            assert "vcc_v1" in available()
            assert tcp_with_cc(netns, "vcc_v1", 1 << 18) == "vcc_v1"
            assert coll.variables["acks"].get() > 0
        assert "vcc_v1" not in available()


@requires("struct_ops links", min_kernel="6.4", config="BPF_JIT")
def test_two_versions_share_programs(netns: str) -> None:
    """The optional map (a v2 variable leaving the new member NULL) asked for, next to
    v1: both are created with the same programs and both register."""
    need_links()
    spec = ebpf.load_collection_spec(obj())
    spec.struct_ops["vcc_v2"].autocreate = False
    spec.struct_ops["vcc_spare"].autocreate = True
    with ebpf.Collection(spec) as coll:
        assert {"vcc_v1", "vcc_spare"} <= set(coll.maps) and "vcc_v2" not in coll.maps
        assert "vcc_future" not in coll.programs
        links = coll.attach_all()
        try:
            assert {"vcc_v1", "vcc_spare"} <= set(available())
            assert tcp_with_cc(netns, "vcc_spare", 1 << 18) == "vcc_spare"
            assert tcp_with_cc(netns, "vcc_v1", 1 << 18) == "vcc_v1"
        finally:
            for link in links:
                link.close()
        assert "vcc_spare" not in available()


@requires("struct_ops links", min_kernel="6.4", config="BPF_JIT")
def test_program_put_into_a_member_before_loading(netns: str) -> None:
    """A program no variable refers to (and not autoloaded) put into v1's cong_avoid:
    it loads and implements the member; the program it replaced loads no more (only
    variables that are not created refer to it)."""
    need_links()
    spec = ebpf.load_collection_spec(obj())
    assert not spec.programs["vcc_cong_avoid_alt"].autoload
    spec.struct_ops["vcc_v2"].autocreate = False
    spec.struct_ops["vcc_v1"].programs["cong_avoid"] = "vcc_cong_avoid_alt"
    with ebpf.Collection(spec) as coll:
        assert "vcc_cong_avoid_alt" in coll.programs
        assert "vcc_cong_avoid" not in coll.programs
        with struct_ops(coll.maps["vcc_v1"]):
            assert tcp_with_cc(netns, "vcc_v1", 1 << 18) == "vcc_v1"
        assert coll.variables["alt_acks"].get() > 0
        assert coll.variables["acks"].get() == 0


@requires("struct_ops", min_kernel="5.6", config="BPF_JIT")
def test_no_map_created_loads_no_struct_ops_program() -> None:
    spec = ebpf.load_collection_spec(obj())
    for ops in spec.struct_ops.values():
        ops.autocreate = False
    with ebpf.Collection(spec) as coll:
        assert not coll.programs  # (vcc_cong_avoid_alt is not autoloaded either)
        assert not any(isinstance(m, ebpf.link.StructOpsMap) for m in coll.maps.values())
