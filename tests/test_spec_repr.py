"""Readable reprs of the specs: names and counts, not every instruction and type."""

from __future__ import annotations

import pytest
from bpfbuild import compile_bpf
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf import asm


@pytest.fixture(scope="module")
def spec() -> ebpf.CollectionSpec:
    return ebpf.load_collection_spec(
        compile_bpf("link_tracing", extra_flags=[f"-I{vmlinux_include_dir()}"]))


def test_collection_spec_repr(spec: ebpf.CollectionSpec) -> None:
    text = repr(spec)
    assert text == (f"CollectionSpec(programs={list(spec.programs)!r}, "
                    f"maps={list(spec.maps)!r}, variables={len(spec.variables)})")
    assert "tp_getpid" in text and "counts" in text
    assert len(text) < 600  # the dataclass repr was several KB of instructions


def test_program_spec_repr(spec: ebpf.CollectionSpec) -> None:
    p = spec.programs["tp_getpid"]
    assert repr(p) == (f"ProgramSpec(name='tp_getpid', type=TRACEPOINT, "
                       f"section='tracepoint/syscalls/sys_enter_getpid', "
                       f"{len(p.instructions)} instructions)")
    assert len(p.instructions) > 5
    hand = ebpf.ProgramSpec(type=ebpf.ProgramType.SOCKET_FILTER, license="GPL", name="one",
                            instructions=[asm.exit()])
    assert repr(hand) == "ProgramSpec(name='one', type=SOCKET_FILTER, 1 instruction)"
    hand.attach_to = "sched_switch"
    assert "attach_to='sched_switch'" in repr(hand)
    assert max(len(repr(p)) for p in spec.programs.values()) < 200


def test_map_spec_repr(spec: ebpf.CollectionSpec) -> None:
    assert repr(spec.maps["counts"]) == (
        "MapSpec(name='counts', type=ARRAY, key_size=4, value_size=8, max_entries=7, "
        "key=__u32, value=__u64)")
    m = ebpf.MapSpec(type=ebpf.MapType.HASH, key_size=4, value_size=8, max_entries=1024,
                     name="plain", flags=1, contents=[(1, 2), (3, 4)])
    assert repr(m) == ("MapSpec(name='plain', type=HASH, key_size=4, value_size=8, "
                       "max_entries=1024, flags=0x1, contents=2)")
    outer = ebpf.MapSpec(type=ebpf.MapType.ARRAY_OF_MAPS, key_size=4, value_size=4,
                         max_entries=2, name="outer", inner_map=m)
    assert "inner_map='plain'" in repr(outer)


def test_variable_spec_repr(spec: ebpf.CollectionSpec) -> None:
    v = spec.variables["target_pid"]
    assert repr(v) == (f"VariableSpec(name='target_pid', section='.rodata', offset={v.offset}, "
                       "size=4, type=unsigned int)")
