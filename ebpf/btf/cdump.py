"""Print BTF as a C header that clang compiles back to the same layouts.

    open("vmlinux.h", "w").write(btf.dump_c(btf.load_kernel_spec()))

The output holds the declarations `bpftool btf dump file ... format c` prints
(tests/test_btf_cdump.py compares them), made in three independent steps:

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

Malformed BTF (a typedef or qualifier loop, a struct containing itself by value,
types nested deeper than a C compiler accepts) raises BTFError.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Sequence
from itertools import compress

from ..errors import BTFError
from .spec import Spec
from .types import (
    Array,
    Composite,
    Const,
    Enum,
    Float,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Pointer,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Void,
    Volatile,
)

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

_QUALIFIERS = (Const, Volatile, Restrict, TypeTag)
_C_QUALIFIER: dict[type[Type], str] = {Const: "const", Volatile: "volatile",
                                        Restrict: "restrict"}
_COMPOSITES = (Struct, Union)
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
# Unnamed bitfields that fill a gap: the narrowest type whose storage unit holds it.
_PAD_UNITS = ((8, "char"), (16, "short"), (32, "int"), (64, "long"))
_ENUM_MODE = {1: "byte", 2: "HI"}
_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]")
_TABS = ["\t" * i for i in range(32)]
# Kinds (as `Spec._kinds` gives them) of the types `_Names` names and `write_all` writes:
# INT, STRUCT, UNION, ENUM, FWD, TYPEDEF, FLOAT, ENUM64.
_TOP_KINDS = bytes(k in (1, 4, 5, 6, 7, 8, 16, 19) for k in range(256))
# What the printer does with a type, by its class (a subclass: as its base class).
(_K_PTR, _K_ARRAY, _K_QUAL, _K_TYPEDEF, _K_COMPOSITE, _K_ENUM, _K_FWD, _K_NUMBER, _K_PROTO,
 _K_VOID, _K_OTHER) = range(1, 12)
_CLASS_KINDS: dict[type, int] = {}
_KIND_BASES: tuple[tuple[type | tuple[type, ...], int], ...] = (
    (Pointer, _K_PTR), (Array, _K_ARRAY), (_QUALIFIERS, _K_QUAL), (Typedef, _K_TYPEDEF),
    (Composite, _K_COMPOSITE), (Enum, _K_ENUM), (Fwd, _K_FWD), ((Int, Float), _K_NUMBER),
    (FuncProto, _K_PROTO), (Void, _K_VOID))


def _class_kind(cls: type) -> int:
    """The printer's kind of the types of class `cls` (memoized in _CLASS_KINDS)."""
    kind = next((k for base, k in _KIND_BASES if issubclass(cls, base)), _K_OTHER)
    _CLASS_KINDS[cls] = kind
    return kind




def dump_c(spec: Spec, types: Iterable[Type] | None = None, *, header: bool = True) -> str:
    """A C header defining `types` (default: every type of `spec`) and everything
    they need, in an order that compiles. `header=False` leaves out the include
    guard and the `preserve_access_index` pragma. Functions and variables are
    not declared."""
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the types decoded here live as long as the spec: no garbage to find
    try:
        named = _named_types(spec)
        emitter = _Emitter(_Names(named))
        if types is None:
            emitter.write_all(named)
        else:
            for t in types:
                emitter.write(t, explicit=True)
        body = "".join(emitter.out)
    finally:
        if gc_was_enabled:
            gc.enable()
    return HEADER + body + FOOTER if header else body


def _named_types(spec: Spec) -> list[Type]:
    """The types of `spec` (not its base) that may get a C name or be written at the
    top level, in id order; the others (pointers, prototypes, functions, variables,
    ...) are only written where something refers to them, so they are decoded then."""
    spec._load_strings()  # (most names are printed)
    kinds = spec._kinds()
    first = len(spec) - len(kinds)
    ids = compress(range(first, first + len(kinds)), kinds.translate(_TOP_KINDS))
    return list(map(spec.type_by_id, ids))


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


def _int_spelling(t: Int) -> str:
    """The C spelling of an integer type of t's size and encoding."""
    if t.encoding & IntEncoding.BOOL and t.size == 1:
        return "_Bool"
    if t.encoding & IntEncoding.CHAR and t.size == 1:
        return "char"
    return _int_of_size(t.size, t.signed, t.name)


