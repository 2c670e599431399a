"""Symbols of one ELF executable or shared library: ``.symtab`` and ``.dynsym``
functions, the ``PT_LOAD`` segments that map file offsets to virtual addresses, and
the GNU build-id."""

from __future__ import annotations

import os

from ..elffile import (
    SHN_UNDEF,
    ELFFile,
    ElfType,
    Section,
    SectionType,
    Segment,
    SegmentType,
    SymbolBind,
)
from ..elffile import SymbolType as _SymType
from .frame import Frame
from .table import SymbolTable

NT_GNU_BUILD_ID = 3

_CODE_TYPES = frozenset({int(_SymType.FUNC), 10})  # STT_FUNC, STT_GNU_IFUNC
_BIND_RANK = {int(SymbolBind.GLOBAL): 0, int(SymbolBind.WEAK): 1}


def _rank(name: str, bind: int) -> tuple[object, ...]:
    # at one address: the name with the fewest leading underscores (getpid, not
    # __getpid), then global before weak before local, then the shorter
    return (len(name) - len(name.lstrip("_")), _BIND_RANK.get(bind, 2), len(name), name)


class ElfSymbols:
    """The function symbols and load segments of the ELF file at `path`.

    Addresses are the file's own virtual addresses (``st_value``); `file_offset_to_vaddr`
    turns an offset into the file (what ``/proc/PID/maps`` gives) into one."""

    def __init__(self, path: str, *, module: str | None = None) -> None:
        """Read `path` (an executable or shared library); `module` names it in frames
        (default: `path`)."""
        self.path = path
        self.module = module if module is not None else path
        with ELFFile(path) as elf:
            self.shared = elf.type == ElfType.DYN
            self.segments = [(s.offset, s.vaddr, s.filesz) for s in elf.segments
                             if s.type == SegmentType.LOAD]
            self.build_id = _build_id(elf)
            addrs: list[int] = []
            names: list[str] = []
            sizes: list[int] = []
            binds: list[int] = []
            for table in (elf.symbols(), elf.dynamic_symbols()):
                for sym in table:
                    if (sym.type in _CODE_TYPES and sym.value and sym.name
                            and sym.section_index != SHN_UNDEF):
                        addrs.append(sym.value)
                        names.append(sym.name.split("@", 1)[0])
                        sizes.append(sym.size)
                        binds.append(int(sym.bind))
        self._table = SymbolTable(addrs, names, sizes, [self.module] * len(addrs),
                                  flags=binds, rank=_rank)

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"ElfSymbols({self.path!r}, {len(self)} functions, build_id={self.build_id!r})"

    def file_offset_to_vaddr(self, offset: int) -> int | None:
        """The virtual address a ``PT_LOAD`` segment maps file `offset` at, or None."""
        for off, vaddr, filesz in self.segments:
            if off <= offset < off + filesz:
                return offset - off + vaddr
        return None

    def resolve(self, vaddr: int, addr: int | None = None) -> Frame:
        """The frame of the file's virtual address `vaddr`, reported as `addr` (the
        address in the process, default `vaddr`)."""
        shown = vaddr if addr is None else addr
        s = self._table.find(vaddr)
        if s is None:
            return Frame(shown, None, 0, self.module)
        return Frame(shown, s.name, vaddr - s.addr, self.module)

    def address(self, name: str) -> int | None:
        """The virtual address of function `name` in the file, or None."""
        s = self._table.by_name(name)
        return None if s is None else s.addr


def _build_id(elf: ELFFile) -> str | None:
    """The GNU build-id note's descriptor as hex, from a note section or segment."""
    places: list[Section | Segment] = [s for s in elf.sections if s.type == SectionType.NOTE]
    places += [s for s in elf.segments if s.type == SegmentType.NOTE]
    for where in places:
        for note in elf.notes(where):
            if note.name == "GNU" and note.type == NT_GNU_BUILD_ID and note.desc:
                return note.desc.hex()
    return None


def file_identity(path: str) -> tuple[int, int, int, int]:
    """(device, inode, size, mtime) of `path`: the cache key of its symbols."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


__all__ = ["NT_GNU_BUILD_ID", "ElfSymbols", "file_identity"]
