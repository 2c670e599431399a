"""BTF type records as flat Python values, for whole-blob rewrites (dedup, linking).

A `Record` is one type record of a blob with its string offsets replaced by the
strings and its type references kept as ids. Which words of a record are type
ids and which are string offsets depends only on its kind and vlen (the
`layout`), so rewriting every reference of a blob — renumbering types after a
dedup, shifting them when several blobs are concatenated — is a loop over
positions, without decoding the types into `ebpf.btf.Type` objects.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

from ..errors import BTFError
from .layout import HEADER, HEADER_BE, MAGIC, record_words
from .types import Kind

__all__ = ["Record", "StringTable", "encode_records", "layout", "parse_records"]

# Kinds whose size_type word is a type id (the others hold a size or nothing).
_TYPE_IN_HEADER = frozenset((Kind.PTR, Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT,
                             Kind.TYPE_TAG, Kind.FUNC, Kind.FUNC_PROTO, Kind.VAR,
                             Kind.DECL_TAG))
# Words after the 3-word header: once per record, then once per vlen entry.
# "t": a type id, "s": a string offset, "v": a plain value.
_FIXED = {Kind.INT: "v", Kind.ARRAY: "ttv", Kind.VAR: "v", Kind.DECL_TAG: "v"}
_PER_ENTRY = {Kind.STRUCT: "stv", Kind.UNION: "stv", Kind.ENUM: "sv", Kind.ENUM64: "svv",
              Kind.FUNC_PROTO: "st", Kind.DATASEC: "tvv"}


@lru_cache(maxsize=4096)
def layout(info: int) -> tuple[bool, tuple[int, ...], tuple[int, ...]]:
    """For a record whose info word is `info`: whether its size_type word is a type
    id, and the positions (in `Record.tail`) of its type ids and of its strings."""
    kind = (info >> 24) & 0x1F
    vlen = info & 0xFFFF
    pattern = _FIXED.get(kind, "") + _PER_ENTRY.get(kind, "") * vlen  # type: ignore[call-overload]
    refs = tuple(i for i, c in enumerate(pattern) if c == "t")
    strs = tuple(i for i, c in enumerate(pattern) if c == "s")
    return kind in _TYPE_IN_HEADER, refs, strs


class Record:
    """One BTF type record: `info` word, `name`, `size_type` word and the words
    after the header (`tail`), with strings in place of string offsets."""

    __slots__ = ("info", "name", "size_type", "tail")

    def __init__(self, info: int, name: str, size_type: int, tail: list[int | str]) -> None:
        self.info = info
        self.name = name
        self.size_type = size_type
        self.tail = tail

    @property
    def kind(self) -> int:
        """The BTF kind (`ebpf.btf.Kind` value)."""
        return (self.info >> 24) & 0x1F

    @property
    def vlen(self) -> int:
        """The record's vlen (members, values, params or variables)."""
        return self.info & 0xFFFF

    def refs(self) -> list[int]:
        """The type ids this record refers to, in record order."""
        st_ref, refs, _ = layout(self.info)
        tail = self.tail
        out = [self.size_type] if st_ref else []
        out.extend(tail[i] for i in refs)  # type: ignore[misc]
        return out

    def remapped(self, new_id: Callable[[int], int]) -> Record:
        """A copy with every type id `t` replaced by `new_id(t)`."""
        st_ref, refs, _ = layout(self.info)
        tail = list(self.tail)
        for i in refs:
            tail[i] = new_id(tail[i])  # type: ignore[arg-type]
        st = new_id(self.size_type) if st_ref else self.size_type
        return Record(self.info, self.name, st, tail)

    def renumbered(self, table: Sequence[int]) -> Record:
        """A copy with every type id `t` replaced by `table[t]` (`remapped` with a
        table instead of a function: the dedup's and linker's hot path)."""
        st_ref, refs, _ = layout(self.info)
        if refs:
            tail = list(self.tail)
            for i in refs:
                tail[i] = table[tail[i]]  # type: ignore[index]
        else:
            tail = self.tail
        return Record(self.info, self.name, table[self.size_type] if st_ref else self.size_type,
                      tail)

    def __repr__(self) -> str:
        return f"<Record {Kind(self.kind).name} {self.name!r}>"


class StringTable:
    """A BTF string table under construction: each string stored once."""

    __slots__ = ("_data", "_offsets")

    def __init__(self) -> None:
        self._data = bytearray(b"\0")
        self._offsets: dict[str, int] = {"": 0}

    def add(self, s: str) -> int:
        """The offset of `s`, adding it if needed (a string with a NUL byte is a
        BTFError when the table is written)."""
        off = self._offsets.get(s)
        if off is None:
            data = self._data
            off = self._offsets[s] = len(data)
            data += s.encode()
            data.append(0)
        return off

    def __bytes__(self) -> bytes:
        # one NUL per string (the empty one's included) unless a string holds one
        if self._data.count(0) != len(self._offsets):
            bad = next(s for s in self._offsets if "\0" in s)
            raise BTFError(f"BTF string {bad!r} contains a NUL byte")
        return bytes(self._data)


