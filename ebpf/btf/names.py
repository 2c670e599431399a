"""Looking up a `Spec`'s types by name: a scan of the string and type sections for a
few lookups, the cached name buckets, or a full name index for many."""

from __future__ import annotations

import zlib
from itertools import repeat
from operator import itemgetter, mod, sub

from ..errors import BTFError, KeyNotFoundError
from .decode import SpecDecoder
from .layout import (
    _SCANS_BEFORE_INDEX,
    _STRUCT,
    _UNION,
    NAME_BUCKET_BITS,
    NAME_ID_BITS,
    NAME_TAG_BITS,
    _new,
    record_words,
)
from .types import (
    Composite,
    Fwd,
    Member,
    Struct,
    Type,
    Union,
)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from array import array
    from typing import TypeVar, overload

    T = TypeVar("T", bound=Type)


# A struct/union with this many members or more is decoded member by member when CO-RE
# looks a few of them up (`SpecNames._type_for_core`): the kernel's task_struct has ~260.
_LAZY_MEMBERS = 16


class _PendingMembers:
    """The members of a struct/union record, made one by one as they are asked for
    (by position, or by name through a search of the record's name bytes) until all
    of them are (`Composite.members`)."""

    __slots__ = ("_anon", "_made", "_spec", "count", "kflag", "names", "record", "seg")

    def __init__(self, spec: SpecNames, seg: list[int], kflag: int, record: bytes,
                 names: tuple[int, bytes]) -> None:
        self._spec = spec
        self.seg = seg          # the record's member words: name, type, offset
        self.record = record    # the same words as bytes of the blob
        # (the offset of the byte before the lowest nonzero name offset; a NUL, the
        # table's bytes from there to the end of the name at the highest offset, a NUL)
        self.names = names
        self.kflag = kflag
        self.count = len(seg) // 3
        self._made: dict[int, Member] = {}
        self._anon: list[int] | None = None

    def at(self, owner: Composite, n: int, name: str | None = None) -> Member:
        """Member #`n` (the same object each time)."""
        m = self._made.get(n)
        if m is None:
            seg, k = self.seg, 3 * n
            off, moff = seg[k], seg[k + 2]
            m = _new(Member)
            m.name = name if name is not None else self._spec.string(off) if off else ""
            m._type = seg[k + 1]
            if self.kflag:
                m.offset_bits = moff & 0xFFFFFF
                m.bitfield_size = moff >> 24
            else:
                m.offset_bits = moff
                m.bitfield_size = 0
            m._owner = owner
            self._made[n] = m
        return m

    def all(self, owner: Composite) -> list[Member]:
        """Every member, in order."""
        names = self._spec._names_at(self.seg[0::3])
        return [self.at(owner, n, names[n]) for n in range(self.count)]

    def positions(self, owner: Composite, name: str) -> list[int]:
        """Positions of the members called `name` ("": anonymous), in order: found in
        the bytes of the member names (checked to lie in the string table, as ASCII,
        by `SpecNames._type_for_core`), without decoding them."""
        base, names = self.names
        if not name:
            anon = self._anon
            if anon is None:
                anon = self._anon = _all_at(self._first_bytes(), 0)
            return anon
        try:
            needle = name.encode() + b"\0"
        except UnicodeEncodeError:
            return []
        if b"\0" in needle[:-1]:
            return []
        found: list[int] = []
        at = names.find(needle)
        while at >= 0:
            found += self._named_at(base + at)
            at = names.find(needle, at + 1)
        if len(found) > 1:
            found.sort()
        return found

    def _first_bytes(self) -> tuple[int, ...] | bytes:
        """The first byte of each member's name: a NUL for "" (offset 0, or the end of a
        string), in C loops. Read at once from the spec's string table where name
        offsets are its positions (no base; offset 0 a NUL there), else from `names`,
        offset 0 mapped to the NUL past its end."""
        offsets = self.seg[0::3]
        spec = self._spec
        buf, start = spec._buf, spec._str_start
        if len(offsets) > 1 and spec._str_base == 0 and spec._str_len and buf[start] == 0:
            with memoryview(buf) as whole, whole[start:] as table:
                firsts: tuple[int, ...] = itemgetter(*offsets)(table)
            return firsts
        base, names = self.names
        top = len(names) - 1 + base
        return bytes(map(names.__getitem__,
                         map(mod, map(sub, offsets, repeat(base)), repeat(top))))

    def _named_at(self, off: int) -> list[int]:
        """Positions of the members whose name offset is `off` (a search of the record's
        bytes: no Python loop over ~250 members)."""
        record = self.record
        want = off.to_bytes(4, "little" if self._spec.byteorder == "little" else "big")
        found: list[int] = []
        at = record.find(want)
        while at >= 0:
            if not at % 12:
                found.append(at // 12)
            at = record.find(want, at + 1)
        return found


def _all_at(items: list[int] | tuple[int, ...] | bytes, wanted: int) -> list[int]:
    """The positions of `wanted` in `items` (at C speed)."""
    found: list[int] = []
    at = -1
    for _ in range(items.count(wanted)):
        at = items.index(wanted, at + 1)
        found.append(at)
    return found


class SpecNames(SpecDecoder):
    """Lookups by name of a `Spec`."""

    def _type_for_core(self, tid: int) -> Type:
        """`type_by_id`, except that a big struct/union not decoded yet is made with
        its members pending (`_PendingMembers`): CO-RE reads a few of the kernel's
        task_struct members, not its ~260. Only when the record is sound: its member
        types in range and its member names ASCII strings of this spec's table (else
        `type_by_id` decodes it, or raises what it raises)."""
        t = self._by_id.get(tid)
        if t is not None or tid < self._first_id:
            return t if t is not None else self.type_by_id(tid)
        found = self._locate(tid - self._first_id)
        if found is None:
            return self.type_by_id(tid)
        i, end = found
        w = self._words
        if not (0 <= i and i + 3 <= end <= self._nwords
                and record_words(w[i + 1]) == end - i):
            return self.type_by_id(tid)
        info = w[i + 1]
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        if (kind != _STRUCT and kind != _UNION) or vlen < _LAZY_MEMBERS:
            return self.type_by_id(tid)
        seg = list(w[i + 3 : end])
        maxid = self._first_id + self._count if self._count is not None else (
            self._first_id + self._nwords // 3 + 1)
        names = seg[0::3]
        lo = min(filter(None, names), default=0)  # (a sorted set costs ~5x: process start)
        if not lo or max(seg[1::3]) >= maxid:
            return self.type_by_id(tid)
        hi = max(names)
        base, start = self._str_base, self._str_start
        if lo < base or hi - base >= self._str_len or (
                w[i] and not base <= w[i] < base + self._str_len):
            return self.type_by_id(tid)  # (its errors, worded as for any type)
        stop = self._buf.find(b"\0", start + hi - base, self._str_end)
        if stop < 0:
            return self.type_by_id(tid)
        text = self._buf[start + lo - base : stop + 1]
        if not text.isascii():
            return self.type_by_id(tid)
        name = self.string(w[i]) if w[i] else ""
        with self._lock:
            t = self._by_id.get(tid)
            if t is not None:
                return t
            c = _new(Struct if kind == _STRUCT else Union)
            c.name = name
            c.size = w[i + 2]
            at = self._type_start + 4 * (i + 3)
            c._members = _PendingMembers(self, seg, info >> 31,
                                         self._buf[at : at + 4 * len(seg)],
                                         (lo - 1, b"\0" + text + b"\0"))
            self._publish(tid, c)
        return c

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
        from ._name_scan import scan_name  # without the cached index only (process start)

        ids.extend(scan_name(self, name))
        return ids

    def _lookup_hashed(self, name: str) -> list[int]:
        """Look `name` up in the cached name buckets."""
        index = self._index
        assert index is not None
        try:
            bname = name.encode()
        except UnicodeEncodeError:
            return []
        crc = zlib.crc32(bname)
        h = crc >> (32 - NAME_BUCKET_BITS)
        buckets, ids = index.buckets, index.ids
        lo, hi = buckets[h], buckets[h + 1]
        found: list[int] = []
        if not 0 <= lo <= hi <= len(ids):
            self._drop_index()
        else:
            needle = bname + b"\0"
            first, words = self._first_id, self._words
            if index.tagged:  # only the ids whose tag is the name's (no record to verify)
                tag = _name_tag(crc, NAME_BUCKET_BITS)
                mask = (1 << NAME_ID_BITS) - 1
                cands = [v & mask for v in ids[lo:hi] if v >> NAME_ID_BITS == tag]
            else:
                cands = list(ids[lo:hi])
            for tid in cands:
                pos = self._locate(tid - first) if tid >= first else None
                if pos is not None and self._string_is(words[pos[0]], needle):
                    found.append(tid)
        if self._index is None:  # found to be wrong on the way: look again by scanning
            from ._name_scan import scan_name  # (as in ids_by_name)

            return scan_name(self, name)
        found.sort()
        return found

    def flavored_names(self) -> list[str]:
        """This spec's own strings (not its base's) that contain ``___``, which
        separates a CO-RE flavor suffix (``task_struct___old``), in table order: one
        scan of the string section (milliseconds for the kernel's), kept, or the list
        the on-disk index cache holds. Strings that are not UTF-8 are left out."""
        found = self._flavored
        if found is None:
            found = []
            buf, start, end = self._buf, self._str_start, self._str_end
            hit = buf.find(b"___", start, end)
            while hit >= 0:
                first = buf.rfind(b"\0", start, hit) + 1 or start
                stop = buf.find(b"\0", hit, end)
                if stop < 0:
                    break
                try:
                    found.append(buf[first:stop].decode())
                except UnicodeDecodeError:
                    pass
                hit = buf.find(b"___", stop, end)
            self._flavored = found
        return found

    def name_buckets(self, bits: int = NAME_BUCKET_BITS, tagged: bool = False
                     ) -> tuple[array[int], array[int]]:
        """(bucket prefix sums, ids) of every named type, hashed by crc32(name) into
        2**bits buckets: the name index of the on-disk cache. `tagged`: each id carries
        the next 8 bits of the hash above its low 24 bits (every id must fit in them)."""
        from ._name_scan import name_buckets  # for the cache writer only (process start)

        return name_buckets(self, bits, tagged)

    def build_name_index(self) -> None:
        """Index every name at once (worth it before many lookups in a big BTF)."""
        from ._name_scan import build_name_index  # without the cached index only (process start)

        build_name_index(self)

    if TYPE_CHECKING:  # (typing's overloads for type checkers only: process start)
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


def _name_tag(crc: int, bits: int) -> int:
    """The NAME_TAG_BITS bits of a name's crc32 below its `bits` bucket bits."""
    return (crc >> (32 - bits - NAME_TAG_BITS)) & ((1 << NAME_TAG_BITS) - 1)
