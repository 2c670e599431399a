"""Stand-ins for `enum.IntEnum`, `enum.IntFlag`, `enum.Enum` and `typing.NamedTuple`
that make the same classes at a fraction of the import cost (process start).

The stdlib turns each enum member into a member through a descriptor step that costs
~10 us a member (the uapi enums alone: ~2.7 ms), and `typing.NamedTuple` type-checks
every annotation before `collections.namedtuple` (~0.2 ms a class). Written as

    if TYPE_CHECKING:
        from enum import IntEnum
    else:
        from ebpf._sys.fastclass import IntEnum

    class Kind(IntEnum):
        INT = 1

a class statement here makes a genuine `enum.IntEnum` subclass (type checkers see the
stdlib class): the class with no members through `enum`'s own metaclass (methods,
`__str__`/`__format__`, Flag masks, pickling), then each member added the way the
stdlib adds it (value, name, aliases, `_sort_order_`, flag masks). Only for the Python
versions whose `enum` internals were compared member by member
(tests/test_fastclass.py); elsewhere, or for a member the fast path does not handle
(a value that is not an int or str, a name that shadows a base's attribute), the class
is made by `enum` itself. A NamedTuple is `collections.namedtuple` plus the class
body's methods and docstring, its `__annotations__` the (string) annotations as
written.

`FrozenRecord` and `Record` are bases for small records that behave like dataclasses
without the cost of `dataclasses` at import time (it imports inspect, ast, dis, tokenize:
~8 ms of process start, then ~0.3-1 ms per class): `FrozenRecord` like a frozen dataclass
(equality, hash, repr, pickling, `dataclasses.FrozenInstanceError` on assignment),
`Record` like a plain one (editable, equality, unhashable, repr, `replace`).

    class Point(FrozenRecord):
        _FIELDS = ("x", "y")
        __slots__ = _FIELDS

        def __init__(self, x: int, y: int = 0) -> None:
            self._init_fields(x, y)

The constructor takes the fields in `_FIELDS` order (pickling calls it that way).
A `Record` subclass writes its own ``__init__`` (keyword names = field names) and
lists its fields in `_FIELDS` (and in ``__slots__`` when nothing sets other
attributes).

Imports only the stdlib and `ebpf.errors`, so that any package of ebpf may use it.
"""

from __future__ import annotations

import enum as _enum
import sys
from collections import namedtuple as _namedtuple

from ..errors import InvalidArgumentError

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:  # (annotations only: a TypeVar bound by name compiles at run time)
    from typing import Any, ClassVar, TypeVar

    _R = TypeVar("_R", bound="Record")

__all__ = ["FAST_ENUMS", "Enum", "FrozenRecord", "IntEnum", "IntFlag", "NamedTuple", "Record"]

# The versions whose member internals tests/test_fastclass.py compared.
FAST_ENUMS = (3, 10) <= sys.version_info[:2] <= (3, 13)
_PY311 = sys.version_info >= (3, 11)
_ADD_MEMBER = getattr(_enum.EnumMeta, "_add_member_", None)  # 3.13: the stdlib's own step


def _is_descriptor(value: object) -> bool:
    t = type(value)
    return hasattr(t, "__get__") or hasattr(t, "__set__") or hasattr(t, "__delete__")


_BASE_NAMES: dict[type, frozenset[str]] = {}


def _base_names(base: type) -> frozenset[str]:
    """Every attribute name the real base and its bases define (a member named so needs
    the stdlib's redirect, so such a class takes the slow path)."""
    names = _BASE_NAMES.get(base)
    if names is None:
        names = _BASE_NAMES[base] = frozenset().union(*[b.__dict__ for b in base.__mro__])
    return names


_OWN = frozenset({"__module__", "__qualname__", "__doc__"})
_TEMPLATES: dict[type, tuple[dict[str, Any], tuple[tuple[str, type], ...]]] = {}


def _template(real: type) -> tuple[dict[str, Any], tuple[tuple[str, type], ...]]:
    """The class dict `enum` makes for a subclass of `real` without members, methods or
    docstring (3.10: a default one), but its own names; and the keys whose values are
    containers each class has its own of (with their types)."""
    template = _TEMPLATES.get(real)
    if template is None:
        meta = type(real)
        body = meta.__prepare__("_Template", (real,))
        body["__module__"] = __name__
        body["__qualname__"] = "_Template"
        cls = meta("_Template", (real,), body)  # type: ignore[call-overload]
        d = {k: v for k, v in vars(cls).items() if k not in (
            "__module__", "__qualname__", "__dict__", "__weakref__")}
        fresh = tuple((k, type(v)) for k, v in d.items() if type(v) in (list, dict))
        template = _TEMPLATES[real] = (d, fresh)
    return template


