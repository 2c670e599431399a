"""Kernel symbols from ``/proc/kallsyms``: address -> name+offset, name -> address.

Each line of kallsyms is ``<hex address> <type letter> <name>[\\t[<module>]]``. Without
CAP_SYSLOG (or with ``kernel.kptr_restrict`` = 2) the kernel shows every address as 0:
`KernelSymbols.hidden` is then True and lookups raise `ebpf.PermissionError`.
"""

from __future__ import annotations

import errno
import re
import threading
import time

from ..errors import KeyNotFoundError
from .frame import Frame, Symbol
from .table import SymbolTable

KALLSYMS = "/proc/kallsyms"

_LINE = re.compile(r"^([0-9a-fA-F]+) (\S) (\S+)(?:\t\[(\S+)\])?[ \t]*$", re.MULTILINE)
# absolute and undefined symbols name no place in the kernel's image
_SKIPPED_TYPES = frozenset("aAuU")


def parse_kallsyms(text: str) -> list[tuple[int, str, str, str | None]]:
    """``(address, type letter, name, module)`` for each well-formed line of `text`
    (in the order given); other lines are skipped."""
    return [(int(a, 16), t, n, m or None) for a, t, n, m in _LINE.findall(text)]


def _rank(name: str, is_global: int) -> tuple[object, ...]:
    # at one address: a global symbol before a local one, then the name with the fewest
    # leading underscores (the function, not a marker such as _stext), then the shorter
    return (-is_global, len(name) - len(name.lstrip("_")), len(name), name)


class KernelSymbols:
    """The kernel's symbol table (core kernel, modules, BPF programs as module "bpf")."""

    def __init__(self, entries: list[tuple[int, str, str, str | None]]) -> None:
        """Index `parse_kallsyms` output; see `load` for the running kernel's."""
        self.loaded_at = time.monotonic()
        self.hidden = bool(entries) and not any(e[0] for e in entries)
        kept = [e for e in entries if e[1] not in _SKIPPED_TYPES]
        self._table = SymbolTable(
            [e[0] for e in kept], [e[2] for e in kept], [0] * len(kept), [e[3] for e in kept],
            flags=[e[1].isupper() for e in kept], rank=_rank)

    @classmethod
    def load(cls, path: str = KALLSYMS) -> KernelSymbols:
        """Read and index `path` (``/proc/kallsyms``)."""
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return cls(parse_kallsyms(f.read()))

    def __len__(self) -> int:
        return len(self._table)

    def _check_visible(self) -> None:
        if self.hidden:
            from ..errors import PermissionError  # hidden addresses only (process start)
            raise PermissionError(
                errno.EPERM, "kernel symbol addresses are hidden from this process (all "
                "0 in /proc/kallsyms): it needs CAP_SYSLOG and kernel.kptr_restrict < 2")

    def resolve(self, addr: int) -> Frame:
        """The frame of kernel address `addr` (name None when no symbol covers it)."""
        self._check_visible()
        s = self._table.find(addr)
        if s is None:
            return Frame(addr)
        return Frame(addr, s.name, addr - s.addr, s.module)

    def symbol(self, name: str) -> Symbol:
        """The symbol called `name`; `KeyNotFoundError` when there is none."""
        self._check_visible()
        s = self._table.by_name(name)
        if s is None:
            raise KeyNotFoundError(f"no kernel symbol {name!r}")
        return s

    def address(self, name: str) -> int:
        """The address of kernel symbol `name`; `KeyNotFoundError` when there is none."""
        return self.symbol(name).addr


_cached: KernelSymbols | None = None
_lock = threading.Lock()


def kernel_symbols(*, refresh: bool = False) -> KernelSymbols:
    """The running kernel's symbols, read once per process (``refresh=True`` re-reads
    them, e.g. after modules or BPF programs were loaded)."""
    global _cached
    with _lock:
        if _cached is None or refresh:
            _cached = KernelSymbols.load()
        return _cached


__all__ = ["KALLSYMS", "KernelSymbols", "kernel_symbols", "parse_kallsyms"]
