"""The public enums and records of `ebpf.elffile` (`ElfType`, `Machine`, `SectionType`,
`SectionFlags`, `SymbolBind`, `SymbolType`, `SymbolVisibility`, `Symbol`, `Relocation`),
made on first use: the object parser reads raw values and needs none of them (process
start). Public as ``ebpf.elffile.Symbol``, ... (their `__module__`)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from enum import IntEnum, IntFlag
    from typing import NamedTuple
else:
    # the same stdlib classes, made at a fraction of the cost (process start)
    from ebpf._sys.fastclass import IntEnum, IntFlag, NamedTuple

__all__ = [
    "BINDS",
    "ELF_TYPES",
    "MACHINES",
    "SECTION_TYPES",
    "TYPES",
    "VISIBILITIES",
    "ElfType",
    "Machine",
    "Relocation",
    "SectionFlags",
    "SectionType",
    "Symbol",
    "SymbolBind",
    "SymbolType",
    "SymbolVisibility",
]


class ElfType(IntEnum):
    """``e_type``: the kind of ELF file."""

    NONE = 0
    REL = 1
    EXEC = 2
    DYN = 3
    CORE = 4


class Machine(IntEnum):
    """``e_machine``: a few architectures of interest (others stay plain ints)."""

    NONE = 0
    I386 = 3
    PPC64 = 21
    S390 = 22
    ARM = 40
    X86_64 = 62
    AARCH64 = 183
    RISCV = 243
    BPF = 247
    LOONGARCH = 258


class SectionType(IntEnum):
    """``sh_type`` values (unknown values stay plain ints)."""

    NULL = 0
    PROGBITS = 1
    SYMTAB = 2
    STRTAB = 3
    RELA = 4
    HASH = 5
    DYNAMIC = 6
    NOTE = 7
    NOBITS = 8
    REL = 9
    SHLIB = 10
    DYNSYM = 11
    INIT_ARRAY = 14
    FINI_ARRAY = 15
    PREINIT_ARRAY = 16
    GROUP = 17
    SYMTAB_SHNDX = 18
    RELR = 19
    LLVM_ADDRSIG = 0x6FFF4C03
    GNU_ATTRIBUTES = 0x6FFFFFF5
    GNU_HASH = 0x6FFFFFF6
    GNU_LIBLIST = 0x6FFFFFF7
    GNU_VERDEF = 0x6FFFFFFD
    GNU_VERNEED = 0x6FFFFFFE
    GNU_VERSYM = 0x6FFFFFFF
    X86_64_UNWIND = 0x70000001


class SectionFlags(IntFlag):
    """``sh_flags`` bits."""

    WRITE = 0x1
    ALLOC = 0x2
    EXECINSTR = 0x4
    MERGE = 0x10
    STRINGS = 0x20
    INFO_LINK = 0x40
    LINK_ORDER = 0x80
    OS_NONCONFORMING = 0x100
    GROUP = 0x200
    TLS = 0x400
    COMPRESSED = 0x800
    EXCLUDE = 0x80000000


class SymbolBind(IntEnum):
    """``ELF64_ST_BIND(st_info)``."""

    LOCAL = 0
    GLOBAL = 1
    WEAK = 2
    GNU_UNIQUE = 10


class SymbolType(IntEnum):
    """``ELF64_ST_TYPE(st_info)``."""

    NOTYPE = 0
    OBJECT = 1
    FUNC = 2
    SECTION = 3
    FILE = 4
    COMMON = 5
    TLS = 6
    GNU_IFUNC = 10


class SymbolVisibility(IntEnum):
    """``ELF64_ST_VISIBILITY(st_other)``."""

    DEFAULT = 0
    INTERNAL = 1
    HIDDEN = 2
    PROTECTED = 3


class Symbol(NamedTuple):
    """One entry of a symbol table.

    `bind`, `type` and `visibility` are `SymbolBind`, `SymbolType` and
    `SymbolVisibility` members when the value is known (plain ints
    otherwise). `section_index` is ``st_shndx`` resolved through
    ``SHT_SYMTAB_SHNDX`` when it was ``SHN_XINDEX``; it may be a special index
    (``SHN_UNDEF``, ``SHN_ABS``, ``SHN_COMMON``) and is not checked against
    the section table: use `ELFFile.section` for a checked lookup.
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index, deliberately
    name: str
    value: int
    size: int
    bind: int
    type: int
    visibility: int
    section_index: int


class Relocation(NamedTuple):
    """One REL/RELA entry: ``r_offset``, ``ELF64_R_SYM``, ``ELF64_R_TYPE`` and the addend.

    The addend is 0 for ``SHT_REL`` sections (BPF objects keep it in the
    instruction).
    """

    offset: int
    symbol: int
    type: int
    addend: int


def _lookup_table(cls: type[IntEnum], size: int) -> tuple[int, ...]:
    """A tuple mapping small ints to enum members (or the plain int)."""
    members = {m.value: m for m in cls}
    return tuple(members.get(i, i) for i in range(size))


# raw value -> member (or the plain int when unknown)
BINDS = _lookup_table(SymbolBind, 16)
TYPES = _lookup_table(SymbolType, 16)
VISIBILITIES = _lookup_table(SymbolVisibility, 4)
SECTION_TYPES: dict[int, int] = {m.value: m for m in SectionType}
ELF_TYPES: dict[int, int] = {m.value: m for m in ElfType}
MACHINES: dict[int, int] = {m.value: m for m in Machine}

for _cls in (ElfType, Machine, SectionType, SectionFlags, SymbolBind, SymbolType,
             SymbolVisibility, Symbol, Relocation):
    _cls.__module__ = "ebpf.elffile"  # where they are public (reprs, pickles, docs)