def _slow(real: type, name: str, ns: dict[str, Any]) -> type:
    meta = type(real)
    body = meta.__prepare__(name, (real,))
    for key, value in ns.items():
        body[key] = value
    cls: type = meta(name, (real,), body)  # type: ignore[call-overload]
    return cls


def _build_enum(real: type, name: str, ns: dict[str, Any]) -> type:
    """A subclass of the stdlib enum `real` with the members and methods of `ns`."""
    if not FAST_ENUMS or (
            "_order_" in ns or "_ignore_" in ns or "__new__" in ns or "__init__" in ns):
        return _slow(real, name, ns)
    # (the body has no __new__ and `real` is the only base: the subclass's member type)
    member_type = real._member_type_  # type: ignore[attr-defined]
    if member_type is not int and member_type is not object:
        return _slow(real, name, ns)
    # int.__new__(cls, value) or object.__new__(cls), as the stdlib picks them for an enum
    # without its own __new__; neither sets _value_, and Enum.__init__ does nothing.
    is_int = member_type is int
    is_flag = _PY311 and issubclass(real, _enum.Flag)
    shadowed = _base_names(real)
    members = []
    body_items = []
    plain = True  # no dunder or sunder of its own: the class dict is the template's
    flag_mask = singles_mask = 0
    for key, value in ns.items():
        if key[0] == "_":
            body_items.append((key, value))
            if key not in _OWN:
                plain = False
        elif type(value) is int or type(value) is str:
            if key in shadowed:  # the stdlib puts a redirect in place
                return _slow(real, name, ns)
            if is_int and type(value) is not int:
                value = int(value)  # what int.__new__ makes of a str
            if is_flag:
                flag_mask |= value
                if value and not value & (value - 1):
                    singles_mask |= value
            members.append((key, value))
        elif _is_descriptor(value):
            body_items.append((key, value))
        else:  # a value of another type (auto(), a tuple): the stdlib decides
            return _slow(real, name, ns)
    meta = type(real)
    set_attr = type.__setattr__
    if plain:
        # What `enum` makes of a body without members, dunders or sunders is the same
        # for every class on `real`: copy it (fresh containers) instead of remaking it.
        template, fresh = _template(real)
        d = template.copy()
        for key, kind in fresh:
            d[key] = kind()
        d.update(body_items)
        if is_flag and members:  # the masks as the stdlib leaves them after the last member
            flag_mask |= d["_flag_mask_"]
            d["_flag_mask_"] = flag_mask
            d["_singles_mask_"] |= singles_mask
            d["_all_bits_"] = 2 ** flag_mask.bit_length() - 1
        cls: Any = type.__new__(meta, name, (real,), d)
        # (the class dict is a shallow copy of d: the same containers)
        names = d["_member_names_"]
        member_map = d["_member_map_"]
        by_value = d["_value2member_map_"]
    else:
        body = meta.__prepare__(name, (real,))
        for key, value in body_items:
            body[key] = value
        cls = meta(name, (real,), body)  # type: ignore[call-overload]
        if is_flag and members:
            set_attr(cls, "_flag_mask_", cls._flag_mask_ | flag_mask)
            set_attr(cls, "_singles_mask_", cls._singles_mask_ | singles_mask)
            set_attr(cls, "_all_bits_", 2 ** cls._flag_mask_.bit_length() - 1)
        names = cls._member_names_
        member_map = cls._member_map_
        by_value = cls._value2member_map_
    new: Any = int.__new__ if is_int else object.__new__
    added = []
    for key, value in members:
        member = by_value.get(value)
        if member is None:
            # the member's attributes as the stdlib sets them, in its order, as one
            # dict (the class is not touched until every member is made: setting an
            # attribute of a member then finds its class's attributes cached)
            member = new(cls, value) if is_int else new(cls)
            member.__dict__ = {"_value_": value, "_name_": key, "__objclass__": cls,
                               "_sort_order_": len(names)} if _PY311 else {
                "_value_": value, "_name_": key, "__objclass__": cls}
            if not is_flag or (value and not value & (value - 1)):
                names.append(key)
            by_value[value] = member
        # else an alias: the stdlib makes a member, then keeps the first of that value
        added.append((key, member))
    if _ADD_MEMBER is not None:
        for key, member in added:
            _ADD_MEMBER(cls, key, member)
    else:
        for key, member in added:
            set_attr(cls, key, member)
        member_map.update(added)
    if is_flag:
        values = [member_map[n]._value_ for n in names]
        if values != sorted(values):
            cls._iter_member_ = cls._iter_member_by_def_
    return cls  # type: ignore[no-any-return]


