"""Print BTF as a C header that clang compiles back to the same layouts.

    open("vmlinux.h", "w").write(btf.dump_c(btf.load_kernel_spec()))

The output holds the declarations `bpftool btf dump file ... format c` prints
(tests/test_btf_cdump.py compares them). The printer reads the type records
themselves (`_Records`: kind, size/type word and name of every type id, and the
entries of the records it writes), so a whole-kernel dump makes no `Type`
objects. It works in three independent steps:

1. Names (`_Names`), for the whole spec in id order. C has one namespace for
   struct/union/enum tags and one for typedef names and enumerators; a name that
   is taken there already (or is a C keyword) gets `___2`, `___3`, ... -- the
   suffix CO-RE ignores when it matches type names. Integer types whose BTF name
   is not C (`__Poly8_t`, Rust's `u8`) get a typedef of the C type of their size
   where a declaration uses them.

2. Order (`_Emitter`). Before a declaration is written, what it needs is:
   *by value* (a member, an array element, what a typedef used by value names)
   a type must be complete, so a struct, union or enum is defined first; *by
   name* (behind a pointer, in a prototype, the target of a typedef) it must be
   declared: typedefs are written, and struct/union tags get a forward
   declaration, since a tag first seen in a parameter list would be local to
   that prototype. Nothing contains itself by value, so this ends; a loop
   through pointers ends at a forward declaration. Anonymous types are written
   inline where they are used.

3. Text. `_declare(type, inner)` wraps the declarator `inner` (a name, or ""),
   from the outside in: a pointer prefixes `*`, an array appends `[n]`, a
   function appends its parameters, and a pointer is parenthesized when an
   array or a function wraps it: `int (*p)[4]`. A struct is laid out the way
   clang lays it out for `-target bpf` (`_Layout`); where that would not give
   the BTF offsets, gaps are filled with unnamed bitfields (`long: 64;`), and a
   record whose members or size natural alignment cannot reach is packed.

Types are type ids throughout (of the spec, or of its base for split BTF).
Malformed BTF (a typedef or qualifier loop, a struct containing itself by value,
types nested deeper than a C compiler accepts, a reference to no type) raises
BTFError.
"""

from __future__ import annotations

import gc
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, compress, filterfalse, repeat
from operator import itemgetter, setitem
from typing import TYPE_CHECKING

from ..errors import BTFError
from .layout import (
    _ARRAY,
    _CONST,
    _ENUM,
    _ENUM64,
    _FLOAT,
    _FUNC_PROTO,
    _FWD,
    _INT,
    _PTR,
    _RESTRICT,
    _STRUCT,
    _TYPE_TAG,
    _TYPEDEF,
    _UNION,
    _VOLATILE,
)

if TYPE_CHECKING:
    from .spec import Spec
    from .types import Type

HEADER = """#ifndef __VMLINUX_H__
#define __VMLINUX_H__

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
#endif

"""
FOOTER = """#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute pop
#endif

#endif /* __VMLINUX_H__ */
"""

_MAX_DEPTH = 200  # nested needs / declarators; far beyond any real header
_MAX_CHAIN = 256  # pointer, qualifier and array links followed in one walk
_POINTER_SIZE = 8
_BIG_GAP = 1 << 14  # gaps of more 64-bit words than this become one char array

# Keywords of C17 with GNU extensions (what clang accepts by default), and the
# compiler's built-in type names: BTF's `__builtin_va_list` is the target's
# (24 bytes on x86-64) and is kept as `__builtin_va_list___2`, so that structs
# holding a va_list keep the kernel's layout. C23's `bool`, `true` and `false`
# are not keywords here: the kernel defines them itself.
_C_KEYWORDS = frozenset("""
    auto break case char const continue default do double else enum extern float for goto
    if inline int long register restrict return short signed sizeof static struct switch
    typedef union unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex
    _Generic _Imaginary _Noreturn _Static_assert _Thread_local asm typeof __asm__ __attribute__
    __auto_type __const__ __extension__ __inline__ __int128 __label__ __restrict__ __signed__
    __typeof__ __volatile__ __builtin_va_list __builtin_ms_va_list
""".split())
# Words an integer or floating-point type name may be spelled with in C.
_INT_WORDS = frozenset({"signed", "unsigned", "char", "short", "int", "long", "_Bool", "__int128"})
_FLOAT_WORDS = frozenset({"float", "double", "long", "_Float16", "__bf16", "__fp16", "_Float128",
                          "__float128"})
_INT_BY_SIZE = {1: "char", 2: "short", 4: "int", 8: "long long", 16: "__int128"}
_FLOAT_BY_SIZE = {2: "_Float16", 4: "float", 8: "double", 16: "long double"}
_ENUM_MODE = {1: "byte", 2: "HI"}
_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]")
_TABS = ["\t" * i for i in range(_MAX_DEPTH + 3)]  # (a level is at most a depth + 1)
# Kinds of the types `_Names` names and `write_all` writes:
# INT, STRUCT, UNION, ENUM, FWD, TYPEDEF, FLOAT, ENUM64.
_TOP_KIND_TABLE = bytes(k in (_INT, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF, _FLOAT, _ENUM64)
                        for k in range(256))
_INT_BOOL, _INT_CHAR, _INT_SIGNED = 4, 2, 1  # INT encoding bits

# What the printer does with a type, by its BTF kind (`_CATEGORY[kind]`).
(_K_PTR, _K_ARRAY, _K_QUAL, _K_TYPEDEF, _K_COMPOSITE, _K_ENUM, _K_FWD, _K_NUMBER, _K_PROTO,
 _K_VOID, _K_OTHER) = range(1, 12)
_CATEGORY = bytes([
    _K_VOID, _K_NUMBER, _K_PTR, _K_ARRAY, _K_COMPOSITE, _K_COMPOSITE, _K_ENUM, _K_FWD,
    _K_TYPEDEF, _K_QUAL, _K_QUAL, _K_QUAL, _K_OTHER, _K_PROTO, _K_OTHER, _K_OTHER, _K_NUMBER,
    _K_OTHER, _K_QUAL, _K_ENUM]) + bytes([_K_OTHER]) * 236
_PRINTED_NAME_KINDS = bytes(k in (_INT, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF, _FLOAT, _ENUM64,
                                  _TYPE_TAG) for k in range(256))
_KIND_OF_HIGH_BYTE = bytes(b & 0x1F for b in range(256))
_KFLAG_OF_HIGH_BYTE = bytes(b >> 7 for b in range(256))
_C_QUALIFIER = {_CONST: "const", _VOLATILE: "volatile", _RESTRICT: "restrict"}
# The `ebpf.btf` class of each kind (for messages about a type).
_CLASS_NAMES = ("Void", "Int", "Pointer", "Array", "Struct", "Union", "Enum", "Fwd", "Typedef",
                "Volatile", "Const", "Restrict", "Func", "FuncProto", "Var", "Datasec", "Float",
                "DeclTag", "TypeTag", "Enum")
_ANONYMOUS_KINDS = frozenset((0, _PTR, _ARRAY, _VOLATILE, _CONST, _RESTRICT, _FUNC_PROTO))


