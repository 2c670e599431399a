"""Symbol resolution: one definition per global name, and the output symbol table.

Rules (those of libbpf's linker, observed through `bpftool gen object`):
a global name has at most one strong (STB_GLOBAL) definition; a weak definition
yields to a strong one and the first of several weak ones wins; an undefined
symbol (an extern) resolves to the definition of the same name in any object,
or stays undefined in the output when there is none. Hidden visibility limits a
symbol to the linked object: it resolves across the inputs like any global and
stays hidden (so not visible to a later link) in the output, and one hidden
declaration makes the output symbol hidden. The shared sections (`license`,
`version`) keep the symbols of the first object that has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ..elf import SHN_ABS, SHN_UNDEF, Symbol
from ..elf.writer import ElfSymbol
from ..errors import LinkError
from .inputs import SHARED_SECTIONS, InputObject
from .layout import Layout

__all__ = ["Declaration", "GlobalSymbol", "SymbolTable"]

STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
STV_DEFAULT, STV_HIDDEN = 0, 2


class Declaration(NamedTuple):
    """A symbol of one input object: the object's number and the symbol."""

    obj: int
    sym: Symbol


class GlobalSymbol:
    """A global name: its winning definition (or None) and every declaration."""

    __slots__ = ("decls", "definition", "hidden", "name", "strong")

    def __init__(self, name: str) -> None:
        self.name = name
        self.definition: Declaration | None = None
        self.strong = False
        self.hidden = False
        self.decls: list[Declaration] = []


class SymbolTable:
    """The resolved global names, and the output symbol table with the output index
    of every input symbol that survives."""

    def __init__(self, objects: Sequence[InputObject], layout: Layout) -> None:
        self.objects = objects
        self.layout = layout
        self.globals: dict[str, GlobalSymbol] = {}
        for k, obj in enumerate(objects):
            for sym in obj.symbols[1:]:
                if sym.bind != STB_LOCAL:
                    self._declare(k, sym)
        self.index: dict[tuple[int, int], int] = {}
        self.output: list[ElfSymbol] = [ElfSymbol("", 0, 0, 0, 0, 0)]
        self._write_locals()
        self.first_global = len(self.output)
        self._write_globals()

    def _declare(self, k: int, sym: Symbol) -> None:
        obj = self.objects[k]
        where = self.layout.place.get((k, sym.section_index))
        if where is not None and where[0].name in SHARED_SECTIONS and where[0].first != k:
            return  # the output's license/version and their symbols are the first file's
        g = self.globals.get(sym.name)
        if g is None:
            g = self.globals[sym.name] = GlobalSymbol(sym.name)
        g.decls.append(Declaration(k, sym))
        if sym.visibility == STV_HIDDEN:
            g.hidden = True
        if sym.section_index == SHN_UNDEF:
            return
        if sym.section_index != SHN_ABS and (k, sym.section_index) not in self.layout.place:
            raise LinkError(f"{obj.name!r}: symbol {sym.name!r} is defined in a section that "
                            "is not linked")
        strong = sym.bind == STB_GLOBAL
        prev = g.definition
        if prev is None:
            g.definition, g.strong = Declaration(k, sym), strong
            return
        if strong and g.strong:
            raise LinkError(f"symbol {sym.name!r} is defined in both "
                            f"{self.objects[prev.obj].name!r} and {obj.name!r}")
        if strong:
            g.definition, g.strong = Declaration(k, sym), True

    def _write_locals(self) -> None:
        out, index, place = self.output, self.index, self.layout.place
        section_symbol = {}
        for sec in self.layout.sections.values():
            section_symbol[sec.name] = len(out)
            out.append(ElfSymbol("", 0, 0, STB_LOCAL << 4 | STT_SECTION, 0, sec.index))
        for k, obj in enumerate(self.objects):
            for sym in obj.symbols[1:]:
                if sym.bind != STB_LOCAL:
                    continue
                if sym.type == STT_FILE:
                    out.append(ElfSymbol(sym.name, 0, 0, STB_LOCAL << 4 | STT_FILE, 0, SHN_ABS))
                    continue
                where = place.get((k, sym.section_index))
                if sym.type == STT_SECTION:
                    if where is not None:
                        index[(k, sym.index)] = section_symbol[where[0].name]
                    continue
                if where is None:
                    if sym.section_index != SHN_ABS:
                        continue  # in a section not linked (debug info)
                    shndx, value = SHN_ABS, sym.value
                else:
                    shndx, value = where[0].index, sym.value + where[1]
                index[(k, sym.index)] = len(out)
                out.append(ElfSymbol(sym.name, value, sym.size,
                                     STB_LOCAL << 4 | (sym.type & 0xF), sym.visibility, shndx))

    def _write_globals(self) -> None:
        out, index, place = self.output, self.index, self.layout.place
        for g in self.globals.values():
            d = g.definition
            if d is not None:
                sym = d.sym
                bind = STB_GLOBAL if g.strong else STB_WEAK
                where = place.get((d.obj, sym.section_index))
                shndx, value = ((where[0].index, sym.value + where[1]) if where is not None
                                else (SHN_ABS, sym.value))
                stype, size, vis = sym.type & 0xF, sym.size, sym.visibility
            else:
                weak = all(decl.sym.bind == STB_WEAK for decl in g.decls)
                bind = STB_WEAK if weak else STB_GLOBAL
                first = g.decls[0].sym
                shndx, value, stype, size, vis = SHN_UNDEF, 0, first.type & 0xF, 0, first.visibility
            if g.hidden:
                vis = STV_HIDDEN
            for decl in g.decls:
                index[(decl.obj, decl.sym.index)] = len(out)
            out.append(ElfSymbol(g.name, value, size, bind << 4 | stype, vis, shndx))

    def winner(self, name: str) -> int | None:
        """The number of the object whose definition of global `name` won, if any."""
        g = self.globals.get(name)
        return g.definition.obj if g is not None and g.definition is not None else None