class _EnumStandIn(type):
    """The metaclass of the stand-ins: a class statement on one of them makes the real
    enum class (`_real_`) instead."""

    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> Any:
        if not bases:
            return super().__new__(mcls, name, bases, ns)
        if len(bases) != 1:
            raise TypeError(f"{name}: a fast enum has exactly one base")
        return _build_enum(bases[0]._real_, name, ns)  # type: ignore[attr-defined]


class IntEnum(metaclass=_EnumStandIn):
    """Base of a class statement that makes an `enum.IntEnum`."""

    _real_ = _enum.IntEnum


class IntFlag(metaclass=_EnumStandIn):
    """Base of a class statement that makes an `enum.IntFlag`."""

    _real_ = _enum.IntFlag


class Enum(metaclass=_EnumStandIn):
    """Base of a class statement that makes an `enum.Enum`."""

    _real_ = _enum.Enum


_NT_SPECIAL = frozenset({"__module__", "__qualname__", "__annotations__"})


class _NamedTupleStandIn(type):
    """The metaclass of `NamedTuple`: a class statement on it makes a
    `collections.namedtuple` class with the body's methods."""

    def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> Any:
        if not bases:
            return super().__new__(mcls, name, bases, ns)
        annotations = ns.get("__annotations__", {})
        fields = list(annotations)
        defaults = [ns[f] for f in fields if f in ns]
        if defaults and any(f not in ns for f in fields[len(fields) - len(defaults):]):
            raise TypeError(f"{name}: a field without a default follows one with a default")
        cls: Any = _namedtuple(name, fields, defaults=defaults,  # type: ignore[misc]
                               module=ns.get("__module__"))
        cls.__annotations__ = dict(annotations)
        if "__qualname__" in ns:
            cls.__qualname__ = ns["__qualname__"]
        for key, value in ns.items():
            if key not in _NT_SPECIAL and key not in annotations:
                setattr(cls, key, value)
        return cls


class NamedTuple(metaclass=_NamedTupleStandIn):
    """Base of a class statement that makes a `collections.namedtuple` class, as
    `typing.NamedTuple` does."""


class FrozenRecord:
    """Immutable record whose fields are named by the subclass's `_FIELDS`."""

    __slots__ = ()
    _FIELDS: ClassVar[tuple[str, ...]] = ()

    def _init_fields(self, *values: Any) -> None:
        """Set every field, in `_FIELDS` order (only from ``__init__``)."""
        for name, value in zip(self._FIELDS, values, strict=True):
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in self._FIELDS)

    def __setattr__(self, name: str, value: object) -> None:
        # dataclasses only for the error: what a frozen dataclass raises, at no import cost
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        # dataclasses only for the error: what a frozen dataclass raises, at no import cost
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[type[FrozenRecord], tuple[Any, ...]]:
        return self.__class__, self._values()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, FrozenRecord)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._FIELDS)
        return f"{self.__class__.__name__}({fields})"


class Record:
    """Editable record whose fields are named by the subclass's `_FIELDS`: equal when
    of the same class with equal `_COMPARE` fields (default: all), unhashable, a repr
    of the `_REPR` fields (default: all) as a dataclass would make it."""

    __slots__ = ()
    _FIELDS: ClassVar[tuple[str, ...]] = ()
    _COMPARE: ClassVar[tuple[str, ...] | None] = None
    _REPR: ClassVar[tuple[str, ...] | None] = None
    __hash__ = None  # type: ignore[assignment]  # editable, so unhashable (as a dataclass)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        setattr(cls, "__match_args__", cls._FIELDS)  # noqa: B010  (mypy: no such attribute)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        names = self._FIELDS if self._COMPARE is None else self._COMPARE
        return tuple(map(self.__getattribute__, names)) == tuple(
            map(other.__getattribute__, names))

    def __repr__(self) -> str:
        names = self._FIELDS if self._REPR is None else self._REPR
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{self.__class__.__qualname__}({fields})"

    def replace(self: _R, **changes: Any) -> _R:
        """A new record made by the constructor from this one's fields with `changes`
        applied (what ``dataclasses.replace`` did): a shallow copy when no changes."""
        unknown = changes.keys() - set(self._FIELDS)
        if unknown:
            raise InvalidArgumentError(
                f"{self.__class__.__name__} has no field {sorted(unknown)[0]!r} "
                f"(fields: {', '.join(self._FIELDS)})")
        values = {n: getattr(self, n) for n in self._FIELDS}
        values.update(changes)
        return self.__class__(**values)

    __replace__ = replace  # copy.replace (Python 3.13)
