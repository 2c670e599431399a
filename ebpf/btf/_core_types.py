"""CO-RE's type relocations (`ebpf.btf.core`): the loose compatibility of the
type-existence, -size and -id kinds, and the strict "matches" of
``bpf_core_type_matches``. Their own module, imported by the first type relocation:
field relocations (most objects' only kind) do not load it (process start)."""

from __future__ import annotations

from .core import (
    _MAX_NESTING,
    _bit_offset_within,
    _Refused,
    _resolved,
    _same_essential_name,
    essential_name,
)
from .types import (
    Array,
    Composite,
    Enum,
    FuncProto,
    Fwd,
    Int,
    Pointer,
    Type,
    Union,
    Void,
)

__all__ = ["types_compatible", "types_match"]


def types_compatible(local: Type, target: Type, depth: int = _MAX_NESTING) -> bool:
    """The loose type equivalence of type-existence, -size and -id relocations: same
    kinds all the way down through pointers, arrays and function prototypes;
    structs, unions, enums and forward declarations by kind alone."""
    if local.kind != target.kind:
        return False
    for _ in range(_MAX_NESTING):
        local, target = _resolved(local), _resolved(target)
        if local.kind != target.kind:
            return False
        if isinstance(local, (Void, Composite, Enum, Fwd)):
            return True
        if isinstance(local, Int):
            return _bit_offset_within(local) == 0 == _bit_offset_within(target)
        if isinstance(local, Pointer) and isinstance(target, Pointer):
            local, target = local.type, target.type
            continue
        if isinstance(local, Array) and isinstance(target, Array):
            local, target = local.type, target.type
            continue
        if isinstance(local, FuncProto) and isinstance(target, FuncProto):
            if depth <= 0:
                raise _Refused("function prototype nesting too deep")
            if len(local.params) != len(target.params) or not all(
                    types_compatible(_resolved(a.type), _resolved(b.type), depth - 1)
                    for a, b in zip(local.params, target.params, strict=True)):
                return False
            local, target = local.return_type, target.return_type
            continue
        return False
    raise _Refused("type nesting too deep")


# -- "type matches": the strict equivalence of bpf_core_type_matches ---------------------

def types_match(local: Type, target: Type, behind_pointer: bool = False,
                 depth: int = _MAX_NESTING) -> bool:
    """Whether `target` has the shape `local` describes: names correspond at every
    level, integers agree in size and signedness, arrays in length, functions in
    their parameters, enums hold every local enumerator name, structs/unions hold
    every local member (by name and matching type). Behind a pointer, a struct or
    union only has to be of the same kind (or a forward declaration of it)."""
    if depth <= 0:
        raise _Refused("type nesting too deep")
    for _ in range(_MAX_NESTING):
        local, target = _resolved(local), _resolved(target)
        if not _same_essential_name(local.name, target.name):
            return False
        if isinstance(local, (Pointer, Array)):
            if not _same_container(local, target):
                return False
            behind_pointer = behind_pointer or isinstance(local, Pointer)
            local, target = local.type, target.type  # type: ignore[attr-defined]
            continue
        if isinstance(local, FuncProto):
            if not isinstance(target, FuncProto) or len(local.params) != len(target.params):
                return False
            if not all(types_match(a.type, b.type, behind_pointer, depth - 1)
                       for a, b in zip(local.params, target.params, strict=True)):
                return False
            local, target = local.return_type, target.return_type
            continue
        return _leaf_matches(local, target, behind_pointer, depth)
    raise _Refused("type nesting too deep")


def _same_container(local: Pointer | Array, target: Type) -> bool:
    if isinstance(local, Pointer):
        return isinstance(target, Pointer)
    return isinstance(target, Array) and target.nelems == local.nelems


def _is_union(t: Type) -> bool:
    return t.union if isinstance(t, Fwd) else isinstance(t, Union)


def _leaf_matches(local: Type, target: Type, behind_pointer: bool, depth: int) -> bool:
    if isinstance(local, Void):
        return isinstance(target, Void)
    if isinstance(local, Int):
        return (isinstance(target, Int) and local.size == target.size
                and local.signed == target.signed)
    if isinstance(local, Enum):
        return isinstance(target, Enum) and _enumerators_match(local, target)
    if isinstance(local, Fwd):
        if isinstance(target, Fwd) or (behind_pointer and isinstance(target, Composite)):
            return _is_union(local) == _is_union(target)
        return False
    if isinstance(local, Composite):
        if behind_pointer:
            if isinstance(target, Fwd):
                return _is_union(local) == _is_union(target)
            return local.kind == target.kind
        return (local.kind == target.kind and isinstance(target, Composite)
                and _members_match(local, target, depth))
    return False


def _enumerators_match(local: Enum, target: Enum) -> bool:
    if local.size != target.size or len(local.values) > len(target.values):
        return False
    return all(any(_same_essential_name(lv.name, tv.name) for tv in target.values)
               for lv in local.values)


def _members_match(local: Composite, target: Composite, depth: int) -> bool:
    if len(local.members) > len(target.members):
        return False
    for lm in local.members:
        # names correspond without flavors; an anonymous member ("") to anonymous ones
        wanted = essential_name(lm.name)
        for tm in target.members:
            if essential_name(tm.name) == wanted and types_match(lm.type, tm.type, False,
                                                                   depth - 1):
                break
        else:
            return False
    return True
