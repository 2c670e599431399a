"""func/line info records packed at once (`programs._u32_records`) hold what building
each ctypes struct field by field gives, values cut to 32 bits alike."""

from __future__ import annotations

import ctypes

from ebpf import programs
from ebpf._sys.types import FuncInfo, LineInfo


def test_packed_records_equal_structs_built_one_by_one() -> None:
    lines = [(0, 7, 9, (12 << 10) | 3), (5, 1 << 33 | 4, 2, -1), (9, 0, 0, 0)]
    packed = programs._u32_records([v for rec in lines for v in rec])
    built = (LineInfo * len(lines))(*[
        LineInfo(insn_off=a, file_name_off=b, line_off=c, line_col=d) for a, b, c, d in lines])
    assert bytes(packed) == bytes(built)
    second = LineInfo.from_buffer_copy(packed, ctypes.sizeof(LineInfo))
    assert second.file_name_off == 4 and second.line_col == 0xFFFFFFFF
    funcs = [(0, 3), (17, 40)]
    packed_f = programs._u32_records([v for rec in funcs for v in rec])
    built_f = (FuncInfo * 2)(*[FuncInfo(insn_off=a, type_id=b) for a, b in funcs])
    assert bytes(packed_f) == bytes(built_f) and len(packed_f) == 2 * ctypes.sizeof(FuncInfo)


def test_record_sizes_are_the_structs() -> None:
    assert programs._FUNC_INFO_SIZE == ctypes.sizeof(FuncInfo)
    assert programs._LINE_INFO_SIZE == ctypes.sizeof(LineInfo)
