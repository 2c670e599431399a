"""Parse the ``.BTF.ext`` section: function info, line info and CO-RE relocations.

Layout (``tools/lib/bpf/libbpf_internal.h``, Documentation/bpf/btf.rst)::

    header   magic u16 (0xeb9f), version u8 (1), flags u8, hdr_len u32,
             func_info_off u32, func_info_len u32,
             line_info_off u32, line_info_len u32,
             [core_relo_off u32, core_relo_len u32]     when hdr_len >= 32
    each subsection (offsets relative to the end of the header):
             rec_size u32, then per ELF section:
                 sec_name_off u32, num_info u32, num_info records of rec_size bytes

    func_info record   insn_off u32, type_id u32
    line_info record   insn_off u32, file_name_off u32, line_off u32, line_col u32
    core_relo record   insn_off u32, type_id u32, access_str_off u32, kind u32

Instruction offsets are in bytes from the start of the ELF section; string
offsets point into the string table of the object's ``.BTF``. Records may be
longer than the fields listed (newer compilers): the known prefix is read and
the rest skipped.
"""

from __future__ import annotations

import struct

from .._sys.types import CoreReloKind
from ..errors import BTFError
from .spec import Spec
from .types import Func

__all__ = ["CoreRelo", "Ext", "LineInfo", "parse_ext"]

_MAGIC = 0xEB9F
_INSN_SIZE = 8
_MAX_REC_SIZE = 1 << 16  # sanity bound; real records are 8 or 16 bytes

# Smallest record size per subsection: the fields this parser knows.
_FUNC_INFO_MIN = 8
_LINE_INFO_MIN = 16
_CORE_RELO_MIN = 16

_KINDS = {int(k): k for k in CoreReloKind}


class LineInfo:
    """Source position of an instruction: file, the line's text, line and column numbers."""

    __slots__ = ("col", "file_name", "line", "line_text")

    def __init__(self, file_name: str, line_text: str, line: int, col: int) -> None:
        self.file_name = file_name
        self.line_text = line_text
        self.line = line
        self.col = col

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LineInfo):
            return NotImplemented
        return (self.file_name, self.line_text, self.line, self.col) == (
            other.file_name, other.line_text, other.line, other.col)

    def __hash__(self) -> int:
        return hash((self.file_name, self.line_text, self.line, self.col))

    def __repr__(self) -> str:
        return f"<LineInfo {self.file_name}:{self.line}:{self.col} {self.line_text.strip()!r}>"

    def __str__(self) -> str:
        return self.line_text


class CoreRelo:
    """One CO-RE relocation record.

    `insn_off` is the byte offset of the instruction within its ELF section,
    `type_id` the local (object BTF) id of the root type, `access` the access
    string ("0:1:2" for field relocations, "0" for type relocations, the
    enumerator index for enum value relocations) and `kind` what to compute.
    """

    __slots__ = ("access", "insn_off", "kind", "type_id")

    def __init__(self, insn_off: int, type_id: int, access: str, kind: CoreReloKind) -> None:
        self.insn_off = insn_off
        self.type_id = type_id
        self.access = access
        self.kind = kind

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CoreRelo):
            return NotImplemented
        return (self.insn_off, self.type_id, self.access, self.kind) == (
            other.insn_off, other.type_id, other.access, other.kind)

    def __hash__(self) -> int:
        return hash((self.insn_off, self.type_id, self.access, self.kind))

    def __repr__(self) -> str:
        return (f"CoreRelo(insn_off={self.insn_off}, type_id={self.type_id}, "
                f"access={self.access!r}, kind={self.kind.name})")


