"""Make BTF acceptable to kernels that lack newer BTF kinds.

Like libbpf's `bpf_object__sanitize_btf`: every type keeps its id (func and
line info, CO-RE relocations and map definitions refer to ids), and types of
an unsupported kind are replaced by an equivalent the kernel knows:

==============  ================================================================
missing kind    replacement
==============  ================================================================
VAR             INT of 1 byte (named like the variable)
DATASEC         STRUCT of the variables at their offsets ('.'/'?' in names -> '_')
DECL_TAG        INT of 1 byte, anonymous
TYPE_TAG        CONST of the tagged type
FLOAT           empty anonymous STRUCT of the same size
FUNC            TYPEDEF of its FUNC_PROTO
FUNC_PROTO      ENUM with one value per parameter
ENUM64          UNION of the values, each an int "enum64_placeholder"; and the
                signedness flag of 32-bit enums is cleared
global FUNC     static FUNC (`global_funcs=False`)
"?" DATASEC     name starting with '_' instead (`qmark_datasec=False`)
==============  ================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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
    Kind,
    Linkage,
    Member,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
)

SupportedKinds = Iterable[Kind] | Callable[[Kind], bool]


def _supports(supported: SupportedKinds) -> Callable[[Kind], bool]:
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
    has = _supports(supported_kinds)
    b = Builder.from_spec(btf) if isinstance(btf, Spec) else btf
    has_func = has(Kind.FUNC) and has(Kind.FUNC_PROTO)
    has_datasec = has(Kind.DATASEC) and has(Kind.VAR)
    has_decl_tag = has(Kind.DECL_TAG)
    has_type_tag = has(Kind.TYPE_TAG)
    has_float = has(Kind.FLOAT)
    has_enum64 = has(Kind.ENUM64)
    if global_funcs is None:
        global_funcs = has_func
    if (has_func and has_datasec and has_decl_tag and has_type_tag and has_float
            and has_enum64 and global_funcs and qmark_datasec):
        return b
    placeholder: Int | None = None
    for tid in range(1, len(b)):
        t = b.type_by_id(tid)
        new: Type | None = None
        if isinstance(t, Var) and not has_datasec:
            new = Int(t.name, 1, bits=8)
        elif isinstance(t, DeclTag) and (
                not has_decl_tag
                or (not has_func and isinstance(t.type, Func) and t.component_idx >= 0)
                or (not has_datasec and isinstance(t.type, Var))):
            # (a tag on a function's parameter or on a variable goes with them)
            new = Int("", 1, bits=8)
        elif isinstance(t, Datasec) and not has_datasec:
            members = []
            for v in t.vars:
                members.append(Member(v.type.name, v.type, 8 * v.offset))
            new = Struct(t.name.replace(".", "_").replace("?", "_"), t.size, members)
        elif isinstance(t, Datasec) and not qmark_datasec and t.name.startswith("?"):
            new = Datasec("_" + t.name[1:], t.size, t.vars)
        elif isinstance(t, FuncProto) and not has_func:
            values = [EnumValue(p.name or f"__arg{i}", b.add(p.type))
                      for i, p in enumerate(t.params)]
            new = Enum("", 4, values)
            new.is64 = False
        elif isinstance(t, Func) and not has_func:
            new = Typedef(t.name, t.type)
        elif isinstance(t, Func) and not global_funcs and t.linkage == Linkage.GLOBAL:
            new = Func(t.name, t.type, Linkage.STATIC)
        elif isinstance(t, Float) and not has_float:
            new = Struct("", t.size, [])
        elif isinstance(t, TypeTag) and not has_type_tag:
            new = Const(t.type)
        elif isinstance(t, Enum) and not has_enum64:
            if t.is64:
                if placeholder is None:
                    placeholder = Int("enum64_placeholder", 1)
                    b.add(placeholder)
                new = Union(t.name, t.size, [Member(v.name, placeholder, 0) for v in t.values])
            elif t.signed:
                new = Enum(t.name, t.size, [EnumValue(v.name, v.value & 0xFFFFFFFF)
                                            for v in t.values])
                new.is64 = False
        if new is not None:
            b.replace(tid, new)
    return b


__all__ = ["SupportedKinds", "sanitize"]
