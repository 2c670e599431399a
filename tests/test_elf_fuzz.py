"""Damaged objects: the whole loader (ELF, BTF, .BTF.ext, maps, relocations, CO-RE
records) raises only ebpf.Error subclasses, never a raw struct.error, IndexError,
MemoryError or hang; what parses either loads into the kernel or fails typed, leaving no
descriptor behind."""

from __future__ import annotations

import struct

import pytest
from bpfbuild import compile_bpf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf.elf import ELFFile
from ebpf.errors import ELFError, Error

_OBJECTS: dict[str, bytes] = {}


def _object(name: str) -> bytes:
    if name not in _OBJECTS:
        flags = [f"-I{vmlinux_include_dir()}"] if name in ("net_struct_ops",
                                                            "core_fields") else []
        _OBJECTS[name] = compile_bpf(name, extra_flags=flags).read_bytes()
    return _OBJECTS[name]


NAMES = ["loader_globals", "loader_maps", "loader_calls", "loader_externs", "net_struct_ops",
         "core_fields"]


def _mutated(name: str, data: st.DataObject, max_edits: int) -> bytes:
    """The object `name` with 1 to `max_edits` bytes overwritten (hypothesis draws where
    and with what)."""
    buf = bytearray(_object(name))
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(buf) - 1), st.integers(0, 255)),
                               min_size=1, max_size=max_edits))
    for pos, byte in edits:
        buf[pos] = byte
    return bytes(buf)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES), data=st.data())
def test_mutated_objects_raise_only_ebpf_errors(name: str, data: st.DataObject) -> None:
    try:
        ebpf.load_collection_spec(_mutated(name, data, 32))
    except Error:
        pass


# no_fd_leaks wraps all examples together: a leak in any of them fails the test
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["loader_globals", "loader_maps", "loader_calls", "core_fields"]),
       data=st.data())
def test_mutated_objects_load_or_fail_typed(no_fd_leaks: None, name: str,
                                            data: st.DataObject) -> None:
    try:
        spec = ebpf.load_collection_spec(_mutated(name, data, 8))
        with ebpf.Collection(spec):
            pass
    except Error:
        pass


def test_huge_bss_is_refused_not_allocated() -> None:
    buf = bytearray(_object("loader_globals"))
    elf = ELFFile(bytes(buf))
    bss = elf.section_by_name(".bss")
    assert bss is not None
    # Elf64_Shdr: sh_size is at offset 32 of the entry
    struct.pack_into("<Q", buf, elf.shoff + bss.index * 64 + 32, 1 << 40)
    with pytest.raises(ELFError, match=r"section \.bss claims 1099511627776 bytes"):
        ebpf.load_collection_spec(bytes(buf))