def _int_of_size(size: int, signed: bool, what: str) -> str:
    base = _INT_BY_SIZE.get(size)
    if base is None:
        raise BTFError(f"{what!r}: no C integer type has {size} bytes")
    return ("signed " if signed else "unsigned ") + base


def _float_spelling(t: Float) -> str:
    spelling = _FLOAT_BY_SIZE.get(t.size)
    if spelling is None:
        raise BTFError(f"{t.name!r}: no C floating-point type has {t.size} bytes")
    return spelling


class _Names:
    """The C name of every named type, unique in its C namespace, assigned in id
    order so that a type's name does not depend on what else is printed."""

    def __init__(self, types: Sequence[Type]) -> None:
        self.of: dict[int, str] = {}
        self.enumerators: dict[int, list[str]] = {}
        # integer/float types with a name C does not know -> the C type to typedef
        self.aliased: dict[int, str] = {}
        self._tags: set[str] = set(_C_KEYWORDS)
        self._idents: set[str] = set(_C_KEYWORDS)
        for t in types:
            if t.name or type(t) in (Enum, Typedef, Fwd):
                self._assign(t)

    def __call__(self, t: Type) -> str:
        """The name `t` is written with (types from outside the spec get one late)."""
        name = self.of.get(id(t))
        if name is None:
            self._assign(t)
            name = self.of.get(id(t), "")
        return name

    def enumerators_of(self, t: Enum) -> list[str]:
        if id(t) not in self.enumerators:
            self._assign(t)
        return self.enumerators[id(t)]

    def _assign(self, t: Type) -> None:
        tags, idents = self._tags, self._idents
        cls = type(t)
        if cls is Struct or cls is Union:
            self.of[id(t)] = _unique(_c_identifier(t.name), tags)
        elif isinstance(t, Enum):
            if t.name:  # an enum without values only refers to the tag
                ident = _c_identifier(t.name)
                self.of[id(t)] = _unique(ident, tags) if t.values else ident
            self.enumerators[id(t)] = [_unique(_c_identifier(v.name), idents) for v in t.values]
        elif cls is Typedef:
            self.of[id(t)] = _unique(_c_identifier(t.name), idents)
        elif cls is Fwd:
            self.of[id(t)] = _c_identifier(t.name)
        elif cls is Int or cls is Float:
            self._assign_base(t)

    def _assign_base(self, t: Type) -> None:
        if isinstance(t, Int):
            if _is_c_spelling(t.name, _INT_WORDS):
                self.of[id(t)] = t.name
                return
            self.aliased[id(t)] = _int_spelling(t)
        elif isinstance(t, Float):
            if _is_c_spelling(t.name, _FLOAT_WORDS):
                self.of[id(t)] = t.name
                return
            self.aliased[id(t)] = _float_spelling(t)
        self.of[id(t)] = _unique(_c_identifier(t.name), self._idents)


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


