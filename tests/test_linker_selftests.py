"""ebpf.linker on the kernel 6.12 BPF selftests' multi-file objects, differential
against `bpftool gen object` (Debian's bpftool, libbpf's static linker).

The sets are the selftests Makefile's `<skel>-deps` lines of LINKED_SKELS
(tools/testing/selftests/bpf/Makefile): test_static_linked, linked_funcs,
linked_vars, linked_maps, test_subskeleton, test_subskeleton_lib and test_usdt.
Their parts are compiled, like tests/test_conformance.py's subset, by
tools/conformance.py into .cache/conformance (cached; the first run of either test
unpacks linux-source-6.12 and builds libbpf).

For each set, both linked objects are loaded with `ebpf`: the same programs, maps
and variables come out, every program passes (or fails) the verifier alike, and
the programs that prog_tests/<name>.c triggers with a syscall are run with
BPF_PROG_TEST_RUN on the raw tracepoint arguments the syscall would give
(`syscall(SYS_getpgid)` -> sys_enter(regs, 121)): the variables and maps they
write hold what the selftest asserts, for both objects. Linking the output
again reaches a fixpoint after one more round, as the Makefile checks with
`diff linked2.o linked3.o`.
"""

from __future__ import annotations

import logging
import pathlib
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires

import ebpf
from ebpf import btf
from ebpf.elf import ELFFile
from ebpf.linker import link

TOOLS = pathlib.Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
import conformance  # noqa: E402

sys.path.remove(str(TOOLS))

# Building the parts needs the conformance cache's kernel tree and clang-19: host only.
pytestmark = pytest.mark.hostonly

# conformance.LINKED has the sets the conformance corpus links; the Makefile also
# links test_subskeleton_lib on its own (for its subskeleton).
SETS: dict[str, tuple[str, ...]] = {
    **conformance.LINKED,
    "test_subskeleton_lib": ("test_subskeleton_lib2", "test_subskeleton_lib"),
}
SYS_GETPGID = 121  # x86-64


@pytest.fixture(scope="module")
def parts() -> dict[str, pathlib.Path]:
    """Every part of every set, compiled (or found in the cache)."""
    corpus = conformance.prepare(jobs=2)[0]
    by_name = {s.name: s for s in corpus.sources()}
    wanted = sorted({p for ps in SETS.values() for p in ps})
    built = corpus.build_all([by_name[n] for n in wanted], jobs=2, progress=False)
    failed = {b.name: b.error for b in built if b.path is None}
    assert not failed
    return {b.name: b.path for b in built if b.path is not None}


@pytest.fixture(scope="module")
def linked(parts: dict[str, pathlib.Path], tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, tuple[bytes, bytes]]:
    """Set name -> (ebpf's linked object, bpftool's)."""
    tmp = tmp_path_factory.mktemp("bpftool")
    out = {}
    for name, names in SETS.items():
        inputs = [str(parts[p]) for p in names]
        theirs = tmp / f"{name}.o"
        subprocess.run(["bpftool", "gen", "object", str(theirs), *inputs], check=True,
                       capture_output=True)
        out[name] = (link(inputs), theirs.read_bytes())
    return out


def _verdicts(blob: bytes) -> dict[str, str]:
    """Program -> "ok", or the type of the error loading it on its own."""
    spec = ebpf.load_collection_spec(blob)
    out = {}
    for name in spec.programs:
        try:
            with ebpf.Collection(spec, programs=[name]):
                out[name] = "ok"
        except ebpf.Error as e:
            out[name] = type(e).__name__
    return out


def _plain(x: Any) -> Any:
    return x if isinstance(x, int) else bytes(x)


def _sys_enter(*args: int) -> bytes:
    """The context of a raw tracepoint program: its u64 arguments."""
    return struct.pack(f"<{len(args)}Q", *args)


# Per set: (what to set before loading, programs run in order, their context,
# variables to read back, what the selftest asserts of them).
Setup = Callable[[ebpf.CollectionSpec], None]