def dump_c(spec: Spec, types: Iterable[Type] | None = None, *, header: bool = True) -> str:
    """A C header defining `types` (default: every type of `spec`) and everything
    they need, in an order that compiles. `header=False` leaves out the include
    guard and the `preserve_access_index` pragma. Functions and variables are
    not declared."""
    return dump_c_with_state(spec, types, header=header)[0]


def dump_c_with_state(spec: Spec, types: Iterable[Type] | None = None, *,
                 header: bool = True) -> tuple[str, object]:
    """`dump_c`, and the printer's state, freed when the caller drops it (the `ebpf`
    command ends its process without freeing it: ~1M objects for a whole kernel)."""
    pieces, state = dump_c_pieces(spec, types, header=header)
    return "".join(pieces), state  # (one join: the text is megabytes)


def dump_c_pieces(spec: Spec, types: Iterable[Type] | None = None, *,
                  header: bool = True) -> tuple[list[str], object]:
    """`dump_c_with_state` with the text in the pieces it is written in, for a
    writer that sends them out without one copy of the whole text."""
    gc_was_enabled = gc.isenabled()
    gc.disable()  # many small tuples and lists, none of them garbage until the end
    try:
        ids = None if types is None else [spec.type_id(t) for t in types]
        records = _Records(spec)
        named = records.named_ids()
        emitter = _Emitter(records, _Names(records, named))
        try:
            if ids is None:
                emitter.write_all(named)
            else:
                for tid in ids:
                    emitter.write(tid, explicit=True)
        except IndexError:  # (a record refers to a type id beyond the last)
            _raise_decode_error(spec)
            raise BTFError("BTF refers to a type id that does not exist") from None
        pieces = emitter.out
        if header:
            pieces.insert(0, HEADER)
            pieces.append(FOOTER)
        # (made before collections resume: a new tuple could start one, and every
        # object made here would be a young one to scan)
        result = (pieces, emitter)
    finally:
        if gc_was_enabled:
            gc.enable()
    return result


# names, types, bit offsets and bitfield sizes (None: no bitfield) of members
_Members = tuple[list[str], list[int], list[int], list[int] | None]


def _raise_decode_error(spec: Spec) -> None:
    """Decode every type of `spec`, for the decoder's error naming the record at fault."""
    for tid in range(spec._first_id, len(spec)):
        spec.type_by_id(tid)


class _Records:
    """The type records of a spec and its base by type id: `kinds`, `kflags` (the kind
    flag of the info word), `sts` (the size/type word) and `names` of every type, read
    once from the type section; the entries of a record (members, values, parameters)
    and an array's words when asked (memoized)."""

    kinds: bytes
    cat: bytes  # the printer's category of each kind (`_CATEGORY`)
    kflags: bytes
    sts: list[int]
    names: list[str]  # of the kinds printed with a name; "" for the others

    def __init__(self, spec: Spec) -> None:
        walked = spec._walk_rest()
        self.spec = spec
        self.first = spec._first_id
        base_kinds: bytes
        if spec.base is not None:
            base = _Records(spec.base)
            self.base: _Records | None = base
            sts, names, base_kinds, base_kflags = base.sts, base.names, base.kinds, base.kflags
        else:
            self.base = None
            sts, names, base_kinds, base_kflags = [0], [""], b"\0", b"\0"
        if len(sts) != self.first:
            raise BTFError(f"split BTF starts at type id {self.first}, its base has "
                           f"{len(sts)} types")
        w, offsets = spec._words, spec._offsets
        self.words = w
        self.offsets = offsets
        # (one C-level gather per word of the record header; the offsets made ints once,
        # or as the walk made them)
        offset_list = walked if len(walked) == len(offsets) else (
            offsets.tolist() if isinstance(offsets, array) else list(offsets))
        gather = _gather(offset_list)
        # The kind is in the high byte of the info word (with the kind flag): gathered
        # from the blob's bytes, as small ints (no int object per record). The vlen is
        # read from the record when its entries are.
        at = spec._type_start + (7 if spec.byteorder == "little" else 4)
        with memoryview(spec._buf) as view, view[at : spec._type_end : 4] as high_bytes:
            high = bytes(gather(high_bytes))
        kinds = high.translate(_KIND_OF_HIGH_BYTE)
        if 0 in kinds:
            tid = self.first + kinds.index(0)
            raise BTFError(f"type id {tid} has unsupported kind 0",
                           spec._type_start + 4 * offsets[tid - self.first])
        self.own_kinds = kinds
        sts.extend(gather(w[2:]))
        # names of the kinds whose name is printed (the others' by `name_of`)
        with_name = kinds.translate(_PRINTED_NAME_KINDS)
        name_offs = _gather(list(compress(offset_list, with_name)))(w)
        # The strings are decoded at once up to the last of those names: a producer
        # that adds a type's member and enumerator names with its own (pahole) puts
        # what is printed there, and functions and parameters after (40% of the
        # kernel's table). Any string beyond is decoded when asked for.
        spec._load_strings(max(name_offs, default=0))
        cache = spec._strcache
        found = list(map(cache.get, name_offs))
        if None in found:
            string = spec.string
            found = [s if s is not None else (string(o) if o else "")
                     for s, o in zip(found, name_offs, strict=True)]
        own_names = [""] * len(kinds)
        # (own_names[k] = name for each, in a C loop: any() runs it, setitem gives None)
        put = compress(range(len(kinds)), with_name)
        any(map(setitem, repeat(own_names), put, found))  # type: ignore[arg-type]
        names.extend(own_names)
        self.sts, self.names = sts, names
        self.kinds = base_kinds + kinds
        self.kflags = base_kflags + high.translate(_KFLAG_OF_HIGH_BYTE)
        self.cat = self.kinds.translate(_CATEGORY)
        self._strings = cache
        self.strings_get = cache.get  # (offset -> string, or None when not decoded yet)
        self._members: dict[int, _Members] = {}
        self._arrays: dict[int, tuple[int, int]] = {}
        self._params: dict[int, list[tuple[str, int]]] = {}
        self._enums: dict[int, tuple[list[int], list[int]]] = {}

    def named_ids(self) -> list[int]:
        """The ids of the spec's own (not its base's) types that may get a C name
        or be written at the top level, in id order; the others (pointers,
        prototypes, functions, variables, ...) are only written where something
        refers to them."""
        first = self.first
        return list(compress(range(first, first + len(self.own_kinds)),
                             self.own_kinds.translate(_TOP_KIND_TABLE)))

    def string(self, off: int) -> str:
        """The string at offset `off` of the (possibly split) string table."""
        s = self._strings.get(off)
        return s if s is not None else self.spec.string(off)

    def entries(self, tid: int, width: int) -> list[int]:
        """The words after the header of record `tid`: `width` per vlen entry, and
        the fixed words of its kind when `width` is 0 (an INT's or ARRAY's)."""
        if tid < self.first:
            assert self.base is not None
            return self.base.entries(tid, width)
        i = self.offsets[tid - self.first] + 3
        n = width * (self.words[i - 2] & 0xFFFF) if width else 3
        return self.words[i : i + n].tolist()

    def members(self, tid: int) -> _Members:
        """The names (as C member names), types, bit offsets and bitfield sizes of the
        members of a struct or union, as four lists (the last None if none is a bitfield)."""
        found = self._members.get(tid)
        if found is None:
            if tid < self.first:
                seg = self.entries(tid, 3)
            else:  # (entries, inlined)
                w = self.words
                i = self.offsets[tid - self.first] + 3
                seg = w[i : i + 3 * (w[i - 2] & 0xFFFF)].tolist()
            placed = seg[2::3]
            bits: list[int] | None = None
            if self.kflags[tid]:
                offsets = [b & 0xFFFFFF for b in placed]
                bits = [b >> 24 for b in placed]
                if not any(bits):
                    bits = None
            else:
                offsets = placed
            found = self._members[tid] = (self._member_names(seg[0::3]), seg[1::3], offsets,
                                          bits)
        return found

    def _member_names(self, offsets: list[int]) -> list[str]:
        """The C member (or parameter) names of the strings at `offsets`."""
        names = list(map(self._strings.get, offsets))
        if None in names:
            names = [self.string(o) if n is None else n for n, o in zip(names, offsets,
                                                                          strict=True)]
        # (checked all at once: almost every record's names are C already)
        if _C_KEYWORDS.isdisjoint(names) and all(map(str.isidentifier, filter(None, names))) \
                and "".join(names).isascii():  # type: ignore[arg-type]
            return names  # type: ignore[return-value]
        return [_member_name(n) for n in names]  # type: ignore[arg-type]

    def array(self, tid: int) -> tuple[int, int]:
        """(element type, number of elements) of an array."""
        found = self._arrays.get(tid)
        if found is None:
            seg = self.entries(tid, 0)
            found = self._arrays[tid] = (seg[0], seg[2])
        return found

    def params(self, tid: int) -> list[tuple[str, int]]:
        """(C name, type) of each parameter of a prototype."""
        found = self._params.get(tid)
        if found is None:
            seg = self.entries(tid, 2)
            found = self._params[tid] = list(zip(self._member_names(seg[0::2]), seg[1::2],
                                                 strict=True))
        return found

    def enum_values(self, tid: int) -> tuple[list[int], list[int]]:
        """The name offsets and the values of the enumerators (memoized), the values
        signed if the enum is."""
        found = self._enums.get(tid)
        if found is not None:
            return found
        signed = self.kflags[tid]
        if self.kinds[tid] == _ENUM:
            seg = self.entries(tid, 2)
            values = seg[1::2]
            if signed:
                values = [v - (1 << 32) if v & 0x80000000 else v for v in values]
            found = self._enums[tid] = (seg[0::2], values)
            return found
        seg = self.entries(tid, 3)
        values = [lo | (hi << 32) for lo, hi in zip(seg[1::3], seg[2::3], strict=True)]
        if signed:
            values = [v - (1 << 64) if v & (1 << 63) else v for v in values]
        found = self._enums[tid] = (seg[0::3], values)
        return found

    def int_encoding(self, tid: int) -> int:
        """The encoding bits (signed, char, bool) of an INT."""
        return (self.entries(tid, 0)[0] >> 24) & 0xF

    def name_of(self, tid: int) -> str:
        """The name of any type (`names` holds those of the kinds printed with one)."""
        if tid < self.first:
            assert self.base is not None
            return self.base.name_of(tid)
        return self.string(self.words[self.offsets[tid - self.first]])

    def describe(self, tid: int) -> str:
        """`tid` for a message, as the repr of its `ebpf.btf` type object."""
        kind = self.kinds[tid]
        name = "" if kind in _ANONYMOUS_KINDS else self.name_of(tid)
        cls = _CLASS_NAMES[kind]
        return f"<{cls} {name!r}>" if name else f"<{cls}>"


