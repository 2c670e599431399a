"""Fuzzing campaign for the object loader: ELF, BTF, BTF.ext and whole-object mutants.

    python3 tools/fuzz.py --cases 100000 --seed 1 --target all --jobs 1
    nice -n 19 python3 tools/fuzz.py --cases 1000000 --target elf --save /tmp/crashes
    python3 tools/fuzz.py --replay 1234 --seed 1 --target btf   # rerun one case, traceback

Mutants are built from the objects compiled from tests/bpf/*.c (tests/bpfbuild.py, cached)
and from their raw .BTF / .BTF.ext sections, and are pushed through what a user runs:

* ``elf``, ``btf``, ``ext`` targets: `ebpf.load_collection_spec`, the ``ebpf inspect`` path
  (`ebpf.cli.inspect.inspect_spec`, its JSON and text rendering) and ``ebpf gen``
  (`ebpf.gen.generate`, whose output must compile as Python). ``btf`` and ``ext`` mutate
  the section alone, splice it back into the object, and also parse the raw blob
  (`ebpf.btf.Spec` eagerly and lazily with every type looked at; `ebpf.btf.ext.parse_ext`).
* ``object``: any of the mutations above, then `ebpf.Collection` (loading into the kernel),
  with /proc/self/fd compared before and after each attempt.
* ``all``: a mix (``--object-share`` of the cases load into the kernel, default 5%).

Mutations: bit flips, byte and integer boundary values at aligned offsets, truncation,
chunk duplication / removal / insertion, splices from other seeds, and structure-aware
edits: ELF header and section header fields, symbol and relocation fields, instruction
fields; BTF header fields, a type record's kind / vlen / kflag / size / type id / name
offset, member and parameter fields, string table bytes; .BTF.ext header fields, record
sizes, section name offsets, record counts and record fields.

Every case is a pure function of (seed, target, case index), so ``--replay I`` reproduces
case I in-process with its traceback. Cases run in worker subprocesses (``--jobs``) under a
per-case watchdog (``--timeout``): a case that does not finish is counted as a hang, its
worker is killed and restarted at the next case. Workers run with an address-space limit
(``--memory-mb``) so a huge allocation is a MemoryError, not a machine out of memory.

Output (stdout, JSON): ``{cases, ok, typed_error: {Class: n}, untyped_exception: {Type: n,
examples: [...]}, hangs, leaked_fds, elapsed_s, rate, targets: {...}}``. ``--save DIR``
stores every input that raised outside `ebpf.Error`, hung or leaked a descriptor (nothing
is written without it). SIGINT/SIGTERM or ``--duration`` stop the campaign early and still
print the figures.

``--engine atheris`` (when `atheris` is installed) runs coverage-guided libFuzzer in the
workers with the same structure-aware mutations as its custom mutator; cases are then not
reproducible by index, so inputs are saved by the worker (``--save``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pathlib
import random
import resource
import select
import signal
import struct
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGETS = ("elf", "btf", "ext", "object")
# seeds loaded into the kernel by the `object` target: quick to verify, load on 6.x
KERNEL_SEEDS = ("loader_globals", "loader_maps", "loader_calls", "loader_legacy",
                "core_fields", "events", "net_xdp", "realworld_maps", "elf_smoke")
MAX_MAP_BYTES = 64 << 20   # larger maps are not created in the kernel (shared machine)


# -- seeds ---------------------------------------------------------------------------------


@dataclass
class Seed:
    """One compiled object and the byte ranges of its .BTF / .BTF.ext sections."""

    name: str
    data: bytes
    btf: tuple[int, int] | None = None      # (offset, size) in data
    ext: tuple[int, int] | None = None
    shdr_of: dict[str, int] = field(default_factory=dict)  # section name -> header offset

    @property
    def big_endian(self) -> bool:
        return self.data[5] == 2


def _sections(data: bytes) -> Iterator[tuple[str, int, int, int, int]]:
    """(name, header offset, sh_type, sh_offset, sh_size) of a valid ELF64's sections."""
    e = ">" if data[5] == 2 else "<"
    shoff, = struct.unpack_from(e + "Q", data, 40)
    shnum, shstrndx = struct.unpack_from(e + "HH", data, 60)
    str_off, = struct.unpack_from(e + "Q", data, shoff + shstrndx * 64 + 24)
    for i in range(shnum):
        at = shoff + i * 64
        name_off, sh_type, _, _, off, size = struct.unpack_from(e + "IIQQQQ", data, at)
        end = data.index(b"\0", str_off + name_off)
        yield data[str_off + name_off:end].decode(), at, sh_type, off, size


def _seed(name: str, data: bytes) -> Seed:
    s = Seed(name, data)
    for sec, at, _, off, size in _sections(data):
        s.shdr_of[sec] = at
        if sec == ".BTF":
            s.btf = (off, size)
        elif sec == ".BTF.ext":
            s.ext = (off, size)
    return s


