"""The value codec of maps: keys and values packed into the kernel's bytes (ints,
bytes, ctypes objects, fds, anything `ebpf.btf.values.encode` takes with BTF) and
decoded back (ints, `ebpf.btf.to_ctypes` instances, `ebpf.btf.values.decode` values).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Iterable, Sequence

import ebpf._lazyattr as _lazyattr

from .._sys import types as _t
from ..errors import Error, InvalidArgumentError
from .base import INT_FORMATS, MapState

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any, Final

    from .. import btf

__all__ = ["Buffers", "MapCodec", "decoder", "element_codec", "int_format", "pack_into",
           "plain_elements"]

_BYTEORDER: Final = sys.byteorder


class Buffers:
    """Preallocated key/value buffers and attrs for one thread's element operations."""

    __slots__ = ("kbuf", "kmv", "kraw", "lattr", "lref", "uattr", "uref", "vbuf", "vmv",
                 "vraw")

    def __init__(self, fd: int, key_size: int, value_bytes: int, kfmt: str | None,
                 vfmt: str | None) -> None:
        # (what ctypes.create_string_buffer(n) makes, without its Python-level call; each
        # typed view (a one-element int view, for fast int packing) from the buffer's byte
        # view; the attrs set field by field, which costs less than constructor arguments)
        kbuf = self.kbuf = (ctypes.c_char * max(key_size, 1))()
        kb = memoryview(kbuf).cast("B")
        self.kraw = kb[:key_size]
        self.kmv = None if kfmt is None else kb.cast(kfmt)  # type: ignore[call-overload]
        vbuf = self.vbuf = (ctypes.c_char * max(value_bytes, 1))()
        vb = memoryview(vbuf).cast("B")
        self.vraw = vb[:value_bytes]
        self.vmv = None if vfmt is None else vb.cast(vfmt)  # type: ignore[call-overload]
        kaddr = ctypes.addressof(kbuf) if key_size else 0
        vaddr = ctypes.addressof(vbuf)
        la = self.lattr = _t.MapElemAttr()
        la.map_fd, la.key, la.value = fd, kaddr, vaddr
        self.lref = ctypes.byref(la)
        ua = self.uattr = _t.MapElemAttr()
        ua.map_fd, ua.key, ua.value = fd, kaddr, vaddr
        self.uref = ctypes.byref(ua)


# `ebpf.btf`, imported on the first typed map (`import ebpf.maps` loads no BTF code)
_btf = _lazyattr.on_first_use("ebpf.btf")


def plain_elements(key: btf.Type | None, value: btf.Type | None) -> bool:
    """Whether a map's elements are read without BTF types: no key type, and no value type
    or a data section's (global data). Their `element_codec` depends on the sizes alone."""
    return key is None and (value is None or value.__class__ is _btf().Datasec)


def element_codec(key_size: int, value_size: int, key: btf.Type | None,
                  value: btf.Type | None) -> tuple[str | None, str | None, Any, Any, int]:
    """(key format, value format, key decoder, value decoder, value mode) of a map:
    `int_format` and `decoder` of its key and value."""
    if plain_elements(key, value):  # formats by size, no decoders
        return INT_FORMATS.get(key_size), INT_FORMATS.get(value_size), None, None, 0
    return (int_format(key_size, key), int_format(value_size, value), decoder(key, key_size)[0],
            *decoder(value, value_size))


def int_format(size: int, t: btf.Type | None) -> str | None:
    fmt = INT_FORMATS.get(size)
    if fmt is None:
        return None
    if t is not None:
        b = _btf()
        inner = b.skip_typedefs(t)
        if isinstance(inner, (b.Int, b.Enum)) and inner.signed:
            return fmt.lower()
    return fmt


def decoder(t: btf.Type | None, size: int) -> tuple[Any, int]:
    """(decode(bytes) -> value, mode): mode 0 raw bytes, 1 plain int, 2 other."""
    if t is None:
        return None, 0
    b = _btf()
    inner = b.skip_typedefs(t)
    if isinstance(inner, b.Datasec):
        return None, 0
    Int = b.Int
    if isinstance(inner, (Int, b.Enum)) and inner.size == size:
        signed = inner.signed
        if isinstance(inner, Int) and inner._encoding & 4:  # IntEncoding.BOOL, read raw
            return (lambda raw: raw != bytes(len(raw))), 2

        def dec_int(raw: bytes) -> int:
            return int.from_bytes(raw, _BYTEORDER, signed=signed)
        return dec_int, (1 if size in INT_FORMATS else 2)
    ctype = ctypes_or_none(t)
    if ctype is not None and ctypes.sizeof(ctype) == size:
        return ctype.from_buffer_copy, 2
    # BTF code on first typed use: `import ebpf.maps` loads none
    from ..btf import values as _values

    return (lambda raw: _values.decode(t, raw)), 2


