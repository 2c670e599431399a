"""The builder DSL: one plain function per instruction form.

Every function validates its operands (registers R0..R10, offsets and
immediates in range) and returns a new `Instruction`. Arithmetic comes in a
64-bit (``add_imm``) and a 32-bit (``add_imm32``) flavour; conditional jumps
likewise (``jeq_imm`` / ``jeq_imm32``). A jump target is either an `int`
slot offset or a label name resolved later by `assemble`/`encode`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ..errors import AsmError
from .instruction import Instruction, Label
from .opcodes import (
    PSEUDO_BTF_ID,
    PSEUDO_CALL,
    PSEUDO_FUNC,
    PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_IDX,
    PSEUDO_MAP_IDX_VALUE,
    PSEUDO_MAP_VALUE,
    ALUOp,
    AtomicOp,
    Class,
    JumpOp,
    Mode,
    Size,
    Source,
)

__all__ = [
    "add_imm",
    "add_imm32",
    "add_reg",
    "add_reg32",
    "addr_space_cast",
    "and_imm",
    "and_imm32",
    "and_reg",
    "and_reg32",
    "arsh_imm",
    "arsh_imm32",
    "arsh_reg",
    "arsh_reg32",
    "atomic_add",
    "atomic_and",
    "atomic_cmpxchg",
    "atomic_or",
    "atomic_xchg",
    "atomic_xor",
    "bswap",
    "call",
    "call_func",
    "call_kfunc",
    "div_imm",
    "div_imm32",
    "div_reg",
    "div_reg32",
    "exit",
    "gotol",
    "helper_id",
    "ja",
    "jeq_imm",
    "jeq_imm32",
    "jeq_reg",
    "jeq_reg32",
    "jge_imm",
    "jge_imm32",
    "jge_reg",
    "jge_reg32",
    "jgt_imm",
    "jgt_imm32",
    "jgt_reg",
    "jgt_reg32",
    "jle_imm",
    "jle_imm32",
    "jle_reg",
    "jle_reg32",
    "jlt_imm",
    "jlt_imm32",
    "jlt_reg",
    "jlt_reg32",
    "jne_imm",
    "jne_imm32",
    "jne_reg",
    "jne_reg32",
    "jset_imm",
    "jset_imm32",
    "jset_reg",
    "jset_reg32",
    "jsge_imm",
    "jsge_imm32",
    "jsge_reg",
    "jsge_reg32",
    "jsgt_imm",
    "jsgt_imm32",
    "jsgt_reg",
    "jsgt_reg32",
    "jsle_imm",
    "jsle_imm32",
    "jsle_reg",
    "jsle_reg32",
    "jslt_imm",
    "jslt_imm32",
    "jslt_reg",
    "jslt_reg32",
    "label",
    "ld_btf_id",
    "ld_func",
    "ld_imm64",
    "ld_map_fd",
    "ld_map_idx",
    "ld_map_idx_value",
    "ld_map_value",
    "load_abs",
    "load_acquire",
    "load_ind",
    "load_mem",
    "load_mem_sx",
    "lsh_imm",
    "lsh_imm32",
    "lsh_reg",
    "lsh_reg32",
    "may_goto",
    "mod_imm",
    "mod_imm32",
    "mod_reg",
    "mod_reg32",
    "mov_imm",
    "mov_imm32",
    "mov_reg",
    "mov_reg32",
    "movsx",
    "movsx32",
    "mul_imm",
    "mul_imm32",
    "mul_reg",
    "mul_reg32",
    "neg",
    "neg32",
    "nop",
    "or_imm",
    "or_imm32",
    "or_reg",
    "or_reg32",
    "rsh_imm",
    "rsh_imm32",
    "rsh_reg",
    "rsh_reg32",
    "sdiv_imm",
    "sdiv_imm32",
    "sdiv_reg",
    "sdiv_reg32",
    "smod_imm",
    "smod_imm32",
    "smod_reg",
    "smod_reg32",
    "store_imm",
    "store_mem",
    "store_release",
    "sub_imm",
    "sub_imm32",
    "sub_reg",
    "sub_reg32",
    "to_be",
    "to_le",
    "xor_imm",
    "xor_imm32",
    "xor_reg",
    "xor_reg32",
]

# -- operand checks -------------------------------------------------------


def _reg(r: int, what: str = "register") -> int:
    if isinstance(r, int) and not isinstance(r, bool) and 0 <= r <= 10:
        return int(r)
    raise AsmError(f"invalid {what} {r!r}: expected R0..R10")


def _int(v: int, what: str, lo: int, hi: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise AsmError(f"{what} must be an int, not {type(v).__name__}")
    if not lo <= v <= hi:
        raise AsmError(f"{what} {v} is out of range [{lo}, {hi}]")
    return int(v)


def _off(v: int, what: str = "offset") -> int:
    return _int(v, what, -0x8000, 0x7FFF)


def _imm(v: int, what: str = "immediate") -> int:
    """A 32-bit immediate: accepts -2**31 .. 2**32-1, returns it signed."""
    v = _int(v, what, -0x8000_0000, 0xFFFF_FFFF)
    return v - 0x1_0000_0000 if v > 0x7FFF_FFFF else v


def _imm64(v: int, what: str = "immediate") -> int:
    """A 64-bit immediate: accepts -2**63 .. 2**64-1, returns it signed."""
    v = _int(v, what, -(1 << 63), (1 << 64) - 1)
    return v - (1 << 64) if v >= 1 << 63 else v


def _size(size: Size | int) -> Size:
    try:
        return Size(size)
    except ValueError:
        raise AsmError(f"invalid size {size!r}: expected B, H, W, DW (or 1, 2, 4, 8)") from None


def _target(target: int | str) -> tuple[int, str | None]:
    if isinstance(target, str):
        if not target:
            raise AsmError("a label name must not be empty")
        return 0, target
    return target, None


# -- labels ---------------------------------------------------------------


def label(name: str) -> Label:
    """A marker naming the next instruction, for jumps and calls to refer to."""
    return Label(name)


# -- arithmetic -----------------------------------------------------------


if TYPE_CHECKING:  # the factories' types: no Protocol classes at run time (import cost)
    from typing import Protocol

    class _ALUImm(Protocol):
        def __call__(self, dst: int, imm: int) -> Instruction: ...

    class _ALUReg(Protocol):
        def __call__(self, dst: int, src: int) -> Instruction: ...


_OP_TEXT = {
    "add": "+=", "sub": "-=", "mul": "*=", "div": "/=", "sdiv": "s/=", "or": "|=",
    "and": "&=", "lsh": "<<=", "rsh": ">>=", "mod": "%=", "smod": "s%=", "xor": "^=",
    "mov": "=", "arsh": "s>>=",
}  # fmt: skip


def _alu_imm(name: str, cls: Class, op: ALUOp, off: int = 0) -> _ALUImm:
    opcode = cls | op | Source.K
    r = "r" if cls == Class.ALU64 else "w"

    def build(dst: int, imm: int) -> Instruction:
        return Instruction(opcode, _reg(dst), 0, off, _imm(imm))

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"``{r}dst {_OP_TEXT[name.split('_')[0]]} imm``: {cls.name} | {op.name} | K"
        f"{' with off=1 (signed)' if off else ''}; `imm` is 32 bits"
        f"{', sign-extended to 64' if r == 'r' else ''}."
    )
    return build


def _alu_reg(name: str, cls: Class, op: ALUOp, off: int = 0) -> _ALUReg:
    opcode = cls | op | Source.X
    r = "r" if cls == Class.ALU64 else "w"

    def build(dst: int, src: int) -> Instruction:
        return Instruction(opcode, _reg(dst), _reg(src), off, 0)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"``{r}dst {_OP_TEXT[name.split('_')[0]]} {r}src``: {cls.name} | {op.name} | X"
        f"{' with off=1 (signed)' if off else ''}."
    )
    return build


add_imm = _alu_imm("add_imm", Class.ALU64, ALUOp.ADD)
add_reg = _alu_reg("add_reg", Class.ALU64, ALUOp.ADD)
add_imm32 = _alu_imm("add_imm32", Class.ALU, ALUOp.ADD)
add_reg32 = _alu_reg("add_reg32", Class.ALU, ALUOp.ADD)
sub_imm = _alu_imm("sub_imm", Class.ALU64, ALUOp.SUB)
sub_reg = _alu_reg("sub_reg", Class.ALU64, ALUOp.SUB)
sub_imm32 = _alu_imm("sub_imm32", Class.ALU, ALUOp.SUB)
sub_reg32 = _alu_reg("sub_reg32", Class.ALU, ALUOp.SUB)
mul_imm = _alu_imm("mul_imm", Class.ALU64, ALUOp.MUL)
mul_reg = _alu_reg("mul_reg", Class.ALU64, ALUOp.MUL)
mul_imm32 = _alu_imm("mul_imm32", Class.ALU, ALUOp.MUL)
mul_reg32 = _alu_reg("mul_reg32", Class.ALU, ALUOp.MUL)
div_imm = _alu_imm("div_imm", Class.ALU64, ALUOp.DIV)
div_reg = _alu_reg("div_reg", Class.ALU64, ALUOp.DIV)
div_imm32 = _alu_imm("div_imm32", Class.ALU, ALUOp.DIV)
div_reg32 = _alu_reg("div_reg32", Class.ALU, ALUOp.DIV)
sdiv_imm = _alu_imm("sdiv_imm", Class.ALU64, ALUOp.DIV, 1)
sdiv_reg = _alu_reg("sdiv_reg", Class.ALU64, ALUOp.DIV, 1)
sdiv_imm32 = _alu_imm("sdiv_imm32", Class.ALU, ALUOp.DIV, 1)
sdiv_reg32 = _alu_reg("sdiv_reg32", Class.ALU, ALUOp.DIV, 1)
or_imm = _alu_imm("or_imm", Class.ALU64, ALUOp.OR)
or_reg = _alu_reg("or_reg", Class.ALU64, ALUOp.OR)
or_imm32 = _alu_imm("or_imm32", Class.ALU, ALUOp.OR)
or_reg32 = _alu_reg("or_reg32", Class.ALU, ALUOp.OR)
and_imm = _alu_imm("and_imm", Class.ALU64, ALUOp.AND)
and_reg = _alu_reg("and_reg", Class.ALU64, ALUOp.AND)
and_imm32 = _alu_imm("and_imm32", Class.ALU, ALUOp.AND)
and_reg32 = _alu_reg("and_reg32", Class.ALU, ALUOp.AND)
lsh_imm = _alu_imm("lsh_imm", Class.ALU64, ALUOp.LSH)
lsh_reg = _alu_reg("lsh_reg", Class.ALU64, ALUOp.LSH)
lsh_imm32 = _alu_imm("lsh_imm32", Class.ALU, ALUOp.LSH)
lsh_reg32 = _alu_reg("lsh_reg32", Class.ALU, ALUOp.LSH)
rsh_imm = _alu_imm("rsh_imm", Class.ALU64, ALUOp.RSH)
rsh_reg = _alu_reg("rsh_reg", Class.ALU64, ALUOp.RSH)
rsh_imm32 = _alu_imm("rsh_imm32", Class.ALU, ALUOp.RSH)
rsh_reg32 = _alu_reg("rsh_reg32", Class.ALU, ALUOp.RSH)
mod_imm = _alu_imm("mod_imm", Class.ALU64, ALUOp.MOD)
mod_reg = _alu_reg("mod_reg", Class.ALU64, ALUOp.MOD)
mod_imm32 = _alu_imm("mod_imm32", Class.ALU, ALUOp.MOD)
mod_reg32 = _alu_reg("mod_reg32", Class.ALU, ALUOp.MOD)
smod_imm = _alu_imm("smod_imm", Class.ALU64, ALUOp.MOD, 1)
smod_reg = _alu_reg("smod_reg", Class.ALU64, ALUOp.MOD, 1)
smod_imm32 = _alu_imm("smod_imm32", Class.ALU, ALUOp.MOD, 1)
smod_reg32 = _alu_reg("smod_reg32", Class.ALU, ALUOp.MOD, 1)
xor_imm = _alu_imm("xor_imm", Class.ALU64, ALUOp.XOR)
xor_reg = _alu_reg("xor_reg", Class.ALU64, ALUOp.XOR)
xor_imm32 = _alu_imm("xor_imm32", Class.ALU, ALUOp.XOR)
xor_reg32 = _alu_reg("xor_reg32", Class.ALU, ALUOp.XOR)
mov_imm = _alu_imm("mov_imm", Class.ALU64, ALUOp.MOV)
mov_reg = _alu_reg("mov_reg", Class.ALU64, ALUOp.MOV)
mov_imm32 = _alu_imm("mov_imm32", Class.ALU, ALUOp.MOV)
mov_reg32 = _alu_reg("mov_reg32", Class.ALU, ALUOp.MOV)
arsh_imm = _alu_imm("arsh_imm", Class.ALU64, ALUOp.ARSH)
arsh_reg = _alu_reg("arsh_reg", Class.ALU64, ALUOp.ARSH)
arsh_imm32 = _alu_imm("arsh_imm32", Class.ALU, ALUOp.ARSH)
arsh_reg32 = _alu_reg("arsh_reg32", Class.ALU, ALUOp.ARSH)


def neg(dst: int) -> Instruction:
    """``rdst = -rdst``: ALU64 | NEG."""
    return Instruction(Class.ALU64 | ALUOp.NEG, _reg(dst))


def neg32(dst: int) -> Instruction:
    """``wdst = -wdst``: ALU | NEG."""
    return Instruction(Class.ALU | ALUOp.NEG, _reg(dst))


def movsx(dst: int, src: int, bits: int) -> Instruction:
    """``rdst = (s8/s16/s32)rsrc``: ALU64 | MOV | X with off = `bits` (8, 16 or 32)."""
    if bits not in (8, 16, 32):
        raise AsmError(f"movsx: bits must be 8, 16 or 32, not {bits!r}")
    return Instruction(Class.ALU64 | ALUOp.MOV | Source.X, _reg(dst), _reg(src), bits)


def movsx32(dst: int, src: int, bits: int) -> Instruction:
    """``wdst = (s8/s16)wsrc``: ALU | MOV | X with off = `bits` (8 or 16)."""
    if bits not in (8, 16):
        raise AsmError(f"movsx32: bits must be 8 or 16, not {bits!r}")
    return Instruction(Class.ALU | ALUOp.MOV | Source.X, _reg(dst), _reg(src), bits)


def _swap_bits(bits: int, what: str) -> int:
    if bits not in (16, 32, 64):
        raise AsmError(f"{what}: bits must be 16, 32 or 64, not {bits!r}")
    return bits


def to_le(dst: int, bits: int) -> Instruction:
    """``rdst = le<bits> rdst``: convert to little endian (ALU | END | TO_LE)."""
    opcode = Class.ALU | ALUOp.END | Source.TO_LE
    return Instruction(opcode, _reg(dst), 0, 0, _swap_bits(bits, "to_le"))


def to_be(dst: int, bits: int) -> Instruction:
    """``rdst = be<bits> rdst``: convert to big endian (ALU | END | TO_BE)."""
    opcode = Class.ALU | ALUOp.END | Source.TO_BE
    return Instruction(opcode, _reg(dst), 0, 0, _swap_bits(bits, "to_be"))


def bswap(dst: int, bits: int) -> Instruction:
    """``rdst = bswap<bits> rdst``: unconditional byte swap (ALU64 | END)."""
    return Instruction(Class.ALU64 | ALUOp.END, _reg(dst), 0, 0, _swap_bits(bits, "bswap"))


def addr_space_cast(dst: int, src: int, dst_as: int, src_as: int) -> Instruction:
    """``rdst = addr_space_cast(rsrc, dst_as, src_as)`` (arena pointers; ALU64 | MOV | X, off 1)."""
    imm = _int(dst_as, "dst_as", 0, 0xFFFF) << 16 | _int(src_as, "src_as", 0, 0xFFFF)
    return Instruction(Class.ALU64 | ALUOp.MOV | Source.X, _reg(dst), _reg(src), 1, _imm(imm))


# -- 64-bit immediates ------------------------------------------------------


def ld_imm64(dst: int, value: int) -> Instruction:
    """``rdst = value``: a 64-bit immediate load (two slots); `value` may be signed or not."""
    return Instruction(Class.LD | Mode.IMM | 0x18, _reg(dst), 0, 0, _imm64(value, "value"))


def _ld_pseudo(dst: int, src: int, lo: int, hi: int, reference: str | None = None) -> Instruction:
    value = (hi << 32) | (lo & 0xFFFF_FFFF)
    return Instruction(0x18, _reg(dst), src, 0, _imm64(value), reference=reference)


def _map_operand(m: int | str, what: str) -> tuple[int, str | None]:
    if isinstance(m, str):
        if not m:
            raise AsmError(f"{what}: the map name must not be empty")
        return 0, m
    return _int(m, what, -0x8000_0000, 0x7FFF_FFFF), None


def ld_map_fd(dst: int, fd: int | str) -> Instruction:
    """``rdst = map`` (PSEUDO_MAP_FD); `fd` is an fd, or a map name left for the loader."""
    v, ref = _map_operand(fd, "map fd")
    return _ld_pseudo(dst, PSEUDO_MAP_FD, v, 0, ref)


def ld_map_value(dst: int, fd: int | str, offset: int = 0) -> Instruction:
    """``rdst = &map.value[0] + offset`` (PSEUDO_MAP_VALUE); `fd` is an fd or a map name."""
    v, ref = _map_operand(fd, "map fd")
    return _ld_pseudo(dst, PSEUDO_MAP_VALUE, v, _int(offset, "value offset", 0, 0xFFFF_FFFF), ref)


def ld_map_idx(dst: int, index: int) -> Instruction:
    """``rdst = map`` by index into the program's fd_array (PSEUDO_MAP_IDX)."""
    return _ld_pseudo(dst, PSEUDO_MAP_IDX, _int(index, "map index", 0, 0xFFFF_FFFF), 0)


