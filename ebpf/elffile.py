"""A fast, bounds-checked reader for ELF64 files of either byte order.

`ELFFile` reads relocatable BPF objects (``clang -target bpf``) as well as
executables and shared libraries (for uprobes and USDT probes). It never
trusts the file: every offset, size, count, index and string reference is
checked before use, and malformed input raises `ebpf.errors.ELFError` naming
the section and file offset, never `struct.error`, `IndexError` or
`UnicodeDecodeError`.

Decoding is lazy: opening a file parses only the ELF header and the section
header table; segments, symbol tables, relocations and notes are decoded on
first use (and cached). Names are decoded as UTF-8 with ``surrogateescape``,
so a name that is not valid UTF-8 still round-trips to its original bytes.

    with ELFFile("prog.o") as elf:
        for sym in elf.symbols():
            ...
        text = elf.section_by_name("xdp")
        relocs = elf.relocations(text)
"""

from __future__ import annotations

import itertools
import mmap
import operator
import os
import stat
import struct
import warnings
from collections.abc import Iterator, Sequence

import ebpf._lazyattr as _lazyattr
from ebpf.errors import ELFError

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any, Literal, TypeAlias, overload

    from ebpf._elfclasses import ElfType as ElfType
    from ebpf._elfclasses import Machine as Machine
    from ebpf._elfclasses import Relocation as Relocation
    from ebpf._elfclasses import SectionFlags as SectionFlags
    from ebpf._elfclasses import SectionType as SectionType
    from ebpf._elfclasses import Symbol as Symbol
    from ebpf._elfclasses import SymbolBind as SymbolBind
    from ebpf._elfclasses import SymbolType as SymbolType
    from ebpf._elfclasses import SymbolVisibility as SymbolVisibility
    from ebpf._elfsegments import Note as Note
    from ebpf._elfsegments import Segment as Segment
    from ebpf._elfsegments import SegmentFlags as SegmentFlags
    from ebpf._elfsegments import SegmentType as SegmentType

    # a tuple class that records are made of (`ELFFile.type` shadows `type` in its class)
    _TupleClass: TypeAlias = type[Any]

__all__ = [
    "SHN_ABS",
    "SHN_COMMON",
    "SHN_LORESERVE",
    "SHN_UNDEF",
    "SHN_XINDEX",
    "ELFFile",
    "ElfType",
    "Machine",
    "Note",
    "Relocation",
    "Section",
    "SectionFlags",
    "SectionType",
    "Segment",
    "SegmentFlags",
    "SegmentType",
    "Symbol",
    "SymbolBind",
    "SymbolTable",
    "SymbolType",
    "SymbolVisibility",
]


# --------------------------------------------------------------------------
# Constants


SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2
SHN_XINDEX = 0xFFFF

# The sh_type and e_type values this module reads (the enums are made on first use:
# process start)
_SHT_NULL = 0
_SHT_STRTAB = 3
_SHT_SYMTAB = 2
_SHT_RELA = 4
_SHT_NOBITS = 8
_SHT_REL = 9
_SHT_DYNSYM = 11
_SHT_SYMTAB_SHNDX = 18
_ET_REL = 1

_RAW16 = tuple(range(16))  # the identity: raw bind and type values
_RAW4 = tuple(range(4))  # (raw visibility values)
_PN_XNUM = 0xFFFF
_PT_LOAD = 1  # SegmentType.LOAD
_EHDR_SIZE = 64
_SHDR_SIZE = 64
_SYM_SIZE = 24
_REL_SIZE = 16
_RELA_SIZE = 24


# The enums and records on first use (process start), and so executables' and shared
# libraries' classes.
__getattr__ = _lazyattr.lazy_attributes(globals(), {
    **dict.fromkeys(("ElfType", "Machine", "Relocation", "SectionFlags", "SectionType", "Symbol",
                     "SymbolBind", "SymbolType", "SymbolVisibility"), "ebpf._elfclasses"),
    **dict.fromkeys(("Note", "Segment", "SegmentFlags", "SegmentType"), "ebpf._elfsegments"),
})


