"""The objects given to the linker: checked to be little-endian relocatable BPF ELF."""

from __future__ import annotations

import os
from collections.abc import Callable

from ..btf.records import Record, parse_records
from ..elf import ELFFile, ElfType, Machine, Section, SectionFlags, SectionType, Symbol
from ..errors import BTFError, ELFError, LinkError

__all__ = ["InputObject", "Source"]

Source = bytes | bytearray | memoryview | str | os.PathLike[str]

# Sections whose contents every object must agree on; the output holds one copy.
SHARED_SECTIONS = frozenset(("license", "version"))


class InputObject:
    """One object to link: its ELF, symbols, BTF records and .BTF.ext bytes."""

    def __init__(self, source: Source, position: int) -> None:
        if isinstance(source, (str, os.PathLike)):
            self.name = os.fspath(source)
            with open(self.name, "rb") as f:
                data = f.read()
        else:
            self.name = f"<object #{position}>"
            data = bytes(source)
        try:
            self.elf = ELFFile(data)
        except ELFError as e:
            raise LinkError(f"{self.name!r}: {e}") from e
        elf = self.elf
        if elf.byteorder != "little":
            raise LinkError(f"{self.name!r} is a big-endian object; only little-endian BPF "
                            "objects can be linked")
        if elf.machine != Machine.BPF:
            raise LinkError(f"{self.name!r} is not a BPF object (machine {elf.machine!r})")
        if elf.type != ElfType.REL:
            raise LinkError(f"{self.name!r} is not a relocatable object (type {elf.type!r})")
        try:
            self.symbols: list[Symbol] = list(elf.symbols())
        except ELFError as e:
            raise LinkError(f"{self.name!r}: {e}") from e
        # The types are read by `read_btf`, once the number of types before this
        # object's is known (they are numbered after them).
        self.btf: list[Record] = []
        self.btf_base = 0
        self.string: Callable[[int], str] | None = None
        self.ext: bytes | None = None
        self.has_btf = False
        self._btf_section = elf.section_by_name(".BTF")
        if self._btf_section is not None:
            self.has_btf = True
            ext = elf.section_by_name(".BTF.ext")
            if ext is not None:
                self.ext = bytes(ext.data())

    def read_btf(self, base: int) -> list[Record]:
        """Parse the object's .BTF with its type ids `base` more (see `parse_records`);
        the records are also kept in `btf`."""
        if self._btf_section is not None:
            try:
                self.btf, self.string = parse_records(bytes(self._btf_section.data()), base)
            except (BTFError, ELFError) as e:
                raise LinkError(f"{self.name!r}: .BTF: {e}") from e
            self.btf_base = base
        return self.btf

    def linked_sections(self) -> list[Section]:
        """The sections that go into the output (code and data, not debug info,
        BTF, symbol/string tables or relocations), in file order."""
        out = []
        for sec in self.elf.sections:
            if sec.type not in (SectionType.PROGBITS, SectionType.NOBITS):
                continue
            if not sec.flags & SectionFlags.ALLOC and sec.name not in SHARED_SECTIONS:
                continue
            if sec.size == 0:
                continue
            out.append(sec)
        return out

    def __repr__(self) -> str:
        return f"<InputObject {self.name!r}>"