def _strings(table: bytes, index: dict[int, str] | None = None) -> Callable[[int], str]:
    """A string lookup by offset over a raw string table (checked); `index` (filled
    here) gives the strings at the starts of the table's parts directly."""
    if index is None:
        index = {}
    pos = 0
    for part in table.split(b"\0"):
        try:
            index[pos] = part.decode()
        except UnicodeDecodeError:
            pass
        pos += len(part) + 1

    def get(off: int) -> str:
        s = index.get(off)
        if s is None:
            if not 0 <= off < len(table):
                raise BTFError(f"string offset {off} beyond the {len(table)}-byte string table")
            end = table.find(b"\0", off)
            try:
                s = index[off] = table[off:end].decode()
            except UnicodeDecodeError:
                raise BTFError(f"BTF string at offset {off} is not UTF-8") from None
        return s

    return get


def parse_records(blob: bytes, base: int = 0) -> tuple[list[Record], Callable[[int], str]]:
    """The type records of a (non-split) BTF blob, and a lookup of its strings by
    offset (for .BTF.ext, whose strings live in the same table). With `base`, every
    type id but void's is read as `base` more (the blob's types numbered after
    `base` others, as when several blobs are concatenated)."""
    if len(blob) < HEADER.size:
        raise BTFError(f"BTF is {len(blob)} bytes, shorter than its header", 0)
    if blob[0:2] == b"\x9f\xeb":
        hdr, little = HEADER, True
    elif blob[0:2] == b"\xeb\x9f":
        hdr, little = HEADER_BE, False
    else:
        raise BTFError(f"bad BTF magic {blob[0:2].hex()}", 0)
    magic, _, _, hdr_len, type_off, type_len, str_off, str_len = hdr.unpack_from(blob)
    assert magic == MAGIC
    tstart, sstart = hdr_len + type_off, hdr_len + str_off
    if type_len % 4 or tstart + type_len > len(blob) or sstart + str_len > len(blob):
        raise BTFError("BTF type or string section lies outside the blob", 8)
    words = array("I")
    words.frombytes(blob[tstart : tstart + type_len])
    if little != (sys.byteorder == "little"):
        words.byteswap()
    index: dict[int, str] = {}
    string = _strings(bytes(blob[sstart : sstart + str_len]), index)
    known = index.get
    records: list[Record] = []
    append = records.append
    n = len(words)
    i = 0
    # info word -> (record words, size_type is a type id, type id positions, string
    # positions): records of one shape share it
    shapes: dict[int, tuple[int, bool, tuple[int, ...], tuple[int, ...]]] = {}
    while i < n:
        if i + 3 > n:
            raise BTFError("BTF type section truncated", tstart + 4 * i)
        name_off, info, st = words[i], words[i + 1], words[i + 2]
        shape = shapes.get(info)
        if shape is None:
            shape = shapes[info] = (record_words(info), *layout(info))
        size, st_ref, refs, strs = shape
        if size < 0 or i + size > n:
            raise BTFError(f"bad or truncated BTF record (info {info:#x})", tstart + 4 * i)
        tail: list[int | str] = list(words[i + 3 : i + size]) if size > 3 else []
        for p in strs:
            tail[p] = known(tail[p]) or string(tail[p])  # type: ignore[arg-type]
        if base:
            for p in refs:
                if tail[p]:
                    tail[p] += base  # type: ignore[operator]
            if st_ref and st:
                st += base
        append(Record(info, (known(name_off) or string(name_off)) if name_off else "", st,
                      tail))
        i += size
    return records, string


def encode_records(records: Iterable[Record], strings: StringTable,
                   renumber: Sequence[int] | None = None) -> array[int]:
    """The type section words of `records` (strings added to `strings`; with
    `renumber`, every type id `t` written as `renumber[t]`)."""
    out = array("I")
    ext = out.extend
    add = strings.add
    known = strings._offsets.get
    for r in records:
        tail = r.tail
        info = r.info
        st = r.size_type
        st_ref, refs, strs = layout(info)
        if strs or (renumber is not None and refs):
            tail = list(tail)
            for p in strs:
                off = known(tail[p])  # type: ignore[arg-type]
                tail[p] = add(tail[p]) if off is None else off  # type: ignore[arg-type]
            if renumber is not None:
                for p in refs:
                    tail[p] = renumber[tail[p]]  # type: ignore[index]
        if renumber is not None and st_ref:
            st = renumber[st]
        name = r.name
        ext(((known(name) or add(name)) if name else 0, info, st,
             *tail))  # type: ignore[arg-type]
    return out


def marshal(words: Sequence[int] | array[int], strings: StringTable) -> bytes:
    """A little-endian BTF blob from a type section and a string table."""
    w = words if isinstance(words, array) else array("I", words)
    if sys.byteorder != "little":
        w = array("I", w)
        w.byteswap()
    tbytes = w.tobytes()
    sbytes = bytes(strings)
    header = struct.pack("<HBBIIIII", MAGIC, 1, 0, HEADER.size, 0, len(tbytes), len(tbytes),
                         len(sbytes))
    return header + tbytes + sbytes
