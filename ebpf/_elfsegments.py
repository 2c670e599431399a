"""The parts of `ebpf.elffile` that only executables and shared libraries need: program
header types and flags (`SegmentType`, `SegmentFlags`) and note records (`Note`), imported
on first use: reading a BPF object needs neither (process start). Public as
``ebpf.elffile.SegmentType``, ... (their `__module__`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from enum import IntEnum, IntFlag
    from typing import NamedTuple
else:
    # the same stdlib classes, made at a fraction of the cost (process start)
    from ebpf._sys.fastclass import IntEnum, IntFlag, NamedTuple

__all__ = ["SEGMENT_TYPES", "Note", "SegmentFlags", "SegmentType"]


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


for _cls in (SegmentType, SegmentFlags, Note):
    _cls.__module__ = "ebpf.elffile"  # where they are public (reprs, pickles, docs)

#: ``p_type`` -> its `SegmentType` member
SEGMENT_TYPES: dict[int, int] = {m.value: m for m in SegmentType}