class _Structs:
    """Precompiled layouts for one byte order."""

    __slots__ = ("ehdr", "nhdr", "phdr", "rel", "rela", "shdr", "sym", "word")

    def __init__(self, prefix: str) -> None:
        self.ehdr = struct.Struct(prefix + "HHIQQQIHHHHHH")
        self.shdr = struct.Struct(prefix + "IIQQQQIIQQ")
        self.phdr = struct.Struct(prefix + "IIQQQQQQ")
        self.sym = struct.Struct(prefix + "IBBHQQ")
        # r_info read as two 32-bit halves: (type, sym) in little endian,
        # (sym, type) in big endian, which saves the shifting.
        self.rel = struct.Struct(prefix + "QII")
        self.rela = struct.Struct(prefix + "QIIq")
        self.nhdr = struct.Struct(prefix + "III")
        self.word = struct.Struct(prefix + "I")


_STRUCTS: dict[str, _Structs] = {}


def _structs(byteorder: str) -> _Structs:
    """The layouts for `byteorder` ("little" or "big"), made on first use."""
    structs = _STRUCTS.get(byteorder)
    if structs is None:
        structs = _Structs("<" if byteorder == "little" else ">")
        structs = _STRUCTS.setdefault(byteorder, structs)
    return structs
_FIRST = operator.itemgetter(0)
_SECOND = operator.itemgetter(1)
_THIRD = operator.itemgetter(2)
_FOURTH = operator.itemgetter(3)


# --------------------------------------------------------------------------
# Sections


class Section:
    """One section header, with its name resolved.

    `type` is a `SectionType` member when known; `flags` is the raw
    ``sh_flags`` (test it against `SectionFlags`). `data()` returns the
    section's bytes as a read-only memoryview; ``SHT_NOBITS`` sections
    (``.bss``) have no bytes in the file and return an empty view.
    """

    __slots__ = (
        "_elf",
        "_sh_type",
        "addr",
        "addralign",
        "entsize",
        "flags",
        "index",
        "info",
        "link",
        "name",
        "name_offset",
        "offset",
        "size",
    )

    def __init__(
        self,
        elf: ELFFile,
        index: int,
        name: str,
        row: tuple[int, int, int, int, int, int, int, int, int, int],
    ) -> None:
        self._elf = elf
        self.index = index
        self.name = name
        (
            self.name_offset,
            self._sh_type,  # the raw value (ebpf.elf reads it, without the enum)
            self.flags,
            self.addr,
            self.offset,
            self.size,
            self.link,
            self.info,
            self.addralign,
            self.entsize,
        ) = row

    @property
    def type(self) -> int:
        """``sh_type``: a `SectionType` member when known (a plain int otherwise)."""
        from ebpf._elfclasses import SECTION_TYPES  # the enum on first use (process start)

        return SECTION_TYPES.get(self._sh_type, self._sh_type)

    @property
    def label(self) -> str:
        """The name used in error messages: the name, or ``#index`` if it has none."""
        return self.name or f"#{self.index}"

    @property
    def is_nobits(self) -> bool:
        """True for ``SHT_NOBITS`` (and ``SHT_NULL``) sections, which occupy no file bytes."""
        return self._sh_type in (_SHT_NOBITS, _SHT_NULL)

    def data(self) -> memoryview:
        """The section's file bytes (empty for NOBITS); ELFError if they lie outside the file."""
        if self.is_nobits:
            return self._elf._view(0, 0, self.label)
        return self._elf._view(self.offset, self.size, self.label)

    def __repr__(self) -> str:
        from ebpf._elfclasses import SectionType  # the enum on first use (process start)

        t = self.type.name if isinstance(self.type, SectionType) else hex(self.type)
        return (
            f"Section(index={self.index}, name={self.name!r}, type={t}, "
            f"offset={self.offset:#x}, size={self.size:#x})"
        )


# --------------------------------------------------------------------------
# String tables