def ld_map_idx_value(dst: int, index: int, offset: int = 0) -> Instruction:
    """``rdst = &map.value[0] + offset``, map by fd_array index (PSEUDO_MAP_IDX_VALUE)."""
    return _ld_pseudo(
        dst,
        PSEUDO_MAP_IDX_VALUE,
        _int(index, "map index", 0, 0xFFFF_FFFF),
        _int(offset, "value offset", 0, 0xFFFF_FFFF),
    )


def ld_btf_id(dst: int, btf_id: int) -> Instruction:
    """``rdst = &kernel_variable`` by BTF id (PSEUDO_BTF_ID, for ``__ksym`` variables)."""
    return _ld_pseudo(dst, PSEUDO_BTF_ID, _int(btf_id, "BTF id", 0, 0xFFFF_FFFF), 0)


def ld_func(dst: int, target: int | str) -> Instruction:
    """``rdst = &function`` (PSEUDO_FUNC, a callback); `target` is a slot offset or a label."""
    delta, ref = _target(target)
    return _ld_pseudo(dst, PSEUDO_FUNC, _imm(delta, "function offset"), 0, ref)


# -- loads and stores -------------------------------------------------------


def load_mem(dst: int, src: int, off: int, size: Size | int) -> Instruction:
    """``rdst = *(u<size> *)(rsrc + off)``: LDX | MEM."""
    sz = _size(size)
    return Instruction(Class.LDX | Mode.MEM | sz.bits, _reg(dst), _reg(src), _off(off))