def _funcs(spec: ebpf.CollectionSpec) -> None:
    spec.variables["my_tid"].set(threading.get_native_id())  # the program checks its tid
    spec.variables["syscall_id"].set(SYS_GETPGID)


def _vars(spec: ebpf.CollectionSpec) -> None:
    for name, value in (("input_bss1", 1000), ("input_bss2", 2000), ("input_bss_weak", 3000)):
        spec.variables[name].set(value)


def _static(spec: ebpf.CollectionSpec) -> None:
    spec.variables["rovar1"].set(1)
    spec.variables["rovar2"].set(4)


def _subskeleton(spec: ebpf.CollectionSpec) -> None:
    v = spec.variables
    v["rovar1"].set(10)
    v["var1"].set(1)
    v["var2"].set(2)
    v["var3"].set({"var3_1": 3, "var3_2": 4})


def _nothing(spec: ebpf.CollectionSpec) -> None:
    pass


BEHAVIOUR: dict[str, tuple[Setup, list[str], bytes, dict[str, int]]] = {
    # prog_tests/linked_funcs.c; output_weak2 stays 0: linked_funcs2's weak
    # set_output_weak loses to linked_funcs1's, and both handlers call the winner
    "linked_funcs": (_funcs, ["handler1", "handler2"], _sys_enter(0, SYS_GETPGID), {
        "output_val1": 2000 + 2000, "output_ctx1": SYS_GETPGID, "output_weak1": 42,
        "output_val2": 2 * 1000 + 2 * (2 * 1000), "output_ctx2": SYS_GETPGID,
        "output_weak2": 0}),
    # prog_tests/linked_vars.c; 10 and 100: the first file's weak definitions win
    "linked_vars": (_vars, ["handler1", "handler2"], _sys_enter(0, SYS_GETPGID), {
        "output_bss1": 6000, "output_bss2": 6000, "output_data1": 1 + 2 + 10,
        "output_data2": 1 + 2 + 10, "output_rodata1": 11 + 22 + 100,
        "output_rodata2": 11 + 22 + 100}),
    # prog_tests/linked_maps.c: both files' maps are one map each
    "linked_maps": (_nothing, ["handler_enter1", "handler_enter2", "handler_exit1",
                               "handler_exit2"], _sys_enter(0, SYS_GETPGID), {
        "output_first1": 2000, "output_second1": 2, "output_weak1": 2,
        "output_first2": 1000, "output_second2": 1, "output_weak2": 1}),
    # prog_tests/static_linked.c: each file's static subprog and static variables
    "test_static_linked": (_static, ["handler1", "handler2"], _sys_enter(0, 0), {
        "var1": 1 * 2 + 2 + 3, "var2": 4 * 3 + 5 + 6}),
    # prog_tests/subskeleton.c: var5 is the strong definition (5), not the lib's weak 0
    "test_subskeleton": (_subskeleton, ["handler1"], _sys_enter(0, 0), {
        "out1": (1 + 2 + 3 + 4 + 5 + 6) * 10, "libout1": 21, "var5": 5, "var6": 6}),
}


def _behave(name: str, blob: bytes) -> dict[str, Any]:
    setup, programs, ctx, expected = BEHAVIOUR[name]
    spec = ebpf.load_collection_spec(blob)
    setup(spec)
    with ebpf.Collection(spec, programs=programs) as coll:
        retvals = [coll.programs[p].test_run(ctx=ctx).retval for p in programs]
        return {
            "retvals": retvals,
            "variables": {v: coll.variables[v].get() for v in expected},
            "maps": {m: sorted((_plain(k), _plain(v)) for k, v in coll.maps[m].items())
                     for m in coll.maps if not m.startswith(".")},
        }


