"""`Instruction`, one eBPF instruction, and `Label`, a marker naming the next one."""

from __future__ import annotations

from ..errors import AsmError
from .opcodes import (
    CALL,
    LD_IMM64,
    PSEUDO_CALL,
    PSEUDO_FUNC,
    PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_IDX,
    PSEUDO_MAP_IDX_VALUE,
    PSEUDO_MAP_VALUE,
)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from .opcodes import Class, Size

__all__ = ["Instruction", "Label", "Statement"]

_MAP_SRCS = frozenset((PSEUDO_MAP_FD, PSEUDO_MAP_VALUE, PSEUDO_MAP_IDX, PSEUDO_MAP_IDX_VALUE))


_new_object = object.__new__

class Statement:
    """An entry of an instruction list: an `Instruction` or a `Label`.

    Only a common base for type checkers, so that a list mixing both is a
    ``list[Statement]`` that `encode`, `assemble` and friends accept.
    """

    __slots__ = ()


class Instruction(Statement):
    """One eBPF instruction.

    ``opcode``, ``dst``, ``src``, ``off`` and ``imm`` are the fields of the
    kernel's ``struct bpf_insn``; ``off`` and ``imm`` are signed. A 64-bit
    immediate load (opcode ``0x18``) is a single `Instruction` whose ``imm``
    holds the whole signed 64-bit constant and whose `size` is two slots.
    Jump offsets count raw 8-byte slots, as the kernel does.

    ``symbol`` names a label or function starting here, ``reference`` names
    the symbol this instruction refers to (a jump or call target, or a map
    for a map load), and ``meta`` is a free-form dict for the loader (BTF
    line/func info, CO-RE relocations, ...), ``None`` until needed.
    """

    __slots__ = ("dst", "imm", "meta", "off", "opcode", "reference", "src", "symbol")

    opcode: int
    dst: int
    src: int
    off: int
    imm: int
    symbol: str | None
    reference: str | None
    meta: dict[str, Any] | None

    def __init__(
        self,
        opcode: int,
        dst: int = 0,
        src: int = 0,
        off: int = 0,
        imm: int = 0,
        *,
        symbol: str | None = None,
        reference: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.opcode = opcode
        self.dst = dst
        self.src = src
        self.off = off
        self.imm = imm
        self.symbol = symbol
        self.reference = reference
        self.meta = meta

    # -- value semantics -------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Instruction):
            return NotImplemented
        return (
            self.opcode == other.opcode
            and self.dst == other.dst
            and self.src == other.src
            and self.off == other.off
            and self.imm == other.imm
            and self.symbol == other.symbol
            and self.reference == other.reference
            and self.meta == other.meta
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        text = (
            f"Instruction(opcode={self.opcode:#04x}, dst={self.dst}, src={self.src}, "
            f"off={self.off}, imm={self.imm}"
        )
        if self.symbol is not None:
            text += f", symbol={self.symbol!r}"
        if self.reference is not None:
            text += f", reference={self.reference!r}"
        if self.meta is not None:
            text += f", meta={self.meta!r}"
        return text + ")"

    def __str__(self) -> str:
        from .disasm import format_instruction  # circular: disasm imports this module

        return format_instruction(self)

    def copy(self) -> Instruction:
        """A shallow copy (``meta`` is copied one level deep)."""
        # fields set on a bare instance: half the time of a call to __init__ with
        # keywords (a template's spec.copy() copies thousands of them)
        new = _new_object(Instruction)
        new.opcode = self.opcode
        new.dst = self.dst
        new.src = self.src
        new.off = self.off
        new.imm = self.imm
        new.symbol = self.symbol
        new.reference = self.reference
        meta = self.meta
        new.meta = None if meta is None else dict(meta)
        return new

    def with_symbol(self, name: str | None) -> Instruction:
        """A copy that starts the symbol (label or function) `name`."""
        ins = self.copy()
        ins.symbol = name
        return ins

    def with_reference(self, name: str | None) -> Instruction:
        """A copy that refers to the symbol `name` (jump/call target or map)."""
        ins = self.copy()
        ins.reference = name
        return ins

    # -- shape -------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of 8-byte slots taken: 2 for a 64-bit immediate load, else 1."""
        return 2 if self.opcode == LD_IMM64 else 1

    @property
    def cls(self) -> Class:
        """The instruction class."""
        from .opcodes import Class  # the enums on first use (process start): see opcodes.py

        return Class(self.opcode & 0x07)

    @property
    def mem_size(self) -> Size:
        """The access width of a load/store/atomic (meaningless for other classes)."""
        from .opcodes import Size  # the enums on first use (process start): see opcodes.py

        return Size.from_bits(self.opcode)

    # -- kinds -------------------------------------------------------------

    @property
    def is_ld_imm64(self) -> bool:
        """A 64-bit immediate load (two slots)."""
        return self.opcode == LD_IMM64

    @property
    def is_load_from_map(self) -> bool:
        """A 64-bit immediate load of a map or a map value address."""
        return self.opcode == LD_IMM64 and self.src in _MAP_SRCS

    @property
    def is_func_ref(self) -> bool:
        """A 64-bit immediate load of a BPF function's address (a callback)."""
        return self.opcode == LD_IMM64 and self.src == PSEUDO_FUNC

    @property
    def is_call(self) -> bool:
        """Any call: helper, bpf-to-bpf or kfunc."""
        return self.opcode == CALL

    @property
    def is_helper_call(self) -> bool:
        """A call of a helper by its static id."""
        return self.opcode == CALL and self.src == 0

    @property
    def is_function_call(self) -> bool:
        """A bpf-to-bpf call (``src == PSEUDO_CALL``)."""
        return self.opcode == CALL and self.src == PSEUDO_CALL

    @property
    def is_kfunc_call(self) -> bool:
        """A call of a kernel function by BTF id (``src == PSEUDO_KFUNC_CALL``)."""
        return self.opcode == CALL and self.src == PSEUDO_KFUNC_CALL

    @property
    def is_exit(self) -> bool:
        """The ``exit`` instruction."""
        return self.opcode == 0x95

    @property
    def is_jump(self) -> bool:
        """A branch whose target is a slot offset (in ``off``, or ``imm`` for ``gotol``)."""
        return _REF_KIND[self.opcode] in (_REF_OFF, _REF_IMM)


class Label(Statement):
    """A marker in an instruction list naming the instruction that follows it.

    `assemble` and `encode` move the name into that instruction's ``symbol``;
    a `Label` takes no space in the encoded program.
    """

    __slots__ = ("name",)

    name: str

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise AsmError(f"a label name must be a non-empty string, not {name!r}")
        self.name = name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Label):
            return NotImplemented
        return self.name == other.name

    def __hash__(self) -> int:
        return hash((Label, self.name))

    def __repr__(self) -> str:
        return f"Label({self.name!r})"

    def __str__(self) -> str:
        return f"{self.name}:"


# How a reference is resolved, by opcode: the field that receives the offset.
_REF_NONE = 0  # not resolved by the assembler (maps, helpers, kfuncs, ...)
_REF_OFF = 1  # jump: off = target - next slot
_REF_IMM = 2  # gotol: imm = target - next slot
_REF_CALL = 3  # call: imm = target - next slot when src == PSEUDO_CALL
_REF_FUNC = 4  # ld_imm64: imm = target - next slot when src == PSEUDO_FUNC


def _ref_kinds() -> tuple[int, ...]:
    """The reference kind of each opcode (`_REF_KIND`, precomputed: import cost)."""
    from .opcodes import Class  # the enums on first use (process start): see opcodes.py

    kinds = [_REF_NONE] * 256
    for opcode in range(256):
        cls = opcode & 0x07
        op = opcode & 0xF0
        if cls == Class.JMP:
            if op == 0x80:
                kinds[opcode] = _REF_CALL if opcode == CALL else _REF_NONE
            elif op == 0x90 or opcode == 0x0D:  # exit, gotox
                kinds[opcode] = _REF_NONE
            else:
                kinds[opcode] = _REF_OFF
        elif cls == Class.JMP32:
            if opcode == 0x06:
                kinds[opcode] = _REF_IMM
            elif op not in (0x80, 0x90):
                kinds[opcode] = _REF_OFF
    kinds[LD_IMM64] = _REF_FUNC
    return tuple(kinds)


# _ref_kinds() written out (tests/test_asm.py compares): 256 entries, by opcode
_REF_KIND = bytes.fromhex(
    "0000000000010200000000000000010000000000000101000400000000010100"
    "0000000000010100000000000001010000000000000101000000000000010100"
    "0000000000010100000000000001010000000000000101000000000000010100"
    "0000000000010100000000000001010000000000000101000000000000010100"
    "0000000000030000000000000000000000000000000000000000000000000000"
    "0000000000010100000000000001010000000000000101000000000000010100"
    "0000000000010100000000000001010000000000000101000000000000010100"
    "0000000000010100000000000001010000000000000101000000000000010100"
)
