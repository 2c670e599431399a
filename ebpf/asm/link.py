"""Label resolution: turning symbol references into slot offsets."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import AsmError
from .instruction import (
    _REF_CALL,
    _REF_FUNC,
    _REF_KIND,
    _REF_NONE,
    _REF_OFF,
    Instruction,
    Label,
    Statement,
)
from .opcodes import LD_IMM64, PSEUDO_CALL, PSEUDO_FUNC

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import TypeAlias

__all__ = ["assemble", "raw_offsets", "symbol_offsets"]

Insns: TypeAlias = Iterable[Statement]


def _describe(ins: object, index: int) -> str:
    return f"instruction {index} ({ins!r})"


def _check(ins: object, index: int) -> Instruction:
    if isinstance(ins, Instruction):
        return ins
    raise AsmError(f"{_describe(ins, index)} is neither an Instruction nor a Label")


def raw_offsets(insns: Insns) -> list[int]:
    """The slot index of each entry of `insns` (a `Label` gets its successor's slot).

    A 64-bit immediate load takes two slots, every other instruction one.
    """
    out: list[int] = []
    slot = 0
    for index, ins in enumerate(insns):
        out.append(slot)
        if isinstance(ins, Instruction):
            slot += 2 if ins.opcode == LD_IMM64 else 1
        elif not isinstance(ins, Label):
            _check(ins, index)
    return out


def symbol_offsets(insns: Insns) -> dict[str, int]:
    """Map each symbol (``Instruction.symbol`` or `Label`) to its slot index.

    Raises `AsmError` for a duplicate symbol or a trailing `Label`.
    """
    return _symbols(insns)[0]


def _symbols(insns: Insns) -> tuple[dict[str, int], list[Instruction], list[int]]:
    """Symbols, the instructions with labels folded in, and their slots."""
    symbols: dict[str, int] = {}
    out: list[Instruction] = []
    slots: list[int] = []
    pending: list[str] = []
    slot = 0
    for index, item in enumerate(insns):
        if isinstance(item, Label):
            name = item.name
            if name in symbols or name in pending:
                raise AsmError(f"duplicate symbol {name!r}")
            pending.append(name)
            continue
        ins = _check(item, index)
        if pending:
            if len(pending) > 1 or (ins.symbol is not None and ins.symbol != pending[0]):
                names = ([ins.symbol] if ins.symbol is not None else []) + pending
                raise AsmError(
                    f"{_describe(ins, index)} has more than one symbol: "
                    + ", ".join(repr(n) for n in names)
                )
            ins = ins.with_symbol(pending[0])
            pending.clear()
        sym = ins.symbol
        if sym is not None:
            if sym in symbols:
                raise AsmError(f"duplicate symbol {sym!r}")
            symbols[sym] = slot
        out.append(ins)
        slots.append(slot)
        slot += 2 if ins.opcode == LD_IMM64 else 1
    if pending:
        raise AsmError(f"label {pending[0]!r} does not precede an instruction")
    return symbols, out, slots


def resolvable(ins: Instruction) -> bool:
    """Whether the assembler turns `ins.reference` into an offset.

    True for jumps, bpf-to-bpf calls and function-address loads; references of
    map loads, helper and kfunc calls are left for the loader.
    """
    kind = _REF_KIND[ins.opcode]
    if kind == _REF_NONE:
        return False
    if kind == _REF_CALL:
        return ins.src == PSEUDO_CALL
    if kind == _REF_FUNC:
        return ins.src == PSEUDO_FUNC
    return True


def resolve(ins: Instruction, slot: int, target: int) -> Instruction:
    """A copy of `ins` (at `slot`) pointing at the slot `target`."""
    delta = target - slot - 1
    out = ins.copy()
    if _REF_KIND[ins.opcode] == _REF_OFF:
        if not -0x8000 <= delta <= 0x7FFF:
            raise AsmError(
                f"jump at slot {slot} to {ins.reference!r} is out of range "
                f"for a 16-bit offset ({delta:+d} slots); use gotol"
            )
        out.off = delta
    else:  # _REF_IMM, _REF_CALL, _REF_FUNC
        if not -0x8000_0000 <= delta <= 0x7FFF_FFFF:
            raise AsmError(f"reference at slot {slot} to {ins.reference!r} is out of range")
        out.imm = delta
    return out


def assemble(insns: Insns) -> list[Instruction]:
    """Fold `Label` markers into symbols and resolve references to slot offsets.

    Jumps (``off``, or ``imm`` for ``gotol``), bpf-to-bpf calls and function
    address loads whose ``reference`` names a symbol in `insns` get the
    offset from the next slot to that symbol. References of map loads,
    helper and kfunc calls are kept as they are for the loader. The result is
    a new list; changed instructions are copies, the others are shared.

    Raises `AsmError` naming an unknown or duplicate label.
    """
    symbols, out, slots = _symbols(insns)
    for index, ins in enumerate(out):
        ref = ins.reference
        if ref is None or not resolvable(ins):
            continue
        target = symbols.get(ref)
        if target is None:
            raise AsmError(f"unknown label {ref!r} referenced by {_describe(ins, index)}")
        out[index] = resolve(ins, slots[index], target)
    return out


def resolve_lenient(insns: Insns) -> tuple[list[Instruction], list[int]]:
    """Like `assemble`, but unknown references are left alone (for display)."""
    symbols, out, slots = _symbols(insns)
    for index, ins in enumerate(out):
        ref = ins.reference
        if ref is None or not resolvable(ins):
            continue
        target = symbols.get(ref)
        if target is not None:
            try:
                out[index] = resolve(ins, slots[index], target)
            except AsmError:
                pass
    return out, slots
