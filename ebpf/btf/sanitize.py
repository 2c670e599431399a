"""Rewrite BTF so that an older kernel's BPF_BTF_LOAD accepts it.

Each BTF kind arrived with some kernel release (Documentation/bpf/btf.rst
describes them): FUNC and FUNC_PROTO in 5.0, VAR and DATASEC in 5.2, FLOAT in
5.13, DECL_TAG in 5.16, TYPE_TAG in 5.17, ENUM64 in 6.0 -- and with it signed
enums (the kind flag of ENUM) --; global FUNC linkage in 5.6 and DATASEC names
starting with '?' in 5.19. A kernel refuses a whole blob for one type it does
not know, so each such type is swapped for one it knows. What must survive the
swap: the type's id (func/line info, CO-RE relocations and map definitions refer
to types by id), its size where other types may hold it by value, and the names
the kernel looks up.

==============  ================================================================
lacking         becomes
==============  ================================================================
FUNC_PROTO      anonymous 4-byte ENUM, one enumerator per parameter (its name)
FUNC            TYPEDEF of its (downgraded) prototype, same name
global FUNC     static FUNC (extern ones too: before 5.6 every FUNC is static)
VAR             1-byte INT named like the variable
DATASEC         STRUCT of the variables at their offsets ('.' and '?' -> '_');
                without members for a section without storage (externs only)
'?' DATASEC     DATASEC whose name starts with '_' instead
FLOAT           anonymous STRUCT of the same size without members
DECL_TAG        anonymous 1-byte INT (also a tag whose FUNC or VAR is swapped)
TYPE_TAG        CONST of the tagged type
ENUM64          INT of the same size and signedness, named like the enum
signed ENUM     unsigned ENUM with the same bits
==============  ================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .._sys.fastclass import FrozenRecord
from .builder import Builder
from .spec import Spec
from .types import (
    Const,
    Datasec,
    DeclTag,
    Enum,
    EnumValue,
    Float,
    Func,
    FuncProto,
    Int,
    IntEncoding,
    Kind,
    Linkage,
    Member,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Var,
)

SupportedKinds = Iterable[Kind] | Callable[[Kind], bool]


class _Missing(FrozenRecord):
    """What the target kernel's BTF loader does not accept."""

    # a FrozenRecord, not a dataclass: `dataclasses` costs process start ~8 ms
    _FIELDS = ("functions", "variables", "floats", "decl_tags", "type_tags", "enum64",
               "global_functions", "qmark_sections")
    __slots__ = _FIELDS

    functions: bool  # FUNC and FUNC_PROTO
    variables: bool  # VAR and DATASEC
    floats: bool
    decl_tags: bool
    type_tags: bool
    enum64: bool  # also signed 32-bit enums
    global_functions: bool
    qmark_sections: bool

    def __init__(self, functions: bool, variables: bool, floats: bool, decl_tags: bool,
                 type_tags: bool, enum64: bool, global_functions: bool,
                 qmark_sections: bool) -> None:
        self._init_fields(functions, variables, floats, decl_tags, type_tags, enum64,
                          global_functions, qmark_sections)

    @property
    def nothing(self) -> bool:
        return not any(self._values())


def _missing(has: Callable[[Kind], bool], global_funcs: bool | None,
             qmark_datasec: bool) -> _Missing:
    functions = not (has(Kind.FUNC) and has(Kind.FUNC_PROTO))
    return _Missing(
        functions=functions,
        variables=not (has(Kind.VAR) and has(Kind.DATASEC)),
        floats=not has(Kind.FLOAT),
        decl_tags=not has(Kind.DECL_TAG),
        type_tags=not has(Kind.TYPE_TAG),
        enum64=not has(Kind.ENUM64),
        global_functions=functions if global_funcs is None else not global_funcs,
        qmark_sections=not qmark_datasec,
    )


def _predicate(supported: SupportedKinds) -> Callable[[Kind], bool]:
    if callable(supported):
        return supported
    kinds = frozenset(Kind(k) for k in supported)
    return kinds.__contains__


