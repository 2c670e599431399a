"""The assembler's exception."""

from __future__ import annotations

from ebpf.errors import InvalidArgumentError

__all__ = ["AsmError"]


class AsmError(InvalidArgumentError):
    """An instruction cannot be built, encoded, decoded or linked.

    Raised for malformed bytecode (truncated input, a 64-bit immediate load
    missing its second half), out-of-range fields (register, offset,
    immediate), and unknown or duplicate labels; the message names the
    instruction, label or byte offset at fault.
    """
