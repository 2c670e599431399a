"""Damaged objects: the whole loader (ELF, BTF, .BTF.ext, maps, relocations, CO-RE
records) raises only ebpf.Error subclasses, never a raw struct.error, IndexError,
MemoryError or hang; what parses either loads into the kernel or fails typed, leaving no
descriptor behind."""

from __future__ import annotations

import struct
from typing import Any

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


# -- the seeded subset of tools/fuzz.py and the crashes it found ---------------------------


@pytest.fixture(scope="module")
def fuzz_seeds() -> list[Any]:
    from tools import fuzz

    seeds = fuzz.load_seeds()
    fuzz._SEEDS_BY_NAME.update((s.name, s) for s in seeds)
    return seeds


@pytest.mark.parametrize(("target", "cases"), [("elf", 120), ("btf", 60), ("ext", 120)])
def test_fuzz_campaign_subset(fuzz_seeds: list[Any], target: str, cases: int) -> None:
    """A fixed slice of `tools/fuzz.py --seed 7 --target T`: parse, inspect and gen raise
    nothing but ebpf.Error."""
    from tools import fuzz

    outcomes: dict[str, int] = {}
    for i in range(cases):
        case = fuzz.make_case(fuzz_seeds, 7, target, i)
        outcome, _, _ = fuzz.run_case(case, fuzz.Stage, kernel=False)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    # the mutants are not all rejected (nor all accepted): the subset exercises both paths
    assert outcomes.get("ok", 0) and outcomes.get("typed", 0), outcomes


