"""`ebpf._sys.fastclass`: its enum classes are the stdlib's, member by member, and its
NamedTuples behave as `typing.NamedTuple`'s.

The comparison covers the enum internals the stdlib reads (member maps, aliases, sort
order, flag masks, iteration order), so that a Python whose `enum` changed is caught
here; run this file under each supported Python (it needs only pytest).
"""

from __future__ import annotations

import enum
import importlib
import pickle
import sys
import typing
from typing import Any

import pytest

from ebpf._sys import fastclass

# Every module whose classes use the stand-ins.
# (a class made in one module and public in another counts for the latter: its __module__)
FAST_MODULES = ("ebpf._sys.types", "ebpf._sys.types_helpers", "ebpf._sys.types_perf",
                "ebpf._sys.types_link", "ebpf._sys.types_misc",
                "ebpf.asm.opcodes", "ebpf.elffile", "ebpf.elf.sections", "ebpf.btf.types",
                "ebpf.maps.flags", "ebpf.btf.kernel", "ebpf.btf.layout", "ebpf._sys.btfinfo",
                "ebpf.maps.batch", "ebpf.spec.maps", "ebpf.spec.programs")

_SKIP = frozenset({"__objclass__", "__module__", "__qualname__", "__dict__",
                   "__weakref__", "_member_map_", "_value2member_map_", "_member_names_",
                   "_new_member_", "__new_member__", "__new__", "_inverted_"})


def _value_state(v: Any) -> Any:
    return (type(v).__name__, v._name_, v._value_,
            sorted((k, repr(x)) for k, x in vars(v).items() if k not in _SKIP))