def load_seeds() -> list[Seed]:
    """Every tests/bpf/*.c compiled (with the vmlinux.h include where it needs one), plus a
    big-endian elf_smoke; from tests/bpfbuild.py's cache when already built."""
    sys.path.insert(0, str(REPO / "tests"))
    from bpfbuild import BPFBuildError, compile_bpf
    from vmlinux import vmlinux_include_dir

    include = [f"-I{vmlinux_include_dir()}"]
    seeds: list[Seed] = []
    for src in sorted((REPO / "tests" / "bpf").glob("*.c")):
        for flags in ([], include):
            try:
                path = compile_bpf(src.stem, extra_flags=flags)
            except BPFBuildError:
                continue
            seeds.append(_seed(src.stem, path.read_bytes()))
            break
    seeds.append(_seed("elf_smoke.bpfeb", compile_bpf("elf_smoke", target="bpfeb").read_bytes()))
    return seeds


# -- mutations -----------------------------------------------------------------------------

BOUNDS = (0, 1, 2, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
          0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000, 1 << 40, 0x7FFFFFFFFFFFFFFF,
          0x8000000000000000, 0xFFFFFFFFFFFFFFFF)


def _value(rng: random.Random, bits: int, current: int = 0) -> int:
    """An interesting replacement for a `bits`-wide field holding `current`."""
    mask = (1 << bits) - 1
    r = rng.random()
    if r < 0.45:
        v = rng.choice(BOUNDS)
    elif r < 0.7:
        v = current + rng.choice((-8, -4, -2, -1, 1, 2, 4, 8, 24, 64))
    elif r < 0.85:
        v = rng.randrange(64)
    else:
        v = rng.getrandbits(bits)
    return v & mask


def _put(buf: bytearray, at: int, fmt: str, e: str, rng: random.Random) -> None:
    size = struct.calcsize(fmt)
    if at < 0 or at + size > len(buf):
        return
    cur, = struct.unpack_from(e + fmt, buf, at)
    struct.pack_into(e + fmt, buf, at, _value(rng, size * 8, cur))