def ctypes_or_none(t: btf.Type) -> Any:
    """The ctypes type of `t`, or None when it has none."""
    # BTF code on first typed use: `import ebpf.maps` loads none
    from ..btf import to_ctypes

    try:
        return to_ctypes(t)
    except (Error, ValueError, TypeError):
        return None


CTYPES_BASES: Final = (ctypes._SimpleCData, ctypes.Structure, ctypes.Union, ctypes.Array)


def pack_into(dest: memoryview, obj: Any, size: int, what: str, t: btf.Type | None,
              fd_values: bool) -> None:
    """Write `obj` as exactly `size` bytes into `dest` or raise InvalidArgumentError."""
    if isinstance(obj, int):  # packed raw, native byte order, two's complement if < 0
        try:
            dest[:] = int(obj).to_bytes(size, _BYTEORDER, signed=obj < 0)
        except OverflowError:
            raise InvalidArgumentError(f"{what} {obj} does not fit in {size} bytes") from None
        return
    if isinstance(obj, (bytes, bytearray, memoryview)):
        n = obj.nbytes if isinstance(obj, memoryview) else len(obj)
        if n != size:
            raise InvalidArgumentError(f"{what} must be {size} bytes, got {n}")
        dest[:] = obj if not isinstance(obj, memoryview) else obj.cast("B")
        return
    if isinstance(obj, CTYPES_BASES):
        n = ctypes.sizeof(obj)
        if n != size:
            raise InvalidArgumentError(
                f"{what} must be {size} bytes, got {n} ({type(obj).__name__})")
        dest[:] = memoryview(obj).cast("B")
        return
    if fd_values and hasattr(obj, "fileno"):
        pack_into(dest, int(obj.fileno()), size, what, None, False)
        return
    if t is not None:
        dest[:] = btf_encode(t, obj, what)
        return
    raise InvalidArgumentError(
        f"{what} must be an int, bytes or a ctypes object of {size} bytes, got "
        f"{type(obj).__name__}")


def btf_encode(t: btf.Type, obj: Any, what: str) -> bytes:
    # BTF code on first typed use: `import ebpf.maps` loads none
    from ..btf import values as _values

    return _values.encode(t, obj, what)


class MapCodec(MapState):
    """Packing keys and values into a thread's `Buffers`, decoding what the kernel
    returns (per-CPU values: one per possible CPU)."""

    __slots__ = ()

    def _put_key(self, b: Buffers, key: Any) -> None:
        ks = self._key_size
        if key.__class__ is int and b.kmv is not None:
            try:
                b.kmv[0] = key
                return
            except ValueError:
                pass
        pack_into(b.kraw, key, ks, "key", self._ktype, False)

    def _put_value(self, b: Buffers, value: Any) -> None:
        if self._ncpu:
            self._put_percpu(b.vraw, value)
            return
        if value.__class__ is int and b.vmv is not None:
            try:
                b.vmv[0] = value
                return
            except ValueError:
                pass
        pack_into(b.vraw, value, self._value_size, "value", self._vtype, self._fd_values)

    def _put_percpu(self, dest: memoryview, value: Any) -> None:
        n = self._ncpu
        if isinstance(value, (str, bytes, bytearray, memoryview)) or not isinstance(
                value, Sequence):
            raise InvalidArgumentError(
                f"a per-CPU map value must be a sequence of {n} values (one per possible "
                f"CPU), got {type(value).__name__}")
        if len(value) != n:
            raise InvalidArgumentError(
                f"a per-CPU map value must have {n} elements (one per possible CPU), "
                f"got {len(value)}")
        stride, vs = self._vstride, self._value_size
        for i, v in enumerate(value):
            slot = dest[i * stride: i * stride + stride]
            if stride != vs:
                slot[vs:] = bytes(stride - vs)
            pack_into(slot[:vs], v, vs, f"value[{i}]", self._vtype, False)

    def _decode_value(self, raw: bytes, typed: bool) -> Any:
        if self._ncpu:
            stride, vs = self._vstride, self._value_size
            out = [raw[i * stride: i * stride + vs] for i in range(self._ncpu)]
            if typed and self._vdec is not None:
                dec = self._vdec
                return [dec(v) for v in out]
            return out
        if typed and self._vdec is not None:
            return self._vdec(raw)
        return raw

    def _decode_key(self, raw: bytes, typed: bool) -> Any:
        if typed and self._kdec is not None:
            return self._kdec(raw)
        return raw

    def _decode_values(self, vals: list[bytes], typed: bool) -> Iterable[Any]:
        if self._ncpu:
            return [self._decode_value(v, typed) for v in vals]
        if typed and self._vdec is not None:
            return map(self._vdec, vals)
        return vals
