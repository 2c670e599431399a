"""Decoding a `Spec`'s strings and type records into `Type` objects, one id at a time
(the hot path of every dump)."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import compress
from operator import itemgetter

from ..errors import BTFError, KeyNotFoundError
from .layout import (
    _ARRAY,
    _DATASEC,
    _DECL_TAG,
    _ENUM,
    _ENUM64,
    _FLOAT,
    _FUNC,
    _FUNC_PROTO,
    _FWD,
    _INT,
    _LINKAGES,
    _REF_KINDS,
    _STRUCT,
    _TYPE_TAG,
    _TYPEDEF,
    _UNION,
    _VAR,
    _new,
    kinds_of,
    record_words,
    string_starts,
)
from .types import (
    Array,
    Datasec,
    DeclTag,
    Enum,
    EnumValue,
    Float,
    FuncParam,
    FuncProto,
    Fwd,
    Int,
    Member,
    Struct,
    Type,
    Union,
    Var,
    VarSecinfo,
    Void,
)
from .walk import SpecWalk

# Kinds whose record refers to a type id in its third word.
_REFERRING = frozenset((*_REF_KINDS, _FUNC_PROTO, _VAR, _DECL_TAG))
# Kind -> 1 for the kinds whose third word refers to a type.
_REFERS_IN_TYPE = bytearray(256)
for _k in _REFERRING:
    _REFERS_IN_TYPE[_k] = 1
# Kind -> the class of what follows its record's first three words, checked by
# `_records_ok` (0: nothing to check), and per class the bytes of that: fixed, and per
# vlen entry.
(_CLASS_ARRAY, _CLASS_MEMBERS, _CLASS_PARAMS, _CLASS_ENUM, _CLASS_ENUM64,
 _CLASS_DATASEC) = range(1, 7)
_CLASS_OF_KIND = bytearray(256)
for _k, _c in ((_ARRAY, _CLASS_ARRAY), (_STRUCT, _CLASS_MEMBERS), (_UNION, _CLASS_MEMBERS),
               (_FUNC_PROTO, _CLASS_PARAMS), (_ENUM, _CLASS_ENUM), (_ENUM64, _CLASS_ENUM64),
               (_DATASEC, _CLASS_DATASEC)):
    _CLASS_OF_KIND[_k] = _c
del _k, _c
_CLASS_BYTES = ((0, 0), (8, 0), (0, 12), (0, 8), (0, 8), (0, 12), (0, 12))
# Names decoded as one stretch of the string table: at least this many missing, at most
# this many bytes of the table per name (SpecDecoder._load_span).
_SPAN_MIN = 16
_SPAN_BYTES = 64
# Bytes of the string table decoded at once in bulk (below glibc's mmap threshold: the
# text of one stretch reuses the memory of the one before)
_BULK_BYTES = 1 << 15


class SpecDecoder(SpecWalk):
    """Strings and types of a `Spec` by offset and id."""

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

    def _load_strings(self, end: int | None = None) -> None:
        """Decode the string table at once, for a dump that needs most of it: every
        string, or (with `end`) those that start at or before offset `end` (an ASCII
        table: others are decoded string by string, as they are used)."""
        if self._strings_loaded:
            return
        lo, size = self._strings_end, self._str_len
        cut = size
        if end is not None and end - self._str_base < size:
            end = max(end - self._str_base, lo)
            # (up to the NUL that ends the string at `end`)
            cut = self._buf.find(b"\0", self._str_start + end, self._str_end) - self._str_start + 1
        if cut >= size:
            self._strings_loaded = True
        if lo >= cut:
            return
        # (decoded from a view of the blob, a stretch of whole strings at a time: no copy
        # of the section's bytes, nor a text of all its strings, in new pages)
        table: dict[int, str] = {}
        buf, a, end = self._buf, self._str_start + lo, self._str_start + cut
        at = self._str_base + lo
        with memoryview(buf) as view:
            while a < end:
                b = buf.find(b"\0", min(a + _BULK_BYTES, end - 1), end) + 1
                try:
                    parts = str(view[a:b], "ascii").split("\0")
                except UnicodeDecodeError:
                    self._strings_loaded = True
                    return
                del parts[-1]  # (the stretch ends with a NUL: its last part is no string)
                table.update(zip(string_starts(parts, at), parts))  # noqa: B905 (one more start)
                at += b - a
                a = b
        self._strings_end = cut
        if lo:
            self._strcache.update(table)
            return
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

    def type_by_id(self, tid: int) -> Type:
        """The type with id `tid` (0 is void); raises BTFError for an unknown id."""
        t = self._by_id.get(tid)
        if t is not None:
            return t
        if tid < self._first_id:
            if tid == 0:
                with self._lock:
                    t = self._by_id.get(0)
                    if t is None:
                        t = Void()
                        self._ids[id(t)] = 0
                        self._by_id[0] = t  # (in this order: see _publish)
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
                and (self._steps.get(self._words[i + 1])
                     or record_words(self._words[i + 1])) == end - i):
            raise BTFError(f"type id {tid}: corrupt type offset index",
                           self._type_start + 4 * min(i, self._nwords))
        lock = self._lock
        lock.acquire()  # (not `with`: half the cost, once per type decoded)
        try:
            t = self._by_id.get(tid)
            if t is not None:  # another thread decoded it meanwhile
                return t
            try:
                t = self._decode_record(i, tid)
            except BTFError as e:
                if e.offset is not None:
                    raise
                raise BTFError(f"type id {tid}: {e}", self._type_start + 4 * i) from None
            except (IndexError, ValueError, OverflowError) as e:  # defensive: never leak these
                raise BTFError(f"type id {tid}: malformed record ({e})",
                               self._type_start + 4 * i) from None
            # published (see _publish, written out here: once per type decoded)
            t._spec = self  # type: ignore[assignment]  # (self is the Spec)
            self._ids[id(t)] = tid
            self._by_id[tid] = t
        finally:
            lock.release()
        return t

    def _publish(self, tid: int, t: Type) -> None:
        """Make `t` this spec's type `tid` (with the lock held): its id in `_ids`
        first, for another thread may find it in `_by_id` without the lock and ask
        `type_id` at once."""
        t._spec = self  # type: ignore[assignment]  # (self is the Spec)
        self._ids[id(t)] = tid
        self._by_id[tid] = t

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
            t = Int(name, size_type, (enc >> 24) & 0xF, enc & 0xFF,
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

    def check_records(self) -> None:
        """Check every record of this spec (not its base) without decoding it: a known
        kind, references to type ids that exist, names inside the string table. A
        record that fails is decoded, which raises the decoder's BTFError for it."""
        if not (self._walk_pos or self._complete):  # (an object's BTF: walked here)
            with self._lock:
                starts = self._walk_to_word_locked(self._nwords)
            if len(starts) == len(self._offsets) > 1 and self._records_ok(starts):
                return
        self._ensure_complete()
        w = self._words
        first = self._first_id
        maxid = first + len(self._offsets)
        strmax = self._str_base + self._str_len
        for k, i in enumerate(self._offsets):
            info = w[i + 1]
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            ok = w[i] < strmax and 0 < kind <= _ENUM64
            if kind in _REFERRING:
                ok = ok and w[i + 2] < maxid
            elif kind == _ARRAY:
                ok = ok and w[i + 3] < maxid and w[i + 4] < maxid
            if vlen and ok:
                j = i + 3
                if kind == _STRUCT or kind == _UNION:
                    seg = w[j : j + 3 * vlen]
                    ok = max(seg[1::3]) < maxid and max(seg[0::3]) < strmax
                elif kind == _FUNC_PROTO:
                    seg = w[j : j + 2 * vlen]
                    ok = max(seg[1::2]) < maxid and max(seg[0::2]) < strmax
                elif kind == _ENUM:
                    ok = max(w[j : j + 2 * vlen : 2]) < strmax
                elif kind == _ENUM64:
                    ok = max(w[j : j + 3 * vlen : 3]) < strmax
                elif kind == _DATASEC:
                    ok = max(w[j : j + 3 * vlen : 3]) < maxid
            if not ok:
                self.type_by_id(first + k)

    def _records_ok(self, starts: list[int]) -> bool:
        """`check_records` of a whole spec whose records start at words `starts` (at
        least two), on whole columns: each record's first three words gathered at
        once, the kinds from their info words (kept for `types_of_kind`), and per kind
        with entries, those of all its records as one run. False when a record fails:
        the record by record check then finds it and raises its error."""
        w = self._words
        at_starts = itemgetter(*starts)
        infos = at_starts(w[1:])
        kinds = kinds_of(infos)
        if 0 in kinds:
            return False
        maxid = self._first_id + len(starts)
        strmax = self._str_base + self._str_len
        if max(at_starts(w)) >= strmax:  # (the names)
            return False
        if max(compress(at_starts(w[2:]), kinds.translate(_REFERS_IN_TYPE)),
               default=0) >= maxid:
            return False
        # the arrays' element and index types, and the entries of the kinds that have
        # them, all of a kind's as one run of words (each record's a whole number of
        # entries: the columns of the run line up)
        classes = kinds.translate(_CLASS_OF_KIND)
        data = w.tobytes()  # (a bytes slice costs less than a memoryview's)
        runs: list[list[bytes]] = [[] for _ in _CLASS_BYTES]
        for k in compress(range(len(classes)), classes):
            code = classes[k]
            a = 4 * starts[k] + 12
            fixed, per_entry = _CLASS_BYTES[code]
            runs[code].append(data[a : a + fixed + per_entry * (infos[k] & 0xFFFF)])
        for code, parts in enumerate(runs):
            if not parts:
                continue
            run = memoryview(b"".join(parts)).cast("I")
            if not run:
                continue
            stride = _CLASS_BYTES[code][1] // 4
            if code == _CLASS_ARRAY:
                ok = max(run) < maxid
            elif code == _CLASS_DATASEC:
                ok = max(run[0::3]) < maxid
            else:
                ok = max(run[0::stride]) < strmax and (
                    code == _CLASS_ENUM or code == _CLASS_ENUM64 or max(run[1::stride]) < maxid)
            if not ok:
                return False
        self._kind_bytes = kinds
        return True

    def _bad_ref(self, tid: int, ref: int, i: int) -> None:
        raise BTFError(f"type id {tid}: reference to type id {ref} out of range",
                       self._type_start + 4 * i)

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

    def _names_at(self, offs: Iterable[int], empty: bool = True) -> list[str]:
        """The strings at offsets `offs` ("" for offset 0 when `empty`)."""
        cache = self._strcache
        names = list(map(cache.get, offs))
        if None in names:
            missing = [o for s, o in zip(names, offs, strict=True) if s is None and o]
            if len(missing) >= _SPAN_MIN:
                # a struct's member names usually lie close together in the table:
                # decode the stretch holding them at once (kernel task_struct: 248
                # names within 3 KB) instead of string by string
                self._load_span(min(missing), max(missing), len(missing))
                names = list(map(cache.get, offs))
        if None in names:
            string = self.string
            names = [s if s is not None else (string(o) if o or not empty else "")
                     for s, o in zip(names, offs, strict=True)]
        return names  # type: ignore[return-value]

    def _load_span(self, lo: int, hi: int, count: int) -> None:
        """Put the strings from offset `lo` up to the one at `hi` in the string cache,
        when they are ASCII and `count` strings are wanted from no more than
        `_SPAN_BYTES` bytes each on average (anything else: left to `string`)."""
        if lo < self._str_base or hi - lo > _SPAN_BYTES * count:
            return
        start = self._str_start + lo - self._str_base
        at_hi = self._str_start + hi - self._str_base
        if at_hi >= self._str_end:
            return
        end = self._buf.find(b"\0", at_hi, self._str_end)
        if end < 0:
            return
        chunk = self._buf[start:end]
        if not chunk.isascii():
            return
        parts = chunk.decode("ascii").split("\0")
        starts = string_starts(parts, lo)
        self._strcache.update(zip(starts, parts))  # noqa: B905 (one more start than parts)
