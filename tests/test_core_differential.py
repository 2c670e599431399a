"""Differential test of the CO-RE engine: every relocation as libbpf does it.

tools/c/libbpf_core_relos.c opens an object with libbpf 1.1 (against a target BTF
file through ``btf_custom_path``, or the running kernel), and prints what libbpf
logged while loading it: for every CO-RE relocation, the instruction it patched
(class, old and new immediate/offset, memory access size) or poisoned, or the
failure that stopped the load. `ebpf.btf.core` relocates the same object against
the same target, and every relocation libbpf reached must have the same outcome,
at the same instruction of the same program.

Objects: the real-world corpus (tools/realworld.py: libbpf-tools, xdp-tools, ...)
and every test object (tests/bpf/*.c) with CO-RE relocations, against Debian's libbpf
1.1; and the kernel 6.12 BPF selftests with CO-RE relocations (tools/conformance.py's
objects: its subset here, all of them with `make core-differential`), against libbpf 1.5
built from the same tree. Targets: the
running kernel (vmlinux and module BTF), its BTF read as a file, and the BTF of
the kernel matrix's kernels when tools/vm has fetched them (.cache/kernels).

One documented deviation is allowed: libbpf sign-extends 32-bit enumerators, so it
refuses a 64-bit load of an unsigned enumerator >= 2**31 that ebpf relocates (see
`ebpf.btf.core`); it is counted apart, never as a match.

    python3 -m pytest -s tests/test_core_differential.py   # prints the figures
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest

from ebpf import asm, btf
from ebpf._sys.types import CoreReloKind
from ebpf.asm import Instruction
from ebpf.btf import core
from ebpf.btf.ext import CoreRelo, parse_ext
from ebpf.elf import ELFFile
from ebpf.elffile import SymbolType

REPO = Path(__file__).resolve().parent.parent
TOOL_SOURCE = REPO / "tools" / "c" / "libbpf_core_relos.c"
CACHE = REPO / ".cache" / "core-differential"
KERNELS = REPO / ".cache" / "kernels"
VMLINUX = "/sys/kernel/btf/vmlinux"
LD_IMM64 = 0x18
# relocations libbpf 1.5 reached in the selftests (subset / whole corpus), when written
SELFTESTS_SUBSET_MIN = 600
SELFTESTS_ALL_MIN = 3000

Key = tuple[str, int]            # (ELF section, relocation number within the section)
Outcome = tuple[object, ...]     # ("ALU/ALU64" | "LDIMM64", old, new)
                                 # ("LDX/ST/STX", old, new, (old size, new size) | None)
                                 # ("poison",) | ("error",)
Where = tuple[str, int]          # (program or subprogram, instruction number in it)


# -- the libbpf side ------------------------------------------------------------------


def build_tool(include: Path | None = None, archive: Path | None = None) -> Path:
    """Compile tools/c/libbpf_core_relos.c (cached by source hash): against the system's
    libbpf (libbpf-dev), or statically against `archive` with headers from `include`."""
    src = TOOL_SOURCE.read_bytes()
    key = hashlib.sha256(src + (archive.read_bytes() if archive else b"")).hexdigest()[:12]
    exe = CACHE / f"libbpf_core_relos-{key}"
    if exe.is_file():
        return exe
    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc is not None, "gcc is needed (sh tools/setup.sh installs it)"
    if archive is None:
        assert Path("/usr/include/bpf/libbpf.h").is_file(), \
            "libbpf-dev is needed (sh tools/setup.sh installs it)"
    libbpf = ([f"-I{include}", str(TOOL_SOURCE), str(archive), "-lelf", "-lz"]
              if archive is not None else [str(TOOL_SOURCE), "-lbpf"])
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = exe.with_suffix(".tmp")
    proc = subprocess.run([cc, "-O2", "-Wall", "-o", str(tmp), *libbpf],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"building {TOOL_SOURCE.name} failed:\n{proc.stderr}"
    os.replace(tmp, exe)
    return exe


_SECTION_LINE = re.compile(r"libbpf: sec '(?P<sec>.*)': found \d+ CO-RE relocations$")
_RELO_LINE = re.compile(r"libbpf: prog '(?P<prog>[^']*)': relo #(?P<n>\d+): (?P<what>.*)$")
_PATCHED = re.compile(r"patched insn #(?P<insn>\d+) \((?P<cls>ALU/ALU64|LDX/ST/STX|LDIMM64)\) "
                      r"(?P<field>imm|off|mem_sz|imm64) (?P<old>\d+) -> (?P<new>\d+)$")
_POISONED = re.compile(r"substituting insn #(?P<insn>\d+) w/ invalid insn$")
_FAILED = re.compile(r"failed to (relocate|patch insn #\d+): -?\d+$")
_UNEXPECTED_IMM64 = re.compile(r"unexpected insn #\d+ \(LDIMM64\) value: got (?P<got>\d+), "
                               r"exp (?P<exp>\d+) -> \d+$")


@dataclasses.dataclass
class LibbpfRun:
    """What libbpf logged about the CO-RE relocations of one object."""

    outcomes: dict[Key, Outcome] = dataclasses.field(default_factory=dict)
    where: dict[Key, Where] = dataclasses.field(default_factory=dict)
    unexpected_imm64: dict[Key, tuple[int, int]] = dataclasses.field(default_factory=dict)
    opened: bool = True


def parse_libbpf_log(lines: Sequence[str]) -> LibbpfRun:
    """The per-relocation outcomes in libbpf's log, keyed by section and number."""
    run = LibbpfRun()
    section: str | None = None
    for line in lines:
        m = _SECTION_LINE.match(line)
        if m:
            section = m["sec"]
            continue
        m = _RELO_LINE.match(line)
        if m is None or section is None:
            continue
        key: Key = (section, int(m["n"]))
        what = m["what"]
        if p := _PATCHED.match(what):
            old, new = int(p["old"]), int(p["new"])
            run.where[key] = (m["prog"], int(p["insn"]))
            if p["field"] == "mem_sz":
                cls, off_old, off_new, _ = run.outcomes[key]
                run.outcomes[key] = (cls, off_old, off_new, (old, new))
            elif p["cls"] == "LDX/ST/STX":
                run.outcomes[key] = (p["cls"], old, new, None)
            else:
                run.outcomes[key] = (p["cls"], old, new)
        elif p := _POISONED.match(what):
            insn = int(p["insn"])   # a 64-bit load: the second slot is reported first
            run.where[key] = (m["prog"], min(insn, run.where.get(key, (m["prog"], insn))[1]))
            run.outcomes[key] = ("poison",)
        elif _FAILED.match(what):
            run.outcomes[key] = ("error",)
        elif p := _UNEXPECTED_IMM64.match(what):
            run.unexpected_imm64[key] = (int(p["got"]), int(p["exp"]))
    return run