class _Layout:
    """Sizes and alignments as clang gives them to the printed header with
    `-target bpf` (pointers and longs of 8 bytes, `__int128` aligned to 16; a
    named bitfield aligns its record like its declared type; unnamed ones do not).
    Everything is memoized by the type object (every type asked about lives in the
    spec being dumped)."""

    def __init__(self) -> None:
        self._shapes: dict[int, _Shape] = {}
        self._sizes: dict[int, int] = {}
        self._aligns: dict[int, int] = {}

    def size(self, t: Type) -> int:
        size = self._sizes.get(id(t))
        if size is None:
            size = self._sizes[id(t)] = self._size(t)
        return size

    @staticmethod
    def _size(t: Type) -> int:
        n = 1
        for _ in range(_MAX_CHAIN):
            k = _CLASS_KINDS.get(type(t)) or _class_kind(type(t))
            if k == _K_ARRAY:
                assert isinstance(t, Array)
                n *= t.nelems
                t = t.type
            elif k == _K_TYPEDEF or k == _K_QUAL:
                t = t.type  # type: ignore[attr-defined]
            elif k == _K_PTR:
                return n * _POINTER_SIZE
            elif k == _K_NUMBER or k == _K_ENUM or k == _K_COMPOSITE:
                return n * t.size  # type: ignore[attr-defined, no-any-return]
            else:
                return 0
        raise BTFError(f"type reference loop computing the size of {t!r}")

    def align(self, t: Type, depth: int = 0) -> int:
        a = self._aligns.get(id(t))
        if a is None:
            a = self._aligns[id(t)] = self._align(t, depth)
        return a

    def _align(self, t: Type, depth: int) -> int:
        for _ in range(_MAX_CHAIN):
            k = _CLASS_KINDS.get(type(t)) or _class_kind(type(t))
            if k == _K_TYPEDEF or k == _K_ARRAY or k == _K_QUAL:
                t = t.type  # type: ignore[attr-defined]
            elif k == _K_PTR:
                return _POINTER_SIZE
            elif k == _K_NUMBER or k == _K_ENUM:
                size: int = t.size  # type: ignore[attr-defined]
                return size if size in (1, 2, 4, 8, 16) else 1
            elif k == _K_COMPOSITE:
                assert isinstance(t, Composite)
                return self.shape(t, depth + 1).align
            else:
                return 1
        raise BTFError(f"type reference loop computing the alignment of {t!r}")

    def shape(self, t: Composite, depth: int = 0) -> _Shape:
        shape = self._shapes.get(id(t))
        if shape is None:
            if depth > _MAX_DEPTH:
                raise BTFError(f"types nest too deeply at {t!r}")
            shape = self._shapes[id(t)] = self._compute_shape(t, depth)
        return shape

    def _compute_shape(self, t: Composite, depth: int) -> _Shape:
        align = 1
        misplaced = False
        end = 0
        aligns, sizes = self._aligns, self._sizes
        for m in t.members:
            mtype = m.type
            a = aligns.get(id(mtype)) or self.align(mtype, depth)
            if a > align:
                align = a
            off, bits = m.offset_bits, m.bitfield_size
            size = sizes.get(id(mtype))
            if size is None:
                size = self.size(mtype)
            if bits:
                # a bitfield sits inside one aligned storage unit of its type
                misplaced |= off % (8 * a) + bits > 8 * size
                end = max(end, off + bits)
            else:
                misplaced |= off % (8 * a) != 0
                end = max(end, off + 8 * size)
        if misplaced or t.size % align:
            return _Shape(True, 1)
        used = _roundup(end, 8) // 8
        if isinstance(t, Union) and _roundup(used, align) < t.size:
            return self._grown_union(t.size, used, align)
        return _Shape(False, align)

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

    def natural_offset(self, cur: int, t: Type, bits: int, packed: bool) -> int:
        """Where clang puts a member of type `t` (a bitfield of `bits`, or not)
        that follows bit `cur`."""
        if packed:
            return cur if bits else _roundup(cur, 8)
        unit = 8 * self.align(t)
        if bits and cur % unit + bits <= 8 * self.size(t):
            return cur
        return _roundup(cur, unit)


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
        name = next(n for unit, n in _PAD_UNITS if cur % unit + bits <= unit)
        lines.append(f"\n{pad}{name}: {bits};")
        cur += bits
    return lines


def _union_filler(size: int, lvl: int) -> str:
    if size <= 8:
        return f"\n{_tabs(lvl)}long: {8 * size};"
    return f"\n{_tabs(lvl)}unsigned char __size[{size}];"


