"""The names the kernel keeps for maps and programs (BPF_OBJ_NAME_LEN)."""

from __future__ import annotations

__all__ = ["OBJ_NAME_MAX", "kernel_name"]

OBJ_NAME_MAX = 15
"""The longest name the kernel keeps (BPF_OBJ_NAME_LEN less its NUL)."""


def kernel_name(name: str) -> str:
    """The name the kernel gets for a map or program: only [A-Za-z0-9_.] kept, at
    most 15 characters (like libbpf)."""
    kept = "".join(c for c in name if c.isascii() and (c.isalnum() or c in "_."))
    return kept[:OBJ_NAME_MAX]