@pytest.mark.parametrize("name", sorted(SETS))
def test_specs_agree_with_bpftools(name: str, linked: dict[str, tuple[bytes, bytes]]) -> None:
    ours, theirs = (ebpf.load_collection_spec(b) for b in linked[name])
    assert {n: (p.section, p.type) for n, p in ours.programs.items()} == {
        n: (p.section, p.type) for n, p in theirs.programs.items()}
    assert {n: (m.type, m.key_size, m.value_size, m.max_entries)
            for n, m in ours.maps.items()} == {
        n: (m.type, m.key_size, m.value_size, m.max_entries) for n, m in theirs.maps.items()}
    assert {n: (v.section, v.get()) for n, v in ours.variables.items()} == {
        n: (v.section, v.get()) for n, v in theirs.variables.items()}
    assert ours.programs


def _shape(blob: bytes) -> dict[str, Any]:
    """The linked layout: every code/data section's size, every named symbol's place,
    binding and visibility, and how many BTF types there are."""
    elf = ELFFile(blob)
    tables = (".symtab", ".strtab", ".shstrtab", ".BTF", ".BTF.ext", ".llvm_addrsig")
    sections = {s.name: s.size for s in elf.sections
                if s.name and not s.name.startswith(".rel") and s.name not in tables}
    symbols = sorted(
        (s.name, s.value, elf.section(s.section_index).name
         if 0 < s.section_index < len(elf.sections) else s.section_index, s.bind, s.visibility)
        for s in elf.symbols() if s.name and s.type != 4)  # without STT_FILE
    return {"sections": sections, "symbols": symbols, "btf_types": len(btf.load_spec(blob))}


@pytest.mark.parametrize("name", sorted(SETS))
def test_layout_is_bpftools(name: str, linked: dict[str, tuple[bytes, bytes]]) -> None:
    """Same sections of the same sizes (inputs placed at the same offsets), the same
    symbols at the same places, as many BTF types after deduplication."""
    ours, theirs = linked[name]
    assert _shape(ours) == _shape(theirs)


@requires("program_type:RAW_TRACEPOINT", min_kernel="4.17")
@pytest.mark.parametrize("name", sorted(SETS))
def test_same_programs_pass_the_verifier(name: str,
                                         linked: dict[str, tuple[bytes, bytes]]) -> None:
    ours, theirs = linked[name]
    got = _verdicts(ours)
    assert got == _verdicts(theirs)
    assert set(got.values()) == {"ok"}


@requires("program_type:RAW_TRACEPOINT", min_kernel="4.17")
@pytest.mark.parametrize("name", sorted(SETS))
def test_libbpf_loads_ebpfs_output(name: str, linked: dict[str, tuple[bytes, bytes]],
                                   tmp_path: pathlib.Path) -> None:
    """libbpf 1.5 (the conformance loader) opens our output and loads every program of
    it on its own, as it does bpftool's. (It cannot open Debian bpftool's linked_maps:
    libbpf 1.1's linker leaves map2's DATASEC offset at 0, "map relo failed to find
    map"; the selftests link three times over, which is why.)"""
    loader = conformance.prepare(jobs=2)[1]
    verdicts = {}
    for who, blob in zip(("ours", "bpftool"), linked[name], strict=True):
        path = tmp_path / f"{who}.o"
        path.write_bytes(blob)
        res = conformance.libbpf_load_object(loader, path, 60.0)
        verdicts[who] = (res["open"]["ok"], {p["name"]: p["ok"] for p in res["programs"]})
    opened, programs = verdicts["ours"]
    assert opened and programs and all(programs.values()), verdicts["ours"]
    if name != "linked_maps":
        assert verdicts["ours"] == verdicts["bpftool"]


