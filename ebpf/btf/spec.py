"""Parse BTF blobs into `Spec`s: an index of type offsets, decoded on demand.

A `Spec` never decodes more than it is asked for. The type offset index (where
each type's record starts in the type section) is built by walking the
variable-length records; for a big blob (the kernel's 126k types) that walk is
itself incremental: a name lookup first finds the name's string offset and the
words of the type section that hold it, then walks only as far as the last of
those, so looking up a type near the start costs almost nothing. `len()`,
iteration and an id beyond the walked part complete the walk on demand.

Every malformed input raises `BTFError` with the offset of the offending
record (relative to the start of the blob).
"""

from __future__ import annotations

import _thread
import mmap
import struct
import sys
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate, compress, repeat
from operator import and_, itemgetter, lshift, or_, rshift
from typing import TYPE_CHECKING, NamedTuple, TypeVar, overload

from .._sys import forking as _forking
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
    Linkage,
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
    Void,
    Volatile,
)

if TYPE_CHECKING:
    from array import array
    from typing import TypeAlias

    Buffer: TypeAlias = "bytes | mmap.mmap"
    Words: TypeAlias = "memoryview | array[int]"

MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")
HEADER_BE = struct.Struct(">HBBIIIII")

# Words (u32) that follow the 3-word type header: fixed per kind, and per vlen entry.
_FIXED = (0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0)
_PER_VLEN = (0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3)
_MAX_KIND = len(_FIXED) - 1
# Kinds whose records may carry a name (the others are anonymous).
_NAMED_KINDS = frozenset((Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FWD, Kind.TYPEDEF,
                          Kind.FUNC, Kind.VAR, Kind.DATASEC, Kind.FLOAT, Kind.DECL_TAG,
                          Kind.TYPE_TAG, Kind.ENUM64))

# The decoder's view of the kinds: plain ints, and the classes of the kinds whose
# record is one reference (in `size_type`) and maybe a name.
_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF = range(1, 9)
_VOLATILE, _CONST, _RESTRICT, _FUNC, _FUNC_PROTO, _VAR, _DATASEC = range(9, 16)
_FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64 = range(16, 20)
_REF_KINDS: dict[int, type[Type]] = {
    _FUNC: Func, _PTR: Pointer, _CONST: Const, _TYPEDEF: Typedef, _VOLATILE: Volatile,
    _RESTRICT: Restrict, _TYPE_TAG: TypeTag}
_LINKAGES = (Linkage.STATIC, Linkage.GLOBAL, Linkage.EXTERN)
_new = object.__new__

# After this many scanning name lookups a Spec indexes every name at once.
_SCANS_BEFORE_INDEX = 16

# The on-disk cache keeps the offset of every 16th type (a checkpoint) and
# names hashed into 2**14 buckets.
CHECKPOINT_SHIFT = 4
_BLOCK = 1 << CHECKPOINT_SHIFT
NAME_BUCKET_BITS = 14


class CachedIndex(NamedTuple):
    """A type index as the on-disk cache keeps it (see `ebpf.btf.cache`).

    Every record reached through it is checked again: the records between two
    checkpoints must chain exactly from one to the next, or the index is
    dropped and the blob walked instead.
    """

    ntypes: int
    checkpoints: Sequence[int]  # word offset of types 0, 16, 32, ... (0-based)
    buckets: Sequence[int]  # 2**NAME_BUCKET_BITS + 1 prefix sums into `ids`
    ids: Sequence[int]  # ids of the named types, grouped by crc32(name) bucket

T = TypeVar("T", bound=Type)


def record_words(info: int) -> int:
    """Length in u32 words of a type record whose info word is `info` (-1: unknown kind)."""
    k = (info >> 24) & 0x1F
    if k > _MAX_KIND:
        return -1
    return 3 + _FIXED[k] + _PER_VLEN[k] * (info & 0xFFFF)


