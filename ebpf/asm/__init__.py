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

import ebpf._lazyattr as _lazyattr

from ..errors import AsmError
from .codec import decode, encode
from .instruction import Instruction, Label, Statement
from .link import assemble, raw_offsets, symbol_offsets
from .opcodes import _ENUM_NAMES  # the enums: on first use, by __getattr__ (opcodes.py)
from .opcodes import CALL as CALL
from .opcodes import EXIT as EXIT
from .opcodes import FETCH as FETCH
from .opcodes import LD_IMM64 as LD_IMM64
from .opcodes import PSEUDO_BTF_ID as PSEUDO_BTF_ID
from .opcodes import PSEUDO_CALL as PSEUDO_CALL
from .opcodes import PSEUDO_FUNC as PSEUDO_FUNC
from .opcodes import PSEUDO_KFUNC_CALL as PSEUDO_KFUNC_CALL
from .opcodes import PSEUDO_MAP_FD as PSEUDO_MAP_FD
from .opcodes import PSEUDO_MAP_IDX as PSEUDO_MAP_IDX
from .opcodes import PSEUDO_MAP_IDX_VALUE as PSEUDO_MAP_IDX_VALUE
from .opcodes import PSEUDO_MAP_VALUE as PSEUDO_MAP_VALUE
from .opcodes import __all__ as _opcodes_all

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from ebpf._sys.types import HelperFunc

    from .builder import *  # noqa: F403
    from .disasm import disassemble, format_instruction
    from .opcodes import *  # noqa: F403

# The builder DSL (~1.5 ms of function objects) and the disassembler load on first use:
# reading an object and loading it need neither (process start). builder.__all__, as
# tests/test_asm.py checks:
_BUILDER_NAMES = (
    "add_imm", "add_imm32", "add_reg", "add_reg32", "addr_space_cast", "and_imm", "and_imm32",
    "and_reg", "and_reg32", "arsh_imm", "arsh_imm32", "arsh_reg", "arsh_reg32", "atomic_add",
    "atomic_and", "atomic_cmpxchg", "atomic_or", "atomic_xchg", "atomic_xor", "bswap", "call",
    "call_func", "call_kfunc", "div_imm", "div_imm32", "div_reg", "div_reg32", "exit", "gotol",
    "helper_id", "ja", "jeq_imm", "jeq_imm32", "jeq_reg", "jeq_reg32", "jge_imm", "jge_imm32",
    "jge_reg", "jge_reg32", "jgt_imm", "jgt_imm32", "jgt_reg", "jgt_reg32", "jle_imm",
    "jle_imm32", "jle_reg", "jle_reg32", "jlt_imm", "jlt_imm32", "jlt_reg", "jlt_reg32",
    "jne_imm", "jne_imm32", "jne_reg", "jne_reg32", "jset_imm", "jset_imm32", "jset_reg",
    "jset_reg32", "jsge_imm", "jsge_imm32", "jsge_reg", "jsge_reg32", "jsgt_imm", "jsgt_imm32",
    "jsgt_reg", "jsgt_reg32", "jsle_imm", "jsle_imm32", "jsle_reg", "jsle_reg32", "jslt_imm",
    "jslt_imm32", "jslt_reg", "jslt_reg32", "label", "ld_btf_id", "ld_func", "ld_imm64",
    "ld_map_fd", "ld_map_idx", "ld_map_idx_value", "ld_map_value", "load_abs", "load_acquire",
    "load_ind", "load_mem", "load_mem_sx", "lsh_imm", "lsh_imm32", "lsh_reg", "lsh_reg32",
    "may_goto", "mod_imm", "mod_imm32", "mod_reg", "mod_reg32", "mov_imm", "mov_imm32",
    "mov_reg", "mov_reg32", "movsx", "movsx32", "mul_imm", "mul_imm32", "mul_reg", "mul_reg32",
    "neg", "neg32", "nop", "or_imm", "or_imm32", "or_reg", "or_reg32", "rsh_imm", "rsh_imm32",
    "rsh_reg", "rsh_reg32", "sdiv_imm", "sdiv_imm32", "sdiv_reg", "sdiv_reg32", "smod_imm",
    "smod_imm32", "smod_reg", "smod_reg32", "store_imm", "store_mem", "store_release",
    "sub_imm", "sub_imm32", "sub_reg", "sub_reg32", "to_be", "to_le", "xor_imm", "xor_imm32",
    "xor_reg", "xor_reg32",
)  # fmt: skip
# opcodes' enums (and the members it names) are made on first use too (see opcodes.py),
# and so is HelperFunc (it loads _sys/types_helpers.py).
_LAZY = {"disassemble": ".disasm", "format_instruction": ".disasm",
         **dict.fromkeys(_BUILDER_NAMES, ".builder"), **dict.fromkeys(_ENUM_NAMES, ".opcodes"),
         "HelperFunc": "ebpf._sys.types"}
__getattr__ = _lazyattr.lazy_attributes(globals(), _LAZY)

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
    *_BUILDER_NAMES,
    *_opcodes_all,
]


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "HelperFunc"})
