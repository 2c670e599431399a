"""The parts of `ebpf.elffile` that only executables and shared libraries need: program
headers (`Segment`, their types and flags `SegmentType`, `SegmentFlags`, and reading them)
and note records (`Note`, and reading them), imported on first use: reading a BPF object
needs none of them (process start). Public as ``ebpf.elffile.Segment``, ... (their
`__module__`)."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ebpf.errors import ELFError

if TYPE_CHECKING:
    from enum import IntEnum, IntFlag
    from typing import NamedTuple

    from ebpf.elffile import ELFFile
else:
    # the same stdlib classes, made at a fraction of the cost (process start)
    from ebpf._sys.fastclass import IntEnum, IntFlag, NamedTuple

__all__ = ["SEGMENT_TYPES", "Note", "Segment", "SegmentFlags", "SegmentType", "iter_notes",
           "parse_segments"]


class SegmentType(IntEnum):
    """``p_type`` values (unknown values stay plain ints)."""

    NULL = 0
    LOAD = 1
    DYNAMIC = 2
    INTERP = 3
    NOTE = 4
    SHLIB = 5
    PHDR = 6
    TLS = 7
    GNU_EH_FRAME = 0x6474E550
    GNU_STACK = 0x6474E551
    GNU_RELRO = 0x6474E552
    GNU_PROPERTY = 0x6474E553


class SegmentFlags(IntFlag):
    """``p_flags`` bits."""

    X = 0x1
    W = 0x2
    R = 0x4


class Note(NamedTuple):
    """One record of a note section or segment: owner name, type and descriptor bytes."""

    name: str
    type: int
    desc: bytes


#: ``p_type`` -> its `SegmentType` member
SEGMENT_TYPES: dict[int, int] = {m.value: m for m in SegmentType}

_PHDR_SIZE = 56


class Segment:
    """One program header (``PT_*``): a run of the file mapped at run time."""

    __slots__ = (
        "_elf",
        "align",
        "filesz",
        "flags",
        "index",
        "memsz",
        "offset",
        "paddr",
        "type",
        "vaddr",
    )

    def __init__(
        self, elf: ELFFile, index: int, row: tuple[int, int, int, int, int, int, int, int]
    ) -> None:
        self._elf = elf
        self.index = index
        (p_type, self.flags, self.offset, self.vaddr,
         self.paddr, self.filesz, self.memsz, self.align) = row
        self.type: int = SEGMENT_TYPES.get(p_type, p_type)

    @property
    def label(self) -> str:
        """The name used in error messages."""
        return f"segment #{self.index}"

    def data(self) -> memoryview:
        """The segment's ``p_filesz`` file bytes; ELFError if they lie outside the file."""
        return self._elf._view(self.offset, self.filesz, self.label)

    def __repr__(self) -> str:
        t = self.type.name if isinstance(self.type, enum.IntEnum) else hex(self.type)
        return (
            f"Segment(index={self.index}, type={t}, flags={self.flags:#x}, "
            f"offset={self.offset:#x}, vaddr={self.vaddr:#x}, filesz={self.filesz:#x}, "
            f"memsz={self.memsz:#x})"
        )


def parse_segments(elf: ELFFile) -> list[Segment]:
    """The program headers of `elf`."""
    phoff, phnum = elf.phoff, elf._raw_phnum
    if phoff == 0 or phnum == 0:
        return []
    if elf.phentsize != _PHDR_SIZE:
        raise ELFError(
            f"program header entry size {elf.phentsize}, expected {_PHDR_SIZE}", offset=0x36
        )
    end = phoff + phnum * _PHDR_SIZE
    if end > len(elf._buf):
        raise ELFError(
            f"program header table of {phnum} entries lies outside the file", offset=phoff
        )
    rows = elf._structs.phdr.iter_unpack(elf._view(phoff, end - phoff, "program headers"))
    return [Segment(elf, i, row) for i, row in enumerate(rows)]


def iter_notes(elf: ELFFile, data: bytes, align: int, base: int, label: str) -> Iterator[Note]:
    """The note records in `data` (a section or segment of `elf` at `base`)."""
    nhdr = elf._structs.nhdr
    mask = align - 1
    n = len(data)
    pos = 0
    while pos < n:
        if n - pos < 12:
            raise ELFError("truncated note header", section=label, offset=base + pos)
        namesz, descsz, ntype = nhdr.unpack_from(data, pos)
        name_start = pos + 12
        desc_start = (name_start + namesz + mask) & ~mask
        desc_end = desc_start + descsz
        if name_start + namesz > n or desc_end > n:
            raise ELFError(
                f"note (name {namesz} bytes, descriptor {descsz} bytes) runs past the end",
                section=label,
                offset=base + pos,
            )
        raw_name = data[name_start : name_start + namesz]
        nul = raw_name.find(b"\0")
        if nul >= 0:
            raw_name = raw_name[:nul]
        yield Note(
            raw_name.decode("utf-8", "surrogateescape"), ntype, data[desc_start:desc_end]
        )
        pos = (desc_end + mask) & ~mask


for _cls in (SegmentType, SegmentFlags, Note, Segment):
    _cls.__module__ = "ebpf.elffile"  # where they are public (reprs, pickles, docs)
