"""`load_collection_spec(path)` reads a big object without its DWARF sections (their
pages are never touched): the specs are those of the whole file's bytes, and a
malformed file fails the same way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from bpfbuild import compile_bpf

import ebpf
from ebpf.elf import parse
from ebpf.errors import ELFError

NAMES = ["loader_globals", "loader_maps", "loader_calls", "loader_externs", "core_fields",
         "btf_kinds", "big_bss", "realworld_struct_ops", "arena"]
VMLINUX_H = {"realworld_struct_ops", "arena"}


def _norm(s: Any) -> Any:
    return ({n: (repr(p.instructions), [repr(i.meta) for i in p.instructions], p.section,
                 p.type, p.license, p.name) for n, p in s.programs.items()},
            {n: (m.type, m.key_size, m.value_size, m.max_entries, m.flags, m.contents,
                 repr(m.key), repr(m.value)) for n, m in s.maps.items()},
            s.btf.raw if s.btf is not None else None, sorted(s.variables),
            sorted(s.externs))


@pytest.mark.parametrize("target", ["bpfel", "bpfeb"])
@pytest.mark.parametrize("name", NAMES)
def test_sparse_read_gives_the_whole_files_spec(name: str, target: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    flags: tuple[str, ...] = ()
    if name in VMLINUX_H:  # the kernel's types: a big -g object, as most real ones
        from vmlinux import vmlinux_h

        flags = (f"-I{vmlinux_h().parent}", "-D__TARGET_ARCH_x86")
    path = compile_bpf(name, target=target, extra_flags=flags)
    monkeypatch.setattr(parse, "_SPARSE_FROM", 0)
    with open(path, "rb") as f:
        sparse = parse._read_without_debug_info(f.fileno())
    assert sparse is not None  # (the objects are built with -g)
    whole = path.read_bytes()
    assert len(sparse) == len(whole)
    assert _outcome(path) == _outcome(whole)


def _outcome(source: Path | bytes) -> Any:
    try:
        return _norm(ebpf.load_collection_spec(source))
    except ebpf.Error as e:
        return type(e), str(e)


def _broken(tmp_path: Path, data: bytes, name: str) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_malformed_files_fail_as_their_bytes_do(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "_SPARSE_FROM", 0)
    whole = compile_bpf("loader_maps").read_bytes()
    cases = {
        "truncated": whole[: len(whole) // 2],
        "no_sections": whole[:0x3C] + b"\0\0" + whole[0x3E:],
        "elf32": whole[:4] + b"\x01" + whole[5:],
        "not_elf": b"\0" * 256,
    }
    shoff = int.from_bytes(whole[0x28:0x30], "little")
    # a section header (the last one) pointing beyond the end of the file
    bad = bytearray(whole)
    last = shoff + 64 * (int.from_bytes(whole[0x3C:0x3E], "little") - 1)
    bad[last + 24 : last + 32] = (len(whole) * 2).to_bytes(8, "little")
    cases["section_beyond_end"] = bytes(bad)
    for name, data in cases.items():
        assert _outcome(_broken(tmp_path, data, name + ".o")) == _outcome(data), name
    with pytest.raises(ELFError, match="outside the file"):
        ebpf.load_collection_spec(_broken(tmp_path, cases["section_beyond_end"], "b.o"))


def test_small_and_special_files_are_read_whole(tmp_path: Path) -> None:
    path = compile_bpf("loader_maps")
    with open(path, "rb") as f:
        assert parse._read_without_debug_info(f.fileno()) is None  # (below _SPARSE_FROM)
    r, w = os.pipe()
    try:
        assert parse._read_without_debug_info(r) is None
    finally:
        os.close(r)
        os.close(w)
