"""Binary encoding: instructions to little-endian ``struct bpf_insn`` bytes and back."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from ..errors import AsmError
from .instruction import Instruction, Label, Statement
from .link import assemble, resolvable, resolve

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["decode", "encode"]

_INSN = struct.Struct("<BBhi")
# a 64-bit immediate load: the low half in the first slot's imm, the high half
# in the second slot's imm, every other field of the second slot zero
_WIDE = struct.Struct("<BBhI4xI")
_LD_IMM64 = 0x18
_MASK32 = 0xFFFF_FFFF


def encode(insns: Iterable[Statement]) -> bytes:
    """Encode `insns` as the kernel expects them (little endian, 8 bytes a slot).

    `Label` markers and symbol references are resolved as by `assemble`.
    Raises `AsmError` for a field out of range or an unknown label.
    """
    if not isinstance(insns, (list, tuple)):
        insns = list(insns)
    pack = _INSN.pack
    pack_wide = _WIDE.pack
    parts: list[bytes] = []
    append = parts.append
    fixups: list[tuple[int, int, Instruction]] = []
    slot = 0
    tracked: type | None = None  # Instruction's edit-counting subclass (ebpf._objcache)
    try:
        # (a Label or another Statement takes the careful way below)
        fast: Iterable[Instruction] = insns  # type: ignore[assignment]  # (checked below)
        for ins in fast:
            if type(ins) is not Instruction and type(ins) is not tracked:
                if getattr(type(ins), "_objcache_tracked_base", None) is not Instruction:
                    # a Label, or a subclass of Instruction: the careful way
                    return _encode_slow(insns)
                tracked = type(ins)
            opcode = ins.opcode
            dst = ins.dst
            src = ins.src
            if (dst | src) > 15:
                raise struct.error("register out of range")
            if ins.reference is not None or ins.symbol is not None:
                fixups.append((len(parts), slot, ins))
            if opcode == _LD_IMM64:
                imm = ins.imm
                if (imm >> 64) not in (0, -1):
                    raise struct.error("imm out of range")
                hi = (imm >> 32) & _MASK32
                append(pack_wide(opcode, dst | src << 4, ins.off, imm & _MASK32, hi))
                slot += 2
            else:
                append(pack(opcode, dst | src << 4, ins.off, ins.imm))
                slot += 1
    except (struct.error, TypeError):
        _diagnose(insns)
        raise
    if fixups:
        _fixup(parts, fixups)
    return b"".join(parts)


def _encode_slow(insns: Iterable[Statement]) -> bytes:
    for index, ins in enumerate(insns):
        if not isinstance(ins, (Instruction, Label)):
            raise AsmError(f"entry {index} ({ins!r}) is neither an Instruction nor a Label")
    return encode([_plain(ins) for ins in assemble(insns)])


def _plain(ins: Instruction) -> Instruction:
    return ins if type(ins) is Instruction else ins.copy()


def _pack_one(ins: Instruction) -> bytes:
    regs = ins.dst | ins.src << 4
    if ins.opcode == _LD_IMM64:
        imm = ins.imm
        return _WIDE.pack(ins.opcode, regs, ins.off, imm & _MASK32, (imm >> 32) & _MASK32)
    return _INSN.pack(ins.opcode, regs, ins.off, ins.imm)


def _fixup(parts: list[bytes], fixups: list[tuple[int, int, Instruction]]) -> None:
    symbols: dict[str, int] = {}
    for _, slot, ins in fixups:
        sym = ins.symbol
        if sym is not None:
            if sym in symbols:
                raise AsmError(f"duplicate symbol {sym!r}")
            symbols[sym] = slot
    for part, slot, ins in fixups:
        ref = ins.reference
        if ref is None or not resolvable(ins):
            continue
        target = symbols.get(ref)
        if target is None:
            raise AsmError(f"unknown label {ref!r} referenced by the instruction at slot {slot}")
        parts[part] = _pack_one(resolve(ins, slot, target))


def _diagnose(insns: Iterable[object]) -> None:
    """Raise an `AsmError` naming the first instruction that cannot be encoded."""
    for index, ins in enumerate(insns):
        if isinstance(ins, Label):
            continue
        if not isinstance(ins, Instruction):
            raise AsmError(f"entry {index} ({ins!r}) is neither an Instruction nor a Label")
        problem = field_problem(ins)
        if problem:
            raise AsmError(f"cannot encode instruction {index} ({ins!r}): {problem}")


def field_problem(ins: Instruction) -> str | None:
    """Why the fields of `ins` do not fit ``struct bpf_insn``, or None."""
    for name, value, lo, hi in (
        ("opcode", ins.opcode, 0, 0xFF),
        ("dst", ins.dst, 0, 15),
        ("src", ins.src, 0, 15),
        ("off", ins.off, -0x8000, 0x7FFF),
    ):
        if not isinstance(value, int):
            return f"{name} must be an int, not {type(value).__name__}"
        if not lo <= value <= hi:
            return f"{name} {value} is out of range [{lo}, {hi}]"
    imm = ins.imm
    if not isinstance(imm, int):
        return f"imm must be an int, not {type(imm).__name__}"
    if ins.opcode == _LD_IMM64:
        if not -(1 << 63) <= imm < (1 << 64):
            return f"imm {imm} does not fit in 64 bits"
    elif not -0x8000_0000 <= imm <= 0x7FFF_FFFF:
        return f"imm {imm} is out of range for a signed 32-bit immediate"
    return None


def decode(data: bytes | bytearray | memoryview) -> list[Instruction]:
    """Decode little-endian eBPF bytecode into instructions.

    A 64-bit immediate load becomes one `Instruction` with the whole signed
    64-bit constant in ``imm``. Opcodes are not validated (the kernel does
    that); raises `AsmError` when the length is not a multiple of 8 or a
    64-bit immediate load lacks a well-formed second slot.
    """
    length = len(data) if not isinstance(data, memoryview) else data.nbytes
    if length % 8:
        raise AsmError(
            f"truncated instruction: {length} bytes is not a multiple of 8 "
            f"(the last {length % 8} bytes are a partial slot at byte offset {length - length % 8})"
        )
    out: list[Instruction] = []
    append = out.append
    it = _INSN.iter_unpack(data)
    wide = _LD_IMM64
    for opcode, regs, off, imm in it:
        if opcode == wide:
            second = next(it, None)
            if second is None or second[0] or second[1] or second[2]:
                _bad_wide(out, second)
            append(Instruction(opcode, regs & 15, regs >> 4, off, second[3] << 32 | imm & _MASK32))
        else:
            append(Instruction(opcode, regs & 15, regs >> 4, off, imm))
    return out


def _bad_wide(done: list[Instruction], second: tuple[int, int, int, int] | None) -> NoReturn:
    slot = sum(2 if ins.opcode == _LD_IMM64 else 1 for ins in done)
    where = f"64-bit immediate load at slot {slot} (byte offset {slot * 8})"
    if second is None:
        raise AsmError(f"{where} is missing its second half")
    op2, regs2, off2, _ = second
    raise AsmError(
        f"{where} has a malformed second half: opcode {op2:#04x}, regs {regs2:#04x}, "
        f"off {off2} (all must be zero)"
    )