class _StringTable:
    """A NUL-terminated string table, decoded with bounds checks."""

    __slots__ = ("_ascii", "_budget", "_data", "_starts", "_text", "base", "label")

    def __init__(self, data: bytes, label: str, base: int) -> None:
        self._data = data
        self.label = label
        self.base = base
        self._ascii = data.isascii()
        # For ASCII tables (nearly all), byte offsets equal str offsets, so one
        # decode serves every lookup.
        self._text = data.decode("ascii") if self._ascii else ""
        # Bounds the bytes decoded for offsets into the middle of strings, so
        # that many entries pointing into one long string cannot blow up time
        # or memory.
        self._budget = 16 * len(data) + (1 << 20)
        self._starts: dict[int, str] | None = None

    def get(self, offset: int) -> str:
        """The string starting at `offset`; ELFError if out of bounds or unterminated."""
        data = self._data
        if offset >= len(data):
            raise ELFError(
                f"string offset {offset} beyond string table of {len(data)} bytes",
                section=self.label,
                offset=self.base + offset,
            )
        end = data.find(b"\0", offset)
        if end < 0:
            raise ELFError("unterminated string", section=self.label, offset=self.base + offset)
        if self._ascii:
            return self._text[offset:end]
        return data[offset:end].decode("utf-8", "surrogateescape")

    def bulk(self, offsets: Sequence[int]) -> list[str]:
        """Strings for many offsets at once.

        Every NUL-terminated string of the table is decoded once; offsets
        pointing into the middle of a string (suffix sharing) are decoded one by
        one, within a budget that keeps a hostile table from making that
        quadratic.
        """
        starts = self._starts
        if starts is None:
            starts = self._starts = self._index()
        out = list(map(starts.get, offsets))
        if None in out:
            budget = self._budget
            get = self.get
            for i, name in enumerate(out):
                if name is None:
                    name = out[i] = get(offsets[i])
                    budget -= len(name)
                    if budget < 0:
                        self._over_budget(offsets[i])
        return out  # type: ignore[return-value]  # no None is left

    def _index(self) -> dict[int, str]:
        """Start offset -> string, for every terminated string of the table.

        Offset 0 always means "no name", as the ELF specification says.
        """
        if self._ascii:
            parts: list[str] = self._text.split("\0")
        else:
            parts = [p.decode("utf-8", "surrogateescape") for p in self._data.split(b"\0")]
        parts.pop()  # the (empty or unterminated) run after the last NUL
        lengths = itertools.accumulate(map(len, parts), initial=0)
        starts = map(operator.add, lengths, range(len(parts)))
        index = dict(zip(starts, parts, strict=True))
        index[0] = ""
        return index

    def find_all(self, name: str) -> set[int]:
        """Every offset at which `name` (NUL-terminated) starts, suffix matches included."""
        key = name.encode("utf-8", "surrogateescape") + b"\0"
        data = self._data
        found: set[int] = set()
        pos = data.find(key)
        while pos >= 0:
            found.add(pos)
            pos = data.find(key, pos + 1)
        return found

    def _over_budget(self, offset: int) -> None:
        raise ELFError(
            "string table references overlap excessively",
            section=self.label,
            offset=self.base + offset,
        )


# --------------------------------------------------------------------------
# Symbol tables