def load_mem_sx(dst: int, src: int, off: int, size: Size | int) -> Instruction:
    """``rdst = *(s<size> *)(rsrc + off)``, sign-extending: LDX | MEMSX (B, H or W)."""
    sz = _size(size)
    if sz == Size.DW:
        raise AsmError("load_mem_sx: size must be B, H or W")
    return Instruction(Class.LDX | Mode.MEMSX | sz.bits, _reg(dst), _reg(src), _off(off))


def store_mem(dst: int, off: int, src: int, size: Size | int) -> Instruction:
    """``*(u<size> *)(rdst + off) = rsrc``: STX | MEM."""
    sz = _size(size)
    return Instruction(Class.STX | Mode.MEM | sz.bits, _reg(dst), _reg(src), _off(off))


def store_imm(dst: int, off: int, imm: int, size: Size | int) -> Instruction:
    """``*(u<size> *)(rdst + off) = imm``: ST | MEM."""
    sz = _size(size)
    return Instruction(Class.ST | Mode.MEM | sz.bits, _reg(dst), 0, _off(off), _imm(imm))


def load_abs(off: int, size: Size | int) -> Instruction:
    """Legacy ``r0 = ntoh(*(u<size> *)skb[off])``: LD | ABS (socket filters; B, H or W)."""
    sz = _size(size)
    if sz == Size.DW:
        raise AsmError("load_abs: size must be B, H or W")
    return Instruction(Class.LD | Mode.ABS | sz.bits, 0, 0, 0, _imm(off, "packet offset"))