@requires("program_type:RAW_TRACEPOINT", min_kernel="5.10")  # test_run of raw tracepoints
@pytest.mark.parametrize("name", sorted(BEHAVIOUR))
def test_programs_behave_like_bpftools(name: str, linked: dict[str, tuple[bytes, bytes]],
                                       caplog: pytest.LogCaptureFixture) -> None:
    """Also the output linked once more (its DATASECs already laid out, with the
    static variables of both files), and the kernel takes every object's BTF."""
    ours, theirs = linked[name]
    with caplog.at_level(logging.WARNING, logger="ebpf"):
        got = _behave(name, ours)
        assert got == _behave(name, theirs)
        assert _behave(name, link([ours])) == got
    assert got["variables"] == BEHAVIOUR[name][3]
    assert got["retvals"] == [0] * len(BEHAVIOUR[name][1])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@requires("program_type:RAW_TRACEPOINT", min_kernel="5.10")
def test_linked_maps_contents(linked: dict[str, tuple[bytes, bytes]]) -> None:
    """Both files' handlers write one map1/map2/map_weak: key 1 from the first file,
    key 2 from the second."""
    maps = _behave("linked_maps", linked["linked_maps"][0])["maps"]
    assert sorted(maps) == ["map1", "map2", "map_weak"]
    assert [(int.from_bytes(k, "little"), int.from_bytes(v, "little"))
            for k, v in maps["map1"]] == [(1, 1000), (2, 2000)]
    assert maps["map2"][1:3] == [(1, 1), (2, 2)] and len(maps["map2"]) == 8
    assert maps["map_weak"][1:3] == [(1, 1), (2, 2)] and len(maps["map_weak"]) == 16


@pytest.mark.parametrize("name", sorted(SETS))
def test_linking_again_reaches_a_fixpoint(name: str,
                                          linked: dict[str, tuple[bytes, bytes]]) -> None:
    """The Makefile links each output twice more and diffs the last two."""
    second = link([linked[name][0]])
    assert link([second]) == second


@pytest.mark.parametrize("name", sorted(SETS))
def test_typed_module_of_the_linked_object(name: str,
                                           linked: dict[str, tuple[bytes, bytes]]) -> None:
    """`ebpf gen` writes a module for each linked object, with its programs."""
    import ebpf.gen

    ours = linked[name][0]
    namespace: dict[str, Any] = {}
    exec(compile(ebpf.gen.generate(ours, name="Linked"), f"{name}_bpf.py", "exec"), namespace)
    spec = namespace["LinkedSpec"]().spec
    assert sorted(spec.programs) == sorted(ebpf.load_collection_spec(ours).programs)


def _census(blob: bytes) -> list[tuple[str, str, int]]:
    """Every type of the object's BTF by kind, name and size (0 without one)."""
    return sorted((type(t).__name__, t.name, getattr(t, "size", 0) or 0)
                  for t in btf.load_spec(blob))


@pytest.mark.parametrize("order", ["ab", "ba", "a"])
def test_enum_forwards_dedup_like_libbpf(order: str, tmp_path: pathlib.Path) -> None:
    """`enum color;` in one file and its definition in the other become one enum (and
    the two `struct holder` one struct); `enum lone;`, defined nowhere, stays an
    ENUM without values. The reference is libbpf 1.5's linker (the conformance
    loader's --link): Debian's bpftool (libbpf 1.1) leaves a forward of another size
    than the definition (clang gives `enum color;` size 0) unresolved."""
    objs = {"a": compile_bpf("enum_fwd_a"), "b": compile_bpf("enum_fwd_b")}
    inputs = [str(objs[c]) for c in order]
    loader = conformance.prepare(jobs=2)[1]
    out = tmp_path / "libbpf.o"
    subprocess.run([str(loader), "--link", str(out), *inputs], check=True, capture_output=True)
    ours = link(inputs)
    assert _census(ours) == _census(out.read_bytes())
    enums = [t for t in btf.load_spec(ours) if isinstance(t, btf.Enum)]
    want = [("color", 4, 2), ("lone", 0, 0)] if "b" in order else [("color", 0, 0),
                                                                    ("lone", 0, 0)]
    assert sorted((t.name, t.size, len(t.values)) for t in enums) == want
    holders = [t for t in btf.load_spec(ours) if t.name == "holder"]
    assert len(holders) == 1