class SymbolTable(Sequence["Symbol"]):
    """The entries of one ``SHT_SYMTAB``/``SHT_DYNSYM`` section, decoded lazily.

    Indexing decodes one entry; iterating decodes all of them once and caches
    the result. `lookup` finds symbols by name without decoding every name.
    Entry 0 is the null symbol, as in the file, so symbol indices from
    relocations index this table directly.
    """

    def __init__(
        self,
        section: Section | None,
        raw: bytes,
        strings: _StringTable,
        structs: _Structs,
        shndx: Sequence[int] | None,
        shndx_label: str,
    ) -> None:
        self.section = section
        """The symbol table section (None for the empty table of a file without one)."""
        self._raw = raw
        self._strings = strings
        self._sym = structs.sym
        self._count = len(raw) // _SYM_SIZE
        self._shndx = shndx
        self._shndx_label = shndx_label
        self._all: list[Symbol] | None = None
        self._raw_rows: list[tuple[int, str, int, int, int, int, int, int]] | None = None
        self._name_offsets: list[int] | None = None

    def __len__(self) -> int:
        return self._count

    if TYPE_CHECKING:  # (typing's overloads for type checkers only: process start)
        @overload
        def __getitem__(self, index: int) -> Symbol: ...

        @overload
        def __getitem__(self, index: slice) -> list[Symbol]: ...

    def __getitem__(self, index: int | slice) -> Symbol | list[Symbol]:
        if self._all is not None:
            return self._all[index]
        if isinstance(index, slice):
            return [self._decode(i) for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"symbol index {index} out of range ({self._count} symbols)")
        return self._decode(index)

    def __iter__(self) -> Iterator[Symbol]:
        return iter(self._materialize())

    def lookup(self, name: str) -> list[Symbol]:
        """All symbols named `name`, in table order (an empty list if none)."""
        if self._all is not None:
            return [s for s in self._all if s.name == name]
        offsets = self._strings.find_all(name)
        if not offsets:
            return []
        if self._name_offsets is None:
            self._name_offsets = [row[0] for row in self._sym.iter_unpack(self._raw)]
        return [self._decode(i) for i, off in enumerate(self._name_offsets) if off in offsets]

    def _resolve_shndx(self, index: int) -> int:
        table = self._shndx
        if table is None:
            sec = self.section
            raise ELFError(
                f"symbol {index} uses SHN_XINDEX but there is no SHT_SYMTAB_SHNDX section",
                section=sec.label if sec is not None else None,
                offset=sec.offset + index * _SYM_SIZE if sec is not None else None,
            )
        if index >= len(table):
            raise ELFError(
                f"symbol {index} beyond the extended section index table",
                section=self._shndx_label,
            )
        return table[index]

    def _decode(self, index: int) -> Symbol:
        name_off, info, other, shndx, value, size = self._sym.unpack_from(
            self._raw, index * _SYM_SIZE
        )
        if shndx == SHN_XINDEX:
            shndx = self._resolve_shndx(index)
        name = self._strings.get(name_off) if name_off else ""
        from ebpf._elfclasses import (  # the record and enums on first use (process start)
            BINDS,
            TYPES,
            VISIBILITIES,
            Symbol,
        )

        return Symbol(
            index,
            name,
            value,
            size,
            BINDS[info >> 4],
            TYPES[info & 15],
            VISIBILITIES[other & 3],
            shndx,
        )

    def _rows(self) -> list[tuple[int, str, int, int, int, int, int, int]]:
        """Every entry as `Symbol`'s fields, with bind, type and visibility as plain ints
        (cached): for `ebpf.elf`'s parser, which needs no enum member (process start)."""
        if self._raw_rows is None:
            self._raw_rows = self._entries(tuple, _RAW16, _RAW16, _RAW4)
        return self._raw_rows

    def _materialize(self) -> list[Symbol]:
        if self._all is not None:
            return self._all
        from ebpf._elfclasses import (  # the record and enums on first use (process start)
            BINDS,
            TYPES,
            VISIBILITIES,
            Symbol,
        )

        out: list[Symbol] = self._entries(Symbol, BINDS, TYPES, VISIBILITIES)
        self._all = out
        return out

    def _entries(
        self, cls: _TupleClass, binds: tuple[int, ...], types: tuple[int, ...],
        visibilities: tuple[int, ...],
    ) -> list[Any]:
        """Every entry, made by `cls` (a tuple class) from `Symbol`'s fields, bind, type and
        visibility mapped through the tables."""
        rows = list(self._sym.iter_unpack(self._raw))
        names = self._strings.bulk([row[0] for row in rows])
        new = tuple.__new__
        out = [
            new(
                cls,
                (i, name, value, size, binds[info >> 4], types[info & 15],
                 visibilities[other & 3], shndx),
            )
            for i, name, (_, info, other, shndx, value, size) in zip(
                range(len(rows)), names, rows, strict=True
            )
        ]
        if SHN_XINDEX in map(_FOURTH, rows):
            for i, row in enumerate(rows):
                if row[3] == SHN_XINDEX:
                    out[i] = new(cls, (*out[i][:7], self._resolve_shndx(i)))
        return out

    def __repr__(self) -> str:
        name = self.section.name if self.section is not None else None
        return f"SymbolTable(section={name!r}, symbols={self._count})"


# --------------------------------------------------------------------------
# The file


Source: TypeAlias = "bytes | bytearray | memoryview | mmap.mmap | str | os.PathLike[str]"


