"""Checks of what user code hands to the kernel, made where it enters.

ctypes truncates silently: ``attr.value_size = 2**32 + 8`` stores 8. Every
integer field of a bpf(2) attr that comes from the user goes through
`put(attr, field, value, name)`, which takes the field's width and signedness
from the attr's ctypes layout (anonymous members included) and raises
`InvalidArgumentError` naming the field and its range instead. `integer` does
the same for a value whose range is known without an attr (`unsigned_list` for
arrays of them: cookies, offsets, addresses), `path` refuses paths the kernel
would truncate (an embedded NUL byte) or that are not paths at all, and
`fd_kind` says what kind of BPF object a descriptor refers to.
"""

from __future__ import annotations

import ctypes
import operator
import os
from collections.abc import Iterable

from ..errors import InvalidArgumentError

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["fd_kind", "field_range", "integer", "path", "put", "unsigned", "unsigned_list"]

_SIGNED: Final = frozenset({ctypes.c_int8, ctypes.c_int16, ctypes.c_int32, ctypes.c_int64,
                            ctypes.c_byte, ctypes.c_short, ctypes.c_int, ctypes.c_long,
                            ctypes.c_longlong})
_RANGES: dict[tuple[type, str], tuple[int, int]] = {}


def _type_name(value: object) -> str:
    return type(value).__name__


def integer(value: object, name: str, lo: int, hi: int) -> int:
    """`value` as an int in ``lo..hi``, else `InvalidArgumentError` naming `name`.

    Accepts ints (and `int` subclasses such as IntEnum/IntFlag members) and
    objects with ``__index__``; refuses bool, float, str, None and the rest.
    """
    try:
        if isinstance(value, bool):
            raise TypeError
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidArgumentError(
            f"{name} must be an integer in {lo}..{hi}, got {_type_name(value)} {value!r}"
        ) from None
    if not lo <= v <= hi:
        raise InvalidArgumentError(f"{name} must be in {lo}..{hi}, got {v}")
    return v


def unsigned(value: object, name: str, bits: int) -> int:
    """`value` checked to fit an unsigned `bits`-bit kernel field."""
    return integer(value, name, 0, (1 << bits) - 1)


def _field_type(attr_type: type, field: str) -> Any:
    """The ctypes type of `field` of a structure or union, looking into its anonymous
    members too (``target_ifindex`` of `LinkCreateAttr` lives in an anonymous union)."""
    anonymous = getattr(attr_type, "_anonymous_", ())
    for f in getattr(attr_type, "_fields_", ()):
        if f[0] == field:
            return f[1]
        if f[0] in anonymous:
            found = _field_type(f[1], field)
            if found is not None:
                return found
    return None


def unsigned_list(values: object, name: str, bits: int) -> list[int]:
    """`values` (a sequence of integers: cookies, offsets, addresses) checked element by
    element to fit unsigned `bits`-bit kernel fields; the error names the index
    (``cookies[2] must be in 0..18446744073709551615, got -1``)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InvalidArgumentError(
            f"{name} must be a sequence of integers, got {_type_name(values)} {values!r}")
    seq: Iterable[object] = values  # (iterable: checked above)
    return [unsigned(v, f"{name}[{i}]", bits) for i, v in enumerate(seq)]


def field_range(attr_type: type, field: str) -> tuple[int, int]:
    """The (min, max) an integer field of a ctypes structure can hold (fields of its
    anonymous members included)."""
    key = (attr_type, field)
    r = _RANGES.get(key)
    if r is None:
        ctype = _field_type(attr_type, field)
        if ctype is None:
            raise AttributeError(f"{attr_type.__name__} has no field {field!r}")
        bits = ctypes.sizeof(ctype) * 8
        if ctype in _SIGNED:
            r = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        else:
            r = (0, (1 << bits) - 1)
        _RANGES[key] = r
    return r


def put(attr: ctypes.Structure | ctypes.Union, field: str, value: object,
        name: str | None = None) -> int:
    """Set ``attr.<field> = value`` after checking that `value` is an integer that fits
    the field; `name` is what the error calls it (default: the field's name).
    Returns the value stored."""
    r = _RANGES.get((attr.__class__, field))
    if r is not None and value.__class__ is int and r[0] <= value <= r[1]:
        setattr(attr, field, value)  # (the usual case, without the two calls below)
        return value
    lo, hi = field_range(type(attr), field)
    v = integer(value, name or field, lo, hi)
    setattr(attr, field, v)
    return v


def path(value: object, what: str = "path") -> str:
    """`value` (str, bytes or os.PathLike) as a str path the kernel gets whole: refuses
    an empty path, an embedded NUL byte (the kernel would see only what precedes it)
    and objects that are not paths, with `InvalidArgumentError`."""
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise InvalidArgumentError(
            f"{what} must be a str, bytes or os.PathLike, got {_type_name(value)} {value!r}")
    try:
        p = os.fsdecode(os.fspath(value))
    except TypeError as e:  # a PathLike whose __fspath__ returns something else
        raise InvalidArgumentError(f"{what}: {e}") from None
    if "\0" in p:
        raise InvalidArgumentError(f"{what} {p!r} contains a NUL byte")
    if not p:
        raise InvalidArgumentError(f"{what} is empty")
    return p


_KINDS: Final = {"bpf-map": "map", "bpf-prog": "program", "bpf_link": "link", "bpf-link": "link",
                 "btf": "BTF object"}


def fd_kind(fd: int) -> str:
    """What `fd` refers to: "map", "program", "link", "BTF object", the anon inode's own
    name for other anonymous inodes, or "file" for anything else."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "file"
    if not target.startswith("anon_inode:"):
        return "file"
    name = target[len("anon_inode:"):]
    return _KINDS.get(name, name)
