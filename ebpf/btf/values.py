"""Convert Python values to and from the bytes of a BTF-described C type.

Used for template variables (`.rodata`/`.data` rewrites) and typed map values.
Integers, bools, enums, floats, pointers (as integers), char arrays (str or
bytes), arrays (sequences), structs and unions (dicts by member name, or bytes).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidArgumentError
from .types import (
    Array,
    Composite,
    Datasec,
    Enum,
    Float,
    Int,
    IntEncoding,
    Pointer,
    Type,
    sizeof,
    skip_typedefs,
)


def _is_char_array(t: Array) -> bool:
    elem = skip_typedefs(t.type)
    return isinstance(elem, Int) and elem.size == 1 and (
        bool(elem.encoding & IntEncoding.CHAR) or elem.name == "char")


def describe(t: Type) -> str:
    """A short C-like description of a type for error messages."""
    inner = skip_typedefs(t)
    if isinstance(inner, Array):
        return f"{describe(inner.type)}[{inner.nelems}]"
    if isinstance(inner, Pointer):
        return f"{describe(inner.type)} *"
    name = t.type_name
    return name if name != "(anon)" else inner.type_name


def encode(t: Type, value: Any, what: str = "value") -> bytes:
    """The bytes of `value` as C type `t`; raises InvalidArgumentError on a mismatch."""
    size = sizeof(t)
    if isinstance(value, (bytes, bytearray, memoryview)) and not _char_array(t):
        data = bytes(value)
        if len(data) != size:
            raise InvalidArgumentError(
                f"{what} must be {size} bytes for {describe(t)}, got {len(data)}")
        return data
    if hasattr(value, "_fields_") or hasattr(value, "_type_"):  # a ctypes instance
        data = bytes(memoryview(value).cast("B"))
        if len(data) != size:
            raise InvalidArgumentError(
                f"{what} must be {size} bytes for {describe(t)}, got a {len(data)}-byte "
                f"{type(value).__name__}")
        return data
    out = bytearray(size)
    _put(t, value, out, 0, what)
    return bytes(out)


def _char_array(t: Type) -> bool:
    inner = skip_typedefs(t)
    return isinstance(inner, Array) and _is_char_array(inner)


def _put(t: Type, value: Any, out: bytearray, off: int, what: str) -> None:
    inner = skip_typedefs(t)
    if isinstance(inner, (Int, Enum)):
        signed = inner.signed
        if isinstance(inner, Int) and inner.encoding & IntEncoding.BOOL:
            value = int(bool(value))
        if isinstance(value, bool):
            value = int(value)
        if isinstance(inner, Enum) and isinstance(value, str):
            value = inner.value(value)
        if not isinstance(value, int):
            raise InvalidArgumentError(f"{what} must be an int for {describe(t)}, "
                                       f"got {type(value).__name__}")
        bits = inner.size * 8
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1))) if signed else (0, 1 << bits)
        if not lo <= value < hi:
            raise InvalidArgumentError(
                f"{what}={value} does not fit {describe(t)} ({inner.size} bytes, "
                f"{'signed' if signed else 'unsigned'})")
        out[off : off + inner.size] = (value % (1 << bits)).to_bytes(inner.size, "little")
    elif isinstance(inner, Float):
        fmt = {4: "<f", 8: "<d"}.get(inner.size)
        if fmt is None:
            raise InvalidArgumentError(f"cannot encode {inner.size}-byte float {what}")
        struct.pack_into(fmt, out, off, float(value))
    elif isinstance(inner, Pointer):
        _put_int(value, 8, out, off, what)
    elif isinstance(inner, Array):
        if _is_char_array(inner):
            data = value.encode() if isinstance(value, str) else bytes(value)
            if len(data) > inner.nelems:
                raise InvalidArgumentError(
                    f"{what} is {len(data)} bytes, longer than {describe(t)}")
            out[off : off + len(data)] = data
            return
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise InvalidArgumentError(f"{what} must be a sequence for {describe(t)}")
        if len(value) > inner.nelems:
            raise InvalidArgumentError(
                f"{what} has {len(value)} elements, {describe(t)} holds {inner.nelems}")
        esize = sizeof(inner.type)
        for i, v in enumerate(value):
            _put(inner.type, v, out, off + i * esize, f"{what}[{i}]")
    elif isinstance(inner, Composite):
        if not isinstance(value, Mapping):
            raise InvalidArgumentError(
                f"{what} must be a dict of members (or bytes) for {describe(t)}")
        names = {m.name for m in inner.members}
        for key, v in value.items():
            if key not in names:
                try:
                    m = inner.member(key)
                except KeyError:
                    raise InvalidArgumentError(
                        f"{describe(t)} has no member {key!r} (members: "
                        f"{', '.join(sorted(n for n in names if n))})") from None
            else:
                m = next(m for m in inner.members if m.name == key)
            if m.bitfield_size:
                _put_bitfield(m.offset_bits, m.bitfield_size, v, out, off, f"{what}.{key}")
            else:
                _put(m.type, v, out, off + m.offset_bits // 8, f"{what}.{key}")
    else:
        raise InvalidArgumentError(f"cannot encode {what} of type {describe(t)}")


def _put_int(value: Any, size: int, out: bytearray, off: int, what: str) -> None:
    if not isinstance(value, int):
        raise InvalidArgumentError(f"{what} must be an int")
    out[off : off + size] = (value % (1 << (8 * size))).to_bytes(size, "little")


def _put_bitfield(offset_bits: int, nbits: int, value: Any, out: bytearray, base: int,
                  what: str) -> None:
    if not isinstance(value, int) or not 0 <= value < (1 << nbits):
        raise InvalidArgumentError(f"{what} must be an int in [0, {1 << nbits})")
    start = base + offset_bits // 8
    shift = offset_bits % 8
    nbytes = (shift + nbits + 7) // 8
    cur = int.from_bytes(out[start : start + nbytes], "little")
    mask = ((1 << nbits) - 1) << shift
    cur = (cur & ~mask) | (value << shift)
    out[start : start + nbytes] = cur.to_bytes(nbytes, "little")


def decode(t: Type, data: bytes | bytearray | memoryview) -> Any:
    """The Python value of C type `t` stored in `data` (ints, str for char arrays,
    lists for arrays, dicts for structs and unions)."""
    return _get(t, bytes(data), 0)


def _get(t: Type, data: bytes, off: int) -> Any:
    inner = skip_typedefs(t)
    if isinstance(inner, Int):
        v = int.from_bytes(data[off : off + inner.size], "little", signed=inner.signed)
        return bool(v) if inner.encoding & IntEncoding.BOOL else v
    if isinstance(inner, Enum):
        return int.from_bytes(data[off : off + inner.size], "little", signed=inner.signed)
    if isinstance(inner, Float):
        return struct.unpack_from({4: "<f", 8: "<d"}[inner.size], data, off)[0]
    if isinstance(inner, Pointer):
        return int.from_bytes(data[off : off + 8], "little")
    if isinstance(inner, Array):
        if _is_char_array(inner):
            raw = data[off : off + inner.nelems]
            return raw.split(b"\0", 1)[0].decode(errors="replace")
        esize = sizeof(inner.type)
        return [_get(inner.type, data, off + i * esize) for i in range(inner.nelems)]
    if isinstance(inner, Composite):
        out: dict[str, Any] = {}
        for m in inner.members:
            if m.bitfield_size:
                start = off + m.offset_bits // 8
                shift = m.offset_bits % 8
                nbytes = (shift + m.bitfield_size + 7) // 8
                raw_int = int.from_bytes(data[start : start + nbytes], "little")
                val = (raw_int >> shift) & ((1 << m.bitfield_size) - 1)
            else:
                val = _get(m.type, data, off + m.offset_bits // 8)
            if m.name:
                out[m.name] = val
            elif isinstance(val, dict):
                out.update(val)
        return out
    if isinstance(inner, Datasec):
        return data[off : off + inner.size]
    return data[off : off + sizeof(t)]
