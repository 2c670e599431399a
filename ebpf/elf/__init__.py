"""BPF objects: the ELF reader (`ebpf.elffile`, re-exported here), the section-name table,
and the parser of relocatable objects into specs (`ebpf.elf.parse`).

The names load on first use (process start): loading an object imports `ebpf.elf.parse`
and what it needs, not the whole of the reader's and the section table's public classes.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from ebpf.elf.sections import (
        SECTION_TABLE,
        AttachKind,
        SecFlags,
        SectionDef,
        SectionPattern,
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
        Note,
        Relocation,
        Section,
        SectionFlags,
        SectionType,
        Segment,
        SegmentFlags,
        SegmentType,
        Symbol,
        SymbolBind,
        SymbolTable,
        SymbolType,
        SymbolVisibility,
    )

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

_FROM_SECTIONS = frozenset({
    "SECTION_TABLE", "AttachKind", "SecFlags", "SectionDef", "SectionPattern",
    "lookup_section", "parse_kprobe_target", "parse_tracepoint_target",
    "parse_uprobe_target", "parse_usdt_target",
})


def __getattr__(name: str) -> Any:
    if name in _FROM_SECTIONS:
        from ebpf.elf import sections  # on first use (process start)

        return getattr(sections, name)
    if name in __all__:
        from ebpf import elffile  # on first use (process start)

        return getattr(elffile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
