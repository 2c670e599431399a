"""Parse BTF blobs into `Spec`s: an index of type offsets, decoded on demand."""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from typing import TypeVar, overload

from ..errors import BTFError, KeyNotFoundError
from .types import (
    Array,
    Const,
    Datasec,
    DeclTag,
    Enum,
    EnumValue,
    Float,
    Func,
    FuncParam,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Kind,
    Member,
    Pointer,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Volatile,
    Void,
)

MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")
HEADER_BE = struct.Struct(">HBBIIIII")

# Words (u32) that follow the 3-word type header: fixed per kind, and per vlen entry.
_FIXED = (0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0)
_PER_VLEN = (0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3)
_MAX_KIND = len(_FIXED) - 1

T = TypeVar("T", bound=Type)


class Spec:
    """A parsed BTF blob: types by id and name, and the string table.

    Type ids start at 1 (0 is void). Split BTF (kernel modules) passes the base
    spec as `base`; its types keep their ids and the module's follow.
    """

    def __init__(self, data: bytes, base: Spec | None = None, *, lazy: bool | None = None,
                 _offsets: array[int] | None = None) -> None:
        self.raw = bytes(data)
        self.base = base
        data = self.raw
        if len(data) < HEADER.size:
            raise BTFError(f"BTF is {len(data)} bytes, shorter than its header", 0)
        if data[0:2] == b"\x9f\xeb":
            hdr, self.byteorder = HEADER, "little"
        elif data[0:2] == b"\xeb\x9f":
            hdr, self.byteorder = HEADER_BE, "big"
        else:
            raise BTFError(f"bad BTF magic {data[0:2].hex()}", 0)
        _, version, self.flags, hdr_len, type_off, type_len, str_off, str_len = hdr.unpack_from(data)
        if version != 1:
            raise BTFError(f"unsupported BTF version {version}", 2)
        if hdr_len < HEADER.size or hdr_len > len(data):
            raise BTFError(f"bad BTF header length {hdr_len}", 4)
        if type_off % 4 or type_len % 4:
            raise BTFError("BTF type section is not 4-byte aligned", 8)
        tstart, sstart = hdr_len + type_off, hdr_len + str_off
        if tstart + type_len > len(data) or sstart + str_len > len(data):
            raise BTFError(f"BTF sections exceed the blob's {len(data)} bytes", 8)
        self._type_start = tstart
        self._strings = data[sstart : sstart + str_len]
        self._str_base = len(base._strings) if base is not None else 0
        if self._strings and self._strings[-1] != 0:
            raise BTFError("BTF string section is not NUL-terminated", sstart + str_len - 1)
        if base is None and self._strings[:1] not in (b"", b"\0"):
            raise BTFError("BTF string section does not start with an empty string", sstart)
        self._first_id = len(base) if base is not None else 1
        words = array("I")
        words.frombytes(data[tstart : tstart + type_len])
        if (self.byteorder == "little") != (sys.byteorder == "little"):
            words.byteswap()
        self._words = words
        self._offsets = _offsets if _offsets is not None else self._index(words, tstart)
        self._by_id: dict[int, Type] = {}
        self._ids: dict[int, int] = {}  # id(Type object) -> type id
        self._names: dict[str, list[int]] | None = None
        if lazy is None:
            lazy = type_len > (1 << 20)
        if not lazy:
            for tid in range(self._first_id, self._first_id + len(self._offsets)):
                self.type_by_id(tid)

    # -- indexing ---------------------------------------------------------------

    @staticmethod
    def _index(words: array[int], tstart: int) -> array[int]:
        offsets = array("I")
        append = offsets.append
        fixed, per_vlen = _FIXED, _PER_VLEN
        i, n = 0, len(words)
        try:
            while i < n:
                append(i)
                info = words[i + 1]
                k = (info >> 24) & 0x1F
                i += 3 + fixed[k] + per_vlen[k] * (info & 0xFFFF)
        except IndexError:
            k = (words[i + 1] >> 24) & 0x1F if i + 1 < n else -1
            if k > _MAX_KIND:
                raise BTFError(f"unknown BTF kind {k}", tstart + 4 * i) from None
            raise BTFError("BTF type section truncated", tstart + 4 * i) from None
        if i != n:
            raise BTFError("BTF type section truncated", tstart + 4 * offsets[-1])
        return offsets

    def __len__(self) -> int:
        """Number of type ids, including void (and the base's types)."""
        return self._first_id + len(self._offsets)

    # -- strings --------------------------------------------------------------

    def string(self, off: int) -> str:
        """The string at offset `off` of the (possibly split) string table."""
        if off < self._str_base:
            assert self.base is not None
            return self.base.string(off)
        rel = off - self._str_base
        s = self._strings
        if rel >= len(s):
            raise BTFError(f"string offset {off} beyond the {len(s)}-byte string table")
        end = s.find(b"\0", rel)
        try:
            return s[rel:end].decode()
        except UnicodeDecodeError:
            raise BTFError(f"string at offset {off} is not UTF-8") from None

    # -- decoding -------------------------------------------------------------

    def type_by_id(self, tid: int) -> Type:
        """The type with id `tid` (0 is void); raises BTFError for an unknown id."""
        t = self._by_id.get(tid)
        if t is not None:
            return t
        if tid < self._first_id:
            if tid == 0:
                t = Void()
                self._by_id[0] = t
                self._ids[id(t)] = 0
                return t
            if self.base is not None:
                return self.base.type_by_id(tid)
        idx = tid - self._first_id
        if not 0 <= idx < len(self._offsets):
            raise BTFError(f"type id {tid} out of range (BTF has {len(self)} types)")
        t = self._decode(self._offsets[idx], tid)
        t._spec = self
        self._by_id[tid] = t
        self._ids[id(t)] = tid
        return t

    def _ref(self, ref: int, at: int) -> int:
        if ref >= len(self):
            raise BTFError(f"reference to type id {ref} out of range", self._type_start + 4 * at)
        return ref

    def _decode(self, i: int, tid: int) -> Type:
        w = self._words
        name_off, info, size_type = w[i], w[i + 1], w[i + 2]
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kflag = bool(info >> 31)
        at = self._type_start + 4 * i
        try:
            name = self.string(name_off)
        except BTFError as e:
            raise BTFError(f"type id {tid}: {e}", at) from None
        ref = self._ref
        j = i + 3
        t: Type
        if kind == Kind.INT:
            enc = w[j]
            t = Int(name, size_type, IntEncoding((enc >> 24) & 0xF), enc & 0xFF, (enc >> 16) & 0xFF)
        elif kind == Kind.PTR:
            t = Pointer(ref(size_type, i))
        elif kind == Kind.ARRAY:
            t = Array(ref(w[j], i), w[j + 2], ref(w[j + 1], i))
        elif kind in (Kind.STRUCT, Kind.UNION):
            members = []
            for k in range(vlen):
                m_name, m_type, m_off = w[j], w[j + 1], w[j + 2]
                j += 3
                if kflag:
                    members.append(Member(self.string(m_name), ref(m_type, i), m_off & 0xFFFFFF,
                                          m_off >> 24))
                else:
                    members.append(Member(self.string(m_name), ref(m_type, i), m_off))
                del k
            t = (Struct if kind == Kind.STRUCT else Union)(name, size_type, members)
        elif kind == Kind.ENUM:
            vals = []
            for _ in range(vlen):
                v = w[j + 1]
                if kflag and v & 0x80000000:
                    v -= 1 << 32
                vals.append(EnumValue(self.string(w[j]), v))
                j += 2
            t = Enum(name, size_type, vals, signed=kflag)
        elif kind == Kind.ENUM64:
            vals = []
            for _ in range(vlen):
                v = w[j + 1] | (w[j + 2] << 32)
                if kflag and v & (1 << 63):
                    v -= 1 << 64
                vals.append(EnumValue(self.string(w[j]), v))
                j += 3
            t = Enum(name, size_type, vals, signed=kflag)
        elif kind == Kind.FWD:
            t = Fwd(name, kflag)
        elif kind == Kind.TYPEDEF:
            t = Typedef(name, ref(size_type, i))
        elif kind == Kind.VOLATILE:
            t = Volatile(ref(size_type, i))
        elif kind == Kind.CONST:
            t = Const(ref(size_type, i))
        elif kind == Kind.RESTRICT:
            t = Restrict(ref(size_type, i))
        elif kind == Kind.TYPE_TAG:
            t = TypeTag(name, ref(size_type, i))
        elif kind == Kind.FUNC:
            t = Func(name, ref(size_type, i), vlen)  # type: ignore[arg-type]
        elif kind == Kind.FUNC_PROTO:
            params = []
            for _ in range(vlen):
                params.append(FuncParam(self.string(w[j]), ref(w[j + 1], i)))
                j += 2
            t = FuncProto(ref(size_type, i), params)
        elif kind == Kind.VAR:
            t = Var(name, ref(size_type, i), w[j])  # type: ignore[arg-type]
        elif kind == Kind.DATASEC:
            secinfo = []
            for _ in range(vlen):
                secinfo.append(VarSecinfo(ref(w[j], i), w[j + 1], w[j + 2]))
                j += 3
            t = Datasec(name, size_type, secinfo)
        elif kind == Kind.FLOAT:
            t = Float(name, size_type)
        elif kind == Kind.DECL_TAG:
            idx = w[j]
            t = DeclTag(name, ref(size_type, i), idx - (1 << 32) if idx & 0x80000000 else idx)
        else:
            raise BTFError(f"type id {tid} has unsupported kind {kind}", at)
        return t

    # -- lookups --------------------------------------------------------------

    def type_id(self, t: Type) -> int:
        """The id of a type decoded from this spec (or its base)."""
        tid = self._ids.get(id(t))
        if tid is not None and self._by_id.get(tid) is t:
            return tid
        if self.base is not None:
            try:
                return self.base.type_id(t)
            except KeyNotFoundError:
                pass
        raise KeyNotFoundError(f"{t!r} is not a type of this BTF")

    def ids_by_name(self, name: str) -> list[int]:
        """Ids of every type called `name` (in this spec and its base), in id order."""
        ids = self.base.ids_by_name(name) if self.base is not None else []
        if self._names is not None:
            return ids + self._names.get(name, [])
        ids.extend(self._scan_name(name))
        return ids

    def _scan_name(self, name: str) -> list[int]:
        needle = b"\0" + name.encode() + b"\0"
        strings = self._strings
        str_offs = []
        pos = strings.find(needle)
        while pos >= 0:
            str_offs.append(pos + 1 + self._str_base)
            pos = strings.find(needle, pos + 1)
        if not str_offs:
            return []
        found: list[int] = []
        raw, start, end = self.raw, self._type_start, self._type_start + 4 * len(self._words)
        fmt = "<I" if self.byteorder == "little" else ">I"
        offsets = self._offsets
        for soff in str_offs:
            pat = struct.pack(fmt, soff)
            p = raw.find(pat, start, end)
            while p >= 0:
                rel = p - start
                if rel % 4 == 0:
                    word = rel // 4
                    k = bisect_left(offsets, word)
                    if k < len(offsets) and offsets[k] == word:
                        found.append(k + self._first_id)
                p = raw.find(pat, p + 1, end)
        found.sort()
        return found

    def build_name_index(self) -> None:
        """Index every name at once (worth it before many lookups in a big BTF)."""
        names: dict[str, list[int]] = {}
        w, string, first = self._words, self.string, self._first_id
        cache: dict[int, str] = {}
        for idx, off in enumerate(self._offsets):
            name_off = w[off]
            if name_off == 0:
                continue
            s = cache.get(name_off)
            if s is None:
                s = cache[name_off] = string(name_off)
            names.setdefault(s, []).append(idx + first)
        self._names = names

    @overload
    def type_by_name(self, name: str) -> Type: ...
    @overload
    def type_by_name(self, name: str, kind: type[T]) -> T: ...

    def type_by_name(self, name: str, kind: type[Type] | None = None) -> Type:
        """The type called `name`, optionally of a given class (e.g. `btf.Struct`).

        Without `kind`, a full definition is preferred over a forward
        declaration; raises KeyNotFoundError when nothing matches and BTFError
        when several different definitions do.
        """
        matches = self.types_by_name(name)
        if kind is not None:
            matches = [t for t in matches if isinstance(t, kind)]
        else:
            full = [t for t in matches if not isinstance(t, Fwd)]
            matches = full or matches
        if not matches:
            what = f"{kind.__name__} " if kind is not None else ""
            raise KeyNotFoundError(f"no BTF {what}type named {name!r}")
        if len(matches) > 1 and len({type(t) for t in matches}) > 1:
            kinds = ", ".join(sorted({type(t).__name__ for t in matches}))
            raise BTFError(f"{name!r} names several kinds of types ({kinds}); pass kind=")
        return matches[0]

    def types_by_name(self, name: str) -> list[Type]:
        return [self.type_by_id(i) for i in self.ids_by_name(name)]

    def __iter__(self) -> Iterator[Type]:
        """Every type of this spec (not its base), in id order, void first when not split."""
        if self.base is None:
            yield self.type_by_id(0)
        for tid in range(self._first_id, len(self)):
            yield self.type_by_id(tid)

    def copy_offsets(self) -> bytes:
        """The type offset index, for an on-disk cache."""
        return self._offsets.tobytes()

    def __repr__(self) -> str:
        return f"<btf.Spec {len(self)} types>"