class Ext:
    """The parsed ``.BTF.ext`` of an object, by ELF section name.

    Function and line infos are sorted by instruction byte offset; CO-RE
    relocations keep the order of the file, which is the order libbpf applies
    them in (it matters for candidate pruning, see `ebpf.btf.core`).
    """

    __slots__ = ("core_relos", "func_infos", "line_infos")

    def __init__(self, func_infos: dict[str, list[tuple[int, Func]]] | None = None,
                 line_infos: dict[str, list[tuple[int, LineInfo]]] | None = None,
                 core_relos: dict[str, list[CoreRelo]] | None = None) -> None:
        self.func_infos: dict[str, list[tuple[int, Func]]] = func_infos or {}
        self.line_infos: dict[str, list[tuple[int, LineInfo]]] = line_infos or {}
        self.core_relos: dict[str, list[CoreRelo]] = core_relos or {}

    def __repr__(self) -> str:
        return (f"<btf.Ext {sum(map(len, self.func_infos.values()))} funcs, "
                f"{sum(map(len, self.line_infos.values()))} lines, "
                f"{sum(map(len, self.core_relos.values()))} CO-RE relocations>")


class _Reader:
    """Bounds-checked u32 reads from the .BTF.ext bytes."""

    __slots__ = ("data", "u32", "u32x2", "u32x4")

    def __init__(self, data: bytes, order: str) -> None:
        self.data = data
        self.u32 = struct.Struct(order + "I").unpack_from
        self.u32x2 = struct.Struct(order + "II").unpack_from
        self.u32x4 = struct.Struct(order + "IIII").unpack_from


def _string(spec: Spec, off: int, what: str, at: int) -> str:
    try:
        return spec.string(off)
    except BTFError as e:
        raise BTFError(f".BTF.ext: {what}: {e.args[0] if e.args else e}", at) from None


def _subsection(r: _Reader, start: int, length: int, min_rec: int, what: str,
                hdr_len: int) -> list[tuple[int, int, int, int]]:
    """Walk one subsection: (sec_name_off, first record offset, rec_size, num_info) per
    ELF section."""
    data = r.data
    if length == 0:
        return []
    if start % 4:
        raise BTFError(f".BTF.ext {what} subsection is not 4-byte aligned", start)
    end = start + length
    if end > len(data):
        raise BTFError(f".BTF.ext {what} subsection ({length} bytes) lies outside the "
                       f"{len(data)}-byte section", start)
    if length < 4:
        raise BTFError(f".BTF.ext {what} subsection is too short for its record size", start)
    (rec_size,) = r.u32(data, start)
    if rec_size < min_rec or rec_size % 4 or rec_size > _MAX_REC_SIZE:
        raise BTFError(f".BTF.ext {what} record size {rec_size} is invalid "
                       f"(at least {min_rec}, a multiple of 4)", start)
    chunks: list[tuple[int, int, int, int]] = []
    pos = start + 4
    while pos < end:
        if end - pos < 8:
            raise BTFError(f".BTF.ext {what}: truncated section header", pos)
        name_off, num = r.u32x2(data, pos)
        if num == 0:
            raise BTFError(f".BTF.ext {what}: section header with zero records", pos)
        body = pos + 8
        if num * rec_size > end - body:
            raise BTFError(f".BTF.ext {what}: {num} records of {rec_size} bytes exceed the "
                           f"subsection", pos)
        chunks.append((name_off, body, rec_size, num))
        pos = body + num * rec_size
    return chunks


def _section_name(spec: Spec, name_off: int, what: str, at: int) -> str:
    name = _string(spec, name_off, f"{what} section name", at - 8)
    if not name:
        raise BTFError(f".BTF.ext {what}: empty section name", at - 8)
    return name


def _check_insn_off(off: int, what: str, at: int) -> None:
    if off % _INSN_SIZE:
        raise BTFError(f".BTF.ext {what}: instruction offset {off} is not a multiple of "
                       f"{_INSN_SIZE}", at)