def run_libbpf(tool: Path, obj: Path, target: str | None) -> LibbpfRun:
    cmd = [str(tool), str(obj), *([target] if target else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, f"{cmd} failed: {proc.stderr[-2000:]}"
    data = json.loads(proc.stdout)
    run = parse_libbpf_log(data["log"])
    run.opened = bool(data["open"]["ok"])
    return run


# -- the ebpf side --------------------------------------------------------------------


@dataclasses.dataclass
class OurRun:
    outcomes: dict[Key, Outcome] = dataclasses.field(default_factory=dict)
    where: dict[Key, Where] = dataclasses.field(default_factory=dict)
    relos: dict[Key, CoreRelo] = dataclasses.field(default_factory=dict)
    local: btf.Spec | None = None


def _slots(insns: Sequence[Instruction]) -> Iterator[tuple[int, Instruction]]:
    slot = 0
    for ins in insns:
        yield slot, ins
        slot += 2 if ins.opcode == LD_IMM64 else 1


def _patched(before: Instruction, after: Instruction) -> Outcome:
    """The outcome as libbpf logs it: the instruction class, the field's old and new value."""
    cls = before.opcode & 0x07
    if cls in (0x04, 0x07):   # ALU, ALU64
        return ("ALU/ALU64", before.imm & 0xFFFFFFFF, after.imm & 0xFFFFFFFF)
    if cls in (0x01, 0x02, 0x03):   # LDX, ST, STX
        sizes = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
        old_size, new_size = sizes[before.opcode & 0x18], sizes[after.opcode & 0x18]
        return ("LDX/ST/STX", before.off & 0xFFFFFFFF, after.off & 0xFFFFFFFF,
                (old_size, new_size) if old_size != new_size else None)
    assert before.opcode == LD_IMM64, before
    return ("LDIMM64", before.imm & (1 << 64) - 1, after.imm & (1 << 64) - 1)


def _functions(elf: ELFFile, section: str) -> list[tuple[int, str]]:
    """(first slot, name) of the functions in `section`, in order."""
    sec = elf.section_by_name(section)
    assert sec is not None
    return sorted((s.value // 8, s.name) for s in elf.symbols()
                  if s.section_index == sec.index and s.type == SymbolType.FUNC)


def _where(functions: list[tuple[int, str]], slot: int) -> Where:
    start, name = max(((a, n) for a, n in functions if a <= slot), default=(0, "?"))
    return name, slot - start


def run_ours(obj: Path, target: Sequence[btf.Spec] | btf.Spec) -> OurRun:
    """Relocate every section of `obj` as one object (one CoreCache), in .BTF.ext order."""
    elf = ELFFile(obj.read_bytes())
    btf_sec, ext_sec = elf.section_by_name(".BTF"), elf.section_by_name(".BTF.ext")
    run = OurRun()
    if btf_sec is None or ext_sec is None:
        return run
    local = run.local = btf.Spec(bytes(btf_sec.data()))
    ext = parse_ext(bytes(ext_sec.data()), local)
    cache = core.CoreCache()
    for section, relos in ext.core_relos.items():
        code = elf.section_by_name(section)
        if code is None or not relos:
            continue
        functions = _functions(elf, section)
        before = asm.decode(bytes(code.data()))
        insns = [ins.copy() for ins in before]
        indexed = core.index_relos(insns, relos, section)
        for n, (_, relo) in enumerate(indexed):
            run.relos[(section, n)] = relo
        try:
            results = core.relocate(insns, indexed, local, target, cache=cache)
        except core.CoreError as e:
            m = re.search(r"CO-RE relocation #(\d+)", str(e))
            assert m, str(e)
            run.outcomes[(section, int(m[1]))] = ("error",)
            continue
        after = dict(_slots(insns))
        for n, ((index, _), res) in enumerate(zip(indexed, results, strict=True)):
            key = (section, n)
            run.where[key] = _where(functions, res.slot)
            run.outcomes[key] = (("poison",) if res.poisoned
                                 else _patched(before[index], after[res.slot]))
    return run


# -- comparison -----------------------------------------------------------------------


@dataclasses.dataclass
class Tally:
    objects: int = 0
    objects_with_relos: int = 0
    relocations: int = 0            # ours, over all objects
    compared: int = 0               # libbpf reached them
    matched: int = 0
    poisoned: int = 0               # matched poisonings
    errors: int = 0                 # matched failures
    deviations: list[str] = dataclasses.field(default_factory=list)
    mismatches: list[str] = dataclasses.field(default_factory=list)
    not_reached: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {"objects": self.objects, "objects_with_core_relocations": self.objects_with_relos,
                "relocations": self.relocations, "compared": self.compared,
                "matched": self.matched, "matched_poisoned": self.poisoned,
                "matched_errors": self.errors, "known_deviations": len(self.deviations),
                "mismatches": len(self.mismatches), "not_reached_by_libbpf": len(self.not_reached)}


def _is_unsigned_enum_deviation(ours: OurRun, lib: LibbpfRun, key: Key,
                                mine: Outcome) -> bool:
    """libbpf refused a 64-bit load of an unsigned enumerator it sign-extended."""
    relo = ours.relos.get(key)
    if relo is None or relo.kind != CoreReloKind.ENUMVAL_VALUE or mine[0] != "LDIMM64":
        return False
    got_exp = lib.unexpected_imm64.get(key)
    if got_exp is None:
        return False
    got, expected = got_exp
    old = mine[1]
    assert isinstance(old, int)
    sign_extended = ((old ^ 0x80000000) - 0x80000000) & (1 << 64) - 1
    return 1 << 31 <= old < 1 << 32 and got == old and expected == sign_extended


def compare(name: str, ours: OurRun, lib: LibbpfRun, tally: Tally) -> None:
    tally.objects += 1
    if ours.relos:
        tally.objects_with_relos += 1
    tally.relocations += len(ours.relos)
    for key, theirs in lib.outcomes.items():
        mine = ours.outcomes.get(key)
        label = f"{name} {key[0]} relo #{key[1]}"
        if mine is None and key in ours.relos:
            # ours stopped at an earlier failure of the same section
            tally.mismatches.append(f"{label}: libbpf {theirs}, ebpf stopped before it")
            continue
        tally.compared += 1
        if theirs == ("error",) and mine is not None and _is_unsigned_enum_deviation(
                ours, lib, key, mine):
            tally.deviations.append(f"{label}: ebpf {mine}, libbpf refuses it (sign extension)")
            continue
        if mine != theirs:
            tally.mismatches.append(f"{label}: ebpf {mine}, libbpf {theirs}")
            continue
        if key in lib.where and lib.where[key] != ours.where.get(key):
            tally.mismatches.append(f"{label}: at {ours.where.get(key)} in ebpf, "
                                    f"{lib.where[key]} in libbpf")
            continue
        tally.matched += 1
        tally.poisoned += theirs == ("poison",)
        tally.errors += theirs == ("error",)
    for key in ours.relos:
        if key not in lib.outcomes:
            tally.not_reached.append(f"{name} {key[0]} relo #{key[1]}")


# -- objects and targets --------------------------------------------------------------


def corpus_objects() -> list[tuple[str, Path]]:
    sys.path.insert(0, str(REPO))
    try:
        from tools import realworld
    finally:
        sys.path.remove(str(REPO))
    return [(o.name, o.path) for o in realworld.discover()]


def bpf_test_objects() -> list[tuple[str, Path]]:
    """Every tests/bpf/*.c that builds (on its own, else with the kernel's vmlinux.h) and
    has CO-RE relocations; core_fields both ways (against tests/bpf/core_types.h and
    vmlinux.h)."""
    from bpfbuild import BPFBuildError, compile_bpf, standalone_sources
    from vmlinux import vmlinux_include_dir

    variants: list[tuple[str, list[str]]] = [("", []),
                                             ("+vmlinux.h", [f"-I{vmlinux_include_dir()}"])]
    out: list[tuple[str, Path]] = []
    for src in standalone_sources():
        for label, flags in variants:
            try:
                path = compile_bpf(src.stem, extra_flags=flags)
            except BPFBuildError:
                continue
            if _has_core_relos(path):
                out.append((f"tests/bpf/{src.stem}{label}", path))
            if src.stem != "core_fields":
                break
    return out


def _has_core_relos(path: Path) -> bool:
    elf = ELFFile(path.read_bytes())
    btf_sec, ext_sec = elf.section_by_name(".BTF"), elf.section_by_name(".BTF.ext")
    if btf_sec is None or ext_sec is None:
        return False
    ext = parse_ext(bytes(ext_sec.data()), btf.Spec(bytes(btf_sec.data())))
    return any(ext.core_relos.values())


def targets() -> list[tuple[str, str | None]]:
    """(label, BTF file for libbpf's btf_custom_path, None for the running kernel)."""
    found: list[tuple[str, str | None]] = [("kernel", None), ("vmlinux-file", VMLINUX)]
    found += sorted((f"matrix-{p.parent.name}", str(p)) for p in KERNELS.glob("*/vmlinux")
                    if p.is_file())
    return found


def _our_target(path: str | None) -> Sequence[btf.Spec] | btf.Spec:
    return core.kernel_targets() if path is None else btf.load_spec(path)


@pytest.fixture(scope="module")
def tool() -> Path:
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is missing")
    return build_tool()


@pytest.fixture(scope="module")
def objects() -> list[tuple[str, Path]]:
    objs = corpus_objects() + bpf_test_objects()
    assert objs
    return objs


def differential(tool: Path, objects: Sequence[tuple[str, Path]], target: str,
                 summary_name: str) -> Tally:
    """Relocate every object with both engines against `target`; the tally, also written
    to .cache/core-differential/summary-<summary_name>.json."""
    path = dict(targets())[target]
    our_target = _our_target(path)
    tally = Tally()
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: list[tuple[str, Path, Future[LibbpfRun]]] = [
            (name, obj, pool.submit(run_libbpf, tool, obj, path)) for name, obj in objects]
        for name, obj, fut in pending:
            ours = run_ours(obj, our_target)
            compare(name, ours, fut.result(), tally)
    summary = tally.summary()
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / f"summary-{summary_name}.json").write_text(json.dumps(
        {**summary, "deviations": tally.deviations, "mismatches": tally.mismatches,
         "not_reached": tally.not_reached}, indent=2) + "\n")
    print(f"\nCO-RE differential ({summary_name}): {json.dumps(summary)}")
    return tally


# Not a kernel-matrix test: the matrix kernels' BTF are among the targets (as files), and
# running libbpf over the whole corpus under emulation would take most of the matrix's time.
@pytest.mark.parametrize("target", [label for label, _ in targets()])
def test_same_outcomes_as_libbpf(tool: Path, objects: list[tuple[str, Path]],
                                 target: str) -> None:
    tally = differential(tool, objects, target, target)
    assert not tally.mismatches, "\n".join(tally.mismatches[:50])
    # the comparison covers the corpus (959 relocations in 70 objects when written),
    # poisonings included
    assert tally.compared >= 900 and tally.matched + len(tally.deviations) == tally.compared
    assert tally.poisoned > 0
    assert tally.objects_with_relos >= 40


# -- the kernel's BPF selftests, against libbpf 1.5 -----------------------------------


def _conformance() -> ModuleType:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import conformance
    finally:
        sys.path.remove(str(REPO / "tools"))
    return conformance


@pytest.fixture(scope="module")
def selftests() -> tuple[Path, list[tuple[str, Path]]]:
    """libbpf 1.5's relocation tool and the selftests objects with CO-RE relocations.

    The objects are tools/conformance.py's (compiled from linux-source-6.12 with the
    selftests' flags, cached in .cache/conformance): its representative subset by
    default, the whole corpus with EBPF_CORE_SELFTESTS=all (`make core-differential`).
    libbpf 1.5 is the one built from the same tree: Debian's 1.1 cannot open the newer
    objects (arena, exceptions, new sections)."""
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is missing")
    conformance = _conformance()
    corpus, _, lib = conformance.prepare(jobs=2)
    everything = os.environ.get("EBPF_CORE_SELFTESTS") == "all"
    sources = conformance.select_sources(corpus.sources(), everything=everything)
    built = corpus.build_all(sources, jobs=2, progress=False)
    objs = [(f"selftests/{b.name}", b.path) for b in built
            if b.path is not None and _has_core_relos(b.path)]
    return build_tool(lib.include, lib.archive), objs


@pytest.mark.parametrize("target", [label for label, _ in targets()])
def test_selftests_same_outcomes_as_libbpf(
        selftests: tuple[Path, list[tuple[str, Path]]], target: str) -> None:
    tool, objs = selftests
    everything = os.environ.get("EBPF_CORE_SELFTESTS") == "all"
    tally = differential(tool, objs, target,
                         f"selftests{'-all' if everything else ''}-{target}")
    assert not tally.mismatches, "\n".join(tally.mismatches[:50])
    assert tally.matched + len(tally.deviations) == tally.compared
    assert tally.compared >= (SELFTESTS_ALL_MIN if everything else SELFTESTS_SUBSET_MIN)


def test_log_parser_reads_each_outcome() -> None:
    """The parser of libbpf's messages (the formats of libbpf 1.1's debug lines)."""
    log = [
        "libbpf: sec 'kprobe/x': found 5 CO-RE relocations",
        "libbpf: prog 'p': relo #0: <byte_off> [3] struct s.a (0:1 @ offset 4)",
        "libbpf: prog 'p': relo #0: patched insn #7 (ALU/ALU64) imm 4 -> 12",
        "libbpf: prog 'p': relo #1: patched insn #9 (LDX/ST/STX) off 8 -> 16",
        "libbpf: prog 'p': relo #1: patched insn #9 (LDX/ST/STX) mem_sz 4 -> 8",
        "libbpf: prog 'p': relo #2: substituting insn #12 w/ invalid insn",
        "libbpf: prog 'p': relo #2: substituting insn #11 w/ invalid insn",
        "libbpf: prog 'p': relo #3: patched insn #20 (LDIMM64) imm64 1 -> 18446744073709551615",
        "libbpf: prog 'p': relo #4: unexpected insn #30 (LDIMM64) value: got 4294967295, "
        "exp 18446744073709551615 -> 1",
        "libbpf: prog 'p': relo #4: failed to patch insn #30: -22",
        "libbpf: prog 'p': relo #6: poisoning insn #49 that loads map #2 'events'",
    ]
    run = parse_libbpf_log(log)
    assert run.outcomes == {
        ("kprobe/x", 0): ("ALU/ALU64", 4, 12),
        ("kprobe/x", 1): ("LDX/ST/STX", 8, 16, (4, 8)),
        ("kprobe/x", 2): ("poison",),
        ("kprobe/x", 3): ("LDIMM64", 1, (1 << 64) - 1),
        ("kprobe/x", 4): ("error",),
    }
    assert run.where[("kprobe/x", 2)] == ("p", 11)
    assert run.unexpected_imm64[("kprobe/x", 4)] == (0xFFFFFFFF, (1 << 64) - 1)