def load_ind(src: int, off: int, size: Size | int) -> Instruction:
    """Legacy ``r0 = ntoh(*(u<size> *)skb[rsrc + off])``: LD | IND (B, H or W)."""
    sz = _size(size)
    if sz == Size.DW:
        raise AsmError("load_ind: size must be B, H or W")
    return Instruction(Class.LD | Mode.IND | sz.bits, 0, _reg(src), 0, _imm(off, "packet offset"))


# -- atomics ----------------------------------------------------------------


def _atomic(dst: int, off: int, src: int, size: Size | int, imm: int, what: str) -> Instruction:
    sz = _size(size)
    if sz not in (Size.W, Size.DW) and imm not in (AtomicOp.LOAD_ACQ, AtomicOp.STORE_REL):
        raise AsmError(f"{what}: size must be W or DW, not {sz.name}")
    return Instruction(Class.STX | Mode.ATOMIC | sz.bits, _reg(dst), _reg(src), _off(off), int(imm))


def atomic_add(
    dst: int, off: int, src: int, size: Size | int = Size.DW, *, fetch: bool = False
) -> Instruction:
    """``lock *(size *)(rdst + off) += rsrc``; with `fetch`, rsrc receives the old value."""
    op = AtomicOp.FETCH_ADD if fetch else AtomicOp.ADD
    return _atomic(dst, off, src, size, op, "atomic_add")


