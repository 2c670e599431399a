"""Output sections: the input sections of the same name, one after the other."""

from __future__ import annotations

from collections.abc import Sequence

from ..elf import Section, SectionFlags, SectionType
from ..errors import LinkError
from .inputs import SHARED_SECTIONS, InputObject

__all__ = ["Layout", "OutputSection"]


class OutputSection:
    """A section of the output: its bytes and where each input section landed."""

    __slots__ = ("align", "data", "first", "flags", "index", "name", "origin", "size", "type")

    def __init__(self, name: str, sec: Section, index: int, origin: str, first: int) -> None:
        self.name = name
        self.type = int(sec.type)
        self.flags = int(sec.flags)
        self.align = 1
        self.size = 0
        self.data = bytearray()
        self.index = index  # 1-based index in the output
        self.origin = origin  # the first file that had it (for error messages)
        self.first = first  # and its object number

    @property
    def is_code(self) -> bool:
        """Whether the section holds instructions."""
        return bool(self.flags & SectionFlags.EXECINSTR)

    @property
    def nobits(self) -> bool:
        """Whether the section occupies no file bytes (.bss)."""
        return self.type == SectionType.NOBITS


class Layout:
    """Every linked input section's place: output section and byte offset in it."""

    def __init__(self, objects: Sequence[InputObject]) -> None:
        self.sections: dict[str, OutputSection] = {}
        # (object number, input section index) -> (output section, offset)
        self.place: dict[tuple[int, int], tuple[OutputSection, int]] = {}
        for k, obj in enumerate(objects):
            for sec in obj.linked_sections():
                self._add(k, obj, sec)

    def _add(self, k: int, obj: InputObject, sec: Section) -> None:
        out = self.sections.get(sec.name)
        if out is None:
            out = self.sections[sec.name] = OutputSection(sec.name, sec, len(self.sections) + 1,
                                                          obj.name, k)
        elif out.type != sec.type or (out.flags ^ sec.flags) & SectionFlags.EXECINSTR:
            raise LinkError(f"section {sec.name!r} holds code or data of different kinds in "
                            f"{out.origin!r} and {obj.name!r}")
        data = b"" if sec.is_nobits else bytes(sec.data())
        if sec.name in SHARED_SECTIONS:
            if out.size == 0:
                out.data += data
                out.size = len(data)
            elif bytes(out.data) != data:
                raise LinkError(f"section {sec.name!r} differs between {out.origin!r} "
                                f"({bytes(out.data)!r}) and {obj.name!r} ({data!r})")
            self.place[(k, sec.index)] = (out, 0)
            return
        # Each input starts at a multiple of the largest alignment seen so far in the
        # output section (bpftool's layout), not just of its own.
        align = max(sec.addralign, out.align)
        if out.is_code:
            align = max(align, 8)
        if sec.size % 8 and out.is_code:
            raise LinkError(f"{obj.name!r}: code section {sec.name!r} is {sec.size} bytes, "
                            "not a whole number of instructions")
        off = out.size + (-out.size % align)
        out.align = max(out.align, align)
        if not out.nobits:
            out.data += b"\0" * (off - out.size) + data
        out.size = off + sec.size
        self.place[(k, sec.index)] = (out, off)