def parse_ext(data: bytes | bytearray | memoryview, spec: Spec) -> Ext:
    """Parse a ``.BTF.ext`` section; `spec` is the same object's ``.BTF``.

    Raises `BTFError` naming the byte offset (within .BTF.ext) of anything
    malformed: bad header, subsections out of bounds, bad record sizes,
    misaligned instruction offsets, string offsets outside the .BTF string
    table, func info pointing at a type that is not a FUNC, CO-RE relocations
    of unknown kinds or type ids out of range.
    """
    data = bytes(data)
    if len(data) < 8:
        raise BTFError(f".BTF.ext is {len(data)} bytes, shorter than its header", 0)
    if data[0:2] == b"\x9f\xeb":
        order = "<"
    elif data[0:2] == b"\xeb\x9f":
        order = ">"
    else:
        raise BTFError(f"bad .BTF.ext magic {data[0:2].hex()}", 0)
    version, flags = data[2], data[3]
    if version != 1:
        raise BTFError(f"unsupported .BTF.ext version {version}", 2)
    if flags != 0:
        raise BTFError(f"unsupported .BTF.ext flags {flags:#x}", 3)
    r = _Reader(data, order)
    (hdr_len,) = r.u32(data, 4)
    if hdr_len < 24 or hdr_len > len(data):
        raise BTFError(f"bad .BTF.ext header length {hdr_len}", 4)
    func_off, func_len, line_off, line_len = r.u32x4(data, 8)
    core_off = core_len = 0
    if hdr_len >= 32:
        core_off, core_len = r.u32x2(data, 24)

    ext = Ext()
    nspec = len(spec)

    for name_off, body, rec_size, num in _subsection(
            r, hdr_len + func_off, func_len, _FUNC_INFO_MIN, "func_info", hdr_len):
        sec = _section_name(spec, name_off, "func_info", body)
        out_f = ext.func_infos.setdefault(sec, [])
        for i in range(num):
            at = body + i * rec_size
            insn_off, type_id = r.u32x2(data, at)
            _check_insn_off(insn_off, "func_info", at)
            if type_id >= nspec:
                raise BTFError(f".BTF.ext func_info: type id {type_id} out of range", at + 4)
            t = spec.type_by_id(type_id)
            if not isinstance(t, Func):
                raise BTFError(f".BTF.ext func_info: type id {type_id} is a "
                               f"{type(t).__name__}, not a Func", at + 4)
            out_f.append((insn_off, t))

    for name_off, body, rec_size, num in _subsection(
            r, hdr_len + line_off, line_len, _LINE_INFO_MIN, "line_info", hdr_len):
        sec = _section_name(spec, name_off, "line_info", body)
        out_l = ext.line_infos.setdefault(sec, [])
        strings: dict[int, str] = {}
        for i in range(num):
            at = body + i * rec_size
            insn_off, file_off, text_off, line_col = r.u32x4(data, at)
            _check_insn_off(insn_off, "line_info", at)
            file_name = strings.get(file_off)
            if file_name is None:
                file_name = strings[file_off] = _string(spec, file_off, "line_info file name",
                                                        at + 4)
            text = strings.get(text_off)
            if text is None:
                text = strings[text_off] = _string(spec, text_off, "line_info line", at + 8)
            out_l.append((insn_off, LineInfo(file_name, text, line_col >> 10, line_col & 0x3FF)))

    if core_len:
        for name_off, body, rec_size, num in _subsection(
                r, hdr_len + core_off, core_len, _CORE_RELO_MIN, "core_relo", hdr_len):
            sec = _section_name(spec, name_off, "core_relo", body)
            out_c = ext.core_relos.setdefault(sec, [])
            for i in range(num):
                at = body + i * rec_size
                insn_off, type_id, access_off, kind = r.u32x4(data, at)
                _check_insn_off(insn_off, "core_relo", at)
                if type_id >= nspec:
                    raise BTFError(f".BTF.ext core_relo: type id {type_id} out of range", at + 4)
                k = _KINDS.get(kind)
                if k is None:
                    raise BTFError(f".BTF.ext core_relo: unknown relocation kind {kind}", at + 12)
                access = _string(spec, access_off, "core_relo access string", at + 8)
                out_c.append(CoreRelo(insn_off, type_id, access, k))

    for fl in ext.func_infos.values():
        fl.sort(key=lambda e: e[0])
    for ll in ext.line_infos.values():
        ll.sort(key=lambda e: e[0])
    return ext