def atomic_or(
    dst: int, off: int, src: int, size: Size | int = Size.DW, *, fetch: bool = False
) -> Instruction:
    """``lock *(size *)(rdst + off) |= rsrc``; with `fetch`, rsrc receives the old value."""
    op = AtomicOp.FETCH_OR if fetch else AtomicOp.OR
    return _atomic(dst, off, src, size, op, "atomic_or")


def atomic_and(
    dst: int, off: int, src: int, size: Size | int = Size.DW, *, fetch: bool = False
) -> Instruction:
    """``lock *(size *)(rdst + off) &= rsrc``; with `fetch`, rsrc receives the old value."""
    op = AtomicOp.FETCH_AND if fetch else AtomicOp.AND
    return _atomic(dst, off, src, size, op, "atomic_and")


def atomic_xor(
    dst: int, off: int, src: int, size: Size | int = Size.DW, *, fetch: bool = False
) -> Instruction:
    """``lock *(size *)(rdst + off) ^= rsrc``; with `fetch`, rsrc receives the old value."""
    op = AtomicOp.FETCH_XOR if fetch else AtomicOp.XOR
    return _atomic(dst, off, src, size, op, "atomic_xor")


def atomic_xchg(dst: int, off: int, src: int, size: Size | int = Size.DW) -> Instruction:
    """``rsrc = xchg(*(size *)(rdst + off), rsrc)``."""
    return _atomic(dst, off, src, size, AtomicOp.XCHG, "atomic_xchg")


