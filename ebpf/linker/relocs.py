"""Relocations of the output sections, and the addends kept inside instructions.

BPF objects use SHT_REL: a relocation against a section symbol carries its
offset into that section in the relocated bytes themselves (the immediate of a
`ld_imm64`, of a call in instructions, or the data word). When the section a
symbol stands for lands at a non-zero offset of its output section, that
offset is added there.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ..elf import SHN_ABS
from ..errors import ELFError, LinkError
from .inputs import InputObject
from .layout import Layout, OutputSection
from .symbols import STT_SECTION, SymbolTable

__all__ = ["relocate"]

_LD_IMM64 = 0x18
_CALL = 0x85
_INSN_SIZE = 8
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
_S32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

Relocations = dict[int, list[tuple[int, int, int]]]


def relocate(objects: Sequence[InputObject], layout: Layout, symbols: SymbolTable
             ) -> Relocations:
    """The relocations of every output section (by section index), with the
    section-relative addends in the output bytes adjusted."""
    out: Relocations = {}
    for k, obj in enumerate(objects):
        for sec in obj.linked_sections():
            try:
                rels = obj.elf.relocations(sec)
            except ELFError as e:
                raise LinkError(f"{obj.name!r}: {e}") from e
            if not rels:
                continue
            dst, base = layout.place[(k, sec.index)]
            entries = out.setdefault(dst.index, [])
            for rel in rels:
                new = symbols.index.get((k, rel.symbol))
                sym = obj.symbols[rel.symbol]
                if new is None:
                    raise LinkError(f"{obj.name!r}: relocation at {sec.name}+{rel.offset:#x} "
                                    f"refers to symbol {sym.name or rel.symbol!r}, which is in "
                                    "a section that is not linked")
                if sym.type == STT_SECTION and sym.section_index != SHN_ABS:
                    shift = layout.place[(k, sym.section_index)][1]
                    if shift:
                        _add_addend(dst, base + rel.offset, rel.type, shift, obj.name)
                entries.append((base + rel.offset, new, rel.type))
    return out


def _add_addend(sec: OutputSection, pos: int, rtype: int, shift: int, name: str) -> None:
    data = sec.data
    if sec.is_code:
        if pos + _INSN_SIZE > len(data):
            raise LinkError(f"{name!r}: relocation at {sec.name}+{pos:#x} is past the code")
        op = data[pos]
        if op == _LD_IMM64:
            (imm,) = _S32.unpack_from(data, pos + 4)
            _S32.pack_into(data, pos + 4, imm + shift)
        elif op == _CALL:
            (imm,) = _S32.unpack_from(data, pos + 4)
            _S32.pack_into(data, pos + 4, imm + shift // _INSN_SIZE)
        return
    if rtype == R_BPF_64_ABS64 and pos + 8 <= len(data):
        (v,) = _U64.unpack_from(data, pos)
        _U64.pack_into(data, pos, (v + shift) & 0xFFFFFFFFFFFFFFFF)
    elif rtype == R_BPF_64_ABS32 and pos + 4 <= len(data):
        (v,) = _U32.unpack_from(data, pos)
        _U32.pack_into(data, pos, (v + shift) & 0xFFFFFFFF)
