"""Bases for small records that behave like dataclasses without the cost of
`dataclasses` at import time (it imports inspect, ast, dis, tokenize: ~8 ms of process
start, then ~0.3-1 ms per class): `FrozenRecord` like a frozen dataclass (equality,
hash, repr, pickling, `dataclasses.FrozenInstanceError` on assignment), `Record` like
a plain one (editable, equality, unhashable, repr, `replace`).

    class Point(FrozenRecord):
        _FIELDS = ("x", "y")
        __slots__ = _FIELDS

        def __init__(self, x: int, y: int = 0) -> None:
            self._init_fields(x, y)

The constructor takes the fields in `_FIELDS` order (pickling calls it that way).
A `Record` subclass writes its own ``__init__`` (keyword names = field names) and
lists its fields in `_FIELDS` (and in ``__slots__`` when nothing sets other
attributes). Imports only `ebpf.errors`, so that any package of ebpf may use it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InvalidArgumentError

if TYPE_CHECKING:  # (annotations only: a TypeVar bound by name compiles at run time)
    from typing import TypeVar

    _R = TypeVar("_R", bound="Record")


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