def test_fuzz_campaign_counts_hangs_and_mutator_failures_and_goes_on(tmp_path: Any) -> None:
    """A case that hangs is killed after --timeout and a worker that dies making a case
    (the mutator, before the case starts) is counted once; both are skipped, and the
    campaign finishes the other cases instead of waiting or respawning forever."""
    import json
    import os
    import subprocess
    import sys

    tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "tools", "fuzz.py")
    res = subprocess.run(
        [sys.executable, tool, "--cases", "6", "--seed", "7", "--target", "elf",
         "--jobs", "1", "--timeout", "5", "--hang-case", "4", "--broken-case", "1"],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr  # a campaign with findings fails
    out = json.loads(res.stdout)
    assert out["hangs"] == 1 and out["worker_crashes"] == 1, out
    assert out["cases"] == 6, out  # 4 run + the hang + the crash
    assert "making case 1" in res.stderr and "case 4 hung" in res.stderr, res.stderr


def test_fuzz_campaign_subset_kernel(fuzz_seeds: list[Any], no_fd_leaks: None) -> None:
    """`tools/fuzz.py --target object`: mutants load into the kernel or fail typed, and
    no attempt leaves a descriptor open."""
    from tools import fuzz

    fuzz._warm_up("object")   # the kernel's BTF stays mapped for the process
    leaked = 0
    for i in range(25):
        _, _, n = fuzz.run_case(fuzz.make_case(fuzz_seeds, 7, "object", i), fuzz.Stage,
                                kernel=True)
        leaked += max(n, 0)
    assert leaked == 0


def _section_header(buf: bytearray, name: str) -> tuple[ELFFile, int]:
    elf = ELFFile(bytes(buf))
    sec = elf.section_by_name(name)
    assert sec is not None, name
    return elf, elf.shoff + sec.index * 64


def test_gen_debug_section_outside_the_file() -> None:
    # found by tools/fuzz.py: blanking DWARF for `ebpf gen` trusted sh_size
    # (MemoryError / OverflowError instead of ELFError)
    from ebpf.gen import generate

    buf = bytearray(_object("loader_globals"))
    _, at = _section_header(buf, ".debug_info")
    for size in (1 << 40, 1 << 63):
        struct.pack_into("<Q", buf, at + 32, size)   # sh_size
        with pytest.raises(ELFError, match=r"section \.debug_info"):
            generate(bytes(buf), name="Fuzz")


def _btf_records(blob: bytes) -> list[tuple[int, int]]:
    """(offset in blob, info word) of each type record of a little-endian BTF blob."""
    from ebpf.btf.spec import record_words

    hdr_len, type_off, type_len = struct.unpack_from("<III", blob, 4)
    at, end, out = hdr_len + type_off, hdr_len + type_off + type_len, []
    while at < end:
        info, = struct.unpack_from("<I", blob, at + 4)
        out.append((at, info))
        at += 4 * record_words(info)
    return out


def test_datasec_variable_smaller_than_its_type() -> None:
    # found by tools/fuzz.py: a DATASEC entry shorter than its variable's type made
    # `ebpf inspect` (VariableSpec.get) raise struct.error; the kernel refuses such BTF
    buf = bytearray(_object("loader_globals"))
    elf = ELFFile(bytes(buf))
    btf_sec = elf.section_by_name(".BTF")
    assert btf_sec is not None
    blob = bytes(btf_sec.data())
    datasecs = [at for at, info in _btf_records(blob) if (info >> 24) & 0x1F == 15
                and info & 0xFFFF]
    assert datasecs
    # first VarSecinfo (type, offset, size) follows the 12-byte record header
    size_at = btf_sec.offset + datasecs[0] + 12 + 8
    struct.pack_into("<I", buf, size_at, 0)
    with pytest.raises(ELFError, match=r"has 0 bytes in its DATASEC, less than its type's"):
        ebpf.load_collection_spec(bytes(buf))


def test_huge_kconfig_extern_is_refused_not_allocated() -> None:
    # found by tools/fuzz.py: a .kconfig extern whose BTF type claims 4 GiB made the
    # loader allocate the .kconfig map value (MemoryError); it is one array map value
    from ebpf import btf
    from ebpf.btf.builder import Builder
    from tools import fuzz

    data = _object("loader_externs")
    spec = btf.load_spec(data)
    hz = next(t for t in spec if isinstance(t, btf.Var) and t.name == "CONFIG_HZ")
    hz.type = btf.Array(hz.type, 0x40000000)     # int[1 << 30]: 4 GiB
    b = Builder.from_spec(spec)   # keeps the string table (.BTF.ext refers into it)
    seed = fuzz._seed("loader_externs", data)
    with pytest.raises(ELFError, match=r"kconfig extern 'CONFIG_HZ' of 4294967296 bytes"):
        ebpf.load_collection_spec(fuzz.splice(data, seed, ".BTF", b.marshal()))


def test_large_kconfig_extern_parses_without_allocating() -> None:
    # found by tools/fuzz.py: a .kconfig extern of 1 GiB (under the 2 GiB limit) made the
    # parser allocate a zeroed 1 GiB initial value (MemoryError under a 3 GiB address
    # space limit); the values are the running kernel's, written at load
    import resource

    from ebpf import btf
    from ebpf.btf.builder import Builder
    from tools import fuzz

    data = _object("loader_externs")
    spec = btf.load_spec(data)
    hz = next(t for t in spec if isinstance(t, btf.Var) and t.name == "CONFIG_HZ")
    hz.type = btf.Array(hz.type, 0x10000000)     # int[1 << 28]: 1 GiB
    b = Builder.from_spec(spec)
    mutant = fuzz.splice(data, fuzz._seed("loader_externs", data), ".BTF", b.marshal())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cspec = ebpf.load_collection_spec(mutant)
    assert cspec.maps[".kconfig"].value_size >= 1 << 30
    assert not cspec.maps[".kconfig"].contents
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 256 << 10, f"parsing grew the peak RSS by {grown_kib} KiB"


def test_gen_bitfield_name_that_is_not_an_identifier() -> None:
    # found by tools/fuzz.py: a damaged string table named a bitfield 'b c'; ebpf gen
    # raised a plain ValueError (it becomes a property, which needs an identifier)
    from ebpf import btf
    from ebpf.btf.builder import Builder
    from ebpf.errors import BTFError
    from ebpf.gen import generate
    from tools import fuzz

    data = _object("btf_kinds")
    spec = btf.load_spec(data)
    bits = next(t for t in spec if isinstance(t, btf.Struct) and t.name == "bits")
    b = next(m for m in bits.members if m.name == "b")
    assert b.bitfield_size == 5
    b.name = "b c"
    seed = fuzz._seed("btf_kinds", data)
    bad = fuzz.splice(data, seed, ".BTF", Builder.from_spec(spec).marshal())
    with pytest.raises(BTFError, match=r"bitfield 'b c' of \w+ is not an identifier"):
        generate(bad, name="Fuzz")
