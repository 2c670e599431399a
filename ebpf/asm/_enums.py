"""The enumerations of `ebpf.asm.opcodes` (opcode fields, sizes, registers) and the
members it names (``B``, ``R0``, ...): their own module so that reading and loading an
object, which use plain opcode bytes, make none of the eight enum classes (process
start). Public as ``ebpf.asm.opcodes.Class``, ... (their `__module__`)."""

from __future__ import annotations

from .opcodes import _ENUM_NAMES

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from enum import IntEnum
else:
    # the same stdlib classes, made at a fraction of the cost (process start)
    from .._sys.fastclass import IntEnum

__all__ = list(_ENUM_NAMES)  # (one list of the names: opcodes.py's)


class Class(IntEnum):
    """Instruction class: the low three bits of the opcode."""

    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07


class Size(IntEnum):
    """Width of a memory access; the value is the number of bytes.

    `bits` gives the opcode bits (``BPF_B``, ``BPF_H``, ``BPF_W``, ``BPF_DW``).
    """

    B = 1
    H = 2
    W = 4
    DW = 8

    @property
    def bits(self) -> int:
        """The size bits of a load/store opcode."""
        return _SIZE_BITS[self]

    @classmethod
    def from_bits(cls, opcode: int) -> Size:
        """The size encoded in a load/store opcode."""
        return _SIZE_FROM_BITS[opcode & 0x18]


_SIZE_BITS = {Size.W: 0x00, Size.H: 0x08, Size.B: 0x10, Size.DW: 0x18}
_SIZE_FROM_BITS = {v: k for k, v in _SIZE_BITS.items()}

B = Size.B
H = Size.H
W = Size.W
DW = Size.DW


class Mode(IntEnum):
    """Mode bits of a load/store opcode."""

    IMM = 0x00
    ABS = 0x20
    IND = 0x40
    MEM = 0x60
    MEMSX = 0x80
    ATOMIC = 0xC0


class Source(IntEnum):
    """Source bit of an arithmetic/jump opcode (also the byte order of ``END``)."""

    K = 0x00
    X = 0x08
    TO_LE = 0x00
    TO_BE = 0x08


class ALUOp(IntEnum):
    """Operation bits of an ``ALU``/``ALU64`` opcode."""

    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90
    XOR = 0xA0
    MOV = 0xB0
    ARSH = 0xC0
    END = 0xD0


class JumpOp(IntEnum):
    """Operation bits of a ``JMP``/``JMP32`` opcode."""

    JA = 0x00
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0
    JCOND = 0xE0


class AtomicOp(IntEnum):
    """The ``imm`` of a ``STX | ATOMIC`` instruction."""

    ADD = 0x00
    OR = 0x40
    AND = 0x50
    XOR = 0xA0
    FETCH_ADD = 0x01
    FETCH_OR = 0x41
    FETCH_AND = 0x51
    FETCH_XOR = 0xA1
    XCHG = 0xE1
    CMPXCHG = 0xF1
    LOAD_ACQ = 0x100
    STORE_REL = 0x110


class Register(IntEnum):
    """The eleven registers; R10 is the read-only frame pointer."""

    R0 = 0
    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5
    R6 = 6
    R7 = 7
    R8 = 8
    R9 = 9
    R10 = 10


R0 = Register.R0
R1 = Register.R1
R2 = Register.R2
R3 = Register.R3
R4 = Register.R4
R5 = Register.R5
R6 = Register.R6
R7 = Register.R7
R8 = Register.R8
R9 = Register.R9
R10 = Register.R10
RFP = Register.R10

for _cls in (Class, Size, Mode, Source, ALUOp, JumpOp, AtomicOp, Register):
    _cls.__module__ = "ebpf.asm.opcodes"  # where they are public (reprs, pickles, docs)
