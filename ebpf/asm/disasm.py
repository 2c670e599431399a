"""A disassembler printing the kernel's / bpftool's text for each instruction.

The text of one instruction follows ``kernel/bpf/disasm.c`` (what the
verifier log and ``bpftool prog dump xlated`` print) and bpftool's rendering
of 64-bit immediates; a listing adds bpftool's ``   3: `` slot numbers,
``; source line`` annotations from ``meta["line"]`` and ``symbol:`` headers.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from .codec import decode
from .instruction import Instruction, Statement
from .link import resolvable, resolve_lenient
from .opcodes import (
    PSEUDO_CALL,
    PSEUDO_FUNC,
    PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_IDX_VALUE,
    PSEUDO_MAP_VALUE,
)

__all__ = ["disassemble", "format_instruction"]

_ALU = {
    0x00: "+=", 0x10: "-=", 0x20: "*=", 0x30: "/=", 0x40: "|=", 0x50: "&=",
    0x60: "<<=", 0x70: ">>=", 0x80: "neg", 0x90: "%=", 0xA0: "^=", 0xB0: "=",
    0xC0: "s>>=", 0xD0: "endian",
}  # fmt: skip
_ALU_SIGNED = {0x30: "s/=", 0x90: "s%="}
_MOVSX = {8: "(s8)", 16: "(s16)", 32: "(s32)"}
_ATOMIC_ALU = {0x00: "add", 0x40: "or", 0x50: "and", 0xA0: "xor"}
_LDST = {0x00: "u32", 0x08: "u16", 0x10: "u8", 0x18: "u64"}
_LDSX = {0x00: "s32", 0x08: "s16", 0x10: "s8", 0x18: "s64"}
_JMP = {
    0x00: "jmp", 0x10: "==", 0x20: ">", 0x30: ">=", 0x40: "&", 0x50: "!=",
    0x60: "s>", 0x70: "s>=", 0x80: "call", 0x90: "exit", 0xA0: "<", 0xB0: "<=",
    0xC0: "s<", 0xD0: "s<=",
}  # fmt: skip
_CLASS = ("ld", "ldx", "st", "stx", "alu", "jmp", "jmp32", "alu64")
_MASK32 = 0xFFFF_FFFF
_MASK64 = 0xFFFF_FFFF_FFFF_FFFF


@functools.cache
def _helper_names() -> dict[int, str]:
    try:
        # HelperFunc loads _sys/types_helpers.py: not on import
        from ebpf._sys.types import HelperFunc
    except ImportError:  # pragma: no cover - the generated module is missing
        return {}
    return {int(h): f"bpf_{h.name}" for h in HelperFunc}


def _u32(v: int) -> int:
    return v & _MASK32


def _alu(ins: Instruction, code: str) -> str:
    opcode = ins.opcode
    r = "w" if opcode & 0x07 == 0x04 else "r"
    op = opcode & 0xF0
    dst = ins.dst
    if op == 0xD0:
        if r == "r":
            return f"{code} r{dst} = bswap{ins.imm} r{dst}"
        return f"{code} r{dst} = {'be' if opcode & 0x08 else 'le'}{ins.imm} r{dst}"
    if op == 0x80:
        return f"{code} {r}{dst} = -{r}{dst}"
    if opcode == 0xBF and ins.off == 1:
        imm = _u32(ins.imm)
        return f"{code} r{dst} = addr_space_cast(r{ins.src}, {imm >> 16}, {imm & 0xFFFF})"
    if opcode == 0xBF and ins.off == -1:
        return f"{code} r{dst} = &(void __percpu *)(r{ins.src})"
    if ins.off == 1 and op in _ALU_SIGNED:
        sym = _ALU_SIGNED[op]
    else:
        sym = _ALU.get(op, "(null)")
    if opcode & 0x08:
        sx = _MOVSX.get(ins.off, "") if op == 0xB0 else ""
        return f"{code} {r}{dst} {sym} {sx}{r}{ins.src}"
    return f"{code} {r}{dst} {sym} {ins.imm}"


def _stx(ins: Instruction, code: str) -> str:
    opcode = ins.opcode
    mode = opcode & 0xE0
    sz = _LDST[opcode & 0x18]
    dst, src, off, imm = ins.dst, ins.src, ins.off, ins.imm
    if mode == 0x60:
        return f"{code} *({sz} *)(r{dst} {off:+d}) = r{src}"
    if mode != 0xC0:
        return f"BUG_{opcode:02x}"
    bits = "64" if opcode & 0x18 == 0x18 else ""
    if imm in _ATOMIC_ALU:
        return f"{code} lock *({sz} *)(r{dst} {off:+d}) {_ALU[imm]} r{src}"
    if imm & 1 and imm - 1 in _ATOMIC_ALU:
        name = _ATOMIC_ALU[imm - 1]
        return f"{code} r{src} = atomic{bits}_fetch_{name}(({sz} *)(r{dst} {off:+d}), r{src})"
    if imm == 0xF1:
        return f"{code} r0 = atomic{bits}_cmpxchg(({sz} *)(r{dst} {off:+d}), r0, r{src})"
    if imm == 0xE1:
        return f"{code} r{src} = atomic{bits}_xchg(({sz} *)(r{dst} {off:+d}), r{src})"
    if imm == 0x100:
        return f"{code} r{dst} = load_acquire(({sz} *)(r{src} {off:+d}))"
    if imm == 0x110:
        return f"{code} store_release(({sz} *)(r{dst} {off:+d}), r{src})"
    return f"BUG_{opcode:02x}"


def _ld(ins: Instruction, code: str) -> str:
    opcode = ins.opcode
    mode = opcode & 0xE0
    sz = _LDST[opcode & 0x18]
    if mode == 0x20:
        return f"{code} r0 = *({sz} *)skb[{ins.imm}]"
    if mode == 0x40:
        return f"{code} r0 = *({sz} *)skb[r{ins.src} + {ins.imm}]"
    if opcode != 0x18:
        return f"BUG_ld_{opcode:02x}"
    imm = ins.imm
    lo, hi = imm & _MASK32, (imm >> 32) & _MASK32
    src, ref = ins.src, ins.reference
    if src == PSEUDO_MAP_FD:
        value = f"map[{ref}]" if ref is not None else f"map[id:{lo}]"
    elif src == PSEUDO_MAP_VALUE:
        value = f"map[{ref}][0]+{hi}" if ref is not None else f"map[id:{lo}][0]+{hi}"
    elif src == PSEUDO_MAP_IDX_VALUE:
        value = f"map[{ref}]+{hi}" if ref is not None else f"map[idx:{lo}]+{hi}"
    elif src == PSEUDO_FUNC:
        value = f"subprog[{lo - (lo & 0x8000_0000) * 2:+d}]"
        if ref is not None:
            value += f" <{ref}>"
    else:
        value = f"{imm & _MASK64:#x}"
    return f"{code} r{ins.dst} = {value}"


def _jmp(ins: Instruction, code: str) -> str:
    opcode = ins.opcode
    op = opcode & 0xF0
    ref = ins.reference
    target = f" <{ref}>" if ref is not None and resolvable(ins) else ""
    if op == 0x80:
        if ins.src == PSEUDO_CALL:
            return f"{code} call pc{ins.imm:+d}{target}"
        if ins.src == PSEUDO_KFUNC_CALL:
            name = ref if ref is not None else "kernel-function"
        elif ins.src == 0:
            name = _helper_names().get(ins.imm, "unknown")
        else:
            name = "unknown"
        return f"{code} call {name}#{ins.imm}"
    if opcode == 0x05:
        return f"{code} goto pc{ins.off:+d}{target}"
    if opcode == 0x0D:
        return f"{code} gotox r{ins.dst}"
    if opcode == 0xE5 and ins.src == 0:
        return f"{code} may_goto pc{ins.off:+d}{target}"
    if opcode == 0x06:
        return f"{code} gotol pc{ins.imm:+d}{target}"
    if opcode == 0x95:
        return f"{code} exit"
    r = "w" if opcode & 0x07 == 0x06 else "r"
    sym = _JMP.get(op, "(null)")
    if opcode & 0x08:
        return f"{code} if {r}{ins.dst} {sym} {r}{ins.src} goto pc{ins.off:+d}{target}"
    return f"{code} if {r}{ins.dst} {sym} {_u32(ins.imm):#x} goto pc{ins.off:+d}{target}"


def format_instruction(ins: Instruction) -> str:
    """The kernel's text for one instruction, e.g. ``(b7) r0 = 1``.

    A jump or call that refers to a label gets `` <label>`` appended; a map
    load that refers to a map by name prints ``map[name]``.
    """
    opcode = ins.opcode
    code = f"({opcode:02x})"
    cls = opcode & 0x07
    if cls == 0x04 or cls == 0x07:
        return _alu(ins, code)
    if cls == 0x05 or cls == 0x06:
        return _jmp(ins, code)
    if cls == 0x03:
        return _stx(ins, code)
    if cls == 0x02:
        if opcode & 0xE0 == 0x60:
            sz = _LDST[opcode & 0x18]
            return f"{code} *({sz} *)(r{ins.dst} {ins.off:+d}) = {ins.imm}"
        if opcode & 0xE0 == 0xC0:
            return f"{code} nospec"
        return f"BUG_st_{opcode:02x}"
    if cls == 0x01:
        mode = opcode & 0xE0
        if mode == 0x60:
            sz = _LDST[opcode & 0x18]
        elif mode == 0x80:
            sz = _LDSX[opcode & 0x18]
        else:
            return f"BUG_ldx_{opcode:02x}"
        return f"{code} r{ins.dst} = *({sz} *)(r{ins.src} {ins.off:+d})"
    return _ld(ins, code)


def _func_header(func: object, symbol: str | None) -> str | None:
    """A string func info is printed as is (e.g. a C signature); a BTF ``Func`` by name."""
    if isinstance(func, str):
        return func
    if symbol is not None:
        return symbol
    name = getattr(func, "name", None)
    return name if isinstance(name, str) and name else None


def disassemble(insns: Iterable[Statement] | bytes | bytearray | memoryview) -> str:
    """A bpftool-style listing of `insns` (or of raw bytecode), one line each.

    Each instruction is printed as ``{slot:4d}: (opcode) text``; slot numbers
    skip the second half of 64-bit immediate loads. A symbol starts with a
    ``name:`` line (a string ``meta["func"]``, e.g. a C signature, replaces
    the name), and ``meta["line"]`` (a BTF line info record; its `str`) is
    printed as ``; source line`` before its instruction, as bpftool does.
    Label references that resolve are shown as offsets; others as they are.
    """
    if isinstance(insns, (bytes, bytearray, memoryview)):
        insns = decode(insns)
    resolved, slots = resolve_lenient(insns)
    lines: list[str] = []
    for ins, slot in zip(resolved, slots, strict=True):
        meta = ins.meta
        if meta is not None:
            header = _func_header(meta.get("func"), ins.symbol)
            if header is not None:
                lines.append(f"{header}:")
            line = meta.get("line")
            if line is not None:
                lines.append(f"; {line}")
        elif ins.symbol is not None:
            lines.append(f"{ins.symbol}:")
        lines.append(f"{slot:4d}: {format_instruction(ins)}")
    return "\n".join(lines)
