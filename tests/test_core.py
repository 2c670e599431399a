"""The CO-RE relocation engine.

Unit tests relocate hand-made instructions against hand-made BTF (every kind,
flavors, bitfields, arrays, anonymous members, ambiguity, pruning, module BTF,
poisoning, validation). Kernel tests compile tests/bpf/core_*.c once, against the
fixed kernel types of tests/bpf/core_types.h (no vmlinux.h: the same object for
every kernel, and no relocation is an identity), relocate every program and compare every
instruction with what libbpf (libbpf.so.1, through ctypes) produces for the
same object -- against the kernel, a copy of its BTF file and a hand-made
target BTF -- and with the kernel's xlated dump of the libbpf-loaded program
(bpftool); guarded poisoned programs load, unguarded ones fail with a message
naming the relocation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import need_tool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_btf_ext import RawBTF

from ebpf import asm, btf
from ebpf._sys.types import CoreReloKind
from ebpf.asm import Instruction
from ebpf.btf import core
from ebpf.btf.core import POISON_IMM, CoreCache, CoreError, CoreResult, essential_name
from ebpf.btf.ext import CoreRelo, parse_ext
from ebpf.errors import BTFError

K = CoreReloKind
MOV_IMM = 0xB7  # ALU64 | MOV | K
ADD_IMM = 0x07  # ALU64 | ADD | K
ADD_REG = 0x0F  # ALU64 | ADD | X
LDX_W, LDX_H, LDX_B, LDX_DW = 0x61, 0x69, 0x71, 0x79
STX_W, ST_W = 0x63, 0x62
LD_IMM64 = 0x18
JA = 0x05
CALL = 0x85


def mov(imm: int) -> Instruction:
    return Instruction(MOV_IMM, 1, 0, 0, imm)


def ldx(opcode: int, off: int) -> Instruction:
    return Instruction(opcode, 1, 2, off, 0)


def ld64(imm: int) -> Instruction:
    return Instruction(LD_IMM64, 1, 0, 0, imm)


def relo(tid: int, access: str, kind: CoreReloKind) -> CoreRelo:
    return CoreRelo(0, tid, access, kind)


def run(insns: list[Instruction], relos: Sequence[tuple[int, CoreRelo]], local: btf.Spec,
        targets: Sequence[btf.Spec] | btf.Spec, **kw: object) -> list[CoreResult]:
    return core.relocate(insns, relos, local, targets, **kw)  # type: ignore[arg-type]


# -- hand-made BTF ------------------------------------------------------------------


class Local:
    """An object's BTF, as clang would emit it for a few local types."""

    def __init__(self) -> None:
        b = self.b = RawBTF()
        self.int = b.int("int", 4, signed=True)
        self.uint = b.int("unsigned int", 4)
        self.ushort = b.int("unsigned short", 2)
        self.short = b.int("short", 2, signed=True)
        self.char = b.int("char", 1, signed=True)
        self.long = b.int("long", 8, signed=True)
        idx = b.int("__ARRAY_SIZE_TYPE__", 4)
        comm = b.array(self.char, 16, idx)
        self.task = b.struct("task_struct", 40, [
            ("pid", self.int, 0, 0), ("tgid", self.int, 32, 0), ("flags", self.uint, 64, 0),
            ("prio", self.ushort, 96, 0), ("comm", comm, 128, 0), ("nice", self.short, 256, 0)])
        self.task_old = b.struct("task_struct___old", 8, [("state", self.long, 0, 0)])
        self.bits = b.struct("bits", 8, [("lo", self.uint, 0, 3), ("x", self.uint, 3, 5),
                                         ("s", self.int, 8, 4)])
        arr4 = b.array(self.int, 4, idx)
        self.arrs = b.struct("arrs", 20, [("n", self.int, 0, 0), ("a", arr4, 32, 0)])
        flex = b.array(self.int, 0, idx)
        self.flex = b.struct("flexy", 4, [("n", self.int, 0, 0), ("data", flex, 32, 0)])
        self.anon = b.struct("anony", 4, [("b", self.int, 0, 0)])
        self.e = b.enum("colors", [("RED", 0), ("GREEN", 1), ("BLUE___v2", 2)])
        self.e_uns = b.enum("big32", [("HUGE", 0xF0000000)])
        self.e64 = b.enum64("big64", [("FAR", 1 << 40)])
        self.e_neg = b.enum("negs", [("MINUS", -1 & 0xFFFFFFFF)], signed=True)
        self.pid_t = b.typedef("pid_t", self.int)
        self.missing = b.struct("not_there", 4, [("a", self.int, 0, 0)])
        self.anon_struct = b.struct("", 4, [("a", self.int, 0, 0)])
        self.foo = b.struct("foo", 8, [("a", self.int, 0, 0), ("b", self.int, 32, 0)])
        self.modty = b.struct("modty", 8, [("x", self.int, 0, 0), ("y", self.int, 32, 0)])
        self.bad = b.struct("task_struct___bad", 8, [("pid", self.long, 0, 0)])
        self.good = b.struct("task_struct___good", 8, [("pid", self.int, 0, 0),
                                                       ("comm", comm, 32, 0)])
        self.spec = b.spec()


class Target:
    """A fake kernel whose types differ from the local ones."""

    def __init__(self) -> None:
        b = self.b = RawBTF()
        self.int = b.int("int", 4, signed=True)
        self.uint = b.int("unsigned int", 4)
        self.char = b.int("char", 1, signed=True)
        self.long = b.int("long", 8, signed=True)
        idx = b.int("__ARRAY_SIZE_TYPE__", 4)
        comm = b.array(self.char, 16, idx)
        self.pid_t = b.typedef("pid_t", self.int)
        self.task = b.struct("task_struct", 96, [
            ("__state", self.uint, 0, 0), ("flags", self.uint, 32, 0),
            ("prio", self.uint, 64, 0), ("pid", self.pid_t, 128, 0), ("tgid", self.int, 160, 0),
            ("comm", comm, 256, 0), ("nice", self.int, 384, 0)])
        self.bits = b.struct("bits", 8, [("pad", self.uint, 0, 30), ("x", self.uint, 30, 5),
                                         ("s", self.int, 35, 4)])
        arr6 = b.array(self.int, 6, idx)
        self.arrs = b.struct("arrs", 32, [("pad", self.long, 0, 0), ("n", self.int, 64, 0),
                                          ("a", arr6, 96, 0)])
        flex = b.array(self.int, 0, idx)
        self.flex = b.struct("flexy", 8, [("pad", self.int, 0, 0), ("n", self.int, 32, 0),
                                          ("data", flex, 64, 0)])
        inner = b.struct("", 8, [("b", self.int, 0, 0), ("c", self.long, 0, 0)], union=True)
        self.anon = b.struct("anony", 16, [("a", self.long, 0, 0), ("", inner, 64, 0)])
        self.e = b.enum("colors", [("BLUE", 7), ("RED", 5)])
        self.e_uns = b.enum("big32", [("HUGE", 0xF0000001)])
        self.e64 = b.enum64("big64", [("FAR", 1 << 41)])
        self.e_neg = b.enum("negs", [("MINUS", -2 & 0xFFFFFFFF)], signed=True)
        self.foo = b.struct("foo", 8, [("a", self.int, 0, 0), ("b", self.int, 32, 0)])
        self.spec = b.spec()


@pytest.fixture(scope="module")
def L() -> Local:
    return Local()


@pytest.fixture(scope="module")
def T() -> Target:
    return Target()


def test_essential_name() -> None:
    assert essential_name("task_struct___old") == "task_struct"
    assert essential_name("task_struct___old___2") == "task_struct___old"
    assert essential_name("task_struct") == "task_struct"
    assert essential_name("a____b") == "a____b"  # four underscores: not a flavor
    assert essential_name("___GFP_IO") == "___GFP_IO"
    assert essential_name("x___") == "x___"
    assert essential_name("nf_conn___init") == "nf_conn"