class _Emitter:
    """Writes each type after what it needs (see the module docstring)."""

    def __init__(self, names: _Names) -> None:
        self.names = names
        self.layout = _Layout()
        self.out: list[str] = []
        self.printed: set[int] = set()  # definitions and typedefs written
        self.forward: set[int] = set()  # struct/union tags declared ahead
        self.ready: set[int] = set()  # typedefs whose target is complete too
        self.busy: set[int] = set()  # being prepared (to catch loops)
        self.inlined: set[int] = set()  # anonymous enums already written out
        # types for which need_value has nothing left to do (short cuts for members)
        self.complete: set[int] = set()
        self.scope: list[Type | None] = []  # the definitions being prepared, innermost last
        self.pending_enums: list[Enum] = []
        # Declarators of types whose text depends on nothing else (no anonymous struct,
        # union or enum written inline): id -> (type, before, after, nesting depth), for
        # a non-empty declared name and for none.
        self._declarators: dict[int, tuple[Type, str, str, int]] = {}
        self._abstract: dict[int, tuple[Type, str, str, int]] = {}
        self._inline_written = 0  # anonymous types written inline so far
        self._deepest = 0  # the deepest declarator nesting reached
        self._member_names: dict[str, str] = {}

    # -- what to write ---------------------------------------------------------------

    def write_all(self, types: Iterable[Type]) -> None:
        for t in types:
            self.write(t, explicit=False)
        for e in self.pending_enums:  # anonymous enums no declaration held: their constants
            if id(e) not in self.inlined:
                self.inlined.add(id(e))
                self._put(self._enum_text(e, 0))

    def write(self, t: Type, explicit: bool) -> None:
        """Write `t` as a top-level declaration, with what it needs before it."""
        cls = type(t)
        if isinstance(t, Enum) and not t.name:
            if explicit and id(t) not in self.inlined:
                self.inlined.add(id(t))
                self._put(self._enum_text(t, 0))
            elif not explicit:
                self.pending_enums.append(t)
        elif explicit or cls is Typedef or cls is Enum or cls is Fwd or (
                cls in _COMPOSITES and t.name):
            self.need_value(t, 0)

    def _put(self, declaration: str) -> None:
        self.out.append(declaration + ";\n\n")

    # -- needs -----------------------------------------------------------------------

    def need_value(self, t: Type, depth: int) -> None:
        """Make `t` complete: usable as a member or an array element."""
        if depth > _MAX_DEPTH:
            raise BTFError(f"types nest too deeply at {t!r}")
        for _ in range(_MAX_CHAIN):
            k = _CLASS_KINDS.get(type(t)) or _class_kind(type(t))
            if k == _K_ARRAY or k == _K_QUAL:
                t = t.type  # type: ignore[attr-defined]
            elif k == _K_TYPEDEF:
                assert isinstance(t, Typedef)
                if id(t) not in self.ready:
                    self.need_value(t.type, depth + 1)
                    self.declare_typedef(t, depth + 1)
                    self.ready.add(id(t))
                    self.complete.add(id(t))
                return
            elif k == _K_PTR:
                target = t.type  # type: ignore[attr-defined]
                self.need_name(target, depth + 1)
                if id(target) in self.printed or id(target) in self.forward:
                    self.complete.add(id(t))  # (need_name of a declared name returns)
                return
            elif k == _K_COMPOSITE:
                assert isinstance(t, Composite)
                if t.name:
                    if id(t) not in self.printed:
                        self.define(t, depth + 1)
                else:
                    self._need_members(t, depth)
                return
            else:
                self.need_leaf(t, depth + 1)
                return
        raise BTFError(f"type reference loop at {t!r}")

    def _need_members(self, t: Composite, depth: int) -> None:
        """need_value(member type, depth + 1) for each member, but for those that have
        nothing left to do (at a depth where need_value would not refuse them, nor
        need_name below it)."""
        complete = self.complete
        shallow = depth + 2 <= _MAX_DEPTH
        for m in t.members:
            mtype = m.type
            if not shallow or id(mtype) not in complete:
                self.need_value(mtype, depth + 1)

    def need_name(self, t: Type, depth: int) -> None:
        """Make `t` nameable: usable behind a pointer or in a prototype."""
        if depth > _MAX_DEPTH:
            raise BTFError(f"types nest too deeply at {t!r}")
        for _ in range(_MAX_CHAIN):
            k = _CLASS_KINDS.get(type(t)) or _class_kind(type(t))
            if k == _K_PTR or k == _K_QUAL:
                t = t.type  # type: ignore[attr-defined]
            elif k == _K_TYPEDEF:
                assert isinstance(t, Typedef)
                if id(t) not in self.printed:
                    self.declare_typedef(t, depth + 1)
                return
            elif k == _K_ARRAY:
                assert isinstance(t, Array)
                self.need_value(t.type, depth + 1)
                return
            elif k == _K_COMPOSITE:
                assert isinstance(t, Composite)
                if not t.name:
                    for m in t.members:
                        self.need_value(m.type, depth + 1)
                elif id(t) not in self.printed and id(t) not in self.forward and (
                        not self.scope or self.scope[-1] is not t):
                    self.forward.add(id(t))
                    self._put(self._tag(t))
                return
            else:
                self.need_leaf(t, depth + 1)
                return
        raise BTFError(f"type reference loop at {t!r}")

    def need_leaf(self, t: Type, depth: int) -> None:
        """Enums, forward declarations, base types and prototypes."""
        key = id(t)
        if isinstance(t, FuncProto):
            self.need_name(t.return_type, depth + 1)
            for p in t.params:
                self.need_name(p.type, depth + 1)
        elif key in self.printed:
            return
        elif isinstance(t, Enum):
            if t.name:
                self.printed.add(key)
                self._put(self._enum_text(t, 0))
            self.complete.add(key)
        elif isinstance(t, Fwd):
            self.printed.add(key)
            self._put(self._tag(t))
            self.complete.add(key)
        elif isinstance(t, (Int, Float)):
            name = self.names(t)
            alias = self.names.aliased.get(key)
            if alias is not None:
                self.printed.add(key)
                self._put(f"typedef {alias} {name}")
            self.complete.add(key)

    def define(self, t: Composite, depth: int) -> None:
        """Write the definition of a named struct or union after what it holds."""
        key = id(t)
        if key in self.printed:
            return
        if key in self.busy:
            raise BTFError(f"{t.type_name} contains itself by value")
        self.busy.add(key)
        self.scope.append(t)
        self._need_members(t, depth)
        self.scope.pop()
        self.busy.discard(key)
        self.printed.add(key)
        self.complete.add(key)
        self._put(self._composite_text(t, 0, depth))

    def declare_typedef(self, t: Typedef, depth: int) -> None:
        key = id(t)
        if key in self.printed:
            return
        if key in self.busy:
            raise BTFError(f"typedef {t.name!r} refers to itself")
        self.busy.add(key)
        self.scope.append(None)
        self.need_name(t.type, depth + 1)
        self.scope.pop()
        self.busy.discard(key)
        self.printed.add(key)
        self._put(self._typedef_text(t))

    # -- text ------------------------------------------------------------------------

    def _tag(self, t: Type) -> str:
        if isinstance(t, Fwd):
            return ("union " if t.union else "struct ") + self.names(t)
        keyword = "union" if type(t) is Union else "struct"
        return f"{keyword} {self.names(t)}" if t.name else keyword

    def _typedef_text(self, t: Typedef) -> str:
        name = self.names(t)
        if type(t.type) is Void and name.endswith("va_list"):
            # BTF from pahole has no way to say __builtin_va_list and says void
            return f"typedef __builtin_va_list {name}"
        return "typedef " + self._declare(t.type, name, 0, 0)

    def _enum_text(self, t: Enum, lvl: int) -> str:
        head = f"enum {self.names(t)}" if t.name else "enum"
        if not t.values:
            return head
        pad = _tabs(lvl + 1)
        lines = [head, " {"]
        names = self.names.enumerators_of(t)
        for name, v in zip(names, t.values, strict=True):
            lines.append(f"\n{pad}{name} = {_enum_value(t, v.value)},")
        lines.append("\n" + _tabs(lvl) + "}")
        mode = _ENUM_MODE.get(t.size)
        if mode is None and t.size == 8 and not any(_needs_64_bits(t, v.value) for v in t.values):
            mode = "word"  # 32-bit values would give a 4-byte enum
        if mode is not None:
            lines.append(f" __attribute__((mode({mode})))")
        return "".join(lines)

    def _composite_text(self, t: Composite, lvl: int, depth: int) -> str:
        if depth > _MAX_DEPTH:
            raise BTFError(f"anonymous types nest too deeply at {t!r}")
        layout = self.layout
        shape = layout.shape(t)
        packed = shape.packed
        lines = [self._tag(t), " {"]
        append = lines.append
        pad = "\n" + _tabs(lvl + 1)
        is_struct = type(t) is Struct
        member_names = self._member_names
        sizes = layout._sizes
        declare = self._declare
        cur = 0
        for m in t.members:
            mtype, off, bits = m.type, m.offset_bits, m.bitfield_size
            if is_struct and off > cur and layout.natural_offset(
                    cur, mtype, bits, packed) != off:
                lines.extend(_padding(cur, off, lvl + 1))
            name = member_names.get(m.name)
            if name is None:
                name = member_names[m.name] = _member_name(m.name)
            decl = declare(mtype, name, lvl + 1, depth + 1)
            if bits:
                append(f"{pad}{decl}: {bits};")
                cur = off + bits
            else:
                append(pad + decl + ";")
                size = sizes.get(id(mtype))
                cur = off + 8 * (size if size is not None else layout.size(mtype))
        end = 8 * t.size
        if is_struct and cur < end and _roundup(cur, 8 * shape.align) != end:
            lines.extend(_padding(cur, end, lvl + 1))
        elif shape.union_fill:
            append(_union_filler(shape.union_fill, lvl + 1))
        append("\n" + _tabs(lvl) + "}" if len(lines) > 2 else "}")
        if packed:
            append(" __attribute__((packed))")
        elif shape.aligned_attr:
            append(f" __attribute__((aligned({shape.aligned_attr})))")
        return "".join(lines)

    def _declare(self, t: Type, inner: str, lvl: int, depth: int) -> str:
        """Declare `inner` (an identifier, or "" for a type name) as having type `t`.

        The declaration is `before + inner + after`; the two parts are kept for
        types whose declaration writes no anonymous type inline (and so depends
        on nothing else), with how deep it nests (its prototypes' parameters)."""
        memo = self._declarators if inner else self._abstract
        hit = memo.get(id(t))
        if hit is not None and hit[0] is t and depth + hit[3] <= _MAX_DEPTH:
            if depth + hit[3] > self._deepest:
                self._deepest = depth + hit[3]
            return hit[1] + inner + hit[2]
        inline_written, deepest = self._inline_written, self._deepest
        self._deepest = depth
        try:
            before, after = self._declarator(t, inner, lvl, depth)
            nesting = self._deepest - depth
        finally:
            self._deepest = max(deepest, self._deepest)
        if self._inline_written == inline_written:
            memo[id(t)] = (t, before, after, nesting)
        return before + inner + after

    def _declarator(self, t: Type, inner: str, lvl: int, depth: int) -> tuple[str, str]:
        """What comes before and after `inner` in its declaration as a `t`."""
        if depth > _MAX_DEPTH:
            raise BTFError(f"declarations nest too deeply at {t!r}")
        if depth > self._deepest:
            self._deepest = depth
        before = after = ""
        bare = not inner  # nothing declared yet: `before + inner + after` is empty
        qualified = False  # `before` starts with qualifiers of a pointer
        for _ in range(_MAX_CHAIN):
            k = _CLASS_KINDS.get(type(t)) or _class_kind(type(t))
            if k == _K_PTR:
                assert isinstance(t, Pointer)
                before = ("* " if qualified else "*") + before
                bare = False
                if isinstance(_strip_qualifiers(t.type), (Array, FuncProto)):
                    before = "(" + before
                    after += ")"
                t, qualified = t.type, False
            elif k == _K_ARRAY:
                assert isinstance(t, Array)
                after = f"{after}[{t.nelems}]"
                bare = False
                t, qualified = t.type, False
            elif k == _K_PROTO:
                assert isinstance(t, FuncProto)
                after = f"{after}({self._params(t, lvl, depth)})"
                bare = False
                t, qualified = t.return_type, False
            elif k == _K_QUAL:
                run, below = _qualifier_run(t)
                if type(below) is Pointer:
                    words = " ".join(self._qualifier_text(q) for q in reversed(run))
                    before = words if bare else f"{words} {before}"
                    bare = False
                    t, qualified = below, True
                elif type(below) is Array:  # C qualifies an array's elements
                    assert isinstance(below, Array)
                    t = _requalified(run, below)
                elif type(below) is FuncProto:  # a function type cannot be qualified
                    t = below
                else:
                    base = self._base(below, run, lvl, depth)
                    return (base, "") if bare else (f"{base} {before}", after)
            else:
                base = self._base(t, [], lvl, depth)
                return (base, "") if bare else (f"{base} {before}", after)
        raise BTFError(f"declaration of {before + inner + after or 'a type'} has a "
                       "reference loop")

    def _params(self, t: FuncProto, lvl: int, depth: int) -> str:
        params = t.params
        last = len(params) - 1
        parts = []
        for i, p in enumerate(params):
            if i == last and type(p.type) is Void:
                if i:
                    parts.append("...")
                break
            parts.append(self._declare(p.type, _member_name(p.name), lvl, depth + 1))
        return ", ".join(parts) or "void"

    def _qualifier_text(self, q: Type) -> str:
        word = _C_QUALIFIER.get(type(q))
        if word is not None:
            return word
        assert isinstance(q, TypeTag)
        if q.attribute:
            return f"__attribute__(({q.name}))"
        return f'__attribute__((btf_type_tag("{q.name}")))'

    def _base(self, t: Type, qualifiers: list[Type], lvl: int, depth: int) -> str:
        """The type specifier of `t` with its qualifiers (C ones before, tags after)."""
        k = _CLASS_KINDS.get(type(t)) or _class_kind(type(t))
        if k == _K_NUMBER or k == _K_TYPEDEF:
            text = self.names(t)
        elif k == _K_COMPOSITE:
            if t.name:
                text = self._tag(t)
            else:
                assert isinstance(t, Composite)
                self._inline_written += 1
                text = self._composite_text(t, lvl, depth + 1)
        elif k == _K_ENUM:
            assert isinstance(t, Enum)
            text = self._enum_base(t, lvl)
        elif k == _K_FWD:
            text = self._tag(t)
        elif k == _K_VOID:
            text = "void"
        else:  # Func, Var, Datasec, DeclTag: not types of values
            text = f"int /* {type(t).__name__} {t.name} */"
        if not qualifiers:
            return text
        before = [_C_QUALIFIER[type(q)] for q in reversed(qualifiers) if type(q) in _C_QUALIFIER]
        after = [self._qualifier_text(q) for q in reversed(qualifiers) if type(q) is TypeTag]
        return " ".join([*before, text, *after])

    def _enum_base(self, t: Enum, lvl: int) -> str:
        if t.name:
            return f"enum {self.names(t)}"
        self._inline_written += 1  # (its spelling depends on whether it was written)
        if id(t) in self.inlined:
            # written already: its constants cannot be defined twice, its layout can
            return _int_of_size(t.size, t.signed, "anonymous enum")
        self.inlined.add(id(t))
        return self._enum_text(t, lvl)