class Spec:
    """A parsed BTF blob: types by id and name, and the string table.

    Type ids start at 1 (0 is void). Split BTF (kernel modules) passes the base
    spec as `base`; its types keep their ids and the module's follow.

    `data` may be bytes or a read-only `mmap` (kept, not copied). Blobs whose
    type section is at most 1 MiB are decoded (and so validated) whole unless
    `lazy=True`; bigger ones are decoded on demand unless `lazy=False`.
    """

    def __init__(self, data: bytes | bytearray | memoryview | mmap.mmap,
                 base: Spec | None = None, *, lazy: bool | None = None,
                 _offsets: Sequence[int] | None = None,
                 _index: CachedIndex | None = None) -> None:
        buf: Buffer = data if isinstance(data, (bytes, mmap.mmap)) else bytes(data)
        self._buf = buf
        self._raw: bytes | None = buf if isinstance(buf, bytes) else None
        self.base = base
        if len(buf) < HEADER.size:
            raise BTFError(f"BTF is {len(buf)} bytes, shorter than its header", 0)
        if buf[0:2] == b"\x9f\xeb":
            hdr, self.byteorder = HEADER, "little"
        elif buf[0:2] == b"\xeb\x9f":
            hdr, self.byteorder = HEADER_BE, "big"
        else:
            raise BTFError(f"bad BTF magic {buf[0:2].hex()}", 0)
        _, version, self.flags, hdr_len, type_off, type_len, str_off, str_len = (
            hdr.unpack_from(buf))
        if version != 1:
            raise BTFError(f"unsupported BTF version {version}", 2)
        if hdr_len < HEADER.size or hdr_len > len(buf):
            raise BTFError(f"bad BTF header length {hdr_len}", 4)
        if type_off % 4 or type_len % 4:
            raise BTFError("BTF type section is not 4-byte aligned", 8)
        tstart, sstart = hdr_len + type_off, hdr_len + str_off
        if tstart + type_len > len(buf) or sstart + str_len > len(buf):
            raise BTFError(f"BTF sections exceed the blob's {len(buf)} bytes", 8)
        if tstart < sstart + str_len and sstart < tstart + type_len:
            raise BTFError("BTF type and string sections overlap", 8)
        self._type_start = tstart
        self._type_end = tstart + type_len
        self._str_start = sstart
        self._str_end = sstart + str_len
        self._str_len = str_len
        self._str_base: int = base._str_base + base._str_len if base is not None else 0
        if str_len and buf[sstart + str_len - 1] != 0:
            raise BTFError("BTF string section is not NUL-terminated", sstart + str_len - 1)
        if base is None and str_len and buf[sstart] != 0:
            raise BTFError("BTF string section does not start with an empty string", sstart)
        self._first_id = len(base) if base is not None else 1
        words: Words
        if (self.byteorder == "little") == (sys.byteorder == "little"):
            words = memoryview(buf)[tstart : tstart + type_len].cast("I")
        else:
            words = array("I")
            words.frombytes(buf[tstart : tstart + type_len])
            words.byteswap()
        self._words = words
        self._nwords = len(words)
        self._steps: dict[int, int] = {}
        self._by_id: dict[int, Type] = {}
        self._ids: dict[int, int] = {}  # id(Type object) -> type id
        self._strcache: dict[int, str] = {}
        self._strings_loaded = False
        self._names: dict[str, list[int]] | None = None
        self._index = _index
        self._blocks: dict[int, list[int]] = {}
        self._count: int | None = _index.ntypes if _index is not None else None
        self._scans = 0
        self._error: BTFError | None = None
        # Lazy indexing and decoding mutate shared state: one thread at a time.
        self._lock = _thread.RLock()
        _forking.reset_lock(self, "_lock", _thread.RLock)  # a forked child can index it
        if _offsets is not None:
            # From a validated cache: trust the structure, check each record on decode.
            self._offsets: array[int] | memoryview | tuple[()] = (
                _offsets if isinstance(_offsets, (array, memoryview)) else array("I", _offsets))
            self._walk_pos = self._nwords
            self._complete = True
            self._count = len(self._offsets)
        else:
            # (an array once walking starts: `array` is imported only then, which
            # keeps the import of this module and the cached path cheap)
            self._offsets = ()
            self._walk_pos = 0
            self._complete = False
        if self._nwords == 0 and _index is None:
            self._complete, self._count = True, 0
        if lazy is None:
            lazy = type_len > (1 << 20)
        if not lazy:
            self._walk_to_word(self._nwords)
            for tid in range(self._first_id, self._first_id + len(self._offsets)):
                self.type_by_id(tid)

    # -- raw data ----------------------------------------------------------------

    @property
    def raw(self) -> bytes:
        """The whole BTF blob."""
        if self._raw is None:
            self._raw = bytes(self._buf)
        return self._raw

    @property
    def buffer(self) -> Buffer:
        """The blob as it was given (bytes, or the kernel's mapped file), not copied."""
        return self._buf

    @property
    def string_table(self) -> bytes:
        """This blob's string section (with its leading empty string)."""
        return bytes(self._buf[self._str_start : self._str_end])

    def checksum(self) -> tuple[int, int]:
        """(length, crc32) of the blob, the key of the on-disk index cache."""
        return len(self._buf), zlib.crc32(self._buf)

    # -- indexing ---------------------------------------------------------------

    def _step(self, info: int, i: int) -> int:
        """Record length for `info`, memoized per spec; raises on an unknown kind."""
        s = record_words(info)
        if s < 0:
            raise BTFError(f"unknown BTF kind {(info >> 24) & 0x1F}",
                           self._type_start + 4 * i)
        self._steps[info] = s
        return s

    def _walk_to_word(self, limit: int) -> None:
        """Index every record that starts before word `limit`."""
        if self._walk_pos >= limit or self._complete:
            return
        with self._lock:
            self._walk_to_word_locked(limit)

    def _walk_to_word_locked(self, limit: int) -> None:
        if self._walk_pos >= limit or self._complete:
            return
        if self._error is not None:
            raise self._error
        words, n = self._words, self._nwords
        offsets = self._appendable_offsets()
        append = offsets.append
        get = self._steps.get
        i = self._walk_pos
        limit = min(limit, n)
        try:
            while i < limit:
                append(i)
                info = words[i + 1]
                s = get(info)
                if s is None:
                    s = self._step(info, i)
                i += s
        except (IndexError, BTFError) as e:
            self._walk_failed(e)
        self._finish_walk(i)

    def _walk_count(self, total: int) -> None:
        """Index the first `total` records, if there are that many."""
        if self._complete or len(self._offsets) >= total:
            return
        with self._lock:
            self._walk_count_locked(total)

    def _walk_count_locked(self, total: int) -> None:
        if self._complete or len(self._offsets) >= total:
            return
        if self._error is not None:
            raise self._error
        words, n = self._words, self._nwords
        offsets = self._appendable_offsets()
        append = offsets.append
        get = self._steps.get
        i = self._walk_pos
        try:
            for _ in range(total - len(offsets)):
                if i >= n:
                    break
                append(i)
                info = words[i + 1]
                s = get(info)
                if s is None:
                    s = self._step(info, i)
                i += s
        except (IndexError, BTFError) as e:
            self._walk_failed(e)
        self._finish_walk(i)

    def _walk_failed(self, e: Exception) -> None:
        """The record last appended to the index is broken: drop it and fail for good."""
        off = self._appendable_offsets().pop()
        if isinstance(e, BTFError):
            self._error = e
        else:  # its header is cut off by the end of the type section
            self._error = BTFError("BTF type section truncated", self._type_start + 4 * off)
        self._walk_pos = off
        raise self._error

    def _appendable_offsets(self) -> array[int]:
        offsets = self._offsets
        if not isinstance(offsets, array):
            if len(offsets):  # a complete index from a cache never needs walking
                raise BTFError("internal error: walking a complete type index")
            offsets = self._offsets = array("I")
        return offsets

    def _finish_walk(self, i: int) -> None:
        if i > self._nwords:
            # The last record indexed runs past the end of the type section.
            self._walk_failed(IndexError())
        self._walk_pos = i
        if i == self._nwords:
            self._complete = True
            self._count = len(self._offsets)

    def _ensure_complete(self) -> None:
        if not self._complete:
            self._walk_to_word(self._nwords)

    def __len__(self) -> int:
        """Number of type ids, including void (and the base's types)."""
        if self._count is None:
            self._ensure_complete()
        assert self._count is not None
        return self._first_id + self._count

    def _locate(self, idx: int) -> tuple[int, int] | None:
        """Start and end word of record `idx` (0-based), or None if there is none."""
        offsets = self._offsets
        if idx >= len(offsets) and not self._complete:
            index = self._index
            if index is not None:
                if idx >= index.ntypes:
                    return None
                found = self._from_checkpoint(idx)
                if found is not None:
                    return found
                # the cached index was wrong and is dropped: walk instead
            self._walk_count(idx + 1)
            offsets = self._offsets  # (walking may have replaced it)
        if idx >= len(offsets):
            return None
        end = offsets[idx + 1] if idx + 1 < len(offsets) else self._walk_pos
        return offsets[idx], end

    def _from_checkpoint(self, idx: int) -> tuple[int, int] | None:
        b = idx >> CHECKPOINT_SHIFT
        offs = self._blocks.get(b)
        if offs is None:
            with self._lock:
                offs = self._verify_block(b)
                if offs is None:
                    self._drop_index()
                    return None
                self._blocks[b] = offs
        k = idx & (_BLOCK - 1)
        return offs[k], offs[k + 1]

    def _verify_block(self, b: int) -> list[int] | None:
        """The offsets of the types of checkpoint block `b` (and where the block ends),
        if its records chain exactly from its checkpoint to the next."""
        index = self._index
        if index is None:
            return None
        cps = index.checkpoints
        if not 0 <= b < len(cps):
            return None
        i = cps[b]
        n = min(_BLOCK, index.ntypes - (b << CHECKPOINT_SHIFT))
        end = cps[b + 1] if b + 1 < len(cps) else self._nwords
        words, nwords = self._words, self._nwords
        offs = [i]
        for _ in range(n):
            if i + 3 > nwords:
                return None
            info = words[i + 1]
            if info & 0x60FF0000 or not info & 0x1F000000:  # unused bits, or kind 0
                return None
            step = record_words(info)
            if step < 0:
                return None
            i += step
            offs.append(i)
        return offs if i == end else None

    def _drop_index(self) -> None:
        """Forget a cached index found to be wrong (types decoded so far came from
        verified blocks); from now on the blob is walked."""
        self._index = None
        self._blocks.clear()
        if not self._complete:
            self._count = None

    def _is_record_start(self, word: int) -> int:
        """The type id of the record starting at `word`, or 0."""
        self._walk_to_word(word + 1)
        offsets = self._offsets
        k = bisect_left(offsets, word)
        if k < len(offsets) and offsets[k] == word:
            return k + self._first_id
        return 0

    # -- strings ----------------------------------------------------------------

    def string(self, off: int) -> str:
        """The string at offset `off` of the (possibly split) string table."""
        s = self._strcache.get(off)
        if s is not None:
            return s
        if off < self._str_base:
            if self.base is None or off < 0:
                raise BTFError(f"string offset {off} out of range")
            return self.base.string(off)
        rel = off - self._str_base
        if rel >= self._str_len:
            raise BTFError(f"string offset {off} beyond the {self._str_len}-byte string table")
        start = self._str_start + rel
        end = self._buf.find(b"\0", start, self._str_end)
        try:
            s = self._buf[start:end].decode()
        except UnicodeDecodeError:
            raise BTFError(f"string at offset {off} is not UTF-8", start) from None
        self._strcache[off] = s
        return s

    def _load_strings(self) -> None:
        """Decode the whole string table at once, for a dump that needs most of it
        (an ASCII table: others are decoded string by string, as they are used)."""
        if self._strings_loaded:
            return
        self._strings_loaded = True
        if not self._str_len:
            return
        section = self._buf[self._str_start : self._str_end]
        if not section.isascii():
            return
        # (the table ends with a NUL: the last part is no string)
        parts = section.decode("ascii").split("\0")[:-1]
        starts = accumulate(map((1).__add__, map(len, parts)), initial=self._str_base)
        table = dict(zip(starts, parts))  # noqa: B905 (one more start than parts)
        table.update(self._strcache)
        self._strcache = table

    def _string_is(self, off: int, needle: bytes) -> bool:
        """Whether the string at `off` is `needle` (which ends with its NUL)."""
        if off < self._str_base:
            return self.base is not None and self.base._string_is(off, needle)
        start = self._str_start + off - self._str_base
        if start + len(needle) > self._str_end:
            return False
        return self._buf[start : start + len(needle)] == needle

    # -- decoding ---------------------------------------------------------------

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
            if self.base is not None and tid > 0:
                return self.base.type_by_id(tid)
            raise BTFError(f"type id {tid} out of range")
        idx = tid - self._first_id
        found = self._locate(idx)
        if found is None:
            raise BTFError(f"type id {tid} out of range (BTF has {len(self)} types)")
        i, end = found
        if not (0 <= i and i + 3 <= end <= self._nwords
                and record_words(self._words[i + 1]) == end - i):
            raise BTFError(f"type id {tid}: corrupt type offset index",
                           self._type_start + 4 * min(i, self._nwords))
        with self._lock:
            t = self._by_id.get(tid)
            if t is not None:  # another thread decoded it meanwhile
                return t
            t = self._decode(i, tid)
            t._spec = self
            self._by_id[tid] = t
            self._ids[id(t)] = tid
        return t

    def _decode(self, i: int, tid: int) -> Type:
        try:
            return self._decode_record(i, tid)
        except BTFError as e:
            if e.offset is not None:
                raise
            raise BTFError(f"type id {tid}: {e}", self._type_start + 4 * i) from None
        except (IndexError, ValueError, OverflowError) as e:  # defensive: never leak these
            raise BTFError(f"type id {tid}: malformed record ({e})",
                           self._type_start + 4 * i) from None

    def _decode_record(self, i: int, tid: int) -> Type:
        # The hot path of every dump: kinds as plain ints, the most frequent first, and
        # objects made with `object.__new__` and their slots (what __init__ would set).
        w = self._words
        name_off, info, size_type = w[i], w[i + 1], w[i + 2]
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kflag = info >> 31
        name = self._strcache.get(name_off) or (self.string(name_off) if name_off else "")
        # Reference checks: ids are checked against the count when it is known;
        # in a lazily walked spec an id past the end fails when it is resolved.
        maxid = self._first_id + self._count if self._count is not None else (
            self._first_id + self._nwords // 3 + 1)
        j = i + 3
        t: Type
        if kind in _REF_KINDS:  # FUNC, PTR, CONST, TYPEDEF, VOLATILE, RESTRICT, TYPE_TAG
            if size_type >= maxid:
                self._bad_ref(tid, size_type, i)
            t = _new(_REF_KINDS[kind])
            t._type = size_type  # type: ignore[attr-defined]
            if kind == _FUNC:
                t.linkage = _LINKAGES[vlen] if vlen < 3 else vlen  # type: ignore[attr-defined]
            elif kind == _TYPE_TAG:
                t.attribute = bool(kflag)  # type: ignore[attr-defined]
            elif kind != _TYPEDEF:
                name = ""
        elif kind == _FUNC_PROTO:
            if size_type >= maxid:
                self._bad_ref(tid, size_type, i)
            fp = _new(FuncProto)
            fp._return = size_type
            params: list[FuncParam] = []
            if vlen:
                seg = w[j : j + 2 * vlen]
                types = seg[1::2]
                if max(types) >= maxid:
                    self._bad_ref(tid, max(types), i)
                add_param = params.append
                for pname, ptype in zip(self._names_at(seg[0::2]), types, strict=True):
                    p = _new(FuncParam)
                    p.name = pname
                    p._type = ptype
                    p._owner = fp
                    add_param(p)
            fp.params = params
            t, name = fp, ""
        elif kind == _STRUCT or kind == _UNION:
            c = _new(Struct if kind == _STRUCT else Union)
            c.size = size_type
            members: list[Member] = []
            if vlen:
                seg = w[j : j + 3 * vlen]
                types = seg[1::3]
                if max(types) >= maxid:
                    self._bad_ref(tid, max(types), i)
                add_member = members.append
                names = self._names_at(seg[0::3])
                if kflag:
                    for mname, mtype, moff in zip(names, types, seg[2::3], strict=True):
                        m = _new(Member)
                        m.name = mname
                        m._type = mtype
                        m.offset_bits = moff & 0xFFFFFF
                        m.bitfield_size = moff >> 24
                        m._owner = c
                        add_member(m)
                else:
                    for mname, mtype, moff in zip(names, types, seg[2::3], strict=True):
                        m = _new(Member)
                        m.name = mname
                        m._type = mtype
                        m.offset_bits = moff
                        m.bitfield_size = 0
                        m._owner = c
                        add_member(m)
            c._members = members
            t = c
        elif kind == _ARRAY:
            elem, index = w[j], w[j + 1]
            if elem >= maxid or index >= maxid:
                self._bad_ref(tid, max(elem, index), i)
            a = _new(Array)
            a._type = elem
            a._index = index
            a.nelems = w[j + 2]
            t, name = a, ""
        elif kind == _ENUM or kind == _ENUM64:
            e = _new(Enum)
            e.size = size_type
            e.signed = bool(kflag)
            e._is64 = kind == _ENUM64
            values: list[EnumValue] = []
            if vlen:
                nums: Iterable[int]
                if kind == _ENUM:
                    seg = w[j : j + 2 * vlen]
                    nums = seg[1::2]
                    if kflag:
                        nums = [v - (1 << 32) if v & 0x80000000 else v for v in nums]
                    names = self._names_at(seg[0::2], empty=False)
                else:
                    seg = w[j : j + 3 * vlen]
                    nums = [lo | (hi << 32) for lo, hi in zip(seg[1::3], seg[2::3], strict=True)]
                    if kflag:
                        nums = [v - (1 << 64) if v & (1 << 63) else v for v in nums]
                    names = self._names_at(seg[0::3], empty=False)
                append = values.append
                for vname, v in zip(names, nums, strict=True):
                    ev = _new(EnumValue)
                    ev.name = vname
                    ev.value = v
                    append(ev)
            e.values = values
            t = e
        elif kind == _INT:
            enc = w[j]
            t = Int(name, size_type, IntEncoding((enc >> 24) & 0xF), enc & 0xFF,
                    (enc >> 16) & 0xFF)
        elif kind == _FWD:
            t = Fwd(name, bool(kflag))
        elif kind == _VAR:
            if size_type >= maxid:
                self._bad_ref(tid, size_type, i)
            t = Var(name, size_type, w[j])  # type: ignore[arg-type]
        elif kind == _DATASEC:
            secinfo = []
            for _ in range(vlen):
                if w[j] >= maxid:
                    self._bad_ref(tid, w[j], i)
                secinfo.append(VarSecinfo(w[j], w[j + 1], w[j + 2]))
                j += 3
            t = Datasec(name, size_type, secinfo)
        elif kind == _FLOAT:
            t = Float(name, size_type)
        elif kind == _DECL_TAG:
            if size_type >= maxid:
                self._bad_ref(tid, size_type, i)
            idx = w[j]
            t = DeclTag(name, size_type, idx - (1 << 32) if idx & 0x80000000 else idx,
                        attribute=bool(kflag))
        else:
            raise BTFError(f"type id {tid} has unsupported kind {kind}", self._type_start + 4 * i)
        t.name = name
        return t

    def _bad_ref(self, tid: int, ref: int, i: int) -> None:
        raise BTFError(f"type id {tid}: reference to type id {ref} out of range",
                       self._type_start + 4 * i)

    def _names_at(self, offs: Iterable[int], empty: bool = True) -> list[str]:
        """The strings at offsets `offs` ("" for offset 0 when `empty`)."""
        cache = self._strcache
        names = list(map(cache.get, offs))
        if None in names:
            string = self.string
            names = [s if s is not None else (string(o) if o or not empty else "")
                     for s, o in zip(names, offs, strict=True)]
        return names  # type: ignore[return-value]

    # -- lookups ----------------------------------------------------------------

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
        if not name:
            return ids
        if self._names is not None:
            return ids + self._names.get(name, [])
        if self._index is not None:
            ids.extend(self._lookup_hashed(name))
            return ids
        self._scans += 1
        if self._scans > _SCANS_BEFORE_INDEX:
            self.build_name_index()
            assert self._names is not None
            return ids + self._names.get(name, [])
        ids.extend(self._scan_name(name))
        return ids

    def _lookup_hashed(self, name: str) -> list[int]:
        """Look `name` up in the cached name buckets."""
        index = self._index
        assert index is not None
        try:
            bname = name.encode()
        except UnicodeEncodeError:
            return []
        h = zlib.crc32(bname) >> (32 - NAME_BUCKET_BITS)
        buckets, ids = index.buckets, index.ids
        lo, hi = buckets[h], buckets[h + 1]
        found: list[int] = []
        if not 0 <= lo <= hi <= len(ids):
            self._drop_index()
        else:
            needle = bname + b"\0"
            first, words = self._first_id, self._words
            for k in range(lo, hi):
                tid = ids[k]
                pos = self._locate(tid - first) if tid >= first else None
                if pos is not None and self._string_is(words[pos[0]], needle):
                    found.append(tid)
        if self._index is None:  # found to be wrong on the way: look again by scanning
            return self._scan_name(name)
        found.sort()
        return found

    def _string_offsets(self, bname: bytes) -> list[int]:
        """Offsets (absolute in the split string table) of every string equal to `bname`."""
        buf, s0, s1 = self._buf, self._str_start, self._str_end
        found = []
        if buf[s0 : s0 + len(bname) + 1] == bname + b"\0":
            found.append(s0)
        needle = b"\0" + bname + b"\0"
        # One pass in the common case of a unique string: find from the front,
        # rfind from the back; search between the two only when they differ.
        first = buf.find(needle, s0, s1)
        if first >= 0:
            last = buf.rfind(needle, s0, s1)
            pos = first
            while pos >= 0:
                found.append(pos + 1)
                if pos == last:
                    break
                pos = buf.find(needle, pos + 1, last + len(needle))
        return [p - s0 + self._str_base for p in found]

    def _scan_name(self, name: str) -> list[int]:
        try:
            bname = name.encode()
        except UnicodeEncodeError:
            return []
        if b"\0" in bname:
            return []
        str_offs = self._string_offsets(bname)
        if not str_offs:
            return []
        buf, start, end = self._buf, self._type_start, self._type_end
        fmt = "<I" if self.byteorder == "little" else ">I"
        cands: list[int] = []
        import re  # re's literal search beats bytes.find here (the pattern ends in NULs)

        for soff in str_offs:
            for m in re.compile(re.escape(struct.pack(fmt, soff))).finditer(buf, start, end):
                rel = m.start() - start
                if rel % 4 == 0:
                    cands.append(rel // 4)
        # Most hits are other words that happen to hold the same number: keep only
        # those followed by a plausible info word of a kind that has a name, so
        # the walk below need not go further than the real records.
        words, n = self._words, self._nwords
        plausible = []
        for word in cands:
            info = words[word + 1] if word + 1 < n else 0
            if info & 0x60FF0000 == 0 and (info >> 24) & 0x1F in _NAMED_KINDS:
                plausible.append(word)
        found: list[int] = []
        if plausible:
            self._walk_to_word(max(plausible) + 1)
            for word in plausible:
                tid = self._is_record_start(word)
                if tid:
                    found.append(tid)
        found.sort()
        return found

    def _named_types(self) -> tuple[list[int], list[bytes]]:
        """(ids, names) of every named type of this spec, in id order (C-speed bulk work)."""
        self._ensure_complete()
        offsets = self._offsets
        if not offsets:
            return [], []
        name_offs = itemgetter(*offsets)(self._words) if len(offsets) > 1 else (
            self._words[offsets[0]],)
        ids = list(compress(range(self._first_id, self._first_id + len(offsets)), name_offs))
        named_offs = list(filter(None, name_offs))
        strings = bytes(self._buf[self._str_start : self._str_end])
        parts = strings.split(b"\0")
        starts = accumulate(map((1).__add__, map(len, parts)), initial=self._str_base)
        table = dict(zip(starts, parts, strict=False))
        names: list[bytes | None] = list(map(table.get, named_offs))
        if None in names:
            for k, (off, nm) in enumerate(zip(named_offs, names, strict=True)):
                if nm is None:  # points into the middle of a string, or into the base
                    names[k] = self.string(off).encode()
        return ids, names  # type: ignore[return-value]

    def name_buckets(self, bits: int = NAME_BUCKET_BITS) -> tuple[array[int], array[int]]:
        """(bucket prefix sums, ids) of every named type, hashed by crc32(name) into
        2**bits buckets: the name index of the on-disk cache."""
        ids, names = self._named_types()
        hashes = map(rshift, map(zlib.crc32, names), repeat(32 - bits))
        keys = sorted(map(or_, map(lshift, hashes, repeat(32)), ids))
        table = array("I", [bisect_left(keys, b << 32) for b in range(1 << bits)])
        table.append(len(keys))
        return table, array("I", map(and_, keys, repeat(0xFFFFFFFF)))

    def build_name_index(self) -> None:
        """Index every name at once (worth it before many lookups in a big BTF)."""
        ids, names = self._named_types()
        index: dict[str, list[int]] = {}
        for tid, bname in zip(ids, names, strict=True):
            try:
                s = bname.decode()
            except UnicodeDecodeError:
                continue
            lst = index.get(s)
            if lst is None:
                index[s] = [tid]
            else:
                lst.append(tid)
        self._names = index

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
        """Every type called `name`, in id order."""
        return [self.type_by_id(i) for i in self.ids_by_name(name)]

    def __iter__(self) -> Iterator[Type]:
        """Every type of this spec (not its base), in id order, void first when not split."""
        if self.base is None:
            yield self.type_by_id(0)
        for tid in range(self._first_id, len(self)):
            yield self.type_by_id(tid)

    def _kinds(self) -> bytes:
        """The kind of each type of this spec (not its base), in id order: byte k is the
        kind of type id `first + k` (read from the info words, nothing decoded)."""
        self._ensure_complete()
        offsets = self._offsets
        if not offsets:
            return b""
        w = self._words
        return bytes([(w[o + 1] >> 24) & 0x1F for o in offsets])

    def copy_offsets(self) -> bytes:
        """The type offset index, for an on-disk cache."""
        self._ensure_complete()
        offsets = self._offsets
        return b"" if isinstance(offsets, tuple) else offsets.tobytes()

    def __repr__(self) -> str:
        n = f"{len(self)}" if self._count is not None else "lazily indexed"
        return f"<btf.Spec {n} types>"