def _describe(d: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for k, v in d.items():
        if k in _SKIP:
            continue
        if callable(v) and hasattr(v, "__qualname__"):
            out.append((k, f"{getattr(v, '__module__', '')}:{v.__qualname__}"))
        elif isinstance(v, (classmethod, staticmethod)):
            out.append((k, f"{type(v).__name__}:{v.__func__.__qualname__}"))
        elif isinstance(v, getattr(enum, "property", property)):
            out.append((k, "redirect"))
        elif isinstance(v, enum.Enum):
            out.append((k, f"member:{v._name_}"))
        else:
            out.append((k, repr(v)))
    return sorted(out)


def enum_state(cls: Any) -> dict[str, Any]:
    """What tells two enum classes apart, as plain data."""
    return {
        "type": type(cls).__name__,
        "bases": [b.__name__ for b in cls.__bases__],
        "names": list(cls._member_names_),
        "map": [(k, v._name_) for k, v in cls._member_map_.items()],
        "by_value": sorted((repr(k), v._name_) for k, v in cls._value2member_map_.items()
                           if v._name_ in cls._member_map_),  # not pseudo-members
        "members": [_value_state(v) for v in cls._member_map_.values()],
        "iter": [m._name_ for m in cls],
        "dict": _describe(dict(vars(cls))),
        "new": cls.__new__ is enum.Enum.__new__,
        "new_member": repr(getattr(cls, "_new_member_", None)),
        "strs": [(repr(m), str(m), format(m), f"{m}") for m in cls._member_map_.values()],
    }


def _stdlib(fast: Any) -> Any:
    """The same class made by `enum` itself from the fast class's definition."""
    real = fast.__bases__[0]
    body = type(real).__prepare__(fast.__name__, (real,))
    for key, value in vars(fast).items():
        if key in ("_member_names_", "_member_map_", "_value2member_map_", "_new_member_",
                   "_use_args_", "_member_type_", "_value_repr_", "_unhashable_values_",
                   "_unhashable_values_map_", "_flag_mask_", "_singles_mask_",
                   "_all_bits_", "_inverted_", "_boundary_", "_sort_order_",
                   "_iter_member_", "__new__", "__dict__", "__weakref__",
                   "__new_member__") or key in fast._member_map_:
            continue
        if (key in ("__or__", "__and__", "__xor__", "__ror__", "__rand__", "__rxor__",
                   "__invert__", "__repr__", "__str__", "__format__", "__reduce_ex__") \
                and getattr(enum.Flag, key, None) is value) or \
                (key in ("__str__", "__format__", "__repr__", "__reduce_ex__") \
                and (value is getattr(int, key, None) or value is getattr(enum.Enum, key))):
            continue
        body[key] = value
    for name, member in fast._member_map_.items():
        body[name] = member._value_
    return type(real)(fast.__name__, (real,), body)


def _fast(real: Any, name: str, ns: dict[str, Any]) -> Any:
    base = {enum.IntEnum: fastclass.IntEnum, enum.IntFlag: fastclass.IntFlag,
            enum.Enum: fastclass.Enum}[real]
    return type(base)(name, (base,), {"__module__": __name__, "__qualname__": name, **ns})


def _fast_classes() -> list[Any]:
    out = []
    for name in FAST_MODULES:
        mod = importlib.import_module(name)
        # (getattr: the names a module serves on first use, e.g. ebpf.asm.opcodes' enums,
        # ebpf._sys.types' Cmd and AttachType)
        public = [getattr(mod, n) for n in (*getattr(mod, "__all__", ()),
                                            *getattr(mod, "_LAZY", ()))]
        for value in [*vars(mod).values(), *public]:
            if isinstance(value, type) and issubclass(value, enum.Enum) \
                    and value.__module__ == name and value not in out:
                out.append(value)
    return out


def _bits(flag: Any) -> list[str] | None:
    """The members of a flag value (iterable since Python 3.11)."""
    return [x._name_ for x in flag] if sys.version_info >= (3, 11) else None


SHAPES: list[tuple[Any, dict[str, Any]]] = [
    (enum.IntEnum, {"A": 0, "B": 1, "C": 1, "D": 7}),
    (enum.IntEnum, {"__doc__": "doc", "A": 3, "B": 2, "twice": classmethod(lambda c: 2)}),
    (enum.IntEnum, {}),
    (enum.IntEnum, {"A": 1, "__str__": lambda self: "s", "_missing_": classmethod(
        lambda cls, v: None)}),
    (enum.IntFlag, {"__doc__": "doc", "A": 1, "B": 4, "C": 2, "of": staticmethod(len)}),
    (enum.Enum, {"__doc__": "doc", "A": 1, "B": "b"}),
    (enum.IntFlag, {"A": 1, "B": 2, "AB": 3, "C": 8, "ZERO": 0, "B2": 2}),
    (enum.IntFlag, {"HIGH": 64, "LOW": 1, "MID": 4}),
    (enum.Enum, {"X": "x", "Y": "y", "Z": 3, "Y2": "y"}),
    (enum.IntEnum, {"name": 1, "other": 2}),  # shadows a base's attribute: slow path
]


@pytest.mark.parametrize("real,ns", SHAPES)
def test_shapes_match_the_stdlib(real: Any, ns: dict[str, Any]) -> None:
    fast = _fast(real, "Shape", ns)
    assert type(fast) is type(real) and issubclass(fast, real)
    body = type(real).__prepare__("Shape", (real,))
    for k, v in {"__module__": __name__, "__qualname__": "Shape", **ns}.items():
        body[k] = v
    slow = type(real)("Shape", (real,), body)
    assert enum_state(fast) == enum_state(slow)
    for m in fast:
        assert fast(m._value_) is m and fast[m._name_] is m
    if issubclass(real, enum.Flag):
        for v in range(0, 20):
            try:
                a = fast(v)
            except ValueError:
                with pytest.raises(ValueError):
                    slow(v)
                continue
            b = slow(v)
            assert (repr(a), str(a), a._value_, _bits(a)) == (repr(b), str(b), b._value_, _bits(b))
            assert repr(~a) == repr(~b)
    else:
        with pytest.raises((ValueError, TypeError)):  # TypeError: no members
            fast(12345)


@pytest.mark.parametrize("cls", _fast_classes(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_library_enums_match_the_stdlib(cls: Any) -> None:
    slow = _stdlib(cls)
    assert enum_state(cls) == enum_state(slow)
    for m in cls:
        assert cls(m._value_) is m and pickle.loads(pickle.dumps(m)) is m
    if issubclass(cls, enum.Flag):
        everything = 0
        for m in cls:
            everything |= m._value_
        for v in (0, everything, everything & 0x5555, everything | (1 << 40)):
            try:
                b = slow(v)
            except ValueError:
                with pytest.raises(ValueError):
                    cls(v)
                continue
            a = cls(v)
            assert (repr(a), str(a), a._value_) == (repr(b), str(b), b._value_)


def test_the_fast_path_runs_on_this_python() -> None:
    assert fastclass.FAST_ENUMS == ((3, 10) <= sys.version_info[:2] <= (3, 13))


class _Point(fastclass.NamedTuple):  # type: ignore[misc]
    """A point."""

    x: int
    y: int = 2

    def total(self) -> int:
        return int(self.x + self.y)


class _TypingPoint(typing.NamedTuple):
    """A point."""

    x: int
    y: int = 2

    def total(self) -> int:
        return self.x + self.y


def test_named_tuple_as_typing() -> None:
    p, q = _Point(1), _TypingPoint(1)
    assert tuple(p) == tuple(q) == (1, 2)
    assert p._fields == q._fields and p._field_defaults == q._field_defaults
    assert p.total() == 3 and p._replace(y=5) == (1, 5) and p._asdict() == {"x": 1, "y": 2}
    assert repr(p) == "_Point(x=1, y=2)" and _Point.__doc__ == "A point."
    assert _Point.__qualname__ == "_Point" and _Point.__module__ == __name__
    assert pickle.loads(pickle.dumps(p)) == p
    assert list(_Point.__annotations__) == ["x", "y"]
    assert typing.get_type_hints(_Point) == {"x": int, "y": int}
    with pytest.raises(TypeError):
        type(fastclass.NamedTuple)("Bad", (fastclass.NamedTuple,),
                                   {"__annotations__": {"a": "int", "b": "int"}, "a": 1})
