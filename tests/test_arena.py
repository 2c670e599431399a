"""Arena maps (issue 12, cause 4), with tests/bpf/arena.c: ``__ulong(map_extra, ...)``
in a BTF map definition, ``__arena`` globals (section ``.addr_space.1``: placed at the
start of the arena, as libbpf does, with their initial values), relocations to them,
clang's address-space casts, and pages from the ``bpf_arena_alloc_pages`` kfunc. What
the program writes is read back through the arena's mapping (`Map.memory()`,
`Map.arena_address`) and through test_run's return value.

This host refuses arena maps by policy (the probe says no: skipped here); the kernel
matrix's 6.12 guest runs them (6.9+).
"""

from __future__ import annotations

import gc
import struct
from pathlib import Path

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf.errors import ELFError, InvalidArgumentError, SyscallError
from ebpf.maps import MapSpec, MapType

ARENA = requires("map_type:ARENA", min_kernel="6.9", refusable=True)
FIXED = 1 << 44  # the object's map_extra
PAGE = 4096


def obj() -> Path:
    # compiled in the test: an older kernel's vmlinux.h has no arena map type
    return compile_bpf("arena", extra_flags=[f"-I{vmlinux_include_dir()}"])


def offsets(spec: ebpf.CollectionSpec) -> dict[str, int]:
    """Where the object's __arena globals are in the arena: their DATASEC offsets."""
    assert spec.btf is not None
    ds = spec.btf.type_by_name(".addr_space.1", ebpf.btf.Datasec)
    return {v.type.name: v.offset for v in ds.vars}


def u64(view: memoryview, off: int) -> int:
    return int(struct.unpack_from("<Q", view, off)[0])


def test_spec_reads_map_extra_and_arena_globals() -> None:
    """Parsing alone (no kernel): the arena map's fixed address and its initial data."""
    try:
        o = obj()
    except Exception as e:  # pragma: no cover - a vmlinux.h without arenas
        pytest.skip(f"arena.c does not compile against this kernel's vmlinux.h: {e}")
    spec = ebpf.load_collection_spec(o)
    ms = spec.maps["arena"]
    assert ms.type == MapType.ARENA and ms.map_extra == FIXED and ms.max_entries == 4
    [(off, data)] = ms.contents
    at = offsets(spec)
    assert at["counter"] == 0  # the first global at the start of the arena
    assert off == 0 and u64(memoryview(data), at["counter"]) == 7
    assert len(data) == 32 and not any(data[8:])
    # the globals are variables of the arena map, settable before loading
    assert {n: v.section for n, v in spec.variables.items() if v.section == "arena"} == \
        dict.fromkeys(("counter", "written", "head", "self_ref"), "arena")
    assert spec.variables["counter"].get() == 7
    spec.variables["counter"].set(9)
    assert u64(memoryview(spec.maps["arena"].contents[0][1]), at["counter"]) == 9
    refs = [i for i in spec.programs["arena_write"].instructions if i.reference == "arena"]
    # &arena for the kfunc, then each global as an offset into the arena
    assert sorted({(i.imm >> 32) for i in refs if i.src == 2}) == sorted(at.values())


def test_arena_globals_need_an_arena_map() -> None:
    with pytest.raises(ELFError, match="exactly one ARENA map in the object, it has 0") as ei:
        ebpf.load_collection_spec(compile_bpf("arena_without_map"))
    assert ei.value.section == ".addr_space.1"


@ARENA
@pytest.mark.parametrize("map_extra", [FIXED, 0], ids=["fixed", "kernel_placed"])
def test_program_writes_arena_user_space_reads(map_extra: int) -> None:
    spec = ebpf.load_collection_spec(obj())
    spec.maps["arena"].map_extra = map_extra
    at = offsets(spec)
    with ebpf.Collection(spec) as coll:
        arena = coll.maps["arena"]
        base = arena.arena_address
        if map_extra:
            assert base == FIXED
        with arena.memory() as mem:
            assert len(mem) == 4 * PAGE and not mem.readonly
            assert u64(mem, at["counter"]) == 7  # the __arena global's initial value
            prog = coll.programs["arena_write"]
            assert prog.test_run().retval == 7  # p->b = counter
            assert u64(mem, at["counter"]) == 42 and u64(mem, at["written"]) == 5
            head = u64(mem, at["head"])  # a user-space address in the arena
            assert head == coll.variables["user_ptr"].get()
            assert base < head < base + 4 * PAGE and (head - base) % PAGE == 0
            page = head - base
            assert u64(mem, page) == 0x1122334455667788 and u64(mem, page + 8) == 7
            # &counter, stored by the program as an arena pointer: a user address
            assert u64(mem, at["self_ref"]) == base + at["counter"]
            # user space writes, the program reads: the next page gets the new counter
            struct.pack_into("<Q", mem, at["counter"], 1000)
            assert prog.test_run().retval == 1000
            head2 = u64(mem, at["head"])
            assert head2 != head and u64(mem, head2 - base + 8) == 1000
            assert u64(mem, at["counter"]) == 1035
            # the same memory through the collection's variables
            counter = coll.variables["counter"]
            assert counter.get() == 1035 and coll.variables["head"].get() == head2
            counter.set(5)
            assert u64(mem, at["counter"]) == 5 and prog.test_run().retval == 5


@ARENA
def test_arena_global_set_before_loading() -> None:
    spec = ebpf.load_collection_spec(obj())
    spec.variables["counter"].set(300)
    with ebpf.Collection(spec) as coll:
        assert coll.programs["arena_write"].test_run().retval == 300
        assert coll.variables["counter"].get() == 335


@ARENA
def test_arena_view_outlives_close() -> None:
    """A view keeps the arena mapped after close(); the address is free again once
    the last view is gone (a second arena at the same fixed address fits)."""
    spec = ebpf.load_collection_spec(obj())
    counter = offsets(spec)["counter"]
    coll = ebpf.Collection(spec)
    mem = coll.maps["arena"].memory()
    try:
        coll.programs["arena_write"].test_run()
        coll.close()
        assert u64(mem, counter) == 42
        with pytest.raises(SyscallError, match="something else is mapped there"):
            ebpf.Collection(ebpf.load_collection_spec(obj())).close()
    finally:
        coll.close()
        mem.release()
    del mem
    gc.collect()
    with ebpf.Collection(ebpf.load_collection_spec(obj())) as again, \
            again.maps["arena"].memory() as view:
        assert u64(view, counter) == 7


@ARENA
def test_arena_map_alone() -> None:
    """An arena made from a MapSpec, initial contents checked against its size."""
    ms = MapSpec(name="a", type=MapType.ARENA, max_entries=2, flags=ebpf.MapFlags.MMAPABLE,
                 contents=[(PAGE, b"\x01\x02")])
    with ebpf.Map(ms) as m, m.memory() as mem:
        assert bytes(mem[PAGE:PAGE + 3]) == b"\x01\x02\x00"
        assert m.arena_address % PAGE == 0
        with m.dup() as copy:  # one arena, one mapping
            assert copy.arena_address == m.arena_address
        try:
            import numpy as np
        except ImportError:
            np = None
        if np is not None:
            words = m.array(np.uint16)
            assert words.shape == (PAGE,) and words[PAGE // 2] == 0x0201
            words[0] = 7
            del words
            assert mem[0] == 7
    ms.contents = [(2 * PAGE - 1, b"\x01\x02")]
    with pytest.raises(InvalidArgumentError, match="do not fit in its 2 pages"):
        ebpf.Map(ms)
