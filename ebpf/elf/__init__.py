"""BPF objects: the ELF reader (`ebpf.elffile`, re-exported here), the section-name table,
and the parser of relocatable objects into specs (`ebpf.elf.parse`).

The names load on first use (process start): loading an object imports `ebpf.elf.parse`
and what it needs, not the whole of the reader's and the section table's public classes.
"""

from __future__ import annotations

import ebpf._lazyattr as _lazyattr

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
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

# the section table's names from ebpf.elf.sections, the others from ebpf.elffile
_FROM_SECTIONS = frozenset({
    "SECTION_TABLE", "AttachKind", "SecFlags", "SectionDef", "SectionPattern",
    "lookup_section", "parse_kprobe_target", "parse_tracepoint_target",
    "parse_uprobe_target", "parse_usdt_target",
})
__getattr__ = _lazyattr.lazy_attributes(globals(), {
    name: "ebpf.elf.sections" if name in _FROM_SECTIONS else "ebpf.elffile" for name in __all__})
