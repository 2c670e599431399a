"""Convert Python values to and from the bytes of a BTF-described C type.

Used for template variables (`.rodata`/`.data` rewrites) and typed map values.
Integers, bools, enums, floats, pointers (as integers), char arrays (str or
bytes), arrays (sequences), structs and unions (dicts by member name, or bytes).

Each type is compiled once into a pair of closures (encoder, decoder), cached per type
object: types are treated as immutable once used. The cache of a type parsed from a BTF
spec lives on that spec and dies with it (a process that re-parses an object many times
does not accumulate specs); hand-made types share a small bounded cache.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .._objcache import Bounded, attached
from ..errors import BTFError, InvalidArgumentError
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

# encoder(value, out, offset, what): writes value into out at offset
Encoder = Callable[[Any, bytearray, int, str], None]
# decoder(data, offset): the value stored at offset
Decoder = Callable[[bytes, int], Any]

_CACHE_MAX = 256  # codecs of types that belong to no spec (hand-made types)
_MAX_DEPTH = 64
_MAX_EMPTY_ELEMS = 1 << 16  # decoding an array of zero-size elements costs time, not bytes
_encoders: dict[Type, Encoder] = Bounded(_CACHE_MAX)
_decoders: dict[Type, Decoder] = Bounded(_CACHE_MAX)
_INT_FORMATS = {(1, False): "<B", (2, False): "<H", (4, False): "<I", (8, False): "<Q",
                (1, True): "<b", (2, True): "<h", (4, True): "<i", (8, True): "<q"}


def _is_char_array(t: Array) -> bool:
    elem = skip_typedefs(t.type)
    return isinstance(elem, Int) and elem.size == 1 and (
        bool(elem.encoding & IntEncoding.CHAR) or elem.name == "char")


def describe(t: Type, _seen: frozenset[int] = frozenset()) -> str:
    """A short C-like description of a type for error messages (``<cycle>`` where
    malformed BTF makes a pointer or array refer back to itself)."""
    inner = skip_typedefs(t)
    if id(inner) in _seen or len(_seen) > _MAX_DEPTH:
        return "<cycle>"
    if isinstance(inner, Array):          # int m[3][4]: an array of 3 arrays of 4
        dims = ""
        seen = set(_seen)
        while isinstance(inner, Array):
            if id(inner) in seen or len(seen) > _MAX_DEPTH:
                return "<cycle>" + dims
            seen.add(id(inner))
            dims += f"[{inner.nelems}]"
            t = inner.type
            inner = skip_typedefs(t)
        return describe(t, frozenset(seen)) + dims
    if isinstance(inner, Pointer):
        return f"{describe(inner.type, _seen | {id(inner)})} *"
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
    encoder(t)(value, out, 0, what)
    return bytes(out)


def decode(t: Type, data: bytes | bytearray | memoryview) -> Any:
    """The Python value of C type `t` stored in `data`: ints (bools for _Bool), str for
    char arrays up to the first NUL (bytes when that is not UTF-8 text), lists for
    arrays, dicts for structs and unions (members of anonymous members merged in),
    bytes for what has no Python counterpart (such as a 16-byte long double).

    Raises InvalidArgumentError when `data` is shorter than the type."""
    dec = decoder(t)
    size = sizeof(t)
    if len(data) < size:
        raise InvalidArgumentError(f"{describe(t)} needs {size} bytes, got {len(data)}")
    return dec(bytes(data), 0)


def encoder(t: Type) -> Encoder:
    """The compiled encoder of `t` (cached)."""
    enc: Encoder = _cached(_encoders, "_values_encoders", t, _compile_encoder)
    return enc


def decoder(t: Type) -> Decoder:
    """The compiled decoder of `t` (cached)."""
    dec: Decoder = _cached(_decoders, "_values_decoders", t, _compile_decoder)
    return dec


def _cached(fallback: dict[Type, Any], name: str, t: Type,
            compile_: Callable[[Type, int], Any]) -> Any:
    # the compiled closure refers to `t`, which refers to its spec: cached on the spec
    # (attribute `name`), it dies with it; a module-level dict would keep the spec alive
    owner = t._spec
    cache = fallback if owner is None else attached(owner, name)
    fn = cache.get(t)
    if fn is None:
        fn = compile_(t, 0)
        cache[t] = fn
    return fn


def _char_array(t: Type) -> bool:
    inner = skip_typedefs(t)
    return isinstance(inner, Array) and _is_char_array(inner)


def _nested(t: Type, depth: int, compile_: Callable[[Type, int], Any]) -> Any:
    if depth >= _MAX_DEPTH:
        raise BTFError(f"type {describe(t)} nests more than {_MAX_DEPTH} levels deep")
    return compile_(t, depth + 1)


# ---- encoders


def _compile_encoder(t: Type, depth: int) -> Encoder:
    inner = skip_typedefs(t)
    if isinstance(inner, (Int, Enum)):
        return _int_encoder(t, inner)
    if isinstance(inner, Float):
        return _float_encoder(inner)
    if isinstance(inner, Pointer):
        return _put_u64
    if isinstance(inner, Array):
        return _array_encoder(t, inner, depth)
    if isinstance(inner, Composite):
        return _composite_encoder(t, inner, depth)

    def unsupported(value: Any, out: bytearray, off: int, what: str) -> None:
        raise InvalidArgumentError(f"cannot encode {what} of type {describe(t)}")

    return unsupported


def _int_encoder(t: Type, inner: Int | Enum) -> Encoder:
    size, signed = inner.size, inner.signed
    is_bool = isinstance(inner, Int) and bool(inner.encoding & IntEncoding.BOOL)
    enum = inner if isinstance(inner, Enum) else None
    bits = size * 8
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    fmt = _INT_FORMATS.get((size, signed))
    pack = struct.Struct(fmt).pack_into if fmt else None
    modulus = 1 << bits

    def enc(value: Any, out: bytearray, off: int, what: str) -> None:
        if is_bool:
            value = int(bool(value))
        elif isinstance(value, bool):
            value = int(value)
        elif enum is not None and isinstance(value, str):
            value = enum.value(value)
        if not isinstance(value, int):
            raise InvalidArgumentError(f"{what} must be an int for {describe(t)}, "
                                       f"got {type(value).__name__}")
        if not lo <= value < hi:
            raise InvalidArgumentError(
                f"{what}={value} does not fit {describe(t)} ({size} bytes, "
                f"{'signed' if signed else 'unsigned'})")
        if pack is not None:
            pack(out, off, value)
        else:
            out[off : off + size] = (value % modulus).to_bytes(size, "little")

    return enc


def _float_encoder(inner: Float) -> Encoder:
    fmt = {4: "<f", 8: "<d"}.get(inner.size)
    pack = struct.Struct(fmt).pack_into if fmt else None

    def enc(value: Any, out: bytearray, off: int, what: str) -> None:
        if pack is None:
            raise InvalidArgumentError(f"cannot encode {inner.size}-byte float {what}")
        try:
            if isinstance(value, (str, bytes, bytearray)):
                raise TypeError
            pack(out, off, float(value))
        except (TypeError, ValueError, OverflowError, struct.error):
            raise InvalidArgumentError(
                f"{what} must be a number that fits a {inner.size}-byte float, got "
                f"{type(value).__name__} {value!r}") from None

    return enc


def _put_u64(value: Any, out: bytearray, off: int, what: str) -> None:
    if not isinstance(value, int):
        raise InvalidArgumentError(f"{what} must be an int, got {type(value).__name__}")
    if not -(1 << 63) <= value < 1 << 64:  # (wrapped modulo 2**64, it would be another)
        raise InvalidArgumentError(f"{what}={value} does not fit a 64-bit pointer")
    out[off : off + 8] = (value % (1 << 64)).to_bytes(8, "little")


def _array_encoder(t: Type, inner: Array, depth: int) -> Encoder:
    nelems = inner.nelems
    if _is_char_array(inner):

        def enc_chars(value: Any, out: bytearray, off: int, what: str) -> None:
            try:
                if isinstance(value, int):  # bytes(5) would be five NUL bytes
                    raise TypeError
                data = (value.encode(errors="surrogateescape") if isinstance(value, str)
                        else bytes(value))
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"{what} must be a str or bytes for {describe(t)}, got "
                    f"{type(value).__name__} {value!r}") from None
            if len(data) > nelems:
                raise InvalidArgumentError(
                    f"{what} is {len(data)} bytes, longer than {describe(t)}")
            out[off : off + len(data)] = data

        return enc_chars
    elem: Encoder = _nested(inner.type, depth, _compile_encoder)
    esize = sizeof(inner.type)
    elem_type = skip_typedefs(inner.type)
    # integers pack in one call; anything struct refuses (a value out of range, a float,
    # an enumerator's name) goes through the element encoder for its precise error
    scalar = (_scalar_format(elem_type)
              if isinstance(elem_type, (Int, Enum)) and nelems > 1 else None)

    def enc(value: Any, out: bytearray, off: int, what: str) -> None:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise InvalidArgumentError(f"{what} must be a sequence for {describe(t)}")
        if len(value) > nelems:
            raise InvalidArgumentError(
                f"{what} has {len(value)} elements, {describe(t)} holds {nelems}")
        if scalar is not None:
            try:
                struct.pack_into(f"<{len(value)}{scalar}", out, off, *value)
                return
            except struct.error:
                pass
        for i, v in enumerate(value):
            elem(v, out, off + i * esize, f"{what}[{i}]")

    return enc


def _member_encoder(offset_bits: int, bitfield_size: int, mtype: Type, depth: int
                    ) -> Encoder:
    """Encodes one member at its offset from the start of the composite."""
    if bitfield_size:
        start, shift, nbits = offset_bits // 8, offset_bits % 8, bitfield_size
        nbytes = (shift + nbits + 7) // 8
        ones = (1 << nbits) - 1
        mask = ones << shift
        # a signed field takes negative values too (and, as before, its unsigned form)
        lo = -(1 << (nbits - 1)) if _signed(mtype) else 0

        def enc_bits(value: Any, out: bytearray, off: int, what: str) -> None:
            if isinstance(value, bool):
                value = int(value)
            if not isinstance(value, int) or not lo <= value <= ones:
                raise InvalidArgumentError(f"{what} must be an int in [{lo}, {ones + 1})")
            s = off + start
            cur = int.from_bytes(out[s : s + nbytes], "little")
            out[s : s + nbytes] = ((cur & ~mask) | ((value & ones) << shift)).to_bytes(
                nbytes, "little")

        return enc_bits
    inner_enc: Encoder = _nested(mtype, depth, _compile_encoder)
    delta = offset_bits // 8
    if not delta:
        return inner_enc

    def enc(value: Any, out: bytearray, off: int, what: str) -> None:
        inner_enc(value, out, off + delta, what)

    return enc


def _check_members(inner: Composite) -> None:
    """BTFError for a member that does not lie inside its struct/union (malformed BTF,
    which the kernel refuses too): its codec would read or write past the value."""
    for m in inner.members:
        end = m.offset_bits + (m.bitfield_size or 8 * sizeof(m.type))
        if end > 8 * inner.size:
            raise BTFError(f"member {m.name!r} of {describe(inner)} ends at bit {end}, "
                           f"past its {inner.size} bytes")


def _composite_encoder(t: Type, inner: Composite, depth: int) -> Encoder:
    _check_members(inner)
    members: dict[str, Any] = {}
    for m in inner.members:
        if m.name:
            members.setdefault(m.name, m)   # the first member of a name wins, as in C
    compiled: dict[str, Encoder] = {}       # members are compiled on first use

    def member_encoder(key: str) -> Encoder:
        m = members.get(key)
        if m is None:
            # a member of an anonymous struct/union member, by its own name
            try:
                m = inner.member(key)
            except KeyError:
                raise InvalidArgumentError(
                    f"{describe(t)} has no member {key!r} (members: "
                    f"{', '.join(sorted(members))})") from None
        e = compiled[key] = _member_encoder(m.offset_bits, m.bitfield_size, m.type, depth)
        return e

    def enc(value: Any, out: bytearray, off: int, what: str) -> None:
        if not isinstance(value, Mapping):
            raise InvalidArgumentError(
                f"{what} must be a dict of members (or bytes) for {describe(t)}")
        for key, v in value.items():
            e = compiled.get(key)
            if e is None:
                e = member_encoder(key)
            e(v, out, off, f"{what}.{key}")

    return enc


# ---- decoders


def _compile_decoder(t: Type, depth: int) -> Decoder:
    inner = skip_typedefs(t)
    if isinstance(inner, (Int, Enum)):
        return _int_decoder(inner)
    if isinstance(inner, Float) and inner.size in (4, 8):
        unpack = struct.Struct("<f" if inner.size == 4 else "<d").unpack_from
        return lambda data, off: unpack(data, off)[0]
    if isinstance(inner, Pointer):
        return lambda data, off: int.from_bytes(data[off : off + 8], "little")
    if isinstance(inner, Array):
        return _array_decoder(inner, depth)
    if isinstance(inner, Composite):
        return _composite_decoder(inner, depth)
    size = inner.size if isinstance(inner, Datasec) else sizeof(t)
    return lambda data, off: data[off : off + size]


def _int_decoder(inner: Int | Enum) -> Decoder:
    size, signed = inner.size, inner.signed
    fmt = _INT_FORMATS.get((size, signed))
    if isinstance(inner, Int) and inner.encoding & IntEncoding.BOOL:
        return lambda data, off: bool(int.from_bytes(data[off : off + size], "little"))
    if fmt is not None:
        unpack = struct.Struct(fmt).unpack_from
        return lambda data, off: unpack(data, off)[0]
    return lambda data, off: int.from_bytes(data[off : off + size], "little", signed=signed)


def _array_decoder(inner: Array, depth: int) -> Decoder:
    nelems = inner.nelems
    if _is_char_array(inner):
        def dec_chars(data: bytes, off: int) -> str | bytes:
            raw = data[off : off + nelems].split(b"\0", 1)[0]
            try:
                return raw.decode()
            except UnicodeDecodeError:
                return raw          # not text: the bytes, which encode back unchanged

        return dec_chars
    scalar = _scalar_format(inner.type)
    if scalar is not None and nelems > 1:   # one unpack for the whole array
        whole = struct.Struct(f"<{nelems}{scalar}").unpack_from
        return lambda data, off: list(whole(data, off))
    elem: Decoder = _nested(inner.type, depth, _compile_decoder)
    esize = sizeof(inner.type)
    if esize == 0 and nelems > _MAX_EMPTY_ELEMS:
        raise BTFError(f"{describe(inner)}: {nelems} elements of zero size")
    return lambda data, off: [elem(data, off + i * esize) for i in range(nelems)]


def _scalar_format(t: Type) -> str | None:
    """The struct format letter of a plain integer/enum/float element (not bool, not a
    bitfield-sized int), else None."""
    inner = skip_typedefs(t)
    if isinstance(inner, Float) and inner.size in (4, 8):
        return "f" if inner.size == 4 else "d"
    if isinstance(inner, Int) and inner.encoding & IntEncoding.BOOL:
        return None
    if isinstance(inner, (Int, Enum)):
        fmt = _INT_FORMATS.get((inner.size, inner.signed))
        return fmt[1:] if fmt else None
    return None


def _composite_decoder(inner: Composite, depth: int) -> Decoder:
    _check_members(inner)
    # (name, byte offset, decoder) for whole members; bitfields decode inline
    fields: list[tuple[str, int, Decoder]] = []
    for m in inner.members:
        if m.bitfield_size:
            fields.append((m.name, 0, _bitfield_decoder(m.offset_bits, m.bitfield_size,
                                                        _signed(m.type))))
        else:
            fields.append((m.name, m.offset_bits // 8,
                           _nested(m.type, depth, _compile_decoder)))

    def dec(data: bytes, off: int) -> Any:
        out: dict[str, Any] = {}
        for name, delta, d in fields:
            val = d(data, off + delta)
            if name:
                out[name] = val
            elif isinstance(val, dict):
                out.update(val)
        return out

    return dec


def _bitfield_decoder(offset_bits: int, nbits: int, signed: bool) -> Decoder:
    start, shift = offset_bits // 8, offset_bits % 8
    nbytes = (shift + nbits + 7) // 8
    mask = (1 << nbits) - 1
    sign = 1 << (nbits - 1) if signed else 0

    def dec(data: bytes, off: int) -> int:
        v = (int.from_bytes(data[off + start : off + start + nbytes], "little") >> shift) & mask
        return (v ^ sign) - sign            # sign-extends when sign != 0

    return dec


def _signed(t: Type) -> bool:
    inner = skip_typedefs(t)
    return isinstance(inner, (Int, Enum)) and inner.signed
