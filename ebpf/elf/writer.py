"""Write relocatable ELF64 objects (ET_REL), little-endian, for the BPF machine.

    w = ElfWriter()
    text = w.add_section(".text", SectionType.PROGBITS, flags, data, align=8)
    w.set_symbols([ElfSymbol("", 0, 0, 0, 0, 0), ...], first_global=3)
    w.add_relocations(text, [(offset, symbol_index, rel_type), ...])
    blob = w.to_bytes()

Sections get their indices in the order they are added (index 0 is the null
section); `.symtab`, `.strtab`, the `.rel<name>` sections and `.shstrtab` are
appended after them when the object is written.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from ..errors import ELFError
from . import Machine, SectionFlags, SectionType

__all__ = ["ElfSymbol", "ElfWriter"]

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_REL = struct.Struct("<QQ")
_ET_REL = 1


class ElfSymbol(NamedTuple):
    """One symbol: name, value, size, st_info (bind << 4 | type), st_other, section."""

    name: str
    value: int
    size: int
    info: int
    other: int
    shndx: int


class _Section:
    __slots__ = ("align", "data", "entsize", "flags", "info", "link", "name", "size", "type")

    def __init__(self, name: str, sh_type: int, flags: int, data: bytes, size: int,
                 align: int, link: int = 0, info: int = 0, entsize: int = 0) -> None:
        self.name = name
        self.type = sh_type
        self.flags = flags
        self.data = data
        self.size = size
        self.align = max(align, 1)
        self.link = link
        self.info = info
        self.entsize = entsize


class _Strings:
    __slots__ = ("data", "offsets")

    def __init__(self) -> None:
        self.data = bytearray(b"\0")
        self.offsets: dict[str, int] = {"": 0}

    def add(self, s: str) -> int:
        off = self.offsets.get(s)
        if off is None:
            off = self.offsets[s] = len(self.data)
            self.data += s.encode("utf-8", "surrogateescape") + b"\0"
        return off


class ElfWriter:
    """Collects sections, symbols and relocations; `to_bytes` lays the file out."""

    def __init__(self) -> None:
        self._sections: list[_Section] = []
        self._symbols: list[ElfSymbol] = [ElfSymbol("", 0, 0, 0, 0, 0)]
        self._first_global = 1
        self._relocs: dict[int, Sequence[tuple[int, int, int]]] = {}

    def add_section(self, name: str, sh_type: int, flags: int, data: bytes = b"", *,
                    size: int | None = None, align: int = 1) -> int:
        """Add a section and return its index. NOBITS sections take `size` instead of
        data."""
        if sh_type == SectionType.NOBITS:
            sec = _Section(name, sh_type, flags, b"", size or 0, align)
        else:
            sec = _Section(name, sh_type, flags, bytes(data), len(data), align)
        self._sections.append(sec)
        return len(self._sections)

    def set_symbols(self, symbols: Sequence[ElfSymbol], first_global: int) -> None:
        """The symbol table (entry 0 must be the null symbol); the locals come
        first, `first_global` is the index of the first non-local one."""
        if not symbols or symbols[0].name or symbols[0].shndx:
            raise ELFError("the first symbol must be the null symbol")
        self._symbols = list(symbols)
        self._first_global = first_global

    def add_relocations(self, target: int, relocs: Sequence[tuple[int, int, int]]) -> None:
        """Relocations (offset, symbol index, type) of section `target`, written as
        a ``.rel<name>`` section (SHT_REL: addends are implicit)."""
        if not 1 <= target <= len(self._sections):
            raise ELFError(f"relocations for section index {target}, which does not exist")
        self._relocs[target] = relocs

    def to_bytes(self) -> bytes:
        """The object file."""
        sections = list(self._sections)
        nsec = len(sections)
        symtab_idx = nsec + 1
        strtab_idx = nsec + 2
        strtab = _Strings()
        syms = bytearray()
        for sym in self._symbols:
            syms += _SYM.pack(strtab.add(sym.name) if sym.name else 0, sym.info, sym.other,
                              sym.shndx, sym.value, sym.size)
        sections.append(_Section(".symtab", SectionType.SYMTAB, 0, bytes(syms), len(syms), 8,
                                 link=strtab_idx, info=self._first_global, entsize=_SYM.size))
        sections.append(_Section(".strtab", SectionType.STRTAB, 0, bytes(strtab.data),
                                 len(strtab.data), 1))
        for target in sorted(self._relocs):
            raw = b"".join(_REL.pack(off, sym << 32 | rtype)
                           for off, sym, rtype in self._relocs[target])
            sections.append(_Section(".rel" + self._sections[target - 1].name,
                                     SectionType.REL, SectionFlags.INFO_LINK, raw, len(raw), 8,
                                     link=symtab_idx, info=target, entsize=_REL.size))
        shstrtab = _Strings()
        names = [shstrtab.add(s.name) for s in sections]
        names.append(shstrtab.add(".shstrtab"))
        sections.append(_Section(".shstrtab", SectionType.STRTAB, 0, bytes(shstrtab.data),
                                 len(shstrtab.data), 1))

        out = bytearray(_EHDR.size)
        offsets = []
        for s in sections:
            if s.type == SectionType.NOBITS:
                offsets.append(len(out))
                continue
            out += b"\0" * (-len(out) % s.align)
            offsets.append(len(out))
            out += s.data
        out += b"\0" * (-len(out) % 8)
        shoff = len(out)
        out += b"\0" * _SHDR.size
        for s, name, off in zip(sections, names, offsets, strict=True):
            out += _SHDR.pack(name, s.type, s.flags, 0, off, s.size, s.link, s.info, s.align,
                              s.entsize)
        ident = b"\x7fELF" + bytes((2, 1, 1, 0)) + bytes(8)
        _EHDR.pack_into(out, 0, ident, _ET_REL, Machine.BPF, 1, 0, 0, shoff, 0, _EHDR.size,
                        0, 0, _SHDR.size, len(sections) + 1, len(sections))
        return bytes(out)
