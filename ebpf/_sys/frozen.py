"""A base for small immutable records that behave like frozen dataclasses (equality,
hash, repr, pickling, `dataclasses.FrozenInstanceError` on assignment) without the
cost of `dataclasses` at import time (~1 ms of process start per class).

    class Point(FrozenRecord):
        _FIELDS = ("x", "y")
        __slots__ = _FIELDS

        def __init__(self, x: int, y: int = 0) -> None:
            self._init_fields(x, y)

The constructor takes the fields in `_FIELDS` order (pickling calls it that way).
Dependency-free, so that any package of ebpf may use it.
"""

from __future__ import annotations

from typing import Any, ClassVar


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