def test_field_offsets_follow_target(L: Local, T: Target) -> None:
    insns = [mov(0), mov(4), ldx(LDX_W, 8), ldx(LDX_B, 16 + 3), Instruction(ST_W, 1, 0, 0, 7)]
    insns[4].off = 0
    relos = [(0, relo(L.task, "0:0", K.FIELD_BYTE_OFFSET)),
             (1, relo(L.task, "0:1", K.FIELD_BYTE_OFFSET)),
             (2, relo(L.task, "0:2", K.FIELD_BYTE_OFFSET)),
             (3, relo(L.task, "0:4:3", K.FIELD_BYTE_OFFSET)),
             (4, relo(L.task, "0:0", K.FIELD_BYTE_OFFSET))]
    res = run(insns, relos, L.spec, [T.spec])
    assert [r.target_value for r in res] == [16, 20, 4, 35, 16]
    assert [insns[0].imm, insns[1].imm, insns[2].off, insns[3].off, insns[4].off] == [
        16, 20, 4, 35, 16]
    assert res[0].description == "struct task_struct.pid"
    assert res[3].description == "struct task_struct.comm[3]"
    assert res[0].target is not None and "struct task_struct.pid" in res[0].target
    assert res[0].target_type_id == T.task and res[0].candidates == 1
    assert str(res[0]) == "insn 0: <byte_off> struct task_struct.pid: 0 -> 16"
    assert not any(r.poisoned for r in res)


