"""eBPF instructions: encoding, decoding, a builder DSL, labels and a disassembler.

>>> from ebpf import asm
>>> prog = [
...     asm.mov_imm(asm.R0, 0),
...     asm.jeq_imm(asm.R1, 0, "out"),
...     asm.mov_imm(asm.R0, 1),
...     asm.label("out"),
...     asm.exit(),
... ]
>>> print(asm.disassemble(prog))
   0: (b7) r0 = 0
   1: (15) if r1 == 0x0 goto pc+1 <out>
   2: (b7) r0 = 1
out:
   3: (95) exit
>>> asm.encode(prog).hex()
'b7000000000000001501010000000000b7000000010000009500000000000000'
>>> str(asm.decode(asm.encode(prog))[1])
'(15) if r1 == 0x0 goto pc+1'

`HelperFunc` (helper ids by kernel name) is imported lazily from the
generated ``ebpf._sys.types``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .builder import *  # noqa: F403
from .builder import __all__ as _builder_all
from .codec import decode, encode
from .disasm import disassemble, format_instruction
from .errors import AsmError
from .instruction import Instruction, Label, Statement
from .link import assemble, raw_offsets, symbol_offsets
from .opcodes import *  # noqa: F403
from .opcodes import __all__ as _opcodes_all

if TYPE_CHECKING:
    from ebpf._sys.types import HelperFunc

__all__ = [
    "AsmError",
    "HelperFunc",
    "Instruction",
    "Label",
    "Statement",
    "assemble",
    "decode",
    "disassemble",
    "encode",
    "format_instruction",
    "raw_offsets",
    "symbol_offsets",
    *_builder_all,
    *_opcodes_all,
]


def __getattr__(name: str) -> Any:
    if name == "HelperFunc":
        # HelperFunc loads _sys/types_helpers.py: not on import
        from ebpf._sys.types import HelperFunc

        return HelperFunc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