def generic(buf: bytearray, rng: random.Random, e: str) -> bytearray:
    """Structure-blind edits of `buf`: flips, boundary values, truncation, chunks."""
    if not buf:
        return bytearray(rng.randbytes(rng.randrange(1, 64)))
    op = rng.randrange(9)
    n = len(buf)
    if op == 0:
        for _ in range(rng.randrange(1, 9)):
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif op == 1:
        buf[rng.randrange(n)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
    elif op == 2:
        fmt = rng.choice("HIQ")
        size = struct.calcsize(fmt)
        if n >= size:
            _put(buf, rng.randrange(n // size) * size, fmt, e, rng)
    elif op == 3:
        del buf[rng.choice((rng.randrange(n), rng.randrange(min(n, 256)), n - rng.randrange(
            1, min(n, 64) + 1))):]
    elif op == 4:   # duplicate a chunk in place of another or inserted
        a = rng.randrange(n)
        chunk = bytes(buf[a:a + rng.choice((4, 8, 12, 16, 64, rng.randrange(1, 512)))])
        b = rng.randrange(n)
        if rng.random() < 0.5:
            buf[b:b] = chunk
        else:
            buf[b:b + len(chunk)] = chunk
    elif op == 5:
        a = rng.randrange(n)
        del buf[a:a + rng.choice((1, 4, 8, 12, 16, rng.randrange(1, 256)))]
    elif op == 6:
        b = rng.randrange(n + 1)
        buf[b:b] = rng.randbytes(rng.choice((1, 4, 8, rng.randrange(1, 64))))
    elif op == 7:
        a = rng.randrange(n)
        buf[a:a + 8] = rng.choice((b"\xff" * 8, b"\0" * 8, b"\x80" * 8))
    else:           # a run of random bytes
        a = rng.randrange(n)
        ln = rng.randrange(1, 32)
        buf[a:a + ln] = rng.randbytes(ln)
    return buf


# ELF64: (offset, format) of the header's fields, a section header's, a symbol's, a rela's
EHDR = ((4, "B"), (5, "B"), (6, "B"), (16, "H"), (18, "H"), (20, "I"), (40, "Q"), (52, "H"),
        (58, "H"), (60, "H"), (62, "H"), (32, "Q"), (56, "H"), (54, "H"))
SHDR = ((0, "I"), (4, "I"), (8, "Q"), (24, "Q"), (32, "Q"), (40, "I"), (44, "I"), (48, "Q"),
        (56, "Q"))
SYM = ((0, "I"), (4, "B"), (5, "B"), (6, "H"), (8, "Q"), (16, "Q"))
RELA = ((0, "Q"), (8, "I"), (12, "I"))


def _elf_tables(buf: bytes, e: str) -> list[tuple[int, int, int, int]]:
    """(header offset, sh_type, sh_offset, sh_size) for each section whose header lies in
    `buf` (which may be damaged already)."""
    try:
        shoff, = struct.unpack_from(e + "Q", buf, 40)
        shnum, = struct.unpack_from(e + "H", buf, 60)
    except struct.error:
        return []
    out = []
    for i in range(min(shnum, 4096)):
        at = shoff + i * 64
        if at + 64 > len(buf):
            break
        _, sh_type, _, _, off, size = struct.unpack_from(e + "IIQQQQ", buf, at)
        out.append((at, sh_type, off, size))
    return out


def elf_structured(buf: bytearray, rng: random.Random, e: str) -> bytearray:
    """Edit one ELF header / section header / symbol / relocation / instruction field."""
    secs = _elf_tables(bytes(buf), e)
    kind = rng.randrange(6)
    if kind == 0 or not secs:
        at, fmt = rng.choice(EHDR)
        _put(buf, at, fmt, e, rng)
        return buf
    if kind in (1, 2):
        at, _, _, _ = rng.choice(secs)
        off, fmt = rng.choice(SHDR)
        if kind == 2 and fmt == "Q" and rng.random() < 0.5:   # another section's value
            other = rng.choice(secs)[0]
            buf[at + off:at + off + 8] = buf[other + off:other + off + 8]
        else:
            _put(buf, at + off, fmt, e, rng)
        return buf
    want = {3: (2, 24, SYM), 4: (4, 24, RELA), 5: (1, 8, ())}[kind]
    cands = [s for s in secs if s[1] == want[0] and s[3] >= want[1]]
    if kind == 5:   # executable PROGBITS: look for one with the exec flag
        cands = [s for s in cands
                 if struct.unpack_from(e + "Q", buf, s[0] + 8)[0] & 4]
    if not cands:
        return generic(buf, rng, e)
    _, _, off, size = rng.choice(cands)
    rec = off + rng.randrange(size // want[1]) * want[1]
    if kind == 5:   # instruction: opcode, regs, offset, imm
        field_ = rng.randrange(4)
        if field_ == 0:
            _put(buf, rec, "B", e, rng)
        elif field_ == 1 and rec + 1 < len(buf):
            buf[rec + 1] = rng.randrange(256)
        elif field_ == 2:
            _put(buf, rec + 2, "H", e, rng)
        else:
            _put(buf, rec + 4, "I", e, rng)
        return buf
    foff, fmt = rng.choice(want[2])
    if kind == 4 and e == ">":   # r_info is one big-endian u64: sym in its high half
        foff = 8 if foff == 12 else 12 if foff == 8 else foff
    _put(buf, rec + foff, fmt, e, rng)
    return buf


BTF_EXTRA = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8), 14: (4, 0),
             15: (0, 12), 17: (4, 0), 19: (0, 12)}


def _btf_records(buf: bytes, e: str) -> tuple[int, list[tuple[int, int, int]]]:
    """(string section offset, [(record offset, kind, vlen)]) of a (maybe damaged) BTF blob;
    stops at the first record it cannot walk."""
    try:
        hdr_len, type_off, type_len, str_off = struct.unpack_from(e + "IIII", buf, 4)
    except struct.error:
        return 0, []
    start = hdr_len + type_off
    end = min(start + type_len, len(buf))
    recs: list[tuple[int, int, int]] = []
    at = start
    while at + 12 <= end and len(recs) < 100000:
        info, = struct.unpack_from(e + "I", buf, at + 4)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        extra, per = BTF_EXTRA.get(kind, (0, 0))
        recs.append((at, kind, vlen))
        at += 12 + extra + per * vlen
    return hdr_len + str_off, recs


def btf_structured(buf: bytearray, rng: random.Random, e: str) -> bytearray:
    """Edit one BTF header field, type record field, member/param/enum field or string."""
    strs, recs = _btf_records(bytes(buf), e)
    r = rng.random()
    if r < 0.12 or not recs:
        if rng.random() < 0.85:     # hdr_len, type_off/len, str_off/len
            _put(buf, rng.choice((4, 8, 12, 16, 20)), "I", e, rng)
        else:                       # version, flags
            _put(buf, rng.choice((2, 3)), "B", e, rng)
        return buf
    if r < 0.22:    # the string table: drop NULs, add bytes that are not UTF-8, truncate
        if strs < len(buf):
            at = rng.randrange(strs, len(buf))
            buf[at] = rng.choice((0, 0x2E, 0xFF, 0xC3, 0x80, ord("a"), 0x0A, 0x22))
        return buf
    at, kind, vlen = rng.choice(recs)
    f = rng.randrange(6)
    if f == 0:      # name_off
        _put(buf, at, "I", e, rng)
    elif f == 1:    # kind
        info, = struct.unpack_from(e + "I", buf, at + 4)
        k = rng.choice((0, 1, 2, 3, 4, 13, 14, 15, 17, 19, 20, 31, rng.randrange(32)))
        struct.pack_into(e + "I", buf, at + 4, (info & ~(0x1F << 24)) | (k << 24))
    elif f == 2:    # vlen / kflag
        info, = struct.unpack_from(e + "I", buf, at + 4)
        if rng.random() < 0.3:
            info ^= 1 << 31
        else:
            info = (info & ~0xFFFF) | _value(rng, 16, info & 0xFFFF)
        struct.pack_into(e + "I", buf, at + 4, info)
    elif f == 3:    # size or type id
        _put(buf, at + 8, "I", e, rng)
    else:           # a field of what follows the record (int bits, array, members, params)
        extra, per = BTF_EXTRA.get(kind, (0, 0))
        body = extra + per * vlen
        if body >= 4:
            _put(buf, at + 12 + rng.randrange(body // 4) * 4, "I", e, rng)
        else:
            _put(buf, at + 8, "I", e, rng)
    return buf


def ext_structured(buf: bytearray, rng: random.Random, e: str) -> bytearray:
    """Edit one .BTF.ext header field, record size, section header or record field."""
    try:
        hdr_len, = struct.unpack_from(e + "I", buf, 4)
        offs = struct.unpack_from(e + "IIIIII", buf, 8)
    except struct.error:
        return generic(buf, rng, e)
    if rng.random() < 0.15:
        _put(buf, rng.choice((2, 3, 4, 8, 12, 16, 20, 24, 28)), "I" if rng.random() < 0.9
             else "B", e, rng)
        return buf
    sub = rng.randrange(3)
    start, length = hdr_len + offs[2 * sub], offs[2 * sub + 1]
    if start + 4 > len(buf) or length < 4:
        return generic(buf, rng, e)
    rec_size, = struct.unpack_from(e + "I", buf, start)
    if rng.random() < 0.15 or rec_size == 0:
        _put(buf, start, "I", e, rng)
        return buf
    # walk the per-section headers, pick one, then one of its records
    heads: list[tuple[int, int]] = []
    at = start + 4
    end = min(start + length, len(buf))
    while at + 8 <= end and len(heads) < 1000:
        _, num = struct.unpack_from(e + "II", buf, at)
        heads.append((at, num))
        at += 8 + num * rec_size
    if not heads:
        return generic(buf, rng, e)
    at, num = rng.choice(heads)
    if rng.random() < 0.3 or num == 0:
        _put(buf, at + rng.choice((0, 4)), "I", e, rng)   # sec_name_off / num_info
        return buf
    rec = at + 8 + rng.randrange(num) * rec_size
    _put(buf, rec + rng.randrange(max(rec_size // 4, 1)) * 4, "I", e, rng)
    return buf


def splice(data: bytes, seed: Seed, which: str, blob: bytes) -> bytes:
    """`data` (seed's object) with section `which` replaced by `blob`: in place when the
    size is unchanged, else appended at the end with the section header pointed at it."""
    off, size = seed.btf if which == ".BTF" else seed.ext   # type: ignore[misc]
    if len(blob) == size:
        return data[:off] + blob + data[off + size:]
    e = ">" if seed.big_endian else "<"
    out = bytearray(data)
    out += b"\0" * (-len(out) % 8)
    new_off = len(out)
    out += blob
    struct.pack_into(e + "QQ", out, seed.shdr_of[which] + 24, new_off, len(blob))
    return bytes(out)


def _edits(rng: random.Random) -> int:
    n = 1
    while n < 8 and rng.random() < 0.35:
        n += 1
    return n


@dataclass
class Case:
    """One mutant: the object to load and, for btf/ext targets, the raw mutated section."""

    index: int
    target: str
    seed: str
    data: bytes
    family: str
    raw: bytes | None = None


def make_case(seeds: list[Seed], seed: int, target: str, index: int,
              object_share: float = 0.05) -> Case:
    """Case `index` of the campaign (seed, target): deterministic."""
    rng = random.Random(f"{seed}:{target}:{index}")
    if target == "all":
        target = "object" if rng.random() < object_share else rng.choice(TARGETS[:3])
    pool = seeds
    if target == "object":
        pool = [s for s in seeds if s.name in KERNEL_SEEDS] or seeds
    family = target if target != "object" else rng.choice(("elf", "btf", "ext"))
    if family == "btf":
        pool = [s for s in pool if s.btf is not None]
    elif family == "ext":
        pool = [s for s in pool if s.ext is not None]
    s = rng.choice(pool)
    e = ">" if s.big_endian else "<"
    if family == "elf":
        buf = bytearray(s.data)
        for _ in range(_edits(rng)):
            r = rng.random()
            if r < 0.5:
                buf = elf_structured(buf, rng, e)
            elif r < 0.97:
                buf = generic(buf, rng, e)
            else:   # splice: a chunk from another seed
                o = rng.choice(seeds).data
                a, b = rng.randrange(len(o)), rng.randrange(len(buf)) if buf else 0
                buf[b:b + 64] = o[a:a + 64]
        return Case(index, target, s.name, bytes(buf), family)
    off, size = s.btf if family == "btf" else s.ext   # type: ignore[misc]
    buf = bytearray(s.data[off:off + size])
    structured = btf_structured if family == "btf" else ext_structured
    for _ in range(_edits(rng)):
        buf = structured(buf, rng, e) if rng.random() < 0.6 else generic(buf, rng, e)
    raw = bytes(buf)
    which = ".BTF" if family == "btf" else ".BTF.ext"
    return Case(index, target, s.name, splice(s.data, s, which, raw), family, raw)


def mutate_any(seeds: list[Seed], data: bytes, target: str, rng: random.Random) -> bytes:
    """atheris' custom mutator: one more round of edits on `data` (an object, maybe already
    a mutant); a non-object input is replaced by a seed first."""
    if data[:4] != b"\x7fELF" or len(data) < 64:
        data = rng.choice(seeds).data
    e = ">" if data[5] == 2 else "<"
    family = target if target in ("elf", "btf", "ext") else rng.choice(("elf", "btf", "ext"))
    if family != "elf":
        try:
            secs = {name: (at, off, size) for name, at, _, off, size in _sections(data)}
        except (struct.error, ValueError, UnicodeDecodeError, IndexError):
            secs = {}
        which = ".BTF" if family == "btf" else ".BTF.ext"
        if which in secs:
            at, off, size = secs[which]
            buf = bytearray(data[off:off + size])
            fn = btf_structured if family == "btf" else ext_structured
            buf = fn(buf, rng, e) if rng.random() < 0.6 else generic(buf, rng, e)
            fake = Seed("", data, (off, size), (off, size), {which: at})
            return splice(data, fake, which, bytes(buf))
    buf = bytearray(data)
    buf = elf_structured(buf, rng, e) if rng.random() < 0.5 else generic(buf, rng, e)
    return bytes(buf)


# -- running one case ------------------------------------------------------------------------


class Stage:
    """Which step a case is in (reported with untyped exceptions)."""

    name = "start"


def _exercise_btf(spec: Any, stage: type[Stage]) -> None:
    """Look at every type of `spec` the ways the library does; ebpf.Error is fine."""
    from ebpf import btf
    from ebpf.btf import values
    from ebpf.btf.builder import Builder
    from ebpf.btf.ctypes_conv import to_ctypes
    from ebpf.errors import Error

    def decode_zeros(t: Any) -> None:
        size = btf.sizeof(t)
        if size <= 1 << 16:
            values.decode(t, bytes(size))

    def look(name: str, fn: Callable[[Any], Any], arg: Any) -> None:
        stage.name = name
        try:
            fn(arg)
        except Error:
            pass

    for tid in range(min(len(spec), 20000)):
        stage.name = "btf.type_by_id"
        t = spec.type_by_id(tid)
        stage.name = "btf.type"
        repr(t)
        look("btf.refs", lambda t: list(t.refs()), t)
        for fn in (btf.sizeof, btf.alignof, btf.skip_typedefs, btf.strip_qualifiers,
                   values.describe, to_ctypes, decode_zeros):
            look(f"btf.{fn.__name__}", fn, t)
        if t.name:
            look("btf.type_by_name", spec.type_by_name, t.name)
    look("btf.marshal", lambda s: Builder.from_spec(s).marshal(), spec)


def _map_bytes(spec: Any) -> int:
    total = 0
    for m in spec.maps.values():
        total = max(total, (m.key_size + m.value_size + 64) * max(m.max_entries, 1))
    return total


def run_case(case: Case, stage: type[Stage], kernel: bool) -> tuple[str, str | None, int]:
    """Run one case; returns (outcome, exception class, descriptors leaked).

    outcome: "ok", "typed" (an ebpf.Error), "skipped" (a map too large to create here);
    anything else propagates to the caller (an untyped exception).
    """
    import ebpf
    from ebpf.cli.inspect import _inspect_text, inspect_spec
    from ebpf.errors import Error
    from ebpf.gen import generate

    typed: str | None = None
    if case.raw is not None:    # the raw section first
        from ebpf.btf.spec import Spec
        try:
            if case.family == "btf":
                lazy = bool(case.index % 2)   # both ways, on alternate cases
                stage.name = f"btf.parse(lazy={lazy})"
                _exercise_btf(Spec(case.raw, lazy=lazy), stage)
            else:
                from ebpf.btf.ext import parse_ext
                seed_btf = _seed_btf(case)
                stage.name = "ext.parse"
                if seed_btf is not None:
                    parse_ext(case.raw, seed_btf)
        except Error as exc:
            typed = type(exc).__name__
    try:
        stage.name = "load_collection_spec"
        cspec = ebpf.load_collection_spec(case.data)
        stage.name = "inspect"
        d = inspect_spec(cspec)
        json.dumps(d, default=str)
        _inspect_text(d)
        stage.name = "gen"
        # the object embedded (zlib: a quarter of a case's time) on every fourth case
        embed = case.index % 4 == 0
        src = generate(case.data, name="Fuzz", embed=embed,
                       filename=None if embed else "fuzz.bpf.o")
        stage.name = "gen.compile"
        compile(src, "<generated>", "exec")
    except Error as exc:
        return "typed", typed or type(exc).__name__, 0
    if not kernel:
        return ("typed", typed, 0) if typed else ("ok", None, 0)
    if _map_bytes(cspec) > MAX_MAP_BYTES:
        return "skipped", None, 0
    stage.name = "Collection"
    before = set(os.listdir("/proc/self/fd"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            try:
                with ebpf.Collection(cspec):
                    pass
            except Error as exc:
                typed = typed or type(exc).__name__
    finally:
        after = set(os.listdir("/proc/self/fd"))
    leaked = len(after - before)
    if leaked:
        gc.collect()   # reported either way: only what a GC pass reclaims is told apart
        after_gc = set(os.listdir("/proc/self/fd"))
        if not after_gc - before:
            leaked = -leaked
    return ("typed", typed, leaked) if typed else ("ok", None, leaked)


_SEED_BTF: dict[str, Any] = {}
_SEEDS_BY_NAME: dict[str, Seed] = {}


def _seed_btf(case: Case) -> Any:
    """The unmutated .BTF of the case's seed (to parse a mutated .BTF.ext against)."""
    from ebpf.btf.spec import Spec
    if case.seed not in _SEED_BTF:
        s = _SEEDS_BY_NAME[case.seed]
        _SEED_BTF[case.seed] = (Spec(s.data[s.btf[0]:s.btf[0] + s.btf[1]])
                                if s.btf is not None else None)
    return _SEED_BTF[case.seed]


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in tb if "/ebpf/" in f.filename] or list(tb)
    f = inside[-1]
    return f"{os.path.relpath(f.filename, REPO)}:{f.lineno} ({f.name})"


# -- worker ----------------------------------------------------------------------------------


def _limit_memory(mb: int) -> None:
    if mb > 0:
        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))


def worker(args: argparse.Namespace) -> None:
    """Run cases start, start+step, ... < stop; one line per case start and result."""
    _limit_memory(args.memory_mb)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    out = sys.stdout
    if args.engine == "atheris":
        _atheris_worker(args)
        return
    seeds = load_seeds()
    _SEEDS_BY_NAME.update((s.name, s) for s in seeds)
    _warm_up(args.target)
    for i in range(args.start, args.stop, args.step):
        if i == args.broken_case:   # checks the campaign's handling of a mutator failure
            raise SystemExit(3)
        case = make_case(seeds, args.seed, args.target, i, args.object_share)
        out.write(f"S {i}\n")
        out.flush()
        if i == args.hang_case:   # checks the watchdog itself
            time.sleep(1e6)
        out.write(json.dumps(_result(case, args)) + "\n")
        out.flush()


def _warm_up(target: str) -> None:
    """Fill the process-wide caches a first load fills (the kernel's BTF, held through a
    mapping of /sys/kernel/btf/vmlinux), so they are not counted as a leaked descriptor."""
    if target in ("object", "all"):
        from ebpf.btf import load_kernel_spec
        load_kernel_spec()


def _result(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {"i": case.index, "target": case.target}
    try:
        outcome, cls, leaked = run_case(case, Stage, case.target == "object")
        res.update(outcome=outcome, cls=cls, leaked=leaked)
    except BaseException as exc:  # counting them is the point
        if isinstance(exc, KeyboardInterrupt):
            raise
        res.update(outcome="untyped", cls=type(exc).__name__, stage=Stage.name,
                   where=_where(exc), msg=str(exc)[:300], leaked=0)
    if args.save and (res["outcome"] == "untyped" or res["leaked"] > 0):
        _save(args.save, case, res["outcome"] if res["outcome"] == "untyped" else "leak")
    return res


def _save(directory: str, case: Case, kind: str) -> None:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{kind}-{case.target}-{case.seed}-{case.index}.o")
    with open(path, "wb") as f:
        f.write(case.data)
    if case.raw is not None:
        with open(path[:-2] + f".{case.family}", "wb") as f:
            f.write(case.raw)


def _atheris_worker(args: argparse.Namespace) -> None:
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports(include=["ebpf"]):
        # what the cases run (most of it imported lazily, so imported here to be
        # instrumented): parsers, loader, inspect, gen
        import ebpf.btf.ctypes_conv
        import ebpf.btf.ext
        import ebpf.btf.spec
        import ebpf.btf.values
        import ebpf.cli
        import ebpf.collection
        import ebpf.elf.parse
        import ebpf.elffile
        import ebpf.gen
        import ebpf.instantiate
    del ebpf
    seeds = load_seeds()
    _SEEDS_BY_NAME.update((s.name, s) for s in seeds)
    _warm_up(args.target)
    counter = iter(range(args.start, args.stop, args.step))
    out = sys.stdout

    def one(data: bytes) -> None:
        i = next(counter, None)
        if i is None:
            out.flush()
            os._exit(0)
        target = args.target
        if target == "all":
            target = ("object" if random.random() < args.object_share
                      else random.choice(TARGETS[:3]))
        case = Case(i, target, "atheris", data, "elf")
        out.write(f"S {i}\n")
        out.flush()
        out.write(json.dumps(_result(case, args)) + "\n")
        out.flush()

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        return mutate_any(seeds, data, args.target, random.Random(seed))[:max_size]

    atheris.Setup([sys.argv[0], f"-seed={args.seed or 1}", "-max_len=1048576",
                   "-rss_limit_mb=0", "-print_final_stats=0"], one, custom_mutator=mutator)
    atheris.Fuzz()


# -- campaign (parent) -----------------------------------------------------------------------


class Tally:
    """Outcome counts, overall and per target."""

    def __init__(self) -> None:
        self.total = self._new()
        self.targets: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _new() -> dict[str, Any]:
        return {"cases": 0, "ok": 0, "typed_error": {}, "untyped_exception": {"examples": []},
                "hangs": 0, "leaked_fds": 0, "fds_reclaimed_only_by_gc": 0, "skipped": 0,
                "worker_crashes": 0}

    def add(self, target: str, outcome: str, **kw: Any) -> None:
        for t in (self.total, self.targets.setdefault(target, self._new())):
            t["cases"] += 1
            if outcome == "ok":
                t["ok"] += 1
            elif outcome == "typed":
                t["typed_error"][kw["cls"]] = t["typed_error"].get(kw["cls"], 0) + 1
            elif outcome == "untyped":
                u = t["untyped_exception"]
                u[kw["cls"]] = u.get(kw["cls"], 0) + 1
                ex = u["examples"]
                known = {(x["type"], x["where"]) for x in ex}
                if (kw["cls"], kw["where"]) not in known and len(ex) < 40:
                    ex.append({"type": kw["cls"], "where": kw["where"], "stage": kw["stage"],
                               "case": kw["i"], "target": target, "msg": kw["msg"]})
            elif outcome == "hang":
                t["hangs"] += 1
            elif outcome == "crash":
                t["worker_crashes"] += 1
            elif outcome == "skipped":
                t["skipped"] += 1
            leaked = kw.get("leaked", 0)
            if leaked > 0:
                t["leaked_fds"] += leaked
            elif leaked < 0:
                t["fds_reclaimed_only_by_gc"] += -leaked


@dataclass
class Worker:
    """A worker subprocess, the case it is in and when it started it."""

    proc: subprocess.Popen[bytes]
    step: int
    stop: int
    current: int | None = None
    started: float = 0.0
    last: int = -1
    buf: bytes = b""


def _spawn(args: argparse.Namespace, start: int, step: int, stop: int) -> Worker:
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker",
           "--seed", str(args.seed), "--target", args.target, "--engine", args.engine,
           "--start", str(start), "--stop", str(stop), "--step", str(step),
           "--memory-mb", str(args.memory_mb), "--object-share", str(args.object_share)]
    if args.save:
        cmd += ["--save", args.save]
    if args.hang_case >= 0:
        cmd += ["--hang-case", str(args.hang_case)]
    if args.broken_case >= 0:
        cmd += ["--broken-case", str(args.broken_case)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            cwd=REPO)
    return Worker(proc, step, stop, last=start - step)


def campaign(args: argparse.Namespace) -> dict[str, Any]:
    """Run the cases in --jobs workers under the watchdog; return the figures."""
    tally = Tally()
    t0 = time.monotonic()
    stop_at = t0 + args.duration if args.duration else None
    stopping = False

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    seeds: list[Seed] | None = None
    end = args.start + args.cases
    workers = [_spawn(args, args.start + j, args.jobs, end) for j in range(args.jobs)]
    last_progress = t0
    while workers and not stopping:
        now = time.monotonic()
        if stop_at is not None and now >= stop_at:
            break
        fds = [w.proc.stdout.fileno() for w in workers]  # type: ignore[union-attr]
        ready, _, _ = select.select(fds, [], [], 0.5)
        for w in list(workers):
            fd = w.proc.stdout.fileno()   # type: ignore[union-attr]
            if fd in ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:   # the worker exited
                    rc = w.proc.wait()
                    workers.remove(w)
                    nxt = w.last + w.step
                    if w.current is not None:   # died inside a case
                        tally.add(args.target, "crash", leaked=0)
                        nxt = w.current + w.step
                        print(f"fuzz: worker exited with {rc} in case {w.current}",
                              file=sys.stderr)
                    elif rc != 0 and not stopping:
                        # died making case nxt (this tool's mutator, not the library):
                        # counted and skipped, not respawned at the same case forever
                        tally.add(args.target, "crash", leaked=0)
                        print(f"fuzz: worker exited with {rc} making case {nxt}",
                              file=sys.stderr)
                        nxt += w.step
                    if rc != 0 and nxt < w.stop and not stopping:
                        workers.append(_spawn(args, nxt, w.step, w.stop))
                    continue
                w.buf += chunk
                *lines, w.buf = w.buf.split(b"\n")
                for line in lines:
                    if line.startswith(b"S "):
                        w.current, w.started = int(line[2:]), time.monotonic()
                    elif line:
                        r = json.loads(line)
                        w.current, w.last = None, r["i"]
                        tally.add(r.pop("target"), r.pop("outcome"), **r)
            elif w.current is not None and now - w.started > args.timeout:
                w.proc.kill()
                w.proc.wait()
                workers.remove(w)
                hung = None
                if args.engine == "random":   # rebuilt: its target, and saved if asked
                    if seeds is None:
                        seeds = load_seeds()
                    hung = make_case(seeds, args.seed, args.target, w.current,
                                     args.object_share)
                    if args.save:
                        _save(args.save, hung, "hang")
                tally.add(hung.target if hung else args.target, "hang", leaked=0)
                print(f"fuzz: case {w.current} hung (> {args.timeout} s)", file=sys.stderr)
                if w.current + w.step < w.stop:
                    workers.append(_spawn(args, w.current + w.step, w.step, w.stop))
        if args.progress and now - last_progress >= args.progress:
            last_progress = now
            _report(tally, t0, sys.stderr, compact=True)
    for w in workers:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()
    return _figures(tally, t0)


def _figures(tally: Tally, t0: float) -> dict[str, Any]:
    elapsed = time.monotonic() - t0
    out = dict(tally.total)
    out["elapsed_s"] = round(elapsed, 1)
    out["rate"] = round(out["cases"] / elapsed, 1) if elapsed else 0.0
    out["targets"] = tally.targets
    return out


def _report(tally: Tally, t0: float, stream: Any, compact: bool = False) -> None:
    fig = _figures(tally, t0)
    if compact:
        fig = {k: v for k, v in fig.items() if k != "targets"}
        fig["untyped_exception"] = {k: v for k, v in fig["untyped_exception"].items()
                                    if k != "examples"}
        stream.write(json.dumps(fig) + "\n")
    else:
        stream.write(json.dumps(fig, indent=2) + "\n")
    stream.flush()


def replay(args: argparse.Namespace) -> int:
    """Rerun one case in-process and show its outcome (and traceback)."""
    _limit_memory(args.memory_mb)   # as in a worker: a huge allocation is a MemoryError
    seeds = load_seeds()
    _SEEDS_BY_NAME.update((s.name, s) for s in seeds)
    case = make_case(seeds, args.seed, args.target, args.replay, args.object_share)
    print(f"case {case.index}: target {case.target}, seed object {case.seed}, "
          f"family {case.family}, {len(case.data)} bytes", file=sys.stderr)
    if args.save:
        _save(args.save, case, "replay")
    try:
        print(run_case(case, Stage, case.target == "object"))
    except Exception:
        print(f"stage {Stage.name}", file=sys.stderr)
        traceback.print_exc()
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=10000, help="number of mutants (10000)")
    p.add_argument("--seed", type=int, default=0, help="campaign seed (0)")
    p.add_argument("--target", choices=(*TARGETS, "all"), default="all")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (1)")
    p.add_argument("--timeout", type=float, default=30.0, help="per-case limit, s (30)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds (0: run all cases)")
    p.add_argument("--save", metavar="DIR", help="store crashing / hanging / leaking inputs")
    p.add_argument("--engine", choices=("random", "atheris"), default="random",
                   help="seeded mutation loop (default) or coverage-guided atheris")
    p.add_argument("--object-share", type=float, default=0.05,
                   help="share of --target all cases loaded into the kernel (0.05)")
    p.add_argument("--memory-mb", type=int, default=3072,
                   help="address-space limit of a worker, MiB (3072; 0: none)")
    p.add_argument("--progress", type=float, default=0.0, metavar="S",
                   help="print compact figures to stderr every S seconds")
    p.add_argument("--replay", type=int, metavar="I", help="rerun case I in-process")
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--step", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--hang-case", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument("--broken-case", type=int, default=-1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.engine == "atheris" and not args.worker:
        try:
            import atheris  # noqa: F401
        except ImportError:
            p.error("atheris is not installed (pip install atheris); use --engine random")
    if args.worker:
        worker(args)
        return 0
    if args.replay is not None:
        return replay(args)
    if args.jobs < 1 or args.cases < 0:
        p.error("--jobs must be at least 1 and --cases not negative")
    fig = campaign(args)
    print(json.dumps(fig, indent=2))
    return 1 if (fig["untyped_exception"].get("examples") or fig["hangs"]
                 or fig["leaked_fds"] or fig["worker_crashes"]) else 0


if __name__ == "__main__":
    sys.exit(main())