class ELFFile:
    """A parsed ELF64 file (little or big endian).

    `source` is the file's contents (any byte buffer: bytes, bytearray,
    memoryview, mmap) or a path, which is memory-mapped read-only. Close the
    file (or use it as a context manager) to unmap it; memoryviews returned by
    `Section.data` keep the mapping alive until they are released. Symbol
    tables, relocations and notes are copied out and remain usable after
    `close`. References between sections (``sh_link``, ``sh_info``) are
    followed one hop at a time and checked, so cycles cannot loop.
    """

    def __init__(self, source: Source) -> None:
        self._mmap: mmap.mmap | None = None
        self._closed = False
        self.path: str | None = None
        if isinstance(source, (str, os.PathLike)):
            self.path = os.fspath(source)
            self._buf = self._map(self.path)
        else:
            view = memoryview(source)
            if view.ndim != 1 or view.itemsize != 1:
                view = view.cast("B")
            self._buf = view.toreadonly()
        try:
            self._parse_header()
            self._parse_sections()
        except BaseException:
            self.close()
            raise
        self._segments: list[Segment] | None = None
        self._symtabs: dict[int, SymbolTable] = {}
        self._relocs: dict[int, list[Relocation]] = {}
        self._reloc_rows: dict[int, list[tuple[int, int, int, int]]] = {}
        self._reloc_sections: dict[int, Section] | None = None
        self._by_name: dict[str, Section] | None = None

    # -- life cycle --------------------------------------------------------

    def _map(self, path: str) -> memoryview:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                with os.fdopen(os.dup(fd), "rb") as f:
                    return memoryview(f.read()).toreadonly()
            self._mmap = mmap.mmap(fd, st.st_size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        return memoryview(self._mmap)

    def close(self) -> None:
        """Release the file's buffer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        buf = getattr(self, "_buf", None)
        if buf is not None:
            buf.release()
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                pass  # views handed out still use it; it unmaps when they go
            self._mmap = None

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._closed

    def __enter__(self) -> ELFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_mmap", None) is not None and not self._closed:
            warnings.warn(
                f"unclosed ELFFile {self.path!r}", ResourceWarning, stacklevel=2, source=self
            )
            self.close()

    def __repr__(self) -> str:
        what = self.path if self.path is not None else f"<{len(self._buf)} bytes>"
        from ebpf._elfclasses import ElfType  # the enum on first use (process start)

        t = self.type.name if isinstance(self.type, ElfType) else self.type
        return f"ELFFile({what!r}, type={t}, machine={self.machine}, byteorder={self.byteorder})"

    # -- raw access --------------------------------------------------------

    def _view(self, offset: int, size: int, label: str) -> memoryview:
        if self._closed:
            raise ValueError("ELF file is closed")
        if offset < 0 or size < 0 or offset + size > len(self._buf):
            raise ELFError(
                f"{size} bytes at offset {offset:#x} lie outside the file "
                f"({len(self._buf)} bytes)",
                section=label,
                offset=offset,
            )
        return self._buf[offset : offset + size]

    @property
    def size(self) -> int:
        """The file's size in bytes."""
        return len(self._buf)

    # -- header ------------------------------------------------------------

    def _parse_header(self) -> None:
        buf = self._buf
        if len(buf) < 16 or bytes(buf[:4]) != b"\x7fELF":
            raise ELFError("not an ELF file (bad magic)", offset=0)
        ei_class, ei_data, ei_version, osabi, abiversion = buf[4:9]
        if ei_class == 1:
            raise ELFError("ELF32 files are not supported, only ELF64", offset=4)
        if ei_class != 2:
            raise ELFError(f"invalid ELF class {ei_class}", offset=4)
        if ei_data == 1:
            self.byteorder: Literal["little", "big"] = "little"
        elif ei_data == 2:
            self.byteorder = "big"
        else:
            raise ELFError(f"invalid ELF data encoding {ei_data}", offset=5)
        if ei_version != 1:
            raise ELFError(f"unsupported ELF version {ei_version}", offset=6)
        if len(buf) < _EHDR_SIZE:
            raise ELFError(f"file too short for an ELF64 header ({len(buf)} bytes)", offset=0)
        self._structs = _structs(self.byteorder)
        self.elf_class = 64
        self.osabi = osabi
        self.abi_version = abiversion
        (
            e_type,
            e_machine,
            self.version,
            self.entry,
            self.phoff,
            self.shoff,
            self.flags,
            self.ehsize,
            self.phentsize,
            phnum,
            self.shentsize,
            shnum,
            shstrndx,
        ) = self._structs.ehdr.unpack_from(buf, 16)
        self._e_type: int = e_type  # the raw values (ebpf.elf reads them, without the enums)
        self._e_machine: int = e_machine
        self._raw_phnum = phnum
        self._raw_shnum = shnum
        self._raw_shstrndx = shstrndx

    @property
    def type(self) -> int:
        """``e_type``: an `ElfType` member when known (a plain int otherwise)."""
        from ebpf._elfclasses import ELF_TYPES  # the enum on first use (process start)

        return ELF_TYPES.get(self._e_type, self._e_type)

    @property
    def machine(self) -> int:
        """``e_machine``: a `Machine` member when known (a plain int otherwise)."""
        from ebpf._elfclasses import MACHINES  # the enum on first use (process start)

        return MACHINES.get(self._e_machine, self._e_machine)

    @property
    def little_endian(self) -> bool:
        """True for ELFDATA2LSB files."""
        return self.byteorder == "little"

    # -- sections ----------------------------------------------------------

    def _parse_sections(self) -> None:
        shoff, shnum, shstrndx = self.shoff, self._raw_shnum, self._raw_shstrndx
        self.sections: list[Section] = []
        self.shstrndx = 0
        if shoff == 0:
            if shnum:
                raise ELFError(f"{shnum} sections but no section header table", offset=0x3C)
            return
        if self.shentsize != _SHDR_SIZE:
            raise ELFError(
                f"section header entry size {self.shentsize}, expected {_SHDR_SIZE}", offset=0x3A
            )
        shdr = self._structs.shdr
        buflen = len(self._buf)
        if shnum == 0 or shstrndx == SHN_XINDEX or self._raw_phnum == _PN_XNUM:
            # Extended numbering: real values live in section 0's header.
            if shoff + _SHDR_SIZE > buflen:
                raise ELFError("section header table lies outside the file", offset=shoff)
            first = shdr.unpack_from(self._buf, shoff)
            if shnum == 0:
                shnum = first[5]
            if shstrndx == SHN_XINDEX:
                shstrndx = first[6]
            if self._raw_phnum == _PN_XNUM:
                self._raw_phnum = first[7]
        if shnum == 0:
            return
        end = shoff + shnum * _SHDR_SIZE
        if end > buflen:
            raise ELFError(
                f"section header table of {shnum} entries lies outside the file "
                f"({buflen} bytes)",
                offset=shoff,
            )
        rows = list(shdr.iter_unpack(self._buf[shoff:end]))
        names: list[str]
        if shstrndx == 0:
            names = [""] * shnum
        else:
            if shstrndx >= shnum:
                raise ELFError(
                    f"section name table index {shstrndx} out of range ({shnum} sections)",
                    offset=0x3E,
                )
            srow = rows[shstrndx]
            if srow[1] == _SHT_NOBITS:
                raise ELFError("section name table has no data", section=f"#{shstrndx}")
            label = f"#{shstrndx}"
            strings = _StringTable(
                bytes(self._view(srow[4], srow[5], label)), label, srow[4]
            )
            names = strings.bulk([row[0] for row in rows])
        self.shstrndx = shstrndx
        self.sections = [Section(self, i, names[i], row) for i, row in enumerate(rows)]

    def section(
        self, index: int, *, referrer: str | None = None, offset: int | None = None
    ) -> Section:
        """The section at `index`, or ELFError naming `referrer` if there is none."""
        if 0 <= index < len(self.sections):
            return self.sections[index]
        raise ELFError(
            f"section index {index} out of range ({len(self.sections)} sections)",
            section=referrer,
            offset=offset,
        )

    def section_by_name(self, name: str) -> Section | None:
        """The first section called `name`, or None."""
        if self._by_name is None:
            by_name: dict[str, Section] = {}
            for sec in self.sections:
                by_name.setdefault(sec.name, sec)
            self._by_name = by_name
        return self._by_name.get(name)

    def sections_by_type(self, sh_type: int) -> list[Section]:
        """All sections of type `sh_type` (a `SectionType`), in file order."""
        return [s for s in self.sections if s._sh_type == sh_type]

    def _strtab(self, index: int, referrer: Section) -> _StringTable:
        sec = self.section(index, referrer=referrer.label)
        if sec._sh_type != _SHT_STRTAB:
            raise ELFError(
                f"linked section {sec.label!r} is not a string table", section=referrer.label
            )
        return _StringTable(bytes(sec.data()), sec.label, sec.offset)

    def string_at(self, strtab: Section | int, offset: int) -> str:
        """The NUL-terminated string at `offset` of string table `strtab` (checked)."""
        sec = strtab if isinstance(strtab, Section) else self.section(strtab)
        if sec._sh_type != _SHT_STRTAB:
            raise ELFError("not a string table", section=sec.label)
        return _StringTable(bytes(sec.data()), sec.label, sec.offset).get(offset)

    # -- segments ----------------------------------------------------------

    @property
    def segments(self) -> list[Segment]:
        """The program headers (empty for relocatable objects)."""
        if self._segments is None:
            from ebpf._elfsegments import parse_segments  # on first use (process start)

            self._segments = parse_segments(self)
        return self._segments

    def vaddr_to_offset(self, vaddr: int) -> int | None:
        """The file offset that a ``PT_LOAD`` segment maps at `vaddr`, or None."""
        for seg in self.segments:
            if seg.type == _PT_LOAD and seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
                return vaddr - seg.vaddr + seg.offset
        return None

    # -- symbols -----------------------------------------------------------

    def symbol_table(self, section: Section | int) -> SymbolTable:
        """The symbols of a ``SHT_SYMTAB`` or ``SHT_DYNSYM`` section (cached)."""
        sec = section if isinstance(section, Section) else self.section(section)
        cached = self._symtabs.get(sec.index)
        if cached is not None:
            return cached
        if sec._sh_type not in (_SHT_SYMTAB, _SHT_DYNSYM):
            raise ELFError("not a symbol table", section=sec.label)
        if sec.entsize != _SYM_SIZE:
            raise ELFError(
                f"symbol entry size {sec.entsize}, expected {_SYM_SIZE}",
                section=sec.label,
                offset=sec.offset,
            )
        if sec.size % _SYM_SIZE:
            raise ELFError(
                f"symbol table size {sec.size} is not a multiple of {_SYM_SIZE}",
                section=sec.label,
                offset=sec.offset,
            )
        raw = bytes(sec.data())
        strings = self._strtab(sec.link, sec)
        shndx, shndx_label = self._shndx_table(sec)
        table = SymbolTable(sec, raw, strings, self._structs, shndx, shndx_label)
        self._symtabs[sec.index] = table
        return table

    def _shndx_table(self, symtab: Section) -> tuple[Sequence[int] | None, str]:
        for sec in self.sections:
            if sec._sh_type == _SHT_SYMTAB_SHNDX and sec.link == symtab.index:
                data = sec.data()
                if len(data) % 4:
                    raise ELFError(
                        "extended section index table size is not a multiple of 4",
                        section=sec.label,
                        offset=sec.offset,
                    )
                word = self._structs.word
                return [w[0] for w in word.iter_unpack(data)], sec.label
        return None, ""

    def _first_symtab(self, sh_type: int) -> SymbolTable | None:
        for sec in self.sections:
            if sec._sh_type == sh_type:
                return self.symbol_table(sec)
        return None

    def symbols(self) -> SymbolTable:
        """The symbols of ``.symtab`` (the first ``SHT_SYMTAB``); empty if there is none."""
        table = self._first_symtab(_SHT_SYMTAB)
        return table if table is not None else _empty_table()

    def dynamic_symbols(self) -> SymbolTable:
        """The symbols of ``.dynsym`` (the first ``SHT_DYNSYM``); empty if there is none."""
        table = self._first_symtab(_SHT_DYNSYM)
        return table if table is not None else _empty_table()

    # -- relocations -------------------------------------------------------

    @property
    def relocation_sections(self) -> dict[int, Section]:
        """Target section index -> the ``SHT_REL``/``SHT_RELA`` section that relocates it.

        Relocation sections whose ``sh_info`` is 0 (dynamic relocations that
        apply to the whole image, such as ``.rela.dyn``) are not included.
        """
        if self._reloc_sections is None:
            mapping: dict[int, Section] = {}
            for sec in self.sections:
                if sec._sh_type not in (_SHT_REL, _SHT_RELA) or sec.info == 0:
                    continue
                self.section(sec.info, referrer=sec.label, offset=sec.offset)
                other = mapping.get(sec.info)
                if other is not None:
                    raise ELFError(
                        f"section #{sec.info} is relocated by both {other.label!r} "
                        f"and {sec.label!r}",
                        section=sec.label,
                    )
                mapping[sec.info] = sec
            self._reloc_sections = mapping
        return self._reloc_sections

    def relocations(self, section: Section | int) -> list[Relocation]:
        """The relocations applying to `section` (a target section), or [] if none.

        Pass a ``SHT_REL``/``SHT_RELA`` section itself to read its entries
        regardless of target. Symbol indices are checked against the linked
        symbol table; in relocatable files (``ET_REL``) each offset is
        checked to lie inside the target section.
        """
        rsec = self._relocation_section(section)
        if rsec is None:
            return []
        cached = self._relocs.get(rsec.index)
        if cached is None:
            from ebpf._elfclasses import Relocation  # the record on first use (process start)

            cached = self._read_relocations(rsec, Relocation)
            self._relocs[rsec.index] = cached
        return cached

    def _relocation_rows(self, section: Section | int) -> list[tuple[int, int, int, int]]:
        """`relocations` as plain ``(offset, symbol, type, addend)`` tuples (cached): for
        `ebpf.elf`'s parser, which needs no `Relocation` class (process start)."""
        rsec = self._relocation_section(section)
        if rsec is None:
            return []
        cached = self._reloc_rows.get(rsec.index)
        if cached is None:
            cached = self._read_relocations(rsec, tuple)
            self._reloc_rows[rsec.index] = cached
        return cached

    def _relocation_section(self, section: Section | int) -> Section | None:
        """`section` itself if it is a ``SHT_REL``/``SHT_RELA`` section, else the one that
        relocates it (None if none does)."""
        sec = section if isinstance(section, Section) else self.section(section)
        if sec._sh_type in (_SHT_REL, _SHT_RELA):
            return sec
        return self.relocation_sections.get(sec.index)

    def _read_relocations(self, rsec: Section, cls: _TupleClass) -> list[Any]:
        """The entries of `rsec`, made by `cls` (a tuple class) from (offset, symbol, type,
        addend)."""
        rela = rsec._sh_type == _SHT_RELA
        entsize = _RELA_SIZE if rela else _REL_SIZE
        if rsec.entsize != entsize:
            raise ELFError(
                f"relocation entry size {rsec.entsize}, expected {entsize}",
                section=rsec.label,
                offset=rsec.offset,
            )
        if rsec.size % entsize:
            raise ELFError(
                f"relocation section size {rsec.size} is not a multiple of {entsize}",
                section=rsec.label,
                offset=rsec.offset,
            )
        layout = self._structs.rela if rela else self._structs.rel
        rows: list[tuple[int, ...]] = list(layout.iter_unpack(rsec.data()))
        if not rows:
            return []
        # Symbol indices must name entries of the linked symbol table.
        if rsec.link != 0:
            symsec = self.section(rsec.link, referrer=rsec.label, offset=rsec.offset)
            if symsec._sh_type not in (_SHT_SYMTAB, _SHT_DYNSYM):
                raise ELFError(
                    f"linked section {symsec.label!r} is not a symbol table", section=rsec.label
                )
            nsyms = symsec.size // _SYM_SIZE
        else:
            nsyms = 1  # no symbol table: only symbol 0 is meaningful
        sym_col = _THIRD if self.little_endian else _SECOND
        worst = max(rows, key=sym_col)
        if sym_col(worst) >= nsyms:
            i = rows.index(worst)
            raise ELFError(
                f"relocation {i} refers to symbol {sym_col(worst)}, "
                f"but the symbol table has {nsyms}",
                section=rsec.label,
                offset=rsec.offset + i * entsize,
            )
        if self._e_type == _ET_REL and rsec.info != 0:
            target = self.section(rsec.info, referrer=rsec.label, offset=rsec.offset)
            last = max(rows, key=_FIRST)
            if last[0] >= target.size:
                i = rows.index(last)
                raise ELFError(
                    f"relocation {i} at offset {last[0]:#x} lies outside "
                    f"{target.label!r} ({target.size} bytes)",
                    section=rsec.label,
                    offset=rsec.offset + i * entsize,
                )
        new = tuple.__new__
        if rela:
            if self.little_endian:
                return [new(cls, (o, s, t, a)) for o, t, s, a in rows]
            return [new(cls, row) for row in rows]
        if self.little_endian:
            return [new(cls, (o, s, t, 0)) for o, t, s in rows]
        return [new(cls, (o, s, t, 0)) for o, s, t in rows]

    # -- notes -------------------------------------------------------------

    def notes(self, where: Section | Segment) -> Iterator[Note]:
        """The note records of a ``SHT_NOTE`` section or ``PT_NOTE`` segment.

        Records are 4-byte aligned, or 8-byte aligned when the section or
        segment is (as GNU property notes are).
        """
        alignment = where.addralign if isinstance(where, Section) else where.align
        align = 8 if alignment == 8 else 4
        data = bytes(where.data())
        from ebpf._elfsegments import iter_notes  # on first use (process start)

        return iter_notes(self, data, align, where.offset, where.label)


_EMPTY_TABLE: SymbolTable | None = None


def _empty_table() -> SymbolTable:
    """The table returned when a file has no symbol table of the requested kind (made on
    first use: process start)."""
    global _EMPTY_TABLE
    table = _EMPTY_TABLE
    if table is None:
        table = SymbolTable(None, b"", _StringTable(b"\0", "", 0), _structs("little"), None, "")
        table._all = []
        table._raw_rows = []
        _EMPTY_TABLE = table
    return table
