"""Static linking: several relocatable BPF objects into one, like `bpftool gen object`.

    blob = ebpf.linker.link(["a.bpf.o", "b.bpf.o"])

Sections of the same name are concatenated (each input section aligned), the
relocations follow their bytes, global symbols resolve across the inputs (see
`ebpf.linker.symbols` for the rules), `.maps` definitions and externs are
checked against each other, the `.BTF` of all inputs is merged and
deduplicated and `.BTF.ext` moved along. Anything that cannot be linked raises
`ebpf.errors.LinkError` naming the file(s) and symbol.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..btf.records import StringTable, marshal
from ..elf import SectionType
from ..elf.writer import ElfWriter
from ..errors import LinkError
from .btfmerge import MergedBTF
from .extinfo import link_ext
from .inputs import InputObject, Source
from .layout import Layout
from .relocs import relocate
from .symbols import SymbolTable

__all__ = ["LinkError", "link"]


def link(objects: Sequence[Source]) -> bytes:
    """Link BPF objects (paths or bytes) into one relocatable object; its bytes."""
    if isinstance(objects, (str, bytes, bytearray, memoryview)):
        raise TypeError("link() takes a sequence of objects, not one object")
    if not objects:
        raise LinkError("link() needs at least one object")
    inputs = [InputObject(source, k) for k, source in enumerate(objects)]
    layout = Layout(inputs)
    symbols = SymbolTable(inputs, layout)
    relocations = relocate(inputs, layout, symbols)
    writer = ElfWriter()
    for sec in layout.sections.values():
        writer.add_section(sec.name, sec.type, sec.flags, bytes(sec.data), size=sec.size,
                           align=sec.align)
    if any(obj.has_btf for obj in inputs):
        merged = MergedBTF(inputs, layout, symbols)
        strings = StringTable()
        words = merged.result.encode(strings)
        ext = link_ext(inputs, layout, merged.bases, merged.result.id_map, strings)
        writer.add_section(".BTF", SectionType.PROGBITS, 0, marshal(words, strings), align=4)
        if ext is not None:
            writer.add_section(".BTF.ext", SectionType.PROGBITS, 0, ext, align=4)
    writer.set_symbols(symbols.output, symbols.first_global)
    for index, rels in relocations.items():
        writer.add_relocations(index, rels)
    return writer.to_bytes()