def sanitize(btf: Spec | Builder, supported_kinds: SupportedKinds, *,
             global_funcs: bool | None = None, qmark_datasec: bool = True) -> Builder:
    """A Builder holding `btf` with every kind the kernel lacks replaced.

    `supported_kinds` is a collection of `Kind`s, or a predicate such as
    `ebpf.features.have_btf_kind`. `global_funcs` says whether FUNCs may have
    global linkage (kernel 5.6; default: when FUNC is supported);
    `qmark_datasec` whether DATASEC names may start with '?' (5.19).
    A Spec is not modified; a Builder is sanitized in place and returned.
    """
    missing = _missing(_predicate(supported_kinds), global_funcs, qmark_datasec)
    b = Builder.from_spec(btf) if isinstance(btf, Spec) else btf
    if missing.nothing:
        return b
    swap = _Swapper(missing)
    for tid in range(1, len(b)):
        new = swap(b.type_by_id(tid))
        if new is not None:
            b.replace(tid, new)
    return b


class _Swapper:
    """The replacement of one type for a kernel lacking `missing`, or None."""

    def __init__(self, missing: _Missing) -> None:
        self.missing = missing
        self._by_class: dict[type[Type], Callable[[Type], Type | None]] = {
            FuncProto: self._prototype, Func: self._function, Var: self._variable,
            Datasec: self._section, Float: self._float, DeclTag: self._decl_tag,
            TypeTag: self._type_tag, Enum: self._enum,
        }

    def __call__(self, t: Type) -> Type | None:
        swap = self._by_class.get(type(t))
        return swap(t) if swap is not None else None

    def _prototype(self, t: Type) -> Type | None:
        assert isinstance(t, FuncProto)
        if not self.missing.functions:
            return None
        names = [p.name or f"param{i}" for i, p in enumerate(t.params)]
        proto = Enum("", 4, [EnumValue(name, i) for i, name in enumerate(names)])
        proto.is64 = False
        return proto

    def _function(self, t: Type) -> Type | None:
        assert isinstance(t, Func)
        if self.missing.functions:
            return Typedef(t.name, t.type)
        if self.missing.global_functions and t.linkage != Linkage.STATIC:
            return Func(t.name, t.type, Linkage.STATIC)
        return None

    def _variable(self, t: Type) -> Type | None:
        return Int(t.name, 1, bits=8) if self.missing.variables else None

    def _section(self, t: Type) -> Type | None:
        assert isinstance(t, Datasec)
        if self.missing.variables:
            # (each variable is now a 1-byte INT; externs have no storage)
            members = [Member(v.type.name, v.type, 8 * v.offset) for v in t.vars
                       if v.offset < t.size]
            return Struct(t.name.replace(".", "_").replace("?", "_"), t.size, members)
        if self.missing.qmark_sections and t.name.startswith("?"):
            return Datasec("_" + t.name[1:], t.size, t.vars)
        return None

    def _float(self, t: Type) -> Type | None:
        assert isinstance(t, Float)
        return Struct("", t.size, []) if self.missing.floats else None

    def _decl_tag(self, t: Type) -> Type | None:
        assert isinstance(t, DeclTag)
        target = t.type
        # a tag on a swapped function's parameter, or on a swapped variable, has
        # nothing left to point at
        orphaned = ((self.missing.functions and isinstance(target, Func)
                     and t.component_idx >= 0)
                    or (self.missing.variables and isinstance(target, Var)))
        return Int("", 1, bits=8) if self.missing.decl_tags or orphaned else None

    def _type_tag(self, t: Type) -> Type | None:
        assert isinstance(t, TypeTag)
        return Const(t.type) if self.missing.type_tags else None

    def _enum(self, t: Type) -> Type | None:
        assert isinstance(t, Enum)
        if not self.missing.enum64:
            return None
        if t.is64:
            return Int(t.name, t.size, IntEncoding.SIGNED if t.signed else IntEncoding.UNSIGNED)
        if t.signed:
            unsigned = Enum(t.name, t.size, [EnumValue(v.name, v.value & 0xFFFFFFFF)
                                             for v in t.values])
            unsigned.is64 = False
            return unsigned
        return None


__all__ = ["SupportedKinds", "sanitize"]
