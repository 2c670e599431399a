"""`Frame`: one resolved address (kernel or user), and `Symbol`: one named address."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Symbol:
    """A named address: `addr` where `name` starts, `size` in bytes (0 when the
    table does not say), `module` the kernel module (None for the kernel itself,
    ``"bpf"`` for BPF programs) or the ELF file's path."""

    name: str
    addr: int
    size: int = 0
    module: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """One address and what it resolved to: `name` of the enclosing symbol (None when
    no symbol covers it), `offset` from that symbol's start, `module` (kernel module
    or ELF path, ``"[vdso]"``-style names for special mappings, None for the kernel
    itself or when unknown)."""

    addr: int
    name: str | None = None
    offset: int = 0
    module: str | None = None

    def __str__(self) -> str:
        if not self.module:
            where = ""
        elif self.module.startswith("["):  # [vdso], [heap]: already bracketed
            where = f" {self.module}"
        else:
            where = f" [{self.module}]"
        if self.name is None:
            return f"{self.addr:#x}{where}"
        return f"{self.name}+{self.offset:#x}{where}"


__all__ = ["Frame", "Symbol"]
