"""Write BTF: turn `Type` objects back into a BTF blob the kernel accepts.

    b = btf.Builder()
    key_id = b.add(btf.Int("u32", 4))
    value_id = b.add(my_struct)          # and everything it refers to
    blob = b.marshal()

`Builder.from_spec(spec)` keeps a spec's type ids and string offsets, so that
the .BTF.ext func/line info and CO-RE records of an ELF object, which refer to
both, stay valid for the marshalled blob. It takes the spec's types as they are
asked for: a type the spec never decoded (so no one can have changed it) is
marshalled as a copy of its record, not decoded and encoded again.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import compress, count, repeat
from operator import is_not

from ..errors import BTFError, KeyNotFoundError
from .layout import HEADER, HEADER_BE, MAGIC, string_starts
from .spec import Spec
from .types import (
    Array,
    Composite,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Kind,
    Pointer,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Var,
    Void,
    Volatile,
)

_U32 = 0xFFFFFFFF
# Callbacks of Builder._encode.
_Extend = Callable[[Iterable[int]], None]
_Str = Callable[[str], int]
_Ref = Callable[[Type], int]
_SIMPLE_REF = {Pointer: Kind.PTR, Typedef: Kind.TYPEDEF, Volatile: Kind.VOLATILE,
               Const: Kind.CONST, Restrict: Kind.RESTRICT}


class Builder:
    """Collects types (and strings) and marshals them into a BTF blob.

    Ids are assigned in the order types are added, starting at 1 (0 is void);
    a type added twice (the same object) keeps its first id. `byteorder`
    ("little" or "big") defaults to the host's.
    """

    def __init__(self, *, byteorder: str = sys.byteorder) -> None:
        if byteorder not in ("little", "big"):
            raise ValueError(f"byteorder must be 'little' or 'big', not {byteorder!r}")
        self.byteorder = byteorder
        # (None: the type of `_spec` with that id, not taken from it yet)
        self._types: list[Type | None] = []
        self._ids: dict[int, int] = {}  # id(Type object) -> type id
        self._strtab = bytearray(b"\0")
        self._stroffs: dict[str, int] | None = {"": 0}
        # Of a builder made by from_spec: how many of the spec's decoded strings
        # _stroffs holds, -1 once it indexes the whole seeded table.
        self._strings_seen = -1
        self._seeded = 0  # (the length of the table from_spec seeded)
        self._spec: Spec | None = None  # the spec of from_spec (its types taken when asked for)

    # -- construction -----------------------------------------------------------

    @classmethod
    def from_spec(cls, spec: Spec, *, byteorder: str | None = None) -> Builder:
        """A builder holding every type of `spec`, with the same ids and string offsets.

        Split BTF (a spec with a base) is not supported: marshal the base separately.
        """
        if spec.base is not None:
            raise BTFError("Builder.from_spec does not support split BTF")
        b = cls(byteorder=byteorder or spec.byteorder)
        b._strtab = bytearray(spec.string_table) or bytearray(b"\0")
        # the offsets of the strings the spec decoded (the names of the types it
        # decoded, line info), taken on first use; the whole table indexed on a miss
        b._stroffs = None
        b._strings_seen = 0
        b._seeded = len(b._strtab)
        b._types = [None] * (len(spec) - 1)  # taken from the spec when asked for
        b._spec = spec
        void = spec.type_by_id(0)
        b._ids[id(void)] = 0
        return b

    def _take(self, tid: int) -> Type:
        """The type `tid` of the spec the builder was made from (not taken yet)."""
        assert self._spec is not None
        t = self._spec.type_by_id(tid)
        if self._types[tid - 1] is None:
            self._types[tid - 1] = t
            self._ids.setdefault(id(t), tid)
        return t

    def _take_all(self) -> list[Type]:
        """Every type, taken from the spec where not taken yet."""
        if self._spec is not None:
            types = self._types
            for k in range(len(types)):
                if types[k] is None:
                    self._take(k + 1)
        return self._types  # type: ignore[return-value]  # (no None left)

    def _known(self, t: Type) -> int | None:
        """The id of `t` if it is one of the builder's types (or one of its spec's
        types that the builder has not taken yet)."""
        tid = self._ids.get(id(t))
        if tid is None and self._spec is not None:
            tid = self._spec._ids.get(id(t))
            if (tid is None or not 0 < tid <= len(self._types)
                    or self._spec._by_id.get(tid) is not t):
                return None
            self._ids.setdefault(id(t), tid)
            if self._types[tid - 1] is None:
                self._types[tid - 1] = t
        return tid

    def ids_of_kind(self, *kinds: Kind) -> list[int]:
        """The ids of the types of `kinds` (an ENUM64 is `Kind.ENUM64`), in id order;
        the kinds of the types not taken from the spec yet are read from its records,
        decoding none of them."""
        wanted = set(kinds)
        types = self._types
        out = []
        if self._spec is not None:
            # the untaken ones from the spec's index of its records by kind; then only
            # the taken ones (usually a few) are looked at one by one
            out = [tid for tid in self._spec._ids_of_kinds(wanted) if types[tid - 1] is None]
            ids: Iterable[int] = compress(count(1), map(is_not, types, repeat(None)))
        else:
            ids = range(1, len(types) + 1)
        for tid in ids:
            t = types[tid - 1]
            assert t is not None
            kind = Kind.ENUM64 if isinstance(t, Enum) and t.is64 else t.kind
            if kind in wanted:
                out.append(tid)
        out.sort()
        return out

    def __len__(self) -> int:
        """Number of type ids, including void."""
        return len(self._types) + 1

    @property
    def types(self) -> list[Type]:
        """The types added so far, in id order (id 1 first)."""
        return list(self._take_all())

    def __iter__(self) -> Iterator[Type]:
        return iter(self._take_all())

    def type_id(self, t: Type) -> int:
        """The id `t` was given; raises KeyNotFoundError if it was never added."""
        if isinstance(t, Void):
            return 0
        tid = self._known(t)
        if tid is None or self._types[tid - 1] is not t:
            raise KeyNotFoundError(f"{t!r} was not added to this Builder")
        return tid

    def type_by_id(self, tid: int) -> Type:
        """The type with id `tid` (1-based)."""
        if not 1 <= tid <= len(self._types):
            raise KeyNotFoundError(f"no type id {tid} in this Builder")
        t = self._types[tid - 1]
        return self._take(tid) if t is None else t

    def add(self, t: Type) -> int:
        """Add `t` and every type it refers to (recursively); return the id of `t`."""
        ids = self._ids
        tid = ids.get(id(t))
        if tid is not None:
            return tid
        if isinstance(t, Void):
            return 0
        lazy = self._spec is not None
        if lazy:
            tid = self._known(t)
            if tid is not None:
                return tid
        tid = self._append(t)
        stack = [t]
        while stack:
            for r in stack.pop().refs():
                if (id(r) not in ids and not isinstance(r, Void)
                        and not (lazy and self._known(r) is not None)):
                    self._append(r)
                    stack.append(r)
        return tid

    def _append(self, t: Type) -> int:
        if not isinstance(t, Type):
            raise TypeError(f"expected a btf.Type, got {type(t).__name__}")
        self._types.append(t)
        tid = len(self._types)
        self._ids[id(t)] = tid
        return tid

    def replace(self, tid: int, t: Type) -> None:
        """Put `t` in place of the type with id `tid` (references to the old type
        object keep resolving to `tid`). Used to sanitize BTF for old kernels."""
        if not 1 <= tid <= len(self._types):
            raise KeyNotFoundError(f"no type id {tid} in this Builder")
        self._types[tid - 1] = t
        self._ids[id(t)] = tid

    def add_string(self, s: str) -> int:
        """The offset of `s` in the string table, adding it if needed."""
        offs = self._stroffs
        if offs is None:
            offs = self._stroffs = {"": 0}
        off = offs.get(s)
        if off is not None:
            return off
        if self._strings_seen >= 0:  # not every string of the seeded table is known yet
            off = self._seeded_string(offs, s)
            if off is not None:
                return off
        data = s.encode()
        if b"\0" in data:
            raise BTFError(f"BTF string {s!r} contains a NUL byte")
        off = len(self._strtab)
        self._strtab += data + b"\0"
        offs[s] = off
        return off

    def _seeded_string(self, offs: dict[str, int], s: str) -> int | None:
        """The offset of `s` in the table `from_spec` seeded, taking into `offs` first
        the strings the spec has decoded (an encoded type's name and its members'
        were decoded with it, line info's too), then, on a miss, every string of the
        table (indexing a CO-RE object's 11 KB table is ~1.7M instructions, where a
        load needs a few dozen of its strings). None when the table has no `s`."""
        assert self._spec is not None
        cache = self._spec._strcache
        seeded = self._seeded
        if len(cache) != self._strings_seen:
            items = list(cache.items())  # (a copy: another thread may decode meanwhile)
            for off, text in items:
                if off < seeded:  # (the spec has no base: every offset is its own)
                    offs.setdefault(text, off)
            self._strings_seen = len(items)
            found = offs.get(s)
            if found is not None:
                return found
        for text, off in self._index_strings(seeded).items():
            offs.setdefault(text, off)
        self._strings_seen = -1
        return offs.get(s)

    def _index_strings(self, end: int | None = None) -> dict[str, int]:
        tab = bytes(self._strtab[:end])
        if tab.isascii():  # (the usual table: decoded at once)
            names = tab.decode("ascii").split("\0")[:-1]  # the table ends with a NUL
            starts = list(string_starts(names, 0))[:-1]
            index = dict(zip(reversed(names), reversed(starts), strict=True))  # first wins
            index[""] = 0
            return index
        parts = tab.split(b"\0")[:-1]
        starts = list(string_starts(parts, 0))[:-1]
        index = {}
        for part, start in zip(reversed(parts), reversed(starts), strict=True):
            try:
                index[part.decode()] = start  # the first occurrence wins
            except UnicodeDecodeError:
                pass
        index[""] = 0
        return index

    # -- marshalling ------------------------------------------------------------

    def marshal(self) -> bytes:
        """The BTF blob: header, type section, string table."""
        words: list[int] = []
        ext = words.extend
        string = self.add_string
        ids = self._ids
        add = self.add
        types = self._types
        spec = self._spec
        # the records of types the spec never decoded are copied as they are
        copy = spec is not None and spec.byteorder == self.byteorder
        chunks: list[bytes] = []

        def ref(r: Type) -> int:
            tid = ids.get(id(r))
            if tid is None:  # referred to after it was added (e.g. a member changed)
                tid = add(r)
            return tid

        # A type of the spec the builder was made from keeps the ids of the types it
        # refers to until they are resolved: those ids are the builder's (same ids),
        # written as they are instead of decoding the types they name.
        last = len(types) if copy else -1

        def encode(i: int) -> None:
            t = types[i - 1]
            if t is None:
                t = self._take(i)
            try:
                self._encode(t, ext, string, ref, last if t._spec is spec else -1)
            except BTFError as e:
                raise BTFError(f"cannot marshal type id {i} ({t!r}): {e}") from None

        done = 0  # the ids up to here are marshalled
        if copy:
            assert spec is not None
            # What is encoded: the types taken or replaced, added, and those the spec
            # decoded (which someone may have changed); the records of the others, in
            # runs between them, are copied. (A type decoded while marshalling, to
            # follow a reference, is one nobody changed: its record is copied.)
            n = len(types)
            taken = compress(count(1), map(is_not, types, repeat(None)))
            for i in sorted({*taken, *(k for k in spec._by_id if 0 < k <= n)}):
                if i > done + 1:
                    if words:
                        chunks.append(self._words_bytes(words))
                        words.clear()
                    chunks.append(spec._record_bytes(done + 1, i - 1))
                encode(i)
                done = i
            if done < n:
                if words:
                    chunks.append(self._words_bytes(words))
                    words.clear()
                chunks.append(spec._record_bytes(done + 1, n))
                done = n
        while done < len(types):  # may grow while marshalling, see ref()
            done += 1
            encode(done)
        if words or not chunks:
            chunks.append(self._words_bytes(words))
        tbytes = b"".join(chunks)
        strtab = bytes(self._strtab)
        hdr = HEADER if self.byteorder == "little" else HEADER_BE
        header = hdr.pack(MAGIC, 1, 0, hdr.size, 0, len(tbytes), len(tbytes), len(strtab))
        return header + tbytes + strtab

    def _words_bytes(self, words: list[int]) -> bytes:
        """Encoded words as bytes in the builder's byte order."""
        try:
            typesec = array("I", words)
        except OverflowError:
            bad = next(k for k, w in enumerate(words) if not 0 <= w <= _U32)
            raise BTFError(f"a field of the type at word {bad} does not fit 32 bits "
                           f"({words[bad]})") from None
        if (self.byteorder == "little") != (sys.byteorder == "little"):
            typesec.byteswap()
        return typesec.tobytes()

    @staticmethod
    def _encode(t: Type, ext: _Extend, string: _Str, ref: _Ref, last: int = -1) -> None:
        """Append the words of `t`. A reference of `t` (or of its members, parameters,
        variables) not resolved yet, an id up to `last`, is written as it is."""
        name = string(t.name) if t.name else 0
        r: Type | int
        cls = type(t)
        simple = _SIMPLE_REF.get(cls)
        if simple is not None:
            r = t._type  # type: ignore[attr-defined]
            ext((name, simple << 24,
                 r if r.__class__ is int and 0 <= r <= last else ref(t.type)))  # type: ignore[attr-defined]
        elif isinstance(t, Int):
            if t.bits > 255 or t.offset > 255 or t.bits + t.offset > 8 * t.size:
                raise BTFError(f"int of {t.size} bytes cannot have {t.bits} bits at {t.offset}")
            ext((name, Kind.INT << 24, t.size,
                 (t._encoding & 0xF) << 24 | t.offset << 16 | t.bits))
        elif isinstance(t, Composite):
            members = t.members
            _vlen(len(members))
            kflag = any(m.bitfield_size for m in members)
            kind = Kind.STRUCT if isinstance(t, Struct) else Kind.UNION
            ext((name, kflag << 31 | kind << 24 | len(members), t.size))
            for m in members:
                if kflag:
                    if m.bitfield_size > 255 or m.offset_bits > 0xFFFFFF:
                        raise BTFError(f"member {m.name!r}: bitfield of {m.bitfield_size} bits "
                                       f"at bit {m.offset_bits} does not fit")
                    off = m.bitfield_size << 24 | m.offset_bits
                else:
                    off = m.offset_bits
                r = m._type
                ext((string(m.name) if m.name else 0,
                     r if r.__class__ is int and 0 <= r <= last and m._owner is t
                     else ref(m.type), off))
        elif isinstance(t, Enum):
            vals = t.values
            _vlen(len(vals))
            if t.is64:
                ext((name, t.signed << 31 | Kind.ENUM64 << 24 | len(vals), t.size))
                for v in vals:
                    if not -(1 << 63) <= v.value < (1 << 64):
                        raise BTFError(f"enum value {v.name}={v.value} does not fit 64 bits")
                    x = v.value & 0xFFFFFFFFFFFFFFFF
                    ext((string(v.name), x & _U32, x >> 32))
            else:
                ext((name, t.signed << 31 | Kind.ENUM << 24 | len(vals), t.size))
                for v in vals:
                    if not -(1 << 31) <= v.value < (1 << 32):
                        raise BTFError(f"enum value {v.name}={v.value} does not fit 32 bits")
                    ext((string(v.name), v.value & _U32))
        elif isinstance(t, Array):
            r, ix = t._type, t._index
            ext((0, Kind.ARRAY << 24, 0,
                 r if r.__class__ is int and 0 <= r <= last else ref(t.type),
                 ix if ix.__class__ is int and 0 <= ix <= last else ref(t.index), t.nelems))
        elif isinstance(t, FuncProto):
            params = t.params
            _vlen(len(params))
            r = t._return
            ext((0, Kind.FUNC_PROTO << 24 | len(params),
                 r if r.__class__ is int and 0 <= r <= last else ref(t.return_type)))
            for p in params:
                r = p._type
                ext((string(p.name) if p.name else 0,
                     r if r.__class__ is int and 0 <= r <= last and p._owner is t
                     else ref(p.type)))
        elif isinstance(t, Func):
            linkage = int(t.linkage)
            _vlen(linkage)
            r = t._type
            ext((name, Kind.FUNC << 24 | linkage,
                 r if r.__class__ is int and 0 <= r <= last else ref(t.type)))
        elif isinstance(t, Var):
            r = t._type
            ext((name, Kind.VAR << 24, r if r.__class__ is int and 0 <= r <= last
                 else ref(t.type), int(t.linkage)))
        elif isinstance(t, Datasec):
            vs = t.vars
            _vlen(len(vs))
            ext((name, Kind.DATASEC << 24 | len(vs), t.size))
            for sv in vs:
                r = sv._type
                ext((r if r.__class__ is int and 0 <= r <= last and sv._owner is t
                     else ref(sv.type),
                     sv.offset, sv.size))
        elif isinstance(t, Fwd):
            ext((name, t.union << 31 | Kind.FWD << 24, 0))
        elif isinstance(t, Float):
            ext((name, Kind.FLOAT << 24, t.size))
        elif isinstance(t, TypeTag):
            ext((name, t.attribute << 31 | Kind.TYPE_TAG << 24, ref(t.type)))
        elif isinstance(t, DeclTag):
            ext((name, t.attribute << 31 | Kind.DECL_TAG << 24, ref(t.type),
                 t.component_idx & _U32))
        elif isinstance(t, (Pointer, Typedef, Volatile, Const, Restrict)):  # subclasses
            kind = next(k for c, k in _SIMPLE_REF.items() if isinstance(t, c))
            ext((name, kind << 24, ref(t.type)))
        else:
            raise BTFError(f"cannot marshal {type(t).__name__}")

    def spec(self) -> Spec:
        """Parse the marshalled blob back (handy to get ids bound to a Spec)."""
        return Spec(self.marshal())


def _vlen(n: int) -> None:
    if not 0 <= n <= 0xFFFF:
        raise BTFError(f"vlen {n} does not fit 16 bits")


def marshal_types(types: Iterable[Type], *,
                  byteorder: str = sys.byteorder) -> tuple[bytes, dict[Type, int]]:
    """Marshal `types` (and everything they refer to) into a BTF blob.

    Returns the blob and the id of every type in it.
    """
    b = Builder(byteorder=byteorder)
    for t in types:
        b.add(t)
    data = b.marshal()
    return data, {t: i for i, t in enumerate(b.types, 1)}


__all__ = ["Builder", "marshal_types"]