def _join(base: str, inner: str) -> str:
    return f"{base} {inner}" if inner else base


def _strip_qualifiers(t: Type) -> Type:
    for _ in range(_MAX_CHAIN):
        if not isinstance(t, _QUALIFIERS):
            return t
        t = t.type
    raise BTFError(f"qualifier loop at {t!r}")


def _qualifier_run(t: Type) -> tuple[list[Type], Type]:
    """The qualifiers and type tags starting at `t`, outermost first, and the type below."""
    run: list[Type] = []
    for _ in range(_MAX_CHAIN):
        if not isinstance(t, _QUALIFIERS):
            return run, t
        run.append(t)
        t = t.type
    raise BTFError(f"qualifier loop at {t!r}")


def _requalified(run: list[Type], array: Array) -> Array:
    """`array` with the qualifiers of `run` moved onto its element type."""
    elem = array.type
    present = {type(q) for q in _qualifier_run(elem)[0] if type(q) is not TypeTag}
    for q in reversed(run):
        if type(q) in present:
            continue
        if isinstance(q, TypeTag):
            elem = TypeTag(q.name, elem, q.attribute)
        elif isinstance(q, Const):
            elem = Const(elem)
        elif isinstance(q, Volatile):
            elem = Volatile(elem)
        else:
            elem = Restrict(elem)
    return Array(elem, array.nelems)


def _needs_64_bits(t: Enum, value: int) -> bool:
    if t.signed:
        return not -(1 << 31) <= value < (1 << 31)
    return (value & 0xFFFFFFFFFFFFFFFF) >> 32 != 0


def _enum_value(t: Enum, value: int) -> str:
    if t.is64:
        if t.signed:
            return f"{value}LL"
        return f"{value & 0xFFFFFFFFFFFFFFFF}ULL"
    return str(value if t.signed else value & 0xFFFFFFFF)


__all__ = ["dump_c"]
