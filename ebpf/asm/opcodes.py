"""Opcode fields, registers and pseudo-source values of the eBPF instruction set.

An opcode byte is ``class | size | mode`` for loads and stores and
``class | source | op`` for arithmetic and jumps; the enumerations here hold
the bits of each part, named as in the kernel's ``linux/bpf.h`` without the
``BPF_`` prefix.
"""

from __future__ import annotations

import ebpf._lazyattr as _lazyattr

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from ._enums import DW as DW
    from ._enums import R0 as R0
    from ._enums import R1 as R1
    from ._enums import R2 as R2
    from ._enums import R3 as R3
    from ._enums import R4 as R4
    from ._enums import R5 as R5
    from ._enums import R6 as R6
    from ._enums import R7 as R7
    from ._enums import R8 as R8
    from ._enums import R9 as R9
    from ._enums import R10 as R10
    from ._enums import RFP as RFP
    from ._enums import ALUOp as ALUOp
    from ._enums import AtomicOp as AtomicOp
    from ._enums import B as B
    from ._enums import Class as Class
    from ._enums import H as H
    from ._enums import JumpOp as JumpOp
    from ._enums import Mode as Mode
    from ._enums import Register as Register
    from ._enums import Size as Size
    from ._enums import Source as Source
    from ._enums import W as W

__all__ = [
    "CALL",
    "DW",
    "EXIT",
    "FETCH",
    "LD_IMM64",
    "PSEUDO_BTF_ID",
    "PSEUDO_CALL",
    "PSEUDO_FUNC",
    "PSEUDO_KFUNC_CALL",
    "PSEUDO_MAP_FD",
    "PSEUDO_MAP_IDX",
    "PSEUDO_MAP_IDX_VALUE",
    "PSEUDO_MAP_VALUE",
    "R0",
    "R1",
    "R2",
    "R3",
    "R4",
    "R5",
    "R6",
    "R7",
    "R8",
    "R9",
    "R10",
    "RFP",
    "ALUOp",
    "AtomicOp",
    "B",
    "Class",
    "H",
    "JumpOp",
    "Mode",
    "Register",
    "Size",
    "Source",
    "W",
]

def __dir__() -> list[str]:
    return sorted({*globals(), *_ENUM_NAMES})


FETCH = 0x01
"""Modifier bit of an atomic ``imm``: return the old value in ``src``."""


# src values of a 64-bit immediate load (LD | IMM | DW)
PSEUDO_MAP_FD = 1
"""``imm`` is a map fd; the register receives the map."""
PSEUDO_MAP_VALUE = 2
"""``imm`` is a map fd, the high half an offset into its value."""
PSEUDO_BTF_ID = 3
"""``imm`` is a BTF id of a kernel variable."""
PSEUDO_FUNC = 4
"""``imm`` is the slot offset of a BPF function (a callback)."""
PSEUDO_MAP_IDX = 5
"""``imm`` is an index into the program's fd_array."""
PSEUDO_MAP_IDX_VALUE = 6
"""``imm`` is an fd_array index, the high half an offset into the value."""

# src values of a call (JMP | CALL)
PSEUDO_CALL = 1
"""A bpf-to-bpf call; ``imm`` is the slot offset of the callee."""
PSEUDO_KFUNC_CALL = 2
"""A kfunc call; ``imm`` is a BTF id, ``off`` an fd_array index of its BTF (0 = vmlinux)."""

# whole opcode bytes worth a name
LD_IMM64 = 0x18
"""Opcode of a 64-bit immediate load (LD | IMM | DW)."""
CALL = 0x85
"""Opcode of a call (JMP | CALL): helper, bpf-to-bpf or kfunc, by ``src``."""
EXIT = 0x95
"""Opcode of ``exit`` (JMP | EXIT)."""

# The names of __all__ this module does not define: the enumerations and the members they
# name, in _enums.py (whose __all__ this is), made on first use: reading and loading an
# object need only the plain opcode bytes (process start).
_ENUM_NAMES = tuple(name for name in __all__ if name not in globals())
__getattr__ = _lazyattr.lazy_attributes(globals(), dict.fromkeys(_ENUM_NAMES, "._enums"))