def atomic_cmpxchg(dst: int, off: int, src: int, size: Size | int = Size.DW) -> Instruction:
    """``r0 = cmpxchg(*(size *)(rdst + off), r0, rsrc)``."""
    return _atomic(dst, off, src, size, AtomicOp.CMPXCHG, "atomic_cmpxchg")


def load_acquire(dst: int, src: int, off: int, size: Size | int) -> Instruction:
    """``rdst = load_acquire((size *)(rsrc + off))`` (Linux 6.15+; STX | ATOMIC, imm 0x100)."""
    sz = _size(size)
    return Instruction(
        Class.STX | Mode.ATOMIC | sz.bits, _reg(dst), _reg(src), _off(off), int(AtomicOp.LOAD_ACQ)
    )


def store_release(dst: int, off: int, src: int, size: Size | int) -> Instruction:
    """``store_release((size *)(rdst + off), rsrc)`` (Linux 6.15+; STX | ATOMIC, imm 0x110)."""
    return _atomic(dst, off, src, size, AtomicOp.STORE_REL, "store_release")


# -- jumps ------------------------------------------------------------------


if TYPE_CHECKING:  # as _ALUImm
    class _JumpImm(Protocol):
        def __call__(self, dst: int, imm: int, target: int | str) -> Instruction: ...

    class _JumpReg(Protocol):
        def __call__(self, dst: int, src: int, target: int | str) -> Instruction: ...


_JMP_TEXT = {
    JumpOp.JEQ: "==", JumpOp.JGT: ">", JumpOp.JGE: ">=", JumpOp.JSET: "&", JumpOp.JNE: "!=",
    JumpOp.JSGT: "s>", JumpOp.JSGE: "s>=", JumpOp.JLT: "<", JumpOp.JLE: "<=",
    JumpOp.JSLT: "s<", JumpOp.JSLE: "s<=",
}  # fmt: skip


def _jump_imm(name: str, cls: Class, op: JumpOp) -> _JumpImm:
    opcode = cls | op | Source.K
    r = "r" if cls == Class.JMP else "w"

    def build(dst: int, imm: int, target: int | str) -> Instruction:
        off, ref = _target(target)
        return Instruction(opcode, _reg(dst), 0, _off(off, "jump offset"), _imm(imm), reference=ref)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"``if {r}dst {_JMP_TEXT[op]} imm goto target``: {cls.name} | {op.name} | K; "
        "`target` is a slot offset from the next instruction or a label."
    )
    return build