def _gather(offsets: Sequence[int]) -> Callable[[Sequence[int]], tuple[int, ...]]:
    """A function of a sequence giving its items at `offsets`, as a tuple (a C loop)."""
    if len(offsets) > 1:
        return itemgetter(*offsets)
    return lambda words: tuple(words[o] for o in offsets)


def _tabs(lvl: int) -> str:
    return _TABS[lvl] if lvl < len(_TABS) else "\t" * lvl


def _roundup(x: int, step: int) -> int:
    return -(-x // step) * step


def _c_identifier(name: str) -> str:
    """`name`, with what C does not allow in an identifier replaced by '_'."""
    if name.isidentifier() and name.isascii():
        return name
    fixed = _NOT_IDENT.sub("_", name)
    return "_" + fixed if not fixed or fixed[0].isdigit() else fixed


def _member_name(name: str) -> str:
    """A member or parameter name C accepts (keywords get a trailing '_')."""
    if name in _C_KEYWORDS:
        return name + "_"
    return _c_identifier(name) if name else ""


def _is_c_spelling(name: str, words: frozenset[str]) -> bool:
    parts = name.split()
    return bool(parts) and all(w in words for w in parts)


def _int_of_size(size: int, signed: bool, what: str) -> str:
    base = _INT_BY_SIZE.get(size)
    if base is None:
        raise BTFError(f"{what!r}: no C integer type has {size} bytes")
    return ("signed " if signed else "unsigned ") + base


class _Names:
    """The C name of every named type, unique in its C namespace, assigned in id
    order so that a type's name does not depend on what else is printed."""

    def __init__(self, records: _Records, named: Iterable[int]) -> None:
        self.records = records
        self.of: dict[int, str] = {}
        self.enumerators: dict[int, list[str]] = {}
        # integer/float types with a name C does not know -> the C type to typedef
        self.aliased: dict[int, str] = {}
        self._tags: set[str] = set(_C_KEYWORDS)
        self._idents: set[str] = set(_C_KEYWORDS)
        names, kinds = records.names, records.kinds
        always = (_ENUM, _ENUM64, _TYPEDEF, _FWD)
        of, tags, idents = self.of, self._tags, self._idents
        for t in named:
            name = names[t]
            kind = kinds[t]
            # (_assign, inlined for the names that are C already and not taken)
            if kind == _STRUCT or kind == _UNION:
                if not name:
                    continue
                if name not in tags and name.isidentifier() and name.isascii():
                    tags.add(name)
                    of[t] = name
                    continue
            elif kind == _TYPEDEF:
                if name not in idents and name.isidentifier() and name.isascii():
                    idents.add(name)
                    of[t] = name
                    continue
            elif not name and kind not in always:
                continue
            self._assign(t)

    def __call__(self, t: int) -> str:
        """The name `t` is written with (types of a base spec get one late)."""
        name = self.of.get(t)
        if name is None:
            self._assign(t)
            name = self.of.get(t, "")
        return name

    def enumerators_of(self, t: int) -> list[str]:
        if t not in self.enumerators:
            self._assign(t)
        return self.enumerators[t]

    def _assign(self, t: int) -> None:
        tags, idents = self._tags, self._idents
        records = self.records
        kind, name = records.kinds[t], records.names[t]
        if kind == _STRUCT or kind == _UNION:
            self.of[t] = _unique_identifier(name, tags)
        elif kind == _ENUM or kind == _ENUM64:
            offsets = records.enum_values(t)[0]
            if name:  # an enum without values only refers to the tag
                ident = _c_identifier(name)
                self.of[t] = _unique(ident, tags) if offsets else ident
            found = list(map(records.strings_get, offsets))
            # (checked all at once: almost always C identifiers, new and distinct)
            if None not in found and idents.isdisjoint(found) \
                    and len(set(found)) == len(found) \
                    and all(map(str.isidentifier, found)) and "".join(found).isascii():  # type: ignore[arg-type]
                idents.update(found)  # type: ignore[arg-type]
                self.enumerators[t] = found  # type: ignore[assignment]
            else:
                string = records.string
                self.enumerators[t] = [_unique_identifier(string(off), idents) for off in offsets]
        elif kind == _TYPEDEF:
            self.of[t] = _unique_identifier(name, idents)
        elif kind == _FWD:
            self.of[t] = _c_identifier(name)
        elif kind == _INT or kind == _FLOAT:
            self._assign_base(t, kind, name)

    def _assign_base(self, t: int, kind: int, name: str) -> None:
        size = self.records.sts[t]
        if kind == _INT:
            if _is_c_spelling(name, _INT_WORDS):
                self.of[t] = name
                return
            encoding = self.records.int_encoding(t)
            if encoding & _INT_BOOL and size == 1:
                self.aliased[t] = "_Bool"
            elif encoding & _INT_CHAR and size == 1:
                self.aliased[t] = "char"
            else:
                self.aliased[t] = _int_of_size(size, bool(encoding & _INT_SIGNED), name)
        else:
            if _is_c_spelling(name, _FLOAT_WORDS):
                self.of[t] = name
                return
            spelling = _FLOAT_BY_SIZE.get(size)
            if spelling is None:
                raise BTFError(f"{name!r}: no C floating-point type has {size} bytes")
            self.aliased[t] = spelling
        self.of[t] = _unique(_c_identifier(name), self._idents)


def _unique_identifier(name: str, taken: set[str]) -> str:
    """_unique(_c_identifier(name), taken)."""
    if name not in taken and name.isidentifier() and name.isascii():
        taken.add(name)
        return name
    return _unique(_c_identifier(name), taken)


def _unique(name: str, taken: set[str]) -> str:
    if name in taken:
        n = 2
        while f"{name}___{n}" in taken:
            n += 1
        name = f"{name}___{n}"
    taken.add(name)
    return name


class _Shape:
    """How a struct or union is written: packed or not, an explicit alignment, the
    bytes an unnamed member must cover to give a union its size, and its
    alignment in the header."""

    __slots__ = ("align", "aligned_attr", "packed", "union_fill")

    def __init__(self, packed: bool, align: int, aligned_attr: int = 0,
                 union_fill: int = 0) -> None:
        self.packed = packed
        self.align = align
        self.aligned_attr = aligned_attr
        self.union_fill = union_fill


# The shapes of most records (shapes are never changed once made).
_PACKED = _Shape(True, 1)
_PLAIN = {a: _Shape(False, a) for a in (1, 2, 4, 8, 16)}


class _Layout:
    """Sizes and alignments as clang gives them to the printed header with
    `-target bpf` (pointers and longs of 8 bytes, `__int128` aligned to 16; a
    named bitfield aligns its record like its declared type; unnamed ones do not).
    Everything is memoized by type id."""

    def __init__(self, records: _Records) -> None:
        self.records = records
        self.shapes: dict[int, _Shape] = {}
        # sizes and alignments in bits, memoized together
        self.size_bits: dict[int, int] = {}
        self.align_bits: dict[int, int] = {}

    def fill(self, t: int, depth: int = 0) -> int:
        """Memoize the size and alignment of `t`; returns its alignment in bits."""
        k = self.records.cat[t]
        if k == _K_PTR:
            a = size = _POINTER_SIZE
        elif k == _K_NUMBER or k == _K_ENUM:
            a = size = self.records.sts[t]
            if size not in (1, 2, 4, 8, 16):
                a = 1
        elif k == _K_COMPOSITE:
            a = self.shape(t, depth + 1).align
            size = self.records.sts[t]
        elif (k == _K_TYPEDEF or k == _K_QUAL) and self.records.sts[t] in self.align_bits:
            target = self.records.sts[t]  # (those of what it names, known)
            a8 = self.size_bits[t] = self.size_bits[target]
            a8 = self.align_bits[t] = self.align_bits[target]
            return a8
        else:
            a = self._align(t, depth)
            size = self._size(t)
        self.size_bits[t] = 8 * size
        self.align_bits[t] = 8 * a
        return 8 * a

    def _size(self, t: int) -> int:
        records = self.records
        cat, sts = records.cat, records.sts
        n = 1
        for _ in range(_MAX_CHAIN):
            k = cat[t]
            if k == _K_ARRAY:
                t, nelems = records.array(t)
                n *= nelems
            elif k == _K_TYPEDEF or k == _K_QUAL:
                t = sts[t]
            elif k == _K_PTR:
                return n * _POINTER_SIZE
            elif k == _K_NUMBER or k == _K_ENUM or k == _K_COMPOSITE:
                return n * sts[t]
            else:
                return 0
        raise BTFError(f"type reference loop computing the size of {records.describe(t)}")

    def _align(self, t: int, depth: int) -> int:
        records = self.records
        cat, sts = records.cat, records.sts
        for _ in range(_MAX_CHAIN):
            k = cat[t]
            if k == _K_TYPEDEF or k == _K_QUAL:
                t = sts[t]
            elif k == _K_ARRAY:
                t = records.array(t)[0]
            elif k == _K_PTR:
                return _POINTER_SIZE
            elif k == _K_NUMBER or k == _K_ENUM:
                size = sts[t]
                return size if size in (1, 2, 4, 8, 16) else 1
            elif k == _K_COMPOSITE:
                return self.shape(t, depth + 1).align
            else:
                return 1
        raise BTFError(f"type reference loop computing the alignment of {records.describe(t)}")

    def shape(self, t: int, depth: int = 0) -> _Shape:
        shape = self.shapes.get(t)
        if shape is None:
            if depth > _MAX_DEPTH:
                raise BTFError(f"types nest too deeply at {self.records.describe(t)}")
            shape = self.shapes[t] = self._compute_shape(t, depth)
        return shape

    def _compute_shape(self, t: int, depth: int) -> _Shape:
        records = self.records
        _, types, offsets, bitfields = records._members.get(t) or records.members(t)
        return self.shape_from(t, types, offsets, bitfields, depth, 8, False, 0)

    def shape_from(self, t: int, types: list[int], offsets: list[int],
                   bitfields: list[int] | None, depth: int, align: int, misplaced: bool,
                   end: int) -> _Shape:
        """The shape of `t` from the members of `types` at `offsets` on, those before
        them needing an alignment of `align` bits, misplaced for it or not (all bits
        here), and ending at bit `end`."""
        align_bits, size_bits = self.align_bits, self.size_bits
        if bitfields is None:
            for mtype, off in zip(types, offsets):  # noqa: B905 (as long)
                a = align_bits.get(mtype)
                if a is None:
                    a = self.fill(mtype, depth)
                if a > align:
                    align = a
                if off % a:
                    misplaced = True
                e = off + size_bits[mtype]
                if e > end:
                    end = e
        else:
            for mtype, off, bits in zip(types, offsets, bitfields):  # noqa: B905 (as long)
                a = align_bits.get(mtype)
                if a is None:
                    a = self.fill(mtype, depth)
                if a > align:
                    align = a
                if bits:
                    # a bitfield sits inside one aligned storage unit of its type
                    if off % a + bits > size_bits[mtype]:
                        misplaced = True
                    e = off + bits
                else:
                    if off % a:
                        misplaced = True
                    e = off + size_bits[mtype]
                if e > end:
                    end = e
        return self.finish_shape(t, align, misplaced, end)

    def finish_shape(self, t: int, align: int, misplaced: bool, end: int) -> _Shape:
        """The shape of a record whose members need an alignment of `align` bits, are
        misplaced for it or not, and end at bit `end`."""
        align //= 8
        t_size = self.records.sts[t]
        if misplaced or t_size % align:
            return _PACKED
        used = -(-end // 8)  # (bytes: _roundup, inlined)
        if self.records.kinds[t] == _UNION and -(-used // align) * align < t_size:
            return self._grown_union(t_size, used, align)
        shape = _PLAIN.get(align)
        return shape if shape is not None else _Shape(False, align)

    @staticmethod
    def _grown_union(size: int, used: int, align: int) -> _Shape:
        """A union that BTF says is bigger than its members (an aligned attribute
        in the source, or members BTF cannot describe)."""
        if size <= 8:  # an unnamed bitfield member is as wide as it says
            return _Shape(False, align, union_fill=size)
        wanted = _alignment_for_size(used, size)
        if wanted:
            return _Shape(False, wanted, aligned_attr=wanted)
        return _Shape(False, align, union_fill=size)


def _alignment_for_size(used: int, size: int) -> int:
    """The power of two that rounds `used` bytes up to `size`, or 0."""
    a = 1
    while a <= size:
        if _roundup(used, a) == size:
            return a
        a *= 2
    return 0


def _padding(cur: int, end: int, lvl: int) -> list[str]:
    """Unnamed bitfields covering bits [cur, end), each in one storage unit of
    its type, so that clang places each where the previous one ended."""
    lines: list[str] = []
    pad = _tabs(lvl)
    while cur < end:
        if cur % 64 == 0 and (end - cur) // 64 > _BIG_GAP:
            nbytes = (end - cur) // 64 * 8
            lines.append(f"\n{pad}unsigned char __pad_{cur // 8}[{nbytes}];")
            cur += nbytes * 8
            continue
        bits = min(end - cur, 64 - cur % 64)
        # (the narrowest type whose storage unit holds the bits)
        if cur % 8 + bits <= 8:
            name = "char"
        elif cur % 16 + bits <= 16:
            name = "short"
        elif cur % 32 + bits <= 32:
            name = "int"
        else:
            name = "long"  # (bits never cross a 64-bit unit)
        lines.append(f"\n{pad}{name}: {bits};")
        cur += bits
    return lines


def _union_filler(size: int, lvl: int) -> str:
    if size <= 8:
        return f"\n{_tabs(lvl)}long: {8 * size};"
    return f"\n{_tabs(lvl)}unsigned char __size[{size}];"


class _Emitter:
    """Writes each type after what it needs (see the module docstring)."""

    def __init__(self, records: _Records, names: _Names) -> None:
        self.records = records
        self.cat, self.sts, self.kinds = records.cat, records.sts, records.kinds
        self.names = names
        self._names_of = names.of  # (names.__call__ for the names assigned already)
        self.layout = _Layout(records)
        self._members = records._members  # (memo of records.members, read directly)
        self.out: list[str] = []
        self.printed: set[int] = set()  # definitions and typedefs written
        self.forward: set[int] = set()  # struct/union tags declared ahead
        self.ready: set[int] = set()  # typedefs whose target is complete too
        self.busy: set[int] = set()  # being prepared (to catch loops)
        self.inlined: set[int] = set()  # anonymous enums already written out
        # types for which need_value has nothing left to do (short cuts for members)
        self.complete: set[int] = set()
        self.scope: list[int] = []  # the definitions being prepared, innermost last (-1: none)
        self.pending_enums: list[int] = []
        # prototypes whose return and parameter types were made nameable, by the depth
        # of that walk (a walk from no deeper has nothing left to do)
        self._protos_walked: dict[int, int] = {}
        self._scope_skips = 0  # tags left undeclared because their definition was next
        # Declarators of types whose text depends on nothing else (no anonymous struct,
        # union or enum written inline): id -> (before, after, nesting depth), for a
        # non-empty declared name and for none.
        self._declarators: dict[int, tuple[str, str, int]] = {}
        self._abstract: dict[int, tuple[str, str, int]] = {}
        # the lines of members whose declarators nest 0 (`_member_decl`), by level
        self._member_lines: list[dict[int, tuple[str, str, int, int]]] = []
        self._inline_written = 0  # anonymous types written inline so far
        self._deepest = 0  # the deepest declarator nesting reached

    # -- what to write ---------------------------------------------------------------

    def write_all(self, types: Iterable[int]) -> None:
        # (write(t, explicit=False) for each, inlined)
        cat, names, complete = self.cat, self.records.names, self.complete
        need_value, pending = self.need_value, self.pending_enums
        for t in types:
            k = cat[t]
            if k == _K_ENUM and not names[t]:
                pending.append(t)
            elif t not in complete and (k == _K_TYPEDEF or k == _K_ENUM or k == _K_FWD or (
                    k == _K_COMPOSITE and names[t])):
                need_value(t, 0)
        for e in self.pending_enums:  # anonymous enums no declaration held: their constants
            if e not in self.inlined:
                self.inlined.add(e)
                self._put(self._enum_text(e, 0))

    def write(self, t: int, explicit: bool) -> None:
        """Write `t` as a top-level declaration, with what it needs before it."""
        k = self.cat[t]
        named = bool(self.records.names[t])
        if k == _K_ENUM and not named:
            if explicit and t not in self.inlined:
                self.inlined.add(t)
                self._put(self._enum_text(t, 0))
            elif not explicit:
                self.pending_enums.append(t)
        elif explicit or k == _K_TYPEDEF or k == _K_ENUM or k == _K_FWD or (
                k == _K_COMPOSITE and named):
            self.need_value(t, 0)

    def _put(self, declaration: str) -> None:
        self.out.append(declaration + ";\n\n")

    # -- needs -----------------------------------------------------------------------

    def need_value(self, t: int, depth: int) -> None:
        """Make `t` complete: usable as a member or an array element."""
        if depth > _MAX_DEPTH:
            raise BTFError(f"types nest too deeply at {self.records.describe(t)}")
        cat, sts = self.cat, self.sts
        outer = t  # (an array or a qualified type: complete when its element is)
        k = cat[t]
        if k == _K_QUAL or k == _K_ARRAY:
            for _ in range(_MAX_CHAIN):
                k = cat[t]
                if k == _K_QUAL:
                    t = sts[t]
                elif k == _K_ARRAY:
                    t = self.records.array(t)[0]
                else:
                    break
            else:
                raise BTFError(f"type reference loop at {self.records.describe(t)}")
        if k == _K_TYPEDEF:
            if t not in self.ready:
                self.need_value(sts[t], depth + 1)
                self.declare_typedef(t, depth + 1)
                self.ready.add(t)
                self.complete.add(t)
        elif k == _K_PTR:
            target = sts[t]
            self.need_name(target, depth + 1)
            if (target in self.printed or target in self.forward
                    or target in self.complete or not target):
                # need_name of a declared name, of a complete type or of void returns
                self.complete.add(t)
        elif k == _K_COMPOSITE:
            if self.records.names[t]:
                if t not in self.printed:
                    self.define(t, depth + 1)
            else:
                self._need_members(t, depth)
        else:
            self.need_leaf(t, depth + 1)
        if outer != t and t in self.complete:
            self.complete.add(outer)

    def _need_members(self, t: int, depth: int) -> None:
        """need_value(member type, depth + 1) for each member, but for those that have
        nothing left to do (at a depth where need_value would not refuse them, nor
        need_name below it)."""
        need_value = self.need_value
        found = self._members.get(t)
        types = (found or self.records.members(t))[1]
        if depth + 2 <= _MAX_DEPTH:
            # (filterfalse tests each member when the loop reaches it)
            for mtype in filterfalse(self.complete.__contains__, types):
                need_value(mtype, depth + 1)
        else:
            for mtype in types:
                need_value(mtype, depth + 1)

    def need_name(self, t: int, depth: int) -> None:
        """Make `t` nameable: usable behind a pointer or in a prototype."""
        if depth > _MAX_DEPTH:
            raise BTFError(f"types nest too deeply at {self.records.describe(t)}")
        cat, sts = self.cat, self.sts
        k = cat[t]
        if k == _K_PTR or k == _K_QUAL:
            for _ in range(_MAX_CHAIN - 1):
                t = sts[t]
                k = cat[t]
                if k != _K_PTR and k != _K_QUAL:
                    break
            else:
                raise BTFError(f"type reference loop at {self.records.describe(sts[t])}")
        if k == _K_COMPOSITE:
            if not self.records.names[t]:
                for mtype in self.records.members(t)[1]:
                    self.need_value(mtype, depth + 1)
            elif t not in self.printed and t not in self.forward:
                if self.scope and self.scope[-1] == t:
                    self._scope_skips += 1  # (declared by its definition, next)
                else:
                    self.forward.add(t)
                    self._put(self._tag(t))
        elif k == _K_TYPEDEF:
            if t not in self.printed:
                self.declare_typedef(t, depth + 1)
        elif k == _K_ARRAY:
            self.need_value(self.records.array(t)[0], depth + 1)
        # (need_leaf has nothing to do for void, a complete type, or a prototype
        # walked from no deeper)
        elif t and t not in self.complete and (
                k != _K_PROTO or depth + 1 > self._protos_walked.get(t, -1)):
            self.need_leaf(t, depth + 1)

    def need_leaf(self, t: int, depth: int) -> None:
        """Enums, forward declarations, base types and prototypes."""
        k = self.cat[t]
        if k == _K_PROTO:
            walked = self._protos_walked.get(t)
            if walked is not None and depth <= walked:
                return  # (the same walk again would do nothing, nor nest deeper)
            skips = self._scope_skips
            self.need_name(self.sts[t], depth + 1)
            for _, ptype in self.records.params(t):
                self.need_name(ptype, depth + 1)
            if self._scope_skips == skips:  # (else a later walk may declare a tag)
                self._protos_walked[t] = depth
        elif t in self.printed:
            return
        elif k == _K_ENUM:
            if self.records.names[t]:
                self.printed.add(t)
                self._put(self._enum_text(t, 0))
            self.complete.add(t)
        elif k == _K_FWD:
            self.printed.add(t)
            self._put(self._tag(t))
            self.complete.add(t)
        elif k == _K_NUMBER:
            name = self._names_of.get(t) or self.names(t)
            alias = self.names.aliased.get(t)
            if alias is not None:
                self.printed.add(t)
                self._put(f"typedef {alias} {name}")
            self.complete.add(t)

    def define(self, t: int, depth: int) -> None:
        """Write the definition of a named struct or union after what it holds."""
        if t in self.printed:
            return
        if t in self.busy:
            keyword = "union" if self.kinds[t] == _UNION else "struct"
            raise BTFError(f"{keyword} {self.records.names[t]} contains itself by value")
        self.busy.add(t)
        self.scope.append(t)
        self._need_members(t, depth)
        self.scope.pop()
        self.busy.discard(t)
        self.printed.add(t)
        self.complete.add(t)
        self.out += (self._composite_text(t, 0, depth), ";\n\n")  # (_put)
        del self._members[t]  # (written once: its memory serves the records after it)

    def declare_typedef(self, t: int, depth: int) -> None:
        if t in self.printed:
            return
        if t in self.busy:
            raise BTFError(f"typedef {self.records.names[t]!r} refers to itself")
        self.busy.add(t)
        self.scope.append(-1)
        self.need_name(self.sts[t], depth + 1)
        self.scope.pop()
        self.busy.discard(t)
        self.printed.add(t)
        self.out += (self._typedef_text(t), ";\n\n")  # (_put)

    # -- text ------------------------------------------------------------------------

    def _tag(self, t: int) -> str:
        kind = self.kinds[t]
        if kind == _FWD:
            keyword = "union " if self.records.kflags[t] else "struct "
            return keyword + (self._names_of.get(t) or self.names(t))
        keyword = "union" if kind == _UNION else "struct"
        if not self.records.names[t]:
            return keyword
        return f"{keyword} {self._names_of.get(t) or self.names(t)}"

    def _typedef_text(self, t: int) -> str:
        name = self._names_of.get(t) or self.names(t)
        if self.sts[t] == 0 and name.endswith("va_list"):
            # BTF from pahole has no way to say __builtin_va_list and says void
            return f"typedef __builtin_va_list {name}"
        return "typedef " + self._declare(self.sts[t], name, 0, 0)

    def _enum_text(self, t: int, lvl: int) -> str:
        records = self.records
        head = f"enum {self._names_of.get(t) or self.names(t)}" if records.names[t] else "enum"
        values = records.enum_values(t)[1]
        if not values:
            return head
        names = self.names.enumerators_of(t)
        signed = bool(records.kflags[t])
        # (unsigned values are read unsigned: they need no mask)
        suffix = ("LL" if signed else "ULL") if self.kinds[t] == _ENUM64 else ""
        line = f"\n{_tabs(lvl + 1)}{{}} = {{}}{suffix},"
        if len(names) != len(values):
            raise BTFError(f"internal error: enumerators of {records.describe(t)}")
        lines = [head, " {", *map(line.format, names, values), "\n" + _tabs(lvl) + "}"]
        size = self.sts[t]
        mode = _ENUM_MODE.get(size)
        if mode is None and size == 8 and not any(_needs_64_bits(signed, v) for v in values):
            mode = "word"  # 32-bit values would give a 4-byte enum
        if mode is not None:
            lines.append(f" __attribute__((mode({mode})))")
        return "".join(lines)

    def _composite_text(self, t: int, lvl: int, depth: int) -> str:
        if depth > _MAX_DEPTH:
            raise BTFError(f"anonymous types nest too deeply at {self.records.describe(t)}")
        layout = self.layout
        shape = layout.shapes.get(t)
        is_struct = self.kinds[t] == _STRUCT
        keyword = "struct" if is_struct else "union"
        # (_tag, inlined)
        lines = [f"{keyword} {self._names_of.get(t) or self.names(t)}" if self.records.names[t]
                 else keyword, " {"]
        append = lines.append
        pad = "\n" + _TABS[lvl + 1]  # (depth checked: lvl <= depth + 1)
        align_bits, size_bits = layout.align_bits, layout.size_bits  # (of every member)
        member_decl = self._member_decl
        inner_lvl, inner_depth = lvl + 1, depth + 1
        lines_at = self._member_lines
        if inner_depth > _MAX_DEPTH:
            fast: dict[int, tuple[str, str, int, int]] = {}
        elif inner_lvl < len(lines_at):
            fast = lines_at[inner_lvl]
        else:
            fast = self._member_lines_at(inner_lvl)
        found = self._members.get(t)
        names, types, offsets, bitfields = found or self.records.members(t)
        cur = 0
        members: Iterator[tuple[str, int, int]] = zip(names, types, offsets)  # noqa: B905
        if shape is None and is_struct and bitfields is None:
            # Up to the first gap (where packing would matter), the shape is computed
            # with the text, from the alignments of the members written.
            align, misplaced = 8, False
            for name, mtype, off in members:
                if off != cur:
                    # (the rest of the shape from the state of those written, one line each)
                    start = len(lines) - 2
                    shape = layout.shapes[t] = layout.shape_from(
                        t, types[start:], offsets[start:], None, 0, align, misplaced, cur)
                    members = chain(((name, mtype, off),), members)
                    break
                hit = fast.get(mtype)
                if hit is not None and name:
                    append(hit[0] + name + hit[1])
                    cur = off + hit[2]
                    a = hit[3]
                else:
                    a = align_bits.get(mtype) or layout.fill(mtype, 0)
                    append(pad + member_decl(name, mtype, inner_lvl, inner_depth, fast) + ";")
                    cur = off + size_bits[mtype]
                if a > align:
                    align = a
                if off % a:
                    misplaced = True
            else:
                shape = layout.shapes[t] = layout.finish_shape(t, align, misplaced, cur)
        elif shape is None and bitfields is None:
            # a union: its shape with the text of all its members
            align, misplaced, end = 8, False, 0
            for name, mtype, off in members:
                hit = fast.get(mtype)
                if hit is not None and name:
                    append(hit[0] + name + hit[1])
                    e = off + hit[2]
                    a = hit[3]
                else:
                    a = align_bits.get(mtype) or layout.fill(mtype, 0)
                    append(pad + member_decl(name, mtype, inner_lvl, inner_depth, fast) + ";")
                    e = off + size_bits[mtype]
                if e > end:
                    end = e
                if a > align:
                    align = a
                if off % a:
                    misplaced = True
            shape = layout.shapes[t] = layout.finish_shape(t, align, misplaced, end)
        if shape is None:
            shape = layout.shape(t)
        packed = shape.packed
        if bitfields is None:
            for name, mtype, off in members:
                if off > cur and is_struct:
                    # where clang would put the member after bit `cur`
                    unit = 8 if packed else align_bits[mtype]
                    if -(-cur // unit) * unit != off:
                        lines.extend(_padding(cur, off, inner_lvl))
                hit = fast.get(mtype)
                if hit is not None and name:
                    append(hit[0] + name + hit[1])
                    cur = off + hit[2]
                else:
                    append(pad + member_decl(name, mtype, inner_lvl, inner_depth, fast) + ";")
                    cur = off + size_bits[mtype]
        else:
            for name, mtype, off, bits in zip(names, types, offsets, bitfields):  # noqa: B905
                if off > cur and is_struct:
                    if packed:
                        natural = cur if bits else -(-cur // 8) * 8
                    else:
                        unit = align_bits[mtype]
                        natural = cur if bits and cur % unit + bits <= size_bits[mtype] else (
                            -(-cur // unit) * unit)
                    if natural != off:
                        lines.extend(_padding(cur, off, inner_lvl))
                if bits:
                    append(f"{pad}{member_decl(name, mtype, inner_lvl, inner_depth, fast)}: "
                           f"{bits};")
                    cur = off + bits
                    continue
                hit = fast.get(mtype)
                if hit is not None and name:
                    append(hit[0] + name + hit[1])
                    cur = off + hit[2]
                else:
                    append(pad + member_decl(name, mtype, inner_lvl, inner_depth, fast) + ";")
                    cur = off + size_bits[mtype]
        if names and inner_depth > self._deepest:
            self._deepest = inner_depth  # (what the members written from `fast` reach)
        end = 8 * self.sts[t]
        if is_struct and cur < end and -(-cur // (8 * shape.align)) * 8 * shape.align != end:
            lines.extend(_padding(cur, end, lvl + 1))
        elif shape.union_fill:
            append(_union_filler(shape.union_fill, lvl + 1))
        append("\n" + _TABS[lvl] + "}" if len(lines) > 2 else "}")
        if packed:
            append(" __attribute__((packed))")
        elif shape.aligned_attr:
            append(f" __attribute__((aligned({shape.aligned_attr})))")
        return "".join(lines)

    def _member_lines_at(self, lvl: int) -> dict[int, tuple[str, str, int, int]]:
        lines_at = self._member_lines
        while len(lines_at) <= lvl:
            lines_at.append({})
        return lines_at[lvl]

    def _member_decl(self, name: str, mtype: int, lvl: int, depth: int,
                     fast: dict[int, tuple[str, str, int, int]]) -> str:
        """The declaration of member `name` of type `mtype`; remembers in `fast` how to
        write it again (a line at `lvl`: before the name, after it, the bits it takes)
        when its declarator depends on nothing else and nests no deeper."""
        memo = self._declarators
        hit = memo.get(mtype) if name else None
        if hit is not None and depth + hit[2] <= _MAX_DEPTH:
            # (what _declare does for a declarator it has seen)
            if depth + hit[2] > self._deepest:
                self._deepest = depth + hit[2]
            decl = hit[0] + name + hit[1]
        else:
            decl = self._declare(mtype, name, lvl, depth)
            if name:
                hit = memo.get(mtype)
        if hit is not None and not hit[2]:
            fast[mtype] = ("\n" + (_TABS[lvl] if lvl < len(_TABS) else "\t" * lvl) + hit[0],
                           hit[1] + ";",
                           self.layout.size_bits[mtype], self.layout.align_bits[mtype])
        return decl

    def _declare(self, t: int, inner: str, lvl: int, depth: int) -> str:
        """Declare `inner` (an identifier, or "" for a type name) as having type `t`.

        The declaration is `before + inner + after`; the two parts are kept for
        types whose declaration writes no anonymous type inline (and so depends
        on nothing else), with how deep it nests (its prototypes' parameters)."""
        memo = self._declarators if inner else self._abstract
        hit = memo.get(t)
        if hit is not None and depth + hit[2] <= _MAX_DEPTH:
            if depth + hit[2] > self._deepest:
                self._deepest = depth + hit[2]
            return hit[0] + inner + hit[1]
        inline_written, deepest = self._inline_written, self._deepest
        self._deepest = depth
        try:
            before, after = self._declarator(t, inner, lvl, depth)
            nesting = self._deepest - depth
        finally:
            if deepest > self._deepest:
                self._deepest = deepest
        if self._inline_written == inline_written:
            memo[t] = (before, after, nesting)
        return before + inner + after

    def _declarator(self, t: int, inner: str, lvl: int, depth: int) -> tuple[str, str]:
        """What comes before and after `inner` in its declaration as a `t`."""
        if depth > _MAX_DEPTH:
            raise BTFError(f"declarations nest too deeply at {self.records.describe(t)}")
        if depth > self._deepest:
            self._deepest = depth
        records, cat, sts = self.records, self.cat, self.sts
        before = after = ""
        bare = not inner  # nothing declared yet: `before + inner + after` is empty
        qualified = False  # `before` starts with qualifiers of a pointer
        # qualifiers of an array, which C applies to its elements: they qualify `t`
        passed: list[int] = []
        for _ in range(_MAX_CHAIN):
            k = cat[t]
            if passed or k == _K_QUAL:
                run, below = self._qualifier_run(t)
                if passed:
                    run, passed = passed + run, []
                kb = cat[below]
                if kb == _K_PTR:
                    words = " ".join([self._qualifier_text(q) for q in reversed(run)])
                    before = words if bare else f"{words} {before}"
                    bare = False
                    t, qualified = below, True
                elif kb == _K_ARRAY:
                    elem, nelems = records.array(below)
                    present = {self.kinds[q] for q in self._qualifier_run(elem)[0]} - {_TYPE_TAG}
                    passed = [q for q in run if self.kinds[q] not in present]
                    after = f"{after}[{nelems}]"
                    bare = False
                    t, qualified = elem, False
                elif kb == _K_PROTO:  # a function type cannot be qualified
                    t = below
                else:
                    base = self._base(below, run, lvl, depth)
                    return (base, "") if bare else (f"{base} {before}", after)
            elif k == _K_PTR:
                before = ("* " if qualified else "*") + before
                bare = False
                target = sts[t]
                kt = cat[target]
                if kt == _K_QUAL:  # (most pointers point at no qualifier)
                    kt = cat[self._strip_qualifiers(target)]
                if kt == _K_ARRAY or kt == _K_PROTO:
                    before = "(" + before
                    after += ")"
                t, qualified = sts[t], False
            elif k == _K_ARRAY:
                elem, nelems = records.array(t)
                after = f"{after}[{nelems}]"
                bare = False
                t, qualified = elem, False
            elif k == _K_PROTO:
                after = f"{after}({self._params(t, lvl, depth)})"
                bare = False
                t, qualified = sts[t], False
            else:
                base = self._base(t, [], lvl, depth)
                return (base, "") if bare else (f"{base} {before}", after)
        raise BTFError(f"declaration of {before + inner + after or 'a type'} has a "
                       "reference loop")

    def _params(self, t: int, lvl: int, depth: int) -> str:
        params = self.records.params(t)
        last = len(params) - 1
        parts = []
        for i, (name, ptype) in enumerate(params):
            if i == last and ptype == 0:
                if i:
                    parts.append("...")
                break
            parts.append(self._declare(ptype, name, lvl, depth + 1))
        return ", ".join(parts) or "void"

    def _strip_qualifiers(self, t: int) -> int:
        cat, sts = self.cat, self.sts
        for _ in range(_MAX_CHAIN):
            if cat[t] != _K_QUAL:
                return t
            t = sts[t]
        raise BTFError(f"qualifier loop at {self.records.describe(t)}")

    def _qualifier_run(self, t: int) -> tuple[list[int], int]:
        """The qualifiers and type tags starting at `t`, outermost first, and the type below."""
        cat, sts = self.cat, self.sts
        run: list[int] = []
        for _ in range(_MAX_CHAIN):
            if cat[t] != _K_QUAL:
                return run, t
            run.append(t)
            t = sts[t]
        raise BTFError(f"qualifier loop at {self.records.describe(t)}")

    def _qualifier_text(self, q: int) -> str:
        word = _C_QUALIFIER.get(self.kinds[q])
        if word is not None:
            return word
        if self.records.kflags[q]:
            return f"__attribute__(({self.records.names[q]}))"
        return f'__attribute__((btf_type_tag("{self.records.names[q]}")))'

    def _base(self, t: int, qualifiers: list[int], lvl: int, depth: int) -> str:
        """The type specifier of `t` with its qualifiers (C ones before, tags after)."""
        k = self.cat[t]
        if k == _K_NUMBER or k == _K_TYPEDEF:
            text = self._names_of.get(t) or self.names(t)
        elif k == _K_COMPOSITE:
            if self.records.names[t]:
                text = self._tag(t)
            else:
                self._inline_written += 1
                text = self._composite_text(t, lvl, depth + 1)
        elif k == _K_ENUM:
            text = self._enum_base(t, lvl)
        elif k == _K_FWD:
            text = self._tag(t)
        elif k == _K_VOID:
            text = "void"
        else:  # Func, Var, Datasec, DeclTag: not types of values
            text = f"int /* {_CLASS_NAMES[self.kinds[t]]} {self.records.name_of(t)} */"
        if not qualifiers:
            return text
        kinds = self.kinds
        before = [_C_QUALIFIER[kinds[q]] for q in reversed(qualifiers)
                  if kinds[q] in _C_QUALIFIER]
        after = [self._qualifier_text(q) for q in reversed(qualifiers)
                 if kinds[q] == _TYPE_TAG]
        return " ".join([*before, text, *after])

    def _enum_base(self, t: int, lvl: int) -> str:
        if self.records.names[t]:
            return f"enum {self._names_of.get(t) or self.names(t)}"
        self._inline_written += 1  # (its spelling depends on whether it was written)
        if t in self.inlined:
            # written already: its constants cannot be defined twice, its layout can
            return _int_of_size(self.sts[t], bool(self.records.kflags[t]),
                                "anonymous enum")
        self.inlined.add(t)
        return self._enum_text(t, lvl)


def _needs_64_bits(signed: bool, value: int) -> bool:
    if signed:
        return not -(1 << 31) <= value < (1 << 31)
    return (value & 0xFFFFFFFFFFFFFFFF) >> 32 != 0


__all__ = ["dump_c"]
