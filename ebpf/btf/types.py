"""BTF types as Python objects.

Types decoded from a `Spec` resolve the types they refer to lazily, on first
access, so that looking up one type of the kernel's 100k+ does not decode the
rest. Types built by hand (to describe a map's key or value) refer to other
`Type` objects directly; `ebpf.btf.marshal` turns either kind into BTF bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import ebpf._lazyattr as _lazyattr

from ..errors import BTFError, KeyNotFoundError

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from enum import IntEnum
    from typing import ClassVar, TypeAlias

    from .intencoding import IntEncoding as IntEncoding
    from .names import _PendingMembers
    from .spec import Spec

    # A reference to another type: a Type, or (inside a Spec) a not yet resolved type id.
    Ref: TypeAlias = "Type | int"
else:
    # the same stdlib classes, made at a fraction of the cost (process start)
    from .._sys.fastclass import IntEnum


class Kind(IntEnum):
    """BTF_KIND_* values."""

    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


class Linkage(IntEnum):
    """Linkage of a FUNC (static/global/extern) or VAR (static/global/extern)."""

    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


class Type:
    """Base of all BTF types. `name` is "" for anonymous types."""

    __slots__ = ("_spec", "name")
    kind: ClassVar[Kind] = Kind.UNKN

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._spec: Spec | None = None

    def _resolve(self, ref: Ref) -> Type:
        if isinstance(ref, Type):
            return ref
        if self._spec is None:
            raise BTFError(f"{self!r} refers to type id {ref} without a BTF spec")
        return self._spec.type_by_id(ref)

    @property
    def spec(self) -> Spec | None:
        """The `Spec` this type was parsed from (its ids are that spec's); None for a
        type made by hand."""
        return self._spec

    def refs(self) -> Iterator[Type]:
        """The types this type refers to directly."""
        return iter(())

    @property
    def type_name(self) -> str:
        """A C-like description, e.g. "struct task_struct" or "int"."""
        prefix = {Kind.STRUCT: "struct ", Kind.UNION: "union ", Kind.ENUM: "enum ",
                  Kind.ENUM64: "enum "}.get(self.kind, "")
        return prefix + (self.name or "(anon)")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>" if self.name else f"<{type(self).__name__}>"


class Void(Type):
    """The void type, id 0."""

    __slots__ = ()
    kind = Kind.UNKN

    @property
    def type_name(self) -> str:
        return "void"


class Int(Type):
    """An integer type: `size` in bytes, `encoding` (signed/char/bool), `bits` and
    `offset` (bitfield-style INT)."""
    # `_encoding`: the encoding as a plain int (what the load path reads; `encoding`
    # makes the IntEncoding class on first use)
    __slots__ = ("_encoding", "bits", "offset", "size")
    kind = Kind.INT

    def __init__(self, name: str, size: int, encoding: IntEncoding | int = 0,
                 bits: int | None = None, offset: int = 0) -> None:
        super().__init__(name)
        self.size = size
        self._encoding = _raw_encoding(encoding)
        self.bits = size * 8 if bits is None else bits
        self.offset = offset

    @property
    def encoding(self) -> IntEncoding:
        """The encoding flags (signed/char/bool)."""
        from .intencoding import IntEncoding  # made on first use (process start)

        return IntEncoding(self._encoding)

    @encoding.setter
    def encoding(self, value: IntEncoding | int) -> None:
        self._encoding = _raw_encoding(value)

    @property
    def signed(self) -> bool:
        """Whether the encoding is signed."""
        return bool(self._encoding & 1)  # IntEncoding.SIGNED


def _raw_encoding(value: IntEncoding | int) -> int:
    """`value` as the int of the IntEncoding it names (invalid ones raise as the class
    does)."""
    if value.__class__ is int and 0 <= value <= 0xF:
        return value
    from .intencoding import IntEncoding  # made on first use (process start)

    return int(IntEncoding(value))


class Float(Type):
    """A floating-point type of `size` bytes."""
    __slots__ = ("size",)
    kind = Kind.FLOAT

    def __init__(self, name: str, size: int) -> None:
        super().__init__(name)
        self.size = size


class _RefType(Type):
    """A type that qualifies or names exactly one other type."""

    __slots__ = ("_type",)

    def __init__(self, type: Ref, name: str = "") -> None:
        super().__init__(name)
        self._type = type

    @property
    def type(self) -> Type:
        """The referenced type (resolved on first use)."""
        t = self._type
        if not isinstance(t, Type):
            t = self._type = self._resolve(t)
        return t

    @type.setter
    def type(self, value: Type) -> None:
        self._type = value

    def refs(self) -> Iterator[Type]:
        yield self.type


class Pointer(_RefType):
    """A pointer to `type` (8 bytes)."""
    __slots__ = ()
    kind = Kind.PTR
    size = 8

    def __init__(self, type: Ref) -> None:
        super().__init__(type)


class Typedef(_RefType):
    """A named alias of `type`."""
    __slots__ = ()
    kind = Kind.TYPEDEF

    def __init__(self, name: str, type: Ref) -> None:
        super().__init__(type, name)


class Volatile(_RefType):
    """`volatile` qualifier of `type`."""
    __slots__ = ()
    kind = Kind.VOLATILE


class Const(_RefType):
    """`const` qualifier of `type`."""
    __slots__ = ()
    kind = Kind.CONST


class Restrict(_RefType):
    """`restrict` qualifier of `type`."""
    __slots__ = ()
    kind = Kind.RESTRICT


class TypeTag(_RefType):
    """A `btf_type_tag` on the type it refers to; `attribute` (kflag) marks an
    `__attribute__((...))` rather than a tag."""

    __slots__ = ("attribute",)
    kind = Kind.TYPE_TAG

    def __init__(self, name: str, type: Ref, attribute: bool = False) -> None:
        super().__init__(type, name)
        self.attribute = attribute


class Array(Type):
    """An array of `nelems` elements of `type`, indexed by `index` (an INT)."""
    __slots__ = ("_index", "_type", "nelems")
    kind = Kind.ARRAY

    def __init__(self, type: Ref, nelems: int, index: Ref | None = None) -> None:
        super().__init__("")
        self._type = type
        self.nelems = nelems
        self._index: Ref = index if index is not None else ARRAY_INDEX

    @property
    def type(self) -> Type:
        """The element type."""
        t = self._type
        if not isinstance(t, Type):
            t = self._type = self._resolve(t)
        return t

    @property
    def index(self) -> Type:
        """The index type (an INT)."""
        t = self._index
        if not isinstance(t, Type):
            t = self._index = self._resolve(t)
        return t

    def refs(self) -> Iterator[Type]:
        yield self.type
        yield self.index


class Member:
    """A member of a struct or union; `offset_bits` from the start of the parent."""

    __slots__ = ("_owner", "_type", "bitfield_size", "name", "offset_bits")

    def __init__(self, name: str, type: Ref, offset_bits: int = 0,
                 bitfield_size: int = 0) -> None:
        self.name = name
        self._type = type
        self.offset_bits = offset_bits
        self.bitfield_size = bitfield_size
        self._owner: Type | None = None

    @property
    def type(self) -> Type:
        """The member's type (resolved on first use)."""
        t = self._type
        if not isinstance(t, Type):
            if self._owner is None:
                raise BTFError(f"member {self.name!r} refers to type id {t} without a BTF spec")
            t = self._type = self._owner._resolve(t)
        return t

    @property
    def offset(self) -> int:
        """Byte offset (bitfields: of the byte holding the first bit)."""
        return self.offset_bits // 8

    def __repr__(self) -> str:
        return f"<Member {self.name!r} @{self.offset_bits}>"


class Composite(Type):
    """Struct or union."""

    __slots__ = ("_members", "size")

    def __init__(self, name: str, size: int, members: Sequence[Member] = ()) -> None:
        super().__init__(name)
        self.size = size
        listed = list(members)
        self._members: list[Member] | _PendingMembers = listed
        for m in listed:
            m._owner = self

    @property
    def members(self) -> list[Member]:
        """The members, in declaration order."""
        m = self._members
        if not isinstance(m, list):  # decoded on first use (see `_PendingMembers`)
            m = self._members = m.all(self)
        return m

    def _member_count(self) -> int:
        m = self._members
        return len(m) if isinstance(m, list) else m.count

    def _member_at(self, n: int) -> Member:
        """Member #`n` (0 <= n < count), without decoding the others."""
        m = self._members
        return m[n] if isinstance(m, list) else m.at(self, n)

    def _positions(self, name: str) -> list[int]:
        """Positions of the members called `name` ("" for anonymous ones), in order."""
        m = self._members
        if isinstance(m, list):
            return [i for i, x in enumerate(m) if x.name == name]
        return m.positions(self, name)

    def member(self, name: str) -> Member:
        """The member called `name`, looking through anonymous struct/union members
        (its `offset_bits` is then relative to this type)."""
        found = self._find_member(name, 0)
        if found is None:
            raise KeyNotFoundError(f"{self.type_name} has no member {name!r}")
        return found

    def _find_member(self, name: str, depth: int) -> Member | None:
        members = self.members
        for m in members:
            if m.name == name:
                return m
        if depth >= MAX_DEPTH:
            raise BTFError(f"anonymous members of {self.type_name} nest too deeply")
        for m in members:
            if m.name == "":
                inner = strip_qualifiers(m.type)
                if isinstance(inner, Composite):
                    found = inner._find_member(name, depth + 1)
                    if found is not None:
                        return Member(found.name, found.type,
                                      m.offset_bits + found.offset_bits, found.bitfield_size)
        return None

    def refs(self) -> Iterator[Type]:
        for m in self.members:
            yield m.type


class Struct(Composite):
    """A struct: `size` in bytes, `members` with their bit offsets."""
    __slots__ = ()
    kind = Kind.STRUCT


class Union(Composite):
    """A union: `size` in bytes, `members` (all at offset 0 unless bitfields)."""
    __slots__ = ()
    kind = Kind.UNION


class EnumValue:
    """One enumerator of an `Enum`: `name` and `value`."""
    __slots__ = ("name", "value")

    def __init__(self, name: str, value: int) -> None:
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return f"<EnumValue {self.name}={self.value}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnumValue) and (self.name, self.value) == (other.name, other.value)

    def __hash__(self) -> int:
        return hash((self.name, self.value))


class Enum(Type):
    """An enum; it is written as ENUM64 (`is64`) when it was decoded from one, or
    when its size is 8 or a value needs more than 32 bits."""

    __slots__ = ("_is64", "signed", "size", "values")
    kind = Kind.ENUM

    def __init__(self, name: str, size: int = 4, values: Sequence[EnumValue] = (),
                 signed: bool = False) -> None:
        super().__init__(name)
        self.size = size
        self.values = list(values)
        self.signed = signed
        self._is64: bool | None = None

    @property
    def is64(self) -> bool:
        """Whether the enum is written as ENUM64 (see the class)."""
        if self._is64 is not None:
            return self._is64
        return self.size > 4 or any(not -(1 << 31) <= v.value < (1 << 32) for v in self.values)

    @is64.setter
    def is64(self, value: bool | None) -> None:
        self._is64 = value

    def value(self, name: str) -> int:
        """The value of the enumerator `name` (`KeyError` when there is none)."""
        for v in self.values:
            if v.name == name:
                return v.value
        raise KeyNotFoundError(f"{self.type_name} has no value {name!r}")


class Fwd(Type):
    """A forward declaration of a struct (or union when `union`)."""

    __slots__ = ("union",)
    kind = Kind.FWD

    def __init__(self, name: str, union: bool = False) -> None:
        super().__init__(name)
        self.union = union

    @property
    def type_name(self) -> str:
        return ("union " if self.union else "struct ") + self.name


class FuncParam:
    """A parameter of a `FuncProto`: `name` (may be empty) and `type`."""
    __slots__ = ("_owner", "_type", "name")

    def __init__(self, name: str, type: Ref) -> None:
        self.name = name
        self._type = type
        self._owner: Type | None = None

    @property
    def type(self) -> Type:
        """The parameter's type (resolved on first use)."""
        t = self._type
        if not isinstance(t, Type):
            if self._owner is None:
                raise BTFError(f"parameter {self.name!r} refers to type id {t} without a spec")
            t = self._type = self._owner._resolve(t)
        return t

    def __repr__(self) -> str:
        return f"<FuncParam {self.name!r}>"


class FuncProto(Type):
    """A function signature; a trailing parameter of type void means varargs."""

    __slots__ = ("_return", "params")
    kind = Kind.FUNC_PROTO

    def __init__(self, return_type: Ref, params: Sequence[FuncParam] = ()) -> None:
        super().__init__("")
        self._return = return_type
        self.params = list(params)
        for p in self.params:
            p._owner = self

    @property
    def return_type(self) -> Type:
        """The return type (`Void` for void)."""
        t = self._return
        if not isinstance(t, Type):
            t = self._return = self._resolve(t)
        return t

    def refs(self) -> Iterator[Type]:
        yield self.return_type
        for p in self.params:
            yield p.type


class Func(_RefType):
    """A function: `type` is its FuncProto, `linkage` static/global/extern."""

    __slots__ = ("linkage",)
    kind = Kind.FUNC

    def __init__(self, name: str, type: Ref, linkage: Linkage = Linkage.STATIC) -> None:
        super().__init__(type, name)
        self.linkage = Linkage(linkage) if linkage in (0, 1, 2) else linkage


class Var(_RefType):
    """A global variable (inside a Datasec)."""

    __slots__ = ("linkage",)
    kind = Kind.VAR

    def __init__(self, name: str, type: Ref, linkage: Linkage = Linkage.STATIC) -> None:
        super().__init__(type, name)
        self.linkage = Linkage(linkage) if linkage in (0, 1, 2) else linkage


class VarSecinfo:
    """One variable of a Datasec: its Var (or Func for externs), offset and size."""

    __slots__ = ("_owner", "_type", "offset", "size")

    def __init__(self, type: Ref, offset: int, size: int) -> None:
        self._type = type
        self.offset = offset
        self.size = size
        self._owner: Type | None = None

    @property
    def type(self) -> Type:
        """The variable (`Var`, or `Func` for an extern function)."""
        t = self._type
        if not isinstance(t, Type):
            if self._owner is None:
                raise BTFError(f"datasec entry refers to type id {t} without a spec")
            t = self._type = self._owner._resolve(t)
        return t

    @type.setter
    def type(self, value: Type) -> None:
        self._type = value

    def __repr__(self) -> str:
        return f"<VarSecinfo @{self.offset}+{self.size}>"


class Datasec(Type):
    """A data section (.data, .rodata, .bss, .kconfig, .maps, ...) and its variables."""

    __slots__ = ("size", "vars")
    kind = Kind.DATASEC

    def __init__(self, name: str, size: int = 0, vars: Sequence[VarSecinfo] = ()) -> None:
        super().__init__(name)
        self.size = size
        self.vars = list(vars)
        for v in self.vars:
            v._owner = self

    def refs(self) -> Iterator[Type]:
        for v in self.vars:
            yield v.type


class DeclTag(_RefType):
    """A `btf_decl_tag` attribute on a type, or on its member/param `component_idx`
    (-1 for the type itself)."""

    __slots__ = ("attribute", "component_idx")
    kind = Kind.DECL_TAG

    def __init__(self, name: str, type: Ref, component_idx: int = -1,
                 attribute: bool = False) -> None:
        super().__init__(type, name)
        self.component_idx = component_idx
        self.attribute = attribute


QUALIFIERS = (Volatile, Const, Restrict, TypeTag)

# How deep helpers follow type references before deciding the types are cyclic.
MAX_DEPTH = 64

# The index type of arrays built by hand (shared, so a writer emits it once).
ARRAY_INDEX = Int("__ARRAY_SIZE_TYPE__", 4)


def strip_qualifiers(t: Type) -> Type:
    """Skip const/volatile/restrict/type tags."""
    for _ in range(64):
        if not isinstance(t, QUALIFIERS):
            return t
        t = t.type
    raise BTFError(f"qualifier chain too long at {t!r}")


def skip_typedefs(t: Type) -> Type:
    """Skip qualifiers and typedefs down to the underlying type."""
    for _ in range(64):
        if not isinstance(t, (*QUALIFIERS, Typedef)):
            return t
        t = t.type
    raise BTFError(f"typedef chain too long at {t!r}")


def sizeof(t: Type) -> int:
    """Size in bytes of a type, following typedefs, qualifiers and arrays."""
    n = 1
    for _ in range(64):
        t = skip_typedefs(t)
        if isinstance(t, Array):
            n *= t.nelems
            t = t.type
            continue
        if isinstance(t, Pointer):
            return n * 8
        size = getattr(t, "size", None)
        if isinstance(size, int) and not isinstance(t, (Datasec,)):
            return n * size
        if isinstance(t, Datasec):
            return n * t.size
        raise BTFError(f"{t.type_name} has no size")
    raise BTFError(f"type nesting too deep computing size of {t!r}")


def alignof(t: Type) -> int:
    """Natural alignment of a type (as a C compiler lays it out)."""
    return _alignof(t, 0)


def _alignof(t: Type, depth: int) -> int:
    for _ in range(MAX_DEPTH):
        t = skip_typedefs(t)
        if isinstance(t, Array):
            t = t.type
            continue
        if isinstance(t, (Int, Float)):
            return t.size if t.size in (1, 2, 4, 8, 16) else 1
        if isinstance(t, Enum):
            return t.size if t.size in (1, 2, 4, 8) else 1
        if isinstance(t, Pointer):
            return 8
        if isinstance(t, Composite):
            if depth >= MAX_DEPTH:
                raise BTFError(f"type nesting too deep computing alignment of {t!r}")
            return max((_alignof(m.type, depth + 1) for m in t.members if not m.bitfield_size),
                       default=1)
        return 1
    raise BTFError(f"type nesting too deep computing alignment of {t!r}")


# IntEncoding, made on first use (ebpf.btf.intencoding; named as this module's): not on
# the load path, its IntFlag costs
__getattr__ = _lazyattr.lazy_attributes(globals(), {"IntEncoding": ".intencoding"})
