"""Looking up a `Spec`'s types by name: a scan of the string and type sections for a
few lookups, the cached name buckets, or a full name index for many."""

from __future__ import annotations

import struct
import zlib
from bisect import bisect_left
from itertools import compress, repeat
from operator import and_, itemgetter, lshift, mod, or_, rshift, sub

from ..errors import BTFError, KeyNotFoundError
from .decode import SpecDecoder
from .layout import (
    _NAMED_KINDS,
    _SCANS_BEFORE_INDEX,
    _STRUCT,
    _UNION,
    NAME_BUCKET_BITS,
    NAME_ID_BITS,
    NAME_TAG_BITS,
    _new,
    record_words,
    string_starts,
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
        starts = string_starts(parts, self._str_base)
        table = dict(zip(starts, parts, strict=False))
        names: list[bytes | None] = list(map(table.get, named_offs))
        if None in names:
            for k, (off, nm) in enumerate(zip(named_offs, names, strict=True)):
                if nm is None:  # points into the middle of a string, or into the base
                    names[k] = self.string(off).encode()
        return ids, names  # type: ignore[return-value]

    def name_buckets(self, bits: int = NAME_BUCKET_BITS, tagged: bool = False
                     ) -> tuple[array[int], array[int]]:
        """(bucket prefix sums, ids) of every named type, hashed by crc32(name) into
        2**bits buckets: the name index of the on-disk cache. `tagged`: each id carries
        the next 8 bits of the hash above its low 24 bits (every id must fit in them)."""
        from array import array  # for the cache only: `import ebpf.btf` does not load it

        ids, names = self._named_types()
        if tagged and ids and ids[-1] >> NAME_ID_BITS:
            raise BTFError(f"type ids beyond {NAME_ID_BITS} bits cannot be tagged")
        crcs = list(map(zlib.crc32, names))
        hashes = map(rshift, crcs, repeat(32 - bits))
        if tagged:
            ids = [i | _name_tag(c, bits) << NAME_ID_BITS for i, c in zip(ids, crcs, strict=True)]
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