def test_root_index(L: Local, T: Target) -> None:
    """&p[2].tgid: the root index scales with the target's struct size."""
    insns = [mov(2 * 40 + 4)]
    res = run(insns, [(0, relo(L.task, "2:1", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)
    assert insns[0].imm == 2 * 96 + 20
    assert res[0].description == "struct task_struct[2].tgid"


def test_field_size_exists_signed(L: Local, T: Target) -> None:
    insns = [mov(4), mov(16), mov(1), mov(1), mov(0), mov(1), mov(2), mov(1)]
    relos = [(0, relo(L.task, "0:0", K.FIELD_BYTE_SIZE)),
             (1, relo(L.task, "0:4", K.FIELD_BYTE_SIZE)),
             (2, relo(L.task, "0:0", K.FIELD_EXISTS)),
             (3, relo(L.task_old, "0:0", K.FIELD_EXISTS)),
             (4, relo(L.task, "0:2", K.FIELD_SIGNED)),
             (5, relo(L.task, "0:0", K.FIELD_SIGNED)),
             (6, relo(L.task, "0:3", K.FIELD_BYTE_SIZE)),
             (7, relo(L.task, "0:4:1", K.FIELD_BYTE_SIZE))]
    res = run(insns, relos, L.spec, [T.spec])
    assert [i.imm for i in insns] == [4, 16, 1, 0, 0, 1, 4, 1]
    assert not res[3].poisoned and res[3].target is None  # exists = 0 is an answer


def test_bitfields(L: Local, T: Target) -> None:
    """libbpf's rules: the smallest naturally aligned load holding the bits."""
    # local x: 5 bits at bit 3 of a u32: byte_off 0, size 4, lshift 56, rshift 59
    # target x: 5 bits at bit 30 -> straddles a u32: 8-byte load, lshift 29, rshift 59
    insns = [mov(0), mov(4), mov(56), mov(59), mov(0), mov(1), mov(52), mov(60)]
    relos = [(0, relo(L.bits, "0:1", K.FIELD_BYTE_OFFSET)),
             (1, relo(L.bits, "0:1", K.FIELD_BYTE_SIZE)),
             (2, relo(L.bits, "0:1", K.FIELD_LSHIFT_U64)),
             (3, relo(L.bits, "0:1", K.FIELD_RSHIFT_U64)),
             (4, relo(L.bits, "0:1", K.FIELD_SIGNED)),
             (5, relo(L.bits, "0:2", K.FIELD_SIGNED)),
             (6, relo(L.bits, "0:2", K.FIELD_LSHIFT_U64)),
             (7, relo(L.bits, "0:2", K.FIELD_RSHIFT_U64))]
    res = run(insns, relos, L.spec, [T.spec])
    # target s: 4 bits at bit 35 of an int: byte_off 4, 4 bytes, lshift 64-(35+4-32)=57
    assert [i.imm for i in insns] == [0, 8, 29, 59, 0, 1, 57, 60]
    assert res[0].target is not None and "@ offset 3.6" in res[0].target


def test_bitfield_values_are_not_validated(L: Local, T: Target) -> None:
    """Like libbpf, a bitfield's offset/size/lshift are not checked against the
    instruction (the compiler may pick another load), but signed/rshift are."""
    insns = [mov(123), mov(0)]
    run(insns, [(0, relo(L.bits, "0:1", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)
    assert insns[0].imm == 0
    with pytest.raises(CoreError, match=r"struct bits\.x"):
        run([mov(5)], [(0, relo(L.bits, "0:1", K.FIELD_RSHIFT_U64))], L.spec, T.spec)


def test_arrays(L: Local, T: Target) -> None:
    insns = [mov(4 + 3 * 4), mov(4), mov(4 + 12)]
    relos = [(0, relo(L.arrs, "0:1:3", K.FIELD_BYTE_OFFSET)),
             (1, relo(L.arrs, "0:1:3", K.FIELD_BYTE_SIZE)),
             (2, relo(L.arrs, "0:1:3", K.FIELD_BYTE_OFFSET))]
    res = run(insns, relos, L.spec, T.spec)
    assert [i.imm for i in insns] == [12 + 12, 4, 24]
    assert res[0].description == "struct arrs.a[3]"
    # an index beyond the target's bound does not match: the load is poisoned
    b = RawBTF()
    i = b.int("int", 4, True)
    idx = b.int("__ARRAY_SIZE_TYPE__", 4)
    b.struct("arrs", 12, [("n", i, 0, 0), ("a", b.array(i, 2, idx), 32, 0)])
    res = run([mov(16)], [(0, relo(L.arrs, "0:1:3", K.FIELD_BYTE_OFFSET))], L.spec, b.spec())
    assert res[0].poisoned and "field not found" in (res[0].reason or "")
    # an array element has no signedness
    with pytest.raises(CoreError, match="array element"):
        run([mov(1)], [(0, relo(L.arrs, "0:1:3", K.FIELD_SIGNED))], L.spec, T.spec)


def test_flexible_array(L: Local, T: Target) -> None:
    insns = [mov(4 + 40)]
    run(insns, [(0, relo(L.flex, "0:1:10", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)
    assert insns[0].imm == 8 + 40


def test_anonymous_members(L: Local, T: Target) -> None:
    insns = [mov(0), ldx(LDX_W, 0)]
    res = run(insns, [(0, relo(L.anon, "0:0", K.FIELD_BYTE_OFFSET)),
                      (1, relo(L.anon, "0:0", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)
    assert insns[0].imm == 8 and insns[1].off == 8
    assert res[0].target is not None and "(0:1:0 @ offset 8)" in res[0].target


def test_load_size_adjustment(L: Local, T: Target) -> None:
    """A u16 field that became u32: the load is widened (unsigned values keep
    their value); a signed one cannot be and is poisoned."""
    insns = [ldx(LDX_H, 12), ldx(LDX_H, 32)]
    insns[0].meta = {"line": "x"}
    res = run(insns, [(0, relo(L.task, "0:3", K.FIELD_BYTE_OFFSET)),
                      (1, relo(L.task, "0:5", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)
    assert (insns[0].opcode, insns[0].off) == (LDX_W, 8)
    assert insns[1].opcode == CALL and insns[1].imm == POISON_IMM
    assert res[1].poisoned and "size" in (res[1].reason or "")
    # wrong access size for the local field
    with pytest.raises(CoreError, match="memory access size"):
        run([ldx(LDX_B, 12)], [(0, relo(L.task, "0:3", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)


def test_poison_keeps_symbol_and_meta(L: Local, T: Target) -> None:
    ins = ldx(LDX_DW, 0)
    ins.symbol, ins.meta = "prog", {"func": "f"}
    res = run([ins], [(0, relo(L.task_old, "0:0", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)
    assert (ins.opcode, ins.dst, ins.src, ins.off, ins.imm) == (CALL, 0, 0, 0, POISON_IMM)
    assert ins.symbol == "prog" and ins.meta == {"func": "f"}
    assert res[0].poisoned
    assert res[0].reason == f"field not found in [{T.task}] struct task_struct in vmlinux"


def test_poison_ld_imm64_grows_list(L: Local, T: Target) -> None:
    b = RawBTF()
    b.enum("colors", [("RED", 5)])
    insns = [ld64(2), Instruction(JA, 0, 0, 1, 0), mov(0), ld64(1)]
    res = run(insns, [(0, relo(L.e, "2", K.ENUMVAL_VALUE)),
                      (2, relo(L.e, "0", K.ENUMVAL_VALUE)),
                      (3, relo(L.e, "2", K.ENUMVAL_EXISTS))], L.spec, b.spec())
    assert len(insns) == 5
    assert [(i.opcode, i.imm) for i in insns[:2]] == [(CALL, POISON_IMM)] * 2
    assert insns[3].imm == 5 and insns[4].imm == 0
    assert [r.slot for r in res] == [0, 3, 4]
    assert res[0].reason == "enum value not found in [1] enum colors in vmlinux"
    assert len(asm.encode(insns)) == 6 * 8  # same slots as before


def test_enum_values(L: Local, T: Target) -> None:
    insns = [ld64(0), mov(1), ld64(2), mov(1), ld64(0xF0000000), ld64(1 << 40), ld64(-1)]
    relos = [(0, relo(L.e, "0", K.ENUMVAL_VALUE)),
             (1, relo(L.e, "1", K.ENUMVAL_EXISTS)),
             (2, relo(L.e, "2", K.ENUMVAL_VALUE)),  # BLUE___v2 matches BLUE
             (3, relo(L.e, "0", K.ENUMVAL_EXISTS)),
             (4, relo(L.e_uns, "0", K.ENUMVAL_VALUE)),
             (5, relo(L.e64, "0", K.ENUMVAL_VALUE)),
             (6, relo(L.e_neg, "0", K.ENUMVAL_VALUE))]
    res = run(insns, relos, L.spec, T.spec)
    assert [i.imm for i in insns] == [5, 0, 7, 1, 0xF0000001, 1 << 41, -2]
    assert res[2].description == "enum colors::BLUE___v2"
    assert res[6].target_value == (1 << 64) - 2


def test_type_relocations(L: Local, T: Target) -> None:
    insns = [mov(1), mov(40), mov(1), mov(4), ld64(L.task), ld64(L.task), mov(1), mov(4),
             ld64(L.missing), mov(1), mov(1), ld64(L.pid_t)]
    relos = [(0, relo(L.task, "0", K.TYPE_EXISTS)),
             (1, relo(L.task, "0", K.TYPE_SIZE)),
             (2, relo(L.pid_t, "0", K.TYPE_EXISTS)),
             (3, relo(L.pid_t, "0", K.TYPE_SIZE)),
             (4, relo(L.task, "0", K.TYPE_ID_LOCAL)),
             (5, relo(L.task, "0", K.TYPE_ID_TARGET)),
             (6, relo(L.missing, "0", K.TYPE_EXISTS)),
             (7, relo(L.missing, "0", K.TYPE_SIZE)),
             (8, relo(L.missing, "0", K.TYPE_ID_TARGET)),
             (9, relo(L.good, "0", K.TYPE_MATCHES)),
             (10, relo(L.bad, "0", K.TYPE_MATCHES)),
             (11, relo(L.pid_t, "0", K.TYPE_ID_TARGET))]
    res = run(insns, relos, L.spec, T.spec)
    assert [i.imm for i in insns] == [1, 96, 1, 4, L.task, T.task, 0, 0, 0, 1, 0, T.pid_t]
    assert res[1].description == "struct task_struct"
    assert res[2].description == "typedef pid_t"
    assert not any(r.poisoned for r in res)


def test_type_matches_rules() -> None:
    def matches(build_local: object, build_target: object) -> int:
        lb, tb = RawBTF(), RawBTF()
        lid = build_local(lb)  # type: ignore[operator]
        build_target(tb)  # type: ignore[operator]
        insns = [mov(1)]
        run(insns, [(0, relo(lid, "0", K.TYPE_MATCHES))], lb.spec(), tb.spec())
        return insns[0].imm

    def s_int(b: RawBTF, signed: bool = True, size: int = 4, name: str = "s") -> int:
        return b.struct(name, 8, [("v", b.int("int", size, signed), 0, 0)])

    assert matches(s_int, s_int) == 1
    assert matches(s_int, lambda b: s_int(b, signed=False)) == 0
    assert matches(s_int, lambda b: s_int(b, size=8)) == 0
    # members are found by name, in any order; the target may have more
    assert matches(lambda b: b.struct("s", 4, [("v", b.int("int", 4, True), 0, 0)]),
                   lambda b: b.struct("s", 8, [("w", b.int("int", 4), 0, 0),
                                               ("v", b.int("int", 4, True), 32, 0)])) == 1
    # a struct behind a pointer matches a forward declaration
    def s_ptr_struct(b: RawBTF) -> int:
        p = b.ptr(b.struct("t", 4, []))
        return b.struct("s", 8, [("p", p, 0, 0)])

    def s_ptr_fwd(b: RawBTF) -> int:
        p = b.ptr(b.fwd("t"))
        return b.struct("s", 8, [("p", p, 0, 0)])

    def s_ptr_union_fwd(b: RawBTF) -> int:
        p = b.ptr(b.fwd("t", union=True))
        return b.struct("s", 8, [("p", p, 0, 0)])

    assert matches(s_ptr_struct, s_ptr_fwd) == 1
    assert matches(s_ptr_struct, s_ptr_union_fwd) == 0
    # enums: every local name must exist in the target, values do not matter
    assert matches(lambda b: b.enum("e", [("A", 1)]), lambda b: b.enum("e", [("B", 0),
                                                                             ("A", 9)])) == 1
    assert matches(lambda b: b.enum("e", [("C", 1)]), lambda b: b.enum("e", [("A", 1)])) == 0
    # arrays: same number of elements
    assert matches(lambda b: b.struct("s", 8, [("a", b.array(b.int("int", 4), 2,
                                                             b.int("i", 4)), 0, 0)]),
                   lambda b: b.struct("s", 12, [("a", b.array(b.int("int", 4), 3,
                                                              b.int("i", 4)), 0, 0)])) == 0


def test_flavors_and_target_flavors(L: Local) -> None:
    b = RawBTF()
    i = b.int("long", 8, True)
    tid = b.struct("task_struct___2", 16, [("x", i, 0, 0), ("state", i, 64, 0)])
    insns = [mov(0)]
    res = run(insns, [(0, relo(L.task_old, "0:0", K.FIELD_BYTE_OFFSET))], L.spec, b.spec())
    assert insns[0].imm == 8 and res[0].target_type_id == tid


def _two_candidates(second_member: tuple[str, int, int, int] | None, size2: int = 8,
                    long_a: bool = False) -> btf.Spec:
    b = RawBTF()
    i = b.int("int", 4, True)
    lng = b.int("long", 8, True)
    b.struct("foo", 8, [("a", i, 0, 0), ("b", i, 32, 0)])
    members = [("a", lng if long_a else i, 0, 0)]
    if second_member:
        members.append(second_member)
    b.struct("foo___v2", size2, members)
    return b.spec()


def test_ambiguity(L: Local) -> None:
    target = _two_candidates(("b", 1, 64, 0))  # b at a different offset
    with pytest.raises(CoreError, match=r"field offset ambiguity.*struct foo\.b"):
        run([mov(4)], [(0, relo(L.foo, "0:1", K.FIELD_BYTE_OFFSET))], L.spec, target)
    target = _two_candidates(None, long_a=True)  # same offset, different size
    with pytest.raises(CoreError, match=r"relocation decision ambiguity: success 4 .*"
                                        r"!= success 8"):
        run([mov(4)], [(0, relo(L.foo, "0:0", K.FIELD_BYTE_SIZE))], L.spec, target)
    target = _two_candidates(("b", 1, 32, 0))  # identical: fine
    insns = [mov(4)]
    res = run(insns, [(0, relo(L.foo, "0:1", K.FIELD_BYTE_OFFSET))], L.spec, target)
    assert insns[0].imm == 4 and res[0].candidates == 2
    # type sizes differ between the candidates
    target = _two_candidates(None, size2=16)
    with pytest.raises(CoreError, match="decision ambiguity"):
        run([mov(8)], [(0, relo(L.foo, "0", K.TYPE_SIZE))], L.spec, target)


def test_candidate_pruning(L: Local) -> None:
    """As libbpf: candidates that fail to match are dropped for the object's
    later relocations of the same local type."""
    target = _two_candidates(None)  # foo___v2 has no b
    cache = CoreCache()
    insns = [mov(0), mov(4), mov(0)]
    run(insns[:1], [(0, relo(L.foo, "0:0", K.FIELD_BYTE_OFFSET))], L.spec, target, cache=cache)
    assert len(cache.cands[L.foo]) == 2
    res = run(insns[1:2], [(0, relo(L.foo, "0:1", K.FIELD_BYTE_OFFSET))], L.spec, target,
              cache=cache)
    assert res[0].candidates == 1 and len(cache.cands[L.foo]) == 1
    # a different target list resets the cache
    run(insns[2:], [(0, relo(L.foo, "0:0", K.FIELD_BYTE_OFFSET))], L.spec, [target, target],
        cache=cache)
    assert len(cache.cands[L.foo]) == 2


def test_relocating_again_reuses_the_decisions(L: Local,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading an object again (a template with new constants) does not match types
    again: the cache remembers each relocation's outcome, and the result is the same,
    poisoning included."""
    target = _two_candidates(None)  # foo___v2 has no b
    cache = CoreCache()
    relos = [(0, relo(L.foo, "0:0", K.FIELD_BYTE_OFFSET)), (1, relo(L.foo, "0:1", K.FIELD_EXISTS)),
             (2, relo(L.missing, "0:0", K.FIELD_BYTE_OFFSET))]       # poisoned

    def program() -> list[Instruction]:
        return [mov(0), mov(1), mov(0)]

    first_insns = program()
    first = run(first_insns, relos, L.spec, target, cache=cache)
    import ebpf.btf.core as core_mod

    def no_matching(*a: object, **k: object) -> None:
        raise AssertionError("matched again")

    monkeypatch.setattr(core_mod, "_candidates", no_matching)
    monkeypatch.setattr(core_mod, "_land", no_matching)
    again_insns = program()
    again = run(again_insns, relos, L.spec, target, cache=cache)
    def fields(results: list[CoreResult]) -> list[tuple[object, ...]]:
        return [tuple(getattr(r, f) for f in CoreResult.__slots__) for r in results]

    assert fields(again) == fields(first)
    assert first[2].poisoned and not first[0].poisoned
    assert [(i.opcode, i.off, i.imm) for i in again_insns] == \
        [(i.opcode, i.off, i.imm) for i in first_insns]
    # an instruction that does not hold what the compiler put there still fails
    with pytest.raises(CoreError, match="at instruction 0"):
        run([mov(3), mov(1), mov(0)], relos, L.spec, target, cache=cache)


def test_cache_keeps_no_btf_alive() -> None:
    """A CoreCache kept under the target or the object's BTF (as the program loader
    keeps it) lets both die: it refers to them weakly, its contents by plain values."""
    import gc
    import weakref

    local, target = Local(), Target()
    cache = CoreCache()
    by_target: weakref.WeakKeyDictionary[btf.Spec, CoreCache] = weakref.WeakKeyDictionary()
    by_target[target.spec] = cache
    relos = [(0, relo(local.task, "0:0", K.FIELD_BYTE_OFFSET)),
             (1, relo(local.missing, "0:0", K.FIELD_BYTE_OFFSET))]
    res = run([mov(0), mov(0)], relos, local.spec, target.spec, cache=cache)
    assert not res[0].poisoned and res[1].poisoned and cache.decisions
    specs = weakref.ref(local.spec), weakref.ref(target.spec)
    del local, target, res
    gc.collect()
    assert [s() for s in specs] == [None, None] and not by_target


def _split(base: RawBTF, base_spec: btf.Spec, build: object) -> btf.Spec:
    """A module BTF split on top of `base`."""
    b = RawBTF()
    b.records = []
    b.strings = bytearray()
    b._offs = {"": 0}
    nbase = len(base.records) + 1
    str_base = len(base.strings)
    orig_str = b.str

    def s(name: str) -> int:
        if name in b._offs:
            return b._offs[name]
        off = str_base + len(b.strings)
        b._offs[name] = off
        b.strings += name.encode() + b"\0"
        return off

    b.str = s  # type: ignore[method-assign]
    del orig_str
    build(b, nbase)  # type: ignore[operator]
    return btf.Spec(b.encode(), base_spec)


def test_module_targets(L: Local) -> None:
    base = RawBTF()
    i = base.int("int", 4, True)
    base.struct("foo", 8, [("a", i, 32, 0), ("b", i, 0, 0)])
    vmlinux = base.spec()

    def build(b: RawBTF, first: int) -> None:
        b.struct("modty", 12, [("pad", i, 0, 0), ("x", i, 32, 0), ("y", i, 64, 0)])
        b.struct("foo", 8, [("a", i, 0, 0), ("b", i, 32, 0)])  # shadowed by vmlinux's

    module = _split(base, vmlinux, build)
    insns = [mov(4), mov(0)]
    res = run(insns, [(0, relo(L.modty, "0:1", K.FIELD_BYTE_OFFSET)),
                      (1, relo(L.foo, "0:0", K.FIELD_BYTE_OFFSET))], L.spec, [vmlinux, module],
              target_names=["vmlinux", "mymod"])
    assert insns[0].imm == 8 and res[0].target is not None and "in mymod" in res[0].target
    assert res[0].target_type_id == 3  # the first id after vmlinux's
    assert insns[1].imm == 4 and res[1].target is not None and "in vmlinux" in res[1].target


def test_errors_name_the_relocation(L: Local, T: Target) -> None:
    insns = [mov(4), ldx(LDX_W, 4)]
    before = [i.copy() for i in insns]
    with pytest.raises(CoreError, match=r"#1 <byte_off> of struct task_struct\.pid at "
                                        r"instruction 1: unexpected LDX"):
        run(insns, [(0, relo(L.task, "0:1", K.FIELD_BYTE_OFFSET)),
                    (1, relo(L.task, "0:0", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)
    assert insns == before  # nothing is patched when a relocation fails
    with pytest.raises(CoreError, match="unexpected ALU"):
        run([mov(99)], [(0, relo(L.task, "0:1", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)
    with pytest.raises(CoreError, match="register operand"):
        run([Instruction(ADD_REG, 1, 2)], [(0, relo(L.task, "0:1", K.FIELD_BYTE_OFFSET))],
            L.spec, T.spec)
    with pytest.raises(CoreError, match="cannot relocate instruction with opcode 0x05"):
        run([Instruction(JA)], [(0, relo(L.task, "0:0", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)
    with pytest.raises(CoreError, match="anonymous"):
        run([mov(0)], [(0, relo(L.anon_struct, "0:0", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)
    with pytest.raises(CoreError, match=r"cannot parse.*no member #9"):
        run([mov(0)], [(0, relo(L.task, "0:9", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)
    with pytest.raises(CoreError, match=r"cannot parse.*expected '0'"):
        run([mov(0)], [(0, relo(L.task, "1", K.TYPE_SIZE))], L.spec, T.spec)
    with pytest.raises(CoreError, match=r"cannot parse.*bad access string"):
        run([mov(0)], [(0, relo(L.task, "0:x", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)
    with pytest.raises(CoreError, match="beyond the program"):
        run([mov(0)], [(3, relo(L.task, "0:0", K.FIELD_BYTE_OFFSET))], L.spec, T.spec)
    with pytest.raises(CoreError, match="does not fit in 16 bits"):
        b = RawBTF()
        i = b.int("int", 4, True)
        b.struct("task_struct", 1 << 16, [("pid", i, 40000 * 8, 0)])
        run([ldx(LDX_W, 0)], [(0, relo(L.task, "0:0", K.FIELD_BYTE_OFFSET))], L.spec,
            b.spec())
    with pytest.raises(CoreError, match="needs a target BTF"):
        run([mov(0)], [], L.spec, [])
    assert issubclass(CoreError, BTFError)


def test_index_relos() -> None:
    insns = [mov(0), ld64(1), mov(2)]
    r = [CoreRelo(0, 1, "0", K.TYPE_EXISTS), CoreRelo(8, 1, "0", K.TYPE_EXISTS),
         CoreRelo(24, 1, "0", K.TYPE_EXISTS)]
    assert [i for i, _ in core.index_relos(insns, r)] == [0, 1, 2]
    with pytest.raises(CoreError, match="byte offset 16 in section 'x'"):
        core.index_relos(insns, [CoreRelo(16, 1, "0", K.TYPE_EXISTS)], "x")


def test_relocate_instructions(L: Local, T: Target) -> None:
    insns = [mov(0), ldx(LDX_DW, 0), Instruction(0x95)]
    insns[0].meta = {"core": relo(L.task, "0:0", K.FIELD_BYTE_OFFSET)}
    insns[1].meta = {"core": relo(L.task_old, "0:0", K.FIELD_BYTE_OFFSET), "line": "l"}
    results: list[CoreResult] = []
    out = core.relocate_instructions(insns, T.spec, local=L.spec, results=results)
    assert out[0].imm == 16 and insns[0].imm == 0  # the input is untouched
    assert out[1].imm == POISON_IMM and out[1].meta == insns[1].meta
    assert out[2] is insns[2]
    assert [r.poisoned for r in results] == [False, True]


def test_explain_poison() -> None:
    r = CoreResult(0, 7, K.FIELD_BYTE_OFFSET, 5, "0:0", "struct task_struct___old.state",
                   0, 0, poisoned=True, reason="field not found in [114] struct task_struct")
    ok = CoreResult(0, 3, K.FIELD_BYTE_OFFSET, 5, "0:1", "struct task_struct.pid", 0, 4)
    log = ("0: R1=ctx() R10=fp0\n6: (bf) r3 = r0\n7: (85) call unknown#195896080\n"
           "invalid func unknown#195896080\nprocessed 8 insns\n")
    msg = core.explain_poison(log, [ok, r])
    assert msg is not None
    assert msg.startswith("instruction 7: unguarded CO-RE relocation failed: <byte_off> "
                          "struct task_struct___old.state: field not found")
    assert "bpf_core_field_exists()" in msg
    assert core.explain_poison("R1 invalid mem access 'scalar'\n", [r]) is None
    # the code moved: list every failed relocation
    moved = core.explain_poison(log.replace("7:", "9:"), [ok, r])
    assert moved is not None and "insn 7: <byte_off> struct task_struct___old.state" in moved


_LOCAL = Local()
_TARGET = Target()


@settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(
    st.sampled_from(list(CoreReloKind)),
    st.integers(0, 40),
    st.one_of(st.sampled_from(["0", "1", "0:0", "0:1", "0:4:3", "0:1:9", "2", "0:0:0", ""]),
              st.lists(st.integers(-2, 20), min_size=1, max_size=5).map(
                  lambda xs: ":".join(map(str, xs)))),
    st.sampled_from([MOV_IMM, ADD_IMM, LDX_W, LDX_H, LDX_DW, ST_W, STX_W, LD_IMM64, JA,
                     ADD_REG]),
    st.integers(-(1 << 31), (1 << 31) - 1)), min_size=1, max_size=6))
def test_fuzz_relocations(cases: list[tuple[CoreReloKind, int, str, int, int]]) -> None:
    """Arbitrary relocations either apply or raise CoreError, nothing else."""
    insns = [Instruction(op, 1, 2, imm & 0x7FFF, imm) for _, _, _, op, imm in cases]
    relos = [(i, relo(tid, access, kind)) for i, (kind, tid, access, _, _) in enumerate(cases)]
    try:
        res = run(insns, relos, _LOCAL.spec, [_TARGET.spec])
    except CoreError:
        return
    assert len(res) == len(cases)


# -- against the running kernel and libbpf -----------------------------------------

VMLINUX = "/sys/kernel/btf/vmlinux"


def _need_tools() -> None:
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is missing")
    for tool in ("clang-19", "bpftool"):
        need_tool(tool)


def compile_core(name: str) -> Path:
    """tests/bpf/<name>.c, built against tests/bpf/core_types.h: the same object on
    every kernel."""
    _need_tools()
    from bpfbuild import compile_bpf

    return compile_bpf(name)


class Obj:
    """The pieces of a compiled object the engine needs."""

    def __init__(self, path: Path) -> None:
        from ebpf.elf import ELFFile

        self.path = path
        elf = ELFFile(path.read_bytes())
        self.local = btf.Spec(bytes(elf.section_by_name(".BTF").data()))  # type: ignore[union-attr]
        ext_sec = elf.section_by_name(".BTF.ext")
        assert ext_sec is not None
        self.ext = parse_ext(bytes(ext_sec.data()), self.local)
        self.code = {sec: bytes(elf.section_by_name(sec).data())  # type: ignore[union-attr]
                     for sec in self.ext.func_infos if sec != ".text"}

    def relocate(self, targets: Sequence[btf.Spec] | btf.Spec,
                 cache: CoreCache | None = None
                 ) -> tuple[dict[str, list[Instruction]], dict[str, list[CoreResult]]]:
        cache = cache or CoreCache()
        out, results = {}, {}
        for sec, code in self.code.items():
            insns = asm.decode(code)
            relos = core.index_relos(insns, self.ext.core_relos.get(sec, []), sec)
            results[sec] = core.relocate(insns, relos, self.local, targets, cache=cache)
            out[sec] = insns
        return out, results


class _OpenOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("object_name", ctypes.c_char_p),
                ("relaxed_maps", ctypes.c_bool), ("pin_root_path", ctypes.c_char_p),
                ("_unused", ctypes.c_uint32), ("kconfig", ctypes.c_char_p),
                ("btf_custom_path", ctypes.c_char_p), ("kernel_log_buf", ctypes.c_char_p),
                ("kernel_log_size", ctypes.c_size_t), ("kernel_log_level", ctypes.c_uint32)]


def _libbpf() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libbpf.so.1")
    except OSError:
        need_tool("libbpf.so.1 (libbpf-dev)", present=False)  # fails the test
        raise
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    for name, res, args in (
            ("bpf_object__open_file", vp, [cp, ctypes.POINTER(_OpenOpts)]),
            ("bpf_object__load", ctypes.c_int, [vp]),
            ("bpf_object__close", None, [vp]),
            ("bpf_object__next_program", vp, [vp, vp]),
            ("bpf_program__section_name", cp, [vp]),
            ("bpf_program__insns", vp, [vp]),
            ("bpf_program__insn_cnt", ctypes.c_size_t, [vp]),
            ("libbpf_set_print", vp, [vp])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    lib.libbpf_set_print(None)
    return lib


def libbpf_relocate(path: Path, btf_custom_path: str | None = None
                    ) -> tuple[int, dict[str, bytes]]:
    """(bpf_object__load's result, each program's instructions after libbpf's
    relocation) -- libbpf keeps them, relocated, even when loading fails."""
    lib = _libbpf()
    opts = _OpenOpts(sz=ctypes.sizeof(_OpenOpts))
    if btf_custom_path:
        opts.btf_custom_path = btf_custom_path.encode()
    obj = lib.bpf_object__open_file(str(path).encode(), ctypes.byref(opts))
    assert obj, "libbpf could not open the object"
    try:
        err = lib.bpf_object__load(obj)
        out = {}
        prog = None
        while True:
            prog = lib.bpf_object__next_program(obj, prog)
            if not prog:
                break
            n = lib.bpf_program__insn_cnt(prog)
            out[lib.bpf_program__section_name(prog).decode()] = ctypes.string_at(
                lib.bpf_program__insns(prog), n * 8)
        return err, out
    finally:
        lib.bpf_object__close(obj)


def assert_same_as_libbpf(ours: dict[str, list[Instruction]], theirs: dict[str, bytes]) -> int:
    """Every instruction equal, except map loads (libbpf has put fds in them)."""
    assert set(ours) == set(theirs)
    compared = 0
    for sec, insns in ours.items():
        mine, ref = asm.encode(insns), theirs[sec]
        assert len(mine) == len(ref), sec
        slot = 0
        for ins in insns:
            n = 16 if ins.opcode == LD_IMM64 else 8
            a, b = mine[slot * 8 : slot * 8 + n], ref[slot * 8 : slot * 8 + n]
            # map loads: the ELF relocation (which we do not apply) sets src, libbpf an fd
            if not (ins.opcode == LD_IMM64 and b[1] >> 4 in (1, 2, 5, 6)):
                assert a == b, f"{sec} slot {slot}: ours {a.hex()} libbpf {b.hex()} ({ins})"
                compared += 1
            slot += n // 8
    return compared


@pytest.fixture(scope="module")
def kernel() -> btf.Spec:
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is missing")
    return btf.load_kernel_spec()


@pytest.fixture(scope="module")
def fields_obj() -> Obj:
    return Obj(compile_core("core_fields"))


@pytest.mark.kernel
def test_core_fields_matches_libbpf(fields_obj: Obj, kernel: btf.Spec) -> None:
    ours, results = fields_obj.relocate(core.kernel_targets())
    res = results["raw_tp/sys_enter"]
    assert len(res) > 50 and not any(r.poisoned for r in res)
    by_desc = {(r.kind, r.description): r for r in res}
    # a few values that must follow the kernel, not vmlinux.h at compile time
    ts = kernel.type_by_name("task_struct", btf.Struct)
    pid = ts.member("pid")
    assert by_desc[(K.FIELD_BYTE_OFFSET, "struct task_struct.pid")].target_value == pid.offset
    assert by_desc[(K.TYPE_SIZE, "struct task_struct")].target_value == ts.size
    assert by_desc[(K.TYPE_ID_TARGET, "struct task_struct")].target_value == kernel.type_id(ts)
    assert by_desc[(K.FIELD_EXISTS, "struct task_struct___old.state")].target_value == 0
    assert by_desc[(K.FIELD_BYTE_OFFSET, "struct task_struct___u16.flags")].target_value == (
        ts.member("flags").offset)
    err, theirs = libbpf_relocate(fields_obj.path)
    assert err == 0, "libbpf failed to load core_fields.o"
    assert assert_same_as_libbpf(ours, theirs) > 200


def _mount_bpffs() -> None:
    with open("/proc/self/mounts") as f:
        if any(ln.split()[1:3] == ["/sys/fs/bpf", "bpf"] for ln in f):
            return
    os.makedirs("/sys/fs/bpf", exist_ok=True)
    subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True)


@pytest.mark.kernel
def test_core_fields_matches_xlated(fields_obj: Obj) -> None:
    """The kernel's view of the libbpf-loaded program: every CO-RE relocated
    instruction has our offset/immediate (and access size)."""
    if os.geteuid() != 0:
        pytest.skip("loading programs needs root")
    _mount_bpffs()
    pin = f"/sys/fs/bpf/ebpf-core-{uuid.uuid4().hex[:12]}"
    proc = subprocess.run(["bpftool", "prog", "loadall", str(fields_obj.path), pin],
                          capture_output=True, text=True)
    try:
        assert proc.returncode == 0, proc.stderr
        show = json.loads(subprocess.run(
            ["bpftool", "-j", "prog", "show", "pinned", f"{pin}/core_fields"],
            capture_output=True, text=True, check=True).stdout)
        xlated = json.loads(subprocess.run(
            ["bpftool", "-j", "prog", "dump", "xlated", "id", str(show["id"]), "opcodes"],
            capture_output=True, text=True, check=True).stdout)
    finally:
        shutil.rmtree(pin, ignore_errors=True)
    ours, results = fields_obj.relocate(core.kernel_targets())
    insns = ours["raw_tp/sys_enter"]
    relocated = {r.index for r in results["raw_tp/sys_enter"]}
    kernel_insns = [_from_opcodes(x["opcodes"]) for x in xlated]  # one per instruction
    assert len(kernel_insns) == len(insns), "the verifier changed the instruction count"
    for i in sorted(relocated):
        k, ins = kernel_insns[i], insns[i]
        assert (k.opcode, k.dst, k.src, k.off, k.imm) == (
            ins.opcode, ins.dst, ins.src, ins.off, ins.imm), f"instruction {i}: {k} != {ins}"
    assert len(relocated) > 50


def _from_opcodes(op: dict[str, object]) -> Instruction:
    """bpftool's ``opcodes`` json: {"code": "0x61", "src_reg": "0x2", "dst_reg": "0x1",
    "off": ["0xf0", "0x04"], "imm": [4 bytes, or 12 for a 64-bit load]}."""
    def raw(key: str) -> bytes:
        return bytes(int(str(b), 16) for b in op[key])  # type: ignore[attr-defined]

    imm = raw("imm")
    value = int.from_bytes(imm[:4], "little", signed=len(imm) == 4)
    if len(imm) == 12:
        value = int.from_bytes(imm[:4] + imm[8:12], "little", signed=True)
    return Instruction(int(str(op["code"]), 16), int(str(op["dst_reg"]), 16),
                       int(str(op["src_reg"]), 16),
                       int.from_bytes(raw("off"), "little", signed=True), value)


def load_raw(insns: list[Instruction], name: str = "core_test") -> tuple[int, str]:
    """BPF_PROG_LOAD a raw tracepoint program; (fd or -errno, verifier log)."""
    from ebpf._sys.syscall import bpf_errno
    from ebpf._sys.types import Cmd, ProgLoadAttr, ProgramType

    code = asm.encode(insns)
    buf = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 20)
    attr = ProgLoadAttr()
    attr.prog_type = ProgramType.RAW_TRACEPOINT
    attr.insn_cnt = len(code) // 8
    attr.insns = ctypes.addressof(buf)
    attr.license = ctypes.addressof(lic)
    attr.log_level = 1
    attr.log_size = len(log)
    attr.log_buf = ctypes.addressof(log)
    for i, c in enumerate(name.encode()[:15]):
        attr.prog_name[i] = c
    fd = bpf_errno(Cmd.PROG_LOAD, attr)
    if fd >= 0:
        os.close(fd)
    return fd, log.value.decode(errors="replace")


@pytest.mark.kernel
def test_guarded_relocations_load(kernel: btf.Spec) -> None:
    obj = Obj(compile_core("core_guarded"))
    ours, results = obj.relocate(core.kernel_targets())
    assert len(ours) == 5
    poisoned = {sec: [r for r in res if r.poisoned] for sec, res in results.items()}
    assert all(poisoned.values()), "every program has a relocation that cannot be satisfied"
    enum = ours["raw_tp/sys_exit"]
    assert any(i.imm == POISON_IMM for i in enum)
    err, theirs = libbpf_relocate(obj.path)
    assert err == 0, "libbpf failed to load core_guarded.o"
    assert_same_as_libbpf(ours, theirs)
    if os.geteuid() != 0:
        pytest.skip("loading programs needs root")
    for sec, insns in ours.items():
        fd, log = load_raw(insns)
        assert fd >= 0, f"{sec}: {log}"


@pytest.mark.kernel
def test_unguarded_relocations_fail_with_explanation(kernel: btf.Spec) -> None:
    obj = Obj(compile_core("core_unguarded"))
    ours, results = obj.relocate(core.kernel_targets())
    err, theirs = libbpf_relocate(obj.path)
    assert err != 0
    assert_same_as_libbpf(ours, theirs)
    if os.geteuid() != 0:
        pytest.skip("loading programs needs root")
    expect = {
        "raw_tp/sys_enter": ("struct task_struct___old.state", "bpf_core_field_exists()"),
        "raw_tp/sys_exit": ("struct task_struct___short.pid", "size changed"),
        "raw_tp/sched_switch": ("enum bpf_map_type___local::BPF_MAP_TYPE_NOT_THERE___local",
                                "bpf_core_enum_value_exists()"),
    }
    for sec, insns in ours.items():
        fd, log = load_raw(insns)
        assert fd == -errno.EINVAL, f"{sec} loaded"
        assert f"invalid func unknown#{POISON_IMM}" in log
        msg = core.explain_poison(log, results[sec])
        assert msg is not None
        what, hint = expect[sec]
        assert what in msg and hint in msg, msg


@pytest.mark.kernel
def test_kernel_ambiguity(kernel: btf.Spec) -> None:
    """struct nf_conn and struct nf_conn___init are both candidates for a type
    id relocation of struct nf_conn: libbpf and ebpf both refuse."""
    if not kernel.ids_by_name("nf_conn___init"):
        pytest.skip("this kernel has no struct nf_conn___init")
    obj = Obj(compile_core("core_ambiguous"))
    with pytest.raises(CoreError, match=r"decision ambiguity.*struct nf_conn___init"):
        obj.relocate(core.kernel_targets())
    err, _ = libbpf_relocate(obj.path)
    assert err == -errno.EINVAL


@pytest.mark.kernel
def test_unsigned_enum_deviation(kernel: btf.Spec) -> None:
    """An unsigned 32-bit enumerator >= 2**31 in a 64-bit load: libbpf sign-extends
    it and refuses the object; ebpf relocates it to the zero-extended value."""
    obj = Obj(compile_core("core_enum_unsigned"))
    ours, results = obj.relocate(core.kernel_targets())
    value = kernel.type_by_name("e820_type", btf.Enum).value("E820_TYPE_SOFT_RESERVED")
    [res] = results["raw_tp/sys_enter"]
    assert value == 0xEFFFFFFF and res.local_value == res.target_value == value
    assert ours["raw_tp/sys_enter"][res.index].imm == value
    err, _ = libbpf_relocate(obj.path)
    assert err == -errno.EINVAL
    if os.geteuid() == 0:
        fd, log = load_raw(ours["raw_tp/sys_enter"])
        assert fd >= 0, log


@pytest.fixture(scope="module")
def vmlinux_copy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is missing")
    path = str(tmp_path_factory.mktemp("btf") / "vmlinux.btf")
    shutil.copyfile(VMLINUX, path)
    yield path


@pytest.mark.kernel
def test_external_btf_file(fields_obj: Obj, vmlinux_copy: str) -> None:
    """An external BTF file (BTFHub style) stands in for the kernel's."""
    external = btf.load_spec(vmlinux_copy)
    ours, _ = fields_obj.relocate(external)
    theirs_k, _ = fields_obj.relocate(core.kernel_targets())
    assert {s: asm.encode(i) for s, i in ours.items()} == {
        s: asm.encode(i) for s, i in theirs_k.items()}
    err, theirs = libbpf_relocate(fields_obj.path, vmlinux_copy)
    assert err == 0
    assert_same_as_libbpf(ours, theirs)


def fake_kernel() -> RawBTF:
    """A made-up kernel: task_struct with its fields elsewhere, a u16 flags
    field (the object's u16 flavor load is then not widened), fewer types."""
    b = RawBTF()
    i = b.int("int", 4, True)
    u = b.int("unsigned int", 4)
    u16 = b.int("short unsigned int", 2)
    c = b.int("char", 1, True)
    idx = b.int("__ARRAY_SIZE_TYPE__", 4)
    pid_t = b.typedef("pid_t", i)
    ts_id = b.next_id + 1
    ptr = b.ptr(ts_id)
    b.struct("task_struct", 256, [
        ("flags", u16, 0, 0), ("prio", i, 32, 0), ("real_parent", ptr, 64, 0),
        ("comm", b.array(c, 16, idx), 128, 0), ("tgid", pid_t, 512, 0),
        ("pid", pid_t, 640, 0), ("in_execve", u, 672 + 9, 1), ("__state", u, 704, 0)])
    b.enum("bpf_map_type", [("BPF_MAP_TYPE_RINGBUF", 99)])
    return b


@pytest.mark.kernel
def test_handmade_target(fields_obj: Obj, tmp_path: Path) -> None:
    """Offsets follow a hand-made target; libbpf agrees (btf_custom_path)."""
    b = fake_kernel()
    path = tmp_path / "fake.btf"
    path.write_bytes(b.encode())
    target = btf.load_spec(str(path))
    ours, results = fields_obj.relocate(target)
    res = {(r.kind, r.description): r for r in results["raw_tp/sys_enter"]}
    assert res[(K.FIELD_BYTE_OFFSET, "struct task_struct.pid")].target_value == 80
    assert res[(K.FIELD_BYTE_OFFSET, "struct task_struct.tgid")].target_value == 64
    assert res[(K.FIELD_BYTE_OFFSET, "struct task_struct.comm[1]")].target_value == 17
    assert res[(K.TYPE_SIZE, "struct task_struct")].target_value == 256
    assert res[(K.ENUMVAL_VALUE, "enum bpf_map_type::BPF_MAP_TYPE_RINGBUF")].target_value == 99
    assert res[(K.FIELD_BYTE_OFFSET, "struct task_struct.in_execve")].target_value == 84
    assert res[(K.FIELD_BYTE_OFFSET, "struct cred.uid.val")].poisoned
    err, theirs = libbpf_relocate(fields_obj.path, str(path))
    assert err != 0  # the poisoned loads are reachable
    assert_same_as_libbpf(ours, theirs)


@pytest.mark.kernel
def test_builder_target(fields_obj: Obj) -> None:
    """A target described with ebpf.btf types and marshalled by btf.Builder: a
    task_struct whose pid moved and whose comm is a pointer (incompatible with
    the object's array, so comm accesses are poisoned)."""
    builder_cls = getattr(btf, "Builder", None)
    if builder_cls is None:
        pytest.skip("ebpf.btf.Builder is not available")
    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    char = btf.Int("char", 1, btf.IntEncoding.SIGNED)
    pid_t = btf.Typedef("pid_t", i32)
    task = btf.Struct("task_struct", 4096, [
        btf.Member("comm", btf.Pointer(char), 0), btf.Member("tgid", pid_t, 1024 * 8),
        btf.Member("pid", pid_t, 2048 * 8)])
    b = builder_cls()
    b.add(task)
    target = btf.Spec(b.marshal())
    _, results = fields_obj.relocate(target)
    res = {(r.kind, r.description): r for r in results["raw_tp/sys_enter"]}
    assert res[(K.FIELD_BYTE_OFFSET, "struct task_struct.pid")].target_value == 2048
    assert res[(K.FIELD_BYTE_OFFSET, "struct task_struct.tgid")].target_value == 1024
    assert res[(K.FIELD_BYTE_OFFSET, "struct task_struct___old.pid")].target_value == 2048
    assert res[(K.TYPE_SIZE, "struct task_struct")].target_value == 4096
    assert res[(K.FIELD_BYTE_OFFSET, "struct task_struct.comm[1]")].poisoned
    assert res[(K.FIELD_EXISTS, "struct task_struct.pid")].target_value == 1


# -- one object, every kernel: offline against each kernel's BTF, and live --------------
#
# core_fields.o is built once (tests/bpf/core_types.h, no vmlinux.h). It is relocated
# offline against the BTF of every kernel of the matrix (.cache/kernels/<release>/vmlinux,
# unpacked from the Debian packages by tools/vm; byte-identical to that kernel's
# /sys/kernel/btf/vmlinux) and checked against libbpf and against the offsets that BTF
# gives; and, on each kernel, loaded and run, relocated against the running kernel and
# against its BTF file, with the values it reads checked against what the kernel reports
# (getpid(), /proc/self/stat, ...).

KERNELS_DIR = Path(__file__).resolve().parents[1] / ".cache" / "kernels"
_ALIASES = (btf.Typedef, btf.Const, btf.Volatile, btf.Restrict, btf.TypeTag)


def matrix_btf_files() -> list[tuple[str, Path]]:
    """(release, BTF file) of each kernel of the matrix unpacked in .cache/kernels."""
    return sorted((p.parent.name, p) for p in KERNELS_DIR.glob("*/vmlinux") if p.is_file())


def _field(spec: btf.Spec, struct: str, *path: str) -> tuple[int, btf.Member]:
    """(bit offset, member) of struct.path[0].path[1]..., looking through anonymous
    members: computed from the BTF alone, independently of the CO-RE engine."""
    t: btf.Type = spec.type_by_name(struct, btf.Struct)
    total = 0
    member: btf.Member | None = None
    for name in path:
        found = _find_member(t, name)
        assert found is not None, f"{struct}: no member {name}"
        off, member = found
        total += off
        t = member.type
        while isinstance(t, _ALIASES):
            t = t.type
    assert member is not None
    return total, member


def _find_member(t: btf.Type, name: str) -> tuple[int, btf.Member] | None:
    while isinstance(t, _ALIASES):
        t = t.type
    for m in getattr(t, "members", ()):
        if m.name == name:
            return m.offset_bits, m
        if not m.name:
            inner = _find_member(m.type, name)
            if inner is not None:
                return m.offset_bits + inner[0], inner[1]
    return None


def expected_from_btf(spec: btf.Spec) -> dict[tuple[CoreReloKind, str], int]:
    """What the relocations of core_fields.o must give for the kernel `spec` describes."""
    ts = spec.type_by_name("task_struct", btf.Struct)
    pid_bits, _ = _field(spec, "task_struct", "pid")
    comm_bits, comm = _field(spec, "task_struct", "comm")
    uid_bits, _ = _field(spec, "cred", "uid", "val")
    dev_bits, _ = _field(spec, "sk_buff", "dev")
    rb_bits, _ = _field(spec, "sk_buff", "rbnode")
    tstamp_bits, _ = _field(spec, "sk_buff", "tstamp")
    state = spec.type_by_name("perf_event_state", btf.Enum)
    map_type = spec.type_by_name("bpf_map_type", btf.Enum)
    return {
        (K.FIELD_BYTE_OFFSET, "struct task_struct.pid"): pid_bits // 8,
        (K.FIELD_BYTE_OFFSET, "struct task_struct.tgid"):
            _field(spec, "task_struct", "tgid")[0] // 8,
        (K.FIELD_BYTE_OFFSET, "struct task_struct.comm[1]"): comm_bits // 8 + 1,
        (K.FIELD_BYTE_OFFSET, "struct task_struct.comm[3]"): comm_bits // 8 + 3,
        (K.FIELD_BYTE_OFFSET, "struct task_struct.real_parent"):
            _field(spec, "task_struct", "real_parent")[0] // 8,
        (K.FIELD_BYTE_OFFSET, "struct task_struct.cred"):
            _field(spec, "task_struct", "cred")[0] // 8,
        (K.FIELD_BYTE_OFFSET, "struct cred.uid.val"): uid_bits // 8,
        (K.FIELD_BYTE_OFFSET, "struct task_struct___old.pid"): pid_bits // 8,
        (K.FIELD_BYTE_OFFSET, "struct sk_buff.dev"): dev_bits // 8,
        (K.FIELD_BYTE_OFFSET, "struct sk_buff.rbnode"): rb_bits // 8,
        (K.FIELD_BYTE_OFFSET, "struct sk_buff.tstamp"): tstamp_bits // 8,
        (K.FIELD_BYTE_SIZE, "struct task_struct.comm"): comm.type.nelems,  # char[16]
        (K.FIELD_EXISTS, "struct task_struct___old.state"): 0,
        (K.TYPE_SIZE, "struct task_struct"): ts.size,
        (K.TYPE_ID_TARGET, "struct task_struct"): spec.type_id(ts),
        (K.ENUMVAL_VALUE, "enum perf_event_state::PERF_EVENT_STATE_DEAD"):
            state.value("PERF_EVENT_STATE_DEAD") % (1 << 64),  # -4 in 6.1, -5 in 6.18
        (K.ENUMVAL_VALUE, "enum perf_event_state::PERF_EVENT_STATE_OFF"):
            state.value("PERF_EVENT_STATE_OFF") % (1 << 64),
        (K.ENUMVAL_VALUE, "enum bpf_map_type::BPF_MAP_TYPE_RINGBUF"):
            map_type.value("BPF_MAP_TYPE_RINGBUF"),
        (K.TYPE_MATCHES, "struct task_struct___good"): 1,
        (K.TYPE_MATCHES, "struct task_struct___bad"): 0,
    }


@pytest.mark.kernel  # in every VM too: there the other kernels' BTF files are "offline"
@pytest.mark.parametrize("release", [r for r, _ in matrix_btf_files()] or ["host-file"])
def test_core_fields_offline_against_matrix_kernels(fields_obj: Obj, release: str) -> None:
    """Offline CO-RE: the one object against each kernel's BTF file, whatever kernel
    runs here -- every instruction as libbpf relocates it for that BTF
    (btf_custom_path), and the offsets, sizes, ids and enumerator values that BTF gives."""
    files = dict(matrix_btf_files())
    # without the matrix kernels' BTF (python3 -m tools.vm fetch), the running kernel's
    # BTF read as a file is the offline target
    btf_file = str(files.get(release, "/sys/kernel/btf/vmlinux"))
    target = btf.load_spec(btf_file)
    ours, results = fields_obj.relocate(target)
    res = results["raw_tp/sys_enter"]
    assert not any(r.poisoned for r in res), [str(r) for r in res if r.poisoned]
    got = {(r.kind, r.description): r.target_value for r in res}
    expected = expected_from_btf(target)
    assert {k: got.get(k) for k in expected} == expected
    # the bitfields' shifts put each field's bits at the top, then at the bottom
    for field in ("in_execve",):
        bits, member = _field(target, "task_struct", field)
        off = got[(K.FIELD_BYTE_OFFSET, f"struct task_struct.{field}")]
        size = got[(K.FIELD_BYTE_SIZE, f"struct task_struct.{field}")]
        lshift = got[(K.FIELD_LSHIFT_U64, f"struct task_struct.{field}")]
        rshift = got[(K.FIELD_RSHIFT_U64, f"struct task_struct.{field}")]
        assert off * 8 <= bits and bits + member.bitfield_size <= (off + size) * 8
        assert rshift == 64 - member.bitfield_size
        assert lshift == 64 - (bits - off * 8) - member.bitfield_size  # little endian
    _, theirs = libbpf_relocate(fields_obj.path, btf_file)
    assert assert_same_as_libbpf(ours, theirs) > 200


def _stat_fields() -> list[str]:
    with open("/proc/thread-self/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2 :].split()  # from field 3 (state) on


@pytest.mark.kernel
@pytest.mark.parametrize("against", ["kernel", "btf-file"])
def test_core_fields_run(fields_obj: Obj, kernel: btf.Spec, against: str,
                         tmp_path: Path) -> None:
    """The one object loaded on this kernel -- relocated against the running kernel, or
    offline against its BTF file -- and run (BPF_PROG_TEST_RUN runs a raw tracepoint
    program in this thread): what it reads through the relocated offsets is what the
    kernel reports about this thread."""
    import threading

    import ebpf

    if os.geteuid() != 0:
        pytest.skip("loading programs needs root")
    target: btf.Spec | None = None
    if against == "btf-file":
        path = KERNELS_DIR / os.uname().release / "vmlinux"
        if not path.is_file():  # not a kernel of the matrix: a copy of its BTF file
            path = tmp_path / "vmlinux"
            shutil.copyfile(VMLINUX, path)
        with open(path, "rb") as f, open(VMLINUX, "rb") as g:
            assert f.read() == g.read(), f"{path} is not this kernel's BTF"
        target = btf.load_spec(str(path))
    spec = ebpf.load_collection_spec(str(fields_obj.path))
    with ebpf.Collection(spec, kernel_btf=target) as coll:
        assert coll.programs["core_fields"].test_run(ctx=bytes(8)).retval == 0
        out = coll.variables["out"].get()
        stat = _stat_fields()
    tid = threading.get_native_id()
    with open(f"/proc/self/task/{tid}/comm", "rb") as f:
        comm = f.read().rstrip(b"\n")
    ts = kernel.type_by_name("task_struct", btf.Struct)
    pid_off = _field(kernel, "task_struct", "pid")[0] // 8
    comm_off = _field(kernel, "task_struct", "comm")[0] // 8
    want = {
        "pid": tid, "tgid": os.getpid(), "ppid": os.getppid(), "comm1": comm[1],
        "uid": os.getuid(), "pid_size": 4, "comm_size": 16, "pid_off": pid_off,
        "comm3_off": comm_off + 3, "pid_exists": 1, "pid_signed": 1, "flags_signed": 0,
        "in_execve": 0, "ip_summed_signed": 0, "ts_exists": 1, "ts_size": ts.size,
        "good_matches": 1, "bad_matches": 0, "pid_t_exists": 1, "pid_t_size": 4,
        "missing_exists": 0, "missing_size": 0, "ringbuf_exists": 1, "ringbuf_value": 27,
        "local_missing_exists": 0, "perf_ctx": (1 << 64) - 128,
        "state_off": (1 << 64) - 1,
        "state_dead": kernel.type_by_name("perf_event_state", btf.Enum).value(
            "PERF_EVENT_STATE_DEAD") % (1 << 64),
        "tid_kernel": kernel.type_id(ts), "tid_missing": 0,
        "old_state_exists": 0, "old_pid_exists": 1, "old_pid_off": pid_off,
        "direct_pid": tid, "direct_comm2": comm[2],
        "direct_flags16": int(stat[6]) & 0xFFFF,  # field 9: flags (PF_*)
        "direct_prio": 100 + int(stat[15]),  # field 18: priority = prio - MAX_RT_PRIO
    }
    got = {k: out[k] for k in want}
    got["direct_flags16"] &= 0xFFFF
    assert got == want


def test_member_places_by_scan_then_by_index(kernel: btf.Spec) -> None:
    """A struct's members are looked up by name one scan at a time for the first few
    names, then all at once: both give every member of that name, anonymous members'
    included, in declaration order."""
    for name in ("task_struct", "sk_buff"):
        t = kernel.type_by_name(name, btf.Struct)
        every: dict[str, list[core._Place]] = {}
        core._collect_places(t, (), 0, every, None)
        names = [*every, "no_such_member"]
        assert len(names) > 2 * core._NAMES_BEFORE_INDEX
        for member in names + names:  # (the second round from the cache)
            assert core._places_named(kernel, t, member) == every.get(member, []), member
