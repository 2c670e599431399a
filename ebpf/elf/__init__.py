"""BPF objects: the ELF reader (`ebpf.elffile`, re-exported here), the section-name table,
and the parser of relocatable objects into specs (`ebpf.elf.parse`)."""

from __future__ import annotations

from ebpf.elf.sections import (
    AttachKind,
    SecFlags,
    SectionDef,
    lookup_section,
    parse_kprobe_target,
    parse_tracepoint_target,
    parse_uprobe_target,
    parse_usdt_target,
)
from ebpf.elffile import (
    SHN_ABS,
    SHN_COMMON,
    SHN_LORESERVE,
    SHN_UNDEF,
    SHN_XINDEX,
    ELFFile,
    ElfType,
    Machine,
    Relocation,
    Section,
    SectionFlags,
    SectionType,
    Symbol,
    SymbolBind,
    SymbolTable,
    SymbolType,
    SymbolVisibility,
)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from ebpf.elf.sections import SECTION_TABLE, SectionPattern
    from ebpf.elffile import Note, Segment, SegmentFlags, SegmentType

__all__ = [
    "SECTION_TABLE",
    "SHN_ABS",
    "SHN_COMMON",
    "SHN_LORESERVE",
    "SHN_UNDEF",
    "SHN_XINDEX",
    "AttachKind",
    "ELFFile",
    "ElfType",
    "Machine",
    "Note",
    "Relocation",
    "SecFlags",
    "Section",
    "SectionDef",
    "SectionFlags",
    "SectionPattern",
    "SectionType",
    "Segment",
    "SegmentFlags",
    "SegmentType",
    "Symbol",
    "SymbolBind",
    "SymbolTable",
    "SymbolType",
    "SymbolVisibility",
    "lookup_section",
    "parse_kprobe_target",
    "parse_tracepoint_target",
    "parse_uprobe_target",
    "parse_usdt_target",
]


def __getattr__(name: str) -> Any:
    if name in ("SECTION_TABLE", "SectionPattern"):
        from ebpf.elf import sections  # its named tuples on first use (process start)

        return getattr(sections, name)
    if name in ("Note", "Segment", "SegmentFlags", "SegmentType"):
        from ebpf import elffile  # executables' classes on first use (process start)

        return getattr(elffile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
