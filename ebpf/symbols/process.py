"""A process's memory map (``/proc/PID/maps``) and the symbols of what it maps.

A user address is resolved by finding its mapping, turning it into an offset in the
mapped file (``addr - start + file offset``), and that offset into the file's own
virtual address through its ``PT_LOAD`` segments: the same for executables, PIE
executables and shared libraries, whatever address they were loaded at.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Callable

from .elfsyms import ElfSymbols
from .frame import Frame

_MAPS_LINE = re.compile(
    r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)(?: +(.*))?$",
    re.MULTILINE)
_DELETED = " (deleted)"


@dataclasses.dataclass(frozen=True, slots=True)
class Mapping:
    """One line of ``/proc/PID/maps``: ``[start, end)`` mapped with `perms` from
    `offset` in `path` (empty for anonymous memory; ``[heap]``, ``[stack]``,
    ``[vdso]`` for the kernel's special mappings). `deleted` says the file was
    removed or replaced since it was mapped."""

    start: int
    end: int
    perms: str
    offset: int
    device: str
    inode: int
    path: str
    deleted: bool = False

    @property
    def is_file(self) -> bool:
        """Whether a file backs the mapping (not anonymous, not special)."""
        return self.inode != 0 and self.path.startswith("/")


def parse_maps(text: str) -> list[Mapping]:
    """The mappings of a ``/proc/PID/maps`` text (lines not in its format are skipped)."""
    out = []
    for start, end, perms, off, dev, inode, path in _MAPS_LINE.findall(text):
        path = path.rstrip("\n")
        deleted = path.endswith(_DELETED)
        if deleted:
            path = path[: -len(_DELETED)]
        out.append(Mapping(int(start, 16), int(end, 16), perms, int(off, 16), dev, int(inode),
                           path, deleted))
    return out


def read_maps(pid: int) -> list[Mapping]:
    """The mappings of process `pid`, sorted by address."""
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="surrogateescape") as f:
        return sorted(parse_maps(f.read()), key=lambda m: m.start)


ElfLoader = Callable[[int, Mapping], "ElfSymbols | None"]


class ProcessSymbols:
    """Resolves addresses of one process. The memory map is read once (and again when
    an address falls outside every mapping, as after a ``dlopen``); `elf_of` gives
    the symbols of a mapped file (the `Symbolizer` shares them between processes)."""

    def __init__(self, pid: int, elf_of: ElfLoader) -> None:
        """Symbols of process `pid`; raises OSError when it does not exist."""
        self.pid = pid
        self._elf_of = elf_of
        self._load()

    def _load(self) -> None:
        self._maps = read_maps(self.pid)
        self._starts = [m.start for m in self._maps]

    def mapping(self, addr: int, *, reread: bool = True) -> Mapping | None:
        """The mapping holding `addr` (re-reading the map once if none does)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self._maps[i].end:
            return self._maps[i]
        if reread:
            try:
                self._load()
            except OSError:
                return None
            return self.mapping(addr, reread=False)
        return None

    def resolve(self, addr: int) -> Frame:
        """The frame of user address `addr` in this process."""
        m = self.mapping(addr)
        if m is None:
            return Frame(addr)
        if not m.is_file:
            return Frame(addr, None, 0, m.path or None)
        elf = self._elf_of(self.pid, m)
        if elf is None:
            return Frame(addr, None, 0, m.path)
        vaddr = elf.file_offset_to_vaddr(addr - m.start + m.offset)
        if vaddr is None:
            return Frame(addr, None, 0, m.path)
        return elf.resolve(vaddr, addr)


def mapped_file_paths(pid: int, m: Mapping) -> list[str]:
    """Where the file behind mapping `m` of process `pid` can be opened, best first:
    the mapping itself (works for deleted files, needs privilege), the path seen from
    the process's root directory (containers), the path as written."""
    paths = [f"/proc/{pid}/map_files/{m.start:x}-{m.end:x}", f"/proc/{pid}/root{m.path}"]
    if not m.deleted:
        paths.append(m.path)
    return paths


__all__ = ["ElfLoader", "Mapping", "ProcessSymbols", "mapped_file_paths", "parse_maps",
           "read_maps"]