def _jump_reg(name: str, cls: Class, op: JumpOp) -> _JumpReg:
    opcode = cls | op | Source.X
    r = "r" if cls == Class.JMP else "w"

    def build(dst: int, src: int, target: int | str) -> Instruction:
        off, ref = _target(target)
        return Instruction(opcode, _reg(dst), _reg(src), _off(off, "jump offset"), reference=ref)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"``if {r}dst {_JMP_TEXT[op]} {r}src goto target``: {cls.name} | {op.name} | X; "
        "`target` is a slot offset from the next instruction or a label."
    )
    return build


jeq_imm = _jump_imm("jeq_imm", Class.JMP, JumpOp.JEQ)
jeq_reg = _jump_reg("jeq_reg", Class.JMP, JumpOp.JEQ)
jeq_imm32 = _jump_imm("jeq_imm32", Class.JMP32, JumpOp.JEQ)
jeq_reg32 = _jump_reg("jeq_reg32", Class.JMP32, JumpOp.JEQ)
jgt_imm = _jump_imm("jgt_imm", Class.JMP, JumpOp.JGT)
jgt_reg = _jump_reg("jgt_reg", Class.JMP, JumpOp.JGT)
jgt_imm32 = _jump_imm("jgt_imm32", Class.JMP32, JumpOp.JGT)
jgt_reg32 = _jump_reg("jgt_reg32", Class.JMP32, JumpOp.JGT)
jge_imm = _jump_imm("jge_imm", Class.JMP, JumpOp.JGE)
jge_reg = _jump_reg("jge_reg", Class.JMP, JumpOp.JGE)
jge_imm32 = _jump_imm("jge_imm32", Class.JMP32, JumpOp.JGE)
jge_reg32 = _jump_reg("jge_reg32", Class.JMP32, JumpOp.JGE)
jset_imm = _jump_imm("jset_imm", Class.JMP, JumpOp.JSET)
jset_reg = _jump_reg("jset_reg", Class.JMP, JumpOp.JSET)
jset_imm32 = _jump_imm("jset_imm32", Class.JMP32, JumpOp.JSET)
jset_reg32 = _jump_reg("jset_reg32", Class.JMP32, JumpOp.JSET)
jne_imm = _jump_imm("jne_imm", Class.JMP, JumpOp.JNE)
jne_reg = _jump_reg("jne_reg", Class.JMP, JumpOp.JNE)
jne_imm32 = _jump_imm("jne_imm32", Class.JMP32, JumpOp.JNE)
jne_reg32 = _jump_reg("jne_reg32", Class.JMP32, JumpOp.JNE)
jsgt_imm = _jump_imm("jsgt_imm", Class.JMP, JumpOp.JSGT)
jsgt_reg = _jump_reg("jsgt_reg", Class.JMP, JumpOp.JSGT)
jsgt_imm32 = _jump_imm("jsgt_imm32", Class.JMP32, JumpOp.JSGT)
jsgt_reg32 = _jump_reg("jsgt_reg32", Class.JMP32, JumpOp.JSGT)
jsge_imm = _jump_imm("jsge_imm", Class.JMP, JumpOp.JSGE)
jsge_reg = _jump_reg("jsge_reg", Class.JMP, JumpOp.JSGE)
jsge_imm32 = _jump_imm("jsge_imm32", Class.JMP32, JumpOp.JSGE)
jsge_reg32 = _jump_reg("jsge_reg32", Class.JMP32, JumpOp.JSGE)
jlt_imm = _jump_imm("jlt_imm", Class.JMP, JumpOp.JLT)
jlt_reg = _jump_reg("jlt_reg", Class.JMP, JumpOp.JLT)
jlt_imm32 = _jump_imm("jlt_imm32", Class.JMP32, JumpOp.JLT)
jlt_reg32 = _jump_reg("jlt_reg32", Class.JMP32, JumpOp.JLT)
jle_imm = _jump_imm("jle_imm", Class.JMP, JumpOp.JLE)
jle_reg = _jump_reg("jle_reg", Class.JMP, JumpOp.JLE)
jle_imm32 = _jump_imm("jle_imm32", Class.JMP32, JumpOp.JLE)
jle_reg32 = _jump_reg("jle_reg32", Class.JMP32, JumpOp.JLE)
jslt_imm = _jump_imm("jslt_imm", Class.JMP, JumpOp.JSLT)
jslt_reg = _jump_reg("jslt_reg", Class.JMP, JumpOp.JSLT)
jslt_imm32 = _jump_imm("jslt_imm32", Class.JMP32, JumpOp.JSLT)
jslt_reg32 = _jump_reg("jslt_reg32", Class.JMP32, JumpOp.JSLT)
jsle_imm = _jump_imm("jsle_imm", Class.JMP, JumpOp.JSLE)
jsle_reg = _jump_reg("jsle_reg", Class.JMP, JumpOp.JSLE)
jsle_imm32 = _jump_imm("jsle_imm32", Class.JMP32, JumpOp.JSLE)
jsle_reg32 = _jump_reg("jsle_reg32", Class.JMP32, JumpOp.JSLE)


def ja(target: int | str) -> Instruction:
    """``goto target``: JMP | JA with a 16-bit slot offset (or a label)."""
    off, ref = _target(target)
    return Instruction(Class.JMP | JumpOp.JA, 0, 0, _off(off, "jump offset"), reference=ref)


def gotol(target: int | str) -> Instruction:
    """``gotol target``: JMP32 | JA with a 32-bit slot offset in ``imm`` (or a label)."""
    delta, ref = _target(target)
    return Instruction(Class.JMP32 | JumpOp.JA, 0, 0, 0, _imm(delta, "jump offset"), reference=ref)


def may_goto(target: int | str) -> Instruction:
    """``may_goto target``: JMP | JCOND, taken once the loop budget is exhausted."""
    off, ref = _target(target)
    return Instruction(Class.JMP | JumpOp.JCOND, 0, 0, _off(off, "jump offset"), reference=ref)


def nop() -> Instruction:
    """``goto pc+0``, the canonical no-op."""
    return Instruction(Class.JMP | JumpOp.JA)


# -- calls --------------------------------------------------------------------


@functools.cache
def _helper_ids() -> dict[str, int]:
    from ebpf._sys.types import HelperFunc  # HelperFunc loads _sys/types_helpers.py: not on import

    return {h.name: int(h) for h in HelperFunc}


def helper_id(helper: int | str) -> int:
    """The id of a helper given as an int, a `HelperFunc` member or a name.

    Names may be spelled ``map_lookup_elem``, ``bpf_map_lookup_elem`` or
    ``BPF_FUNC_map_lookup_elem``.
    """
    if isinstance(helper, str):
        ids = _helper_ids()
        for name in (helper, helper.removeprefix("BPF_FUNC_"), helper.removeprefix("bpf_")):
            if name in ids:
                return ids[name]
        raise AsmError(f"unknown helper function {helper!r}")
    return _int(helper, "helper id", 0, 0x7FFF_FFFF)


def call(helper: int | str) -> Instruction:
    """Call a helper by id, `HelperFunc` member or name: ``call bpf_<name>#<id>``."""
    return Instruction(Class.JMP | JumpOp.CALL, 0, 0, 0, helper_id(helper))


def call_func(target: int | str) -> Instruction:
    """A bpf-to-bpf call (PSEUDO_CALL); `target` is a slot offset or a function label."""
    delta, ref = _target(target)
    return Instruction(
        Class.JMP | JumpOp.CALL, 0, PSEUDO_CALL, 0, _imm(delta, "call offset"), reference=ref
    )


def call_kfunc(btf_id: int | str, btf_fd_index: int = 0) -> Instruction:
    """Call a kernel function (PSEUDO_KFUNC_CALL) by BTF id.

    `btf_fd_index` selects the module BTF in the program's fd_array (0 is
    vmlinux). A name instead of an id is kept as ``reference`` for the loader.
    """
    if isinstance(btf_id, str):
        if not btf_id:
            raise AsmError("call_kfunc: the function name must not be empty")
        imm, ref = 0, btf_id
    else:
        imm, ref = _int(btf_id, "BTF id", 0, 0x7FFF_FFFF), None
    return Instruction(
        Class.JMP | JumpOp.CALL,
        0,
        PSEUDO_KFUNC_CALL,
        _off(btf_fd_index, "BTF fd index"),
        imm,
        reference=ref,
    )


def exit() -> Instruction:
    """``exit``: return r0."""
    return Instruction(Class.JMP | JumpOp.EXIT)
