"""Map BTF types to ctypes types with the exact same layout.

    value_t = btf.to_ctypes(spec.type_by_name("event"))
    ev = value_t.from_buffer_copy(raw)     # ev.pid, ev.comm (bytes), ev.flags ...

Integers map to the ctypes integer of their size and signedness (`_Bool` to
c_bool), enums to integers, floats to c_float/c_double, pointers to c_uint64
(BPF pointers are 64-bit whatever the host), arrays to ctypes arrays (arrays of
`char` to `c_char` arrays, whose `.value` is bytes), structs and unions to
`ctypes.Structure`/`ctypes.Union` subclasses laid out member by member at the
BTF offsets (`_pack_ = 1` plus explicit padding fields, so the size is exactly
the BTF size), anonymous struct/union members through `_anonymous_`.

Bitfields become ctypes bitfields when they can be placed in storage units
that do not overlap other members; otherwise (e.g. a 40-bit field followed by
a `char` in the same 8 bytes) the bytes they occupy become a hidden field and
each bitfield a property on the class. `_btf_members_` on a generated class
lists its member names in order either way.

Conversions are cached per `Type` object (mutating a type afterwards is not
noticed).

`to_dtype` gives the numpy dtype of the same layout (for readers' `read_array`):
integers, enums, floats and pointers as numpy scalars, arrays of `char` as ``S<n>``,
other arrays as subarrays, structs and unions as records at the BTF offsets with
the BTF size; bitfields are left out.
"""

from __future__ import annotations

import _thread  # (threading's RLock, without importing threading: process start)
import ctypes
import sys

from .._objcache import Bounded, attached
from ..errors import BTFError, InvalidArgumentError
from .types import (
    MAX_DEPTH,
    Array,
    Composite,
    Datasec,
    Enum,
    Float,
    Int,
    IntEncoding,
    Member,
    Pointer,
    Type,
    Union,
    Var,
    skip_typedefs,
    strip_qualifiers,
)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    CType = Any  # a ctypes type (type[ctypes._CData] is not expressible portably)

_INTS: dict[tuple[int, bool], CType] = {
    (1, False): ctypes.c_uint8, (1, True): ctypes.c_int8,
    (2, False): ctypes.c_uint16, (2, True): ctypes.c_int16,
    (4, False): ctypes.c_uint32, (4, True): ctypes.c_int32,
    (8, False): ctypes.c_uint64, (8, True): ctypes.c_int64,
}
_FLOATS: dict[int, CType] = {4: ctypes.c_float, 8: ctypes.c_double}
if ctypes.sizeof(ctypes.c_longdouble) == 16:
    _FLOATS[16] = ctypes.c_longdouble
_CHAR_NAMES = frozenset(("char", "signed char", "unsigned char"))
_LITTLE = sys.byteorder == "little"

_MAX_SIZE = 1 << 30  # no BPF value comes close
_lock = _thread.RLock()
# id(type) -> (type, ctypes type, generation) for types that belong to no spec; a parsed
# type's conversion is cached on its spec (it dies with the spec, see ebpf._objcache)
_CACHE_MAX = 256
_cache: dict[int, tuple[Type, CType, int]] = Bounded(_CACHE_MAX)
_generation = 0  # bumped by clear_cache(): older entries (on any spec) are stale


def to_ctypes(t: Type) -> CType:
    """The ctypes type with the layout of BTF type `t` (cached per type object).

    Raises BTFError for types without a layout (void, functions, forward
    declarations) and for malformed ones (members overlapping or exceeding
    the size, a struct containing itself).
    """
    with _lock:
        try:
            return _Converter().convert(t, 0)
        except (OverflowError, MemoryError, ValueError, TypeError) as e:
            if isinstance(e, BTFError):
                raise
            raise BTFError(f"cannot lay out {t.type_name} with ctypes: {e}") from None


def clear_cache() -> None:
    """Forget every conversion (e.g. after editing types in place)."""
    global _generation
    with _lock:
        _cache.clear()
        _generation += 1


def _is_char(t: Type) -> bool:
    t = skip_typedefs(t)
    return isinstance(t, Int) and t.size == 1 and (
        bool(t.encoding & IntEncoding.CHAR) or t.name in _CHAR_NAMES)


def _int_type(size: int, signed: bool) -> CType:
    ct = _INTS.get((size, signed))
    return ct if ct is not None else ctypes.c_uint8 * size


def _bitfield_of(m: Member) -> tuple[int, int, bool] | None:
    """(bit offset, bits, signed) of a bitfield member, None for a plain member."""
    inner = skip_typedefs(m.type)
    signed = (isinstance(inner, Int) and inner.signed) or (isinstance(inner, Enum) and inner.signed)
    if m.bitfield_size:
        return m.offset_bits, m.bitfield_size, signed
    if isinstance(inner, Int) and (inner.offset or inner.bits != 8 * inner.size):
        return m.offset_bits + inner.offset, inner.bits, signed  # pre-kflag encoding
    return None


class _Converter:
    def __init__(self) -> None:
        self.busy: set[int] = set()

    def convert(self, t: Type, depth: int) -> CType:
        if depth > MAX_DEPTH:
            raise BTFError(f"types nest too deeply converting {t!r} to ctypes")
        owner = t._spec
        cache = _cache if owner is None else attached(owner, "_ctypes_conv_cache")
        hit = cache.get(id(t))
        if hit is not None and hit[0] is t and hit[2] == _generation:
            return hit[1]
        ct = self._convert(t, depth)
        cache[id(t)] = (t, ct, _generation)
        return ct

    def _convert(self, t: Type, depth: int) -> CType:
        base = skip_typedefs(t)
        if base is not t:
            return self.convert(base, depth + 1)
        size = getattr(t, "size", 0)
        if not isinstance(size, int) or not 0 <= size <= _MAX_SIZE:
            raise BTFError(f"{t.type_name} of {size} bytes is too big for ctypes")
        if isinstance(t, Int):
            if t.encoding & IntEncoding.BOOL and t.size == 1:
                return ctypes.c_bool
            return _int_type(t.size, t.signed)
        if isinstance(t, Enum):
            return _int_type(t.size, t.signed or any(v.value < 0 for v in t.values))
        if isinstance(t, Float):
            return _FLOATS.get(t.size) or ctypes.c_uint8 * t.size
        if isinstance(t, Pointer):
            return ctypes.c_uint64
        if isinstance(t, Array):
            elem = ctypes.c_char if _is_char(t.type) else self.convert(t.type, depth + 1)
            if t.nelems * ctypes.sizeof(elem) > _MAX_SIZE:
                raise BTFError(f"array of {t.nelems} elements is too big for ctypes")
            return elem * t.nelems
        if isinstance(t, Var):
            return self.convert(t.type, depth + 1)
        if isinstance(t, (Composite, Datasec)):
            if id(t) in self.busy:
                raise BTFError(f"{t.type_name} contains itself")
            self.busy.add(id(t))
            try:
                return self._composite(t, depth)
            finally:
                self.busy.discard(id(t))
        raise BTFError(f"{t.type_name} ({type(t).__name__}) has no ctypes layout")

    # -- structs and unions -------------------------------------------------------

    def _composite(self, t: Composite | Datasec, depth: int) -> CType:
        if isinstance(t, Datasec):
            members = [Member(v.type.name, v.type, 8 * v.offset) for v in t.vars]
            members.sort(key=lambda m: m.offset_bits)
            is_union = False
        else:
            members = t.members
            is_union = isinstance(t, Union)
        size = t.size
        layout = _Layout(t.type_name, size)
        if is_union:
            for m in members:
                bf = _bitfield_of(m)
                if bf is None and m.offset_bits == 0:
                    layout.union_member(m.name, self.convert(m.type, depth + 1),
                                        _is_anon_composite(m))
                else:  # a bitfield, or a member not at 0: wrap it in a struct at offset 0
                    inner = _Layout(f"{t.type_name}.{m.name}", size)
                    self._struct_members(inner, [m], size, depth)
                    layout.union_member(f"_u{len(layout.fields)}", inner.build(False, size),
                                        True, inner)
        else:
            self._struct_members(layout, list(members), size, depth)
        return layout.build(is_union, size)

    def _struct_members(self, layout: _Layout, members: list[Member], size: int,
                        depth: int) -> None:
        i = 0
        while i < len(members):
            m = members[i]
            if _bitfield_of(m) is None:
                if m.offset_bits % 8:
                    raise BTFError(f"member {m.name!r} of {layout.name} is not byte aligned")
                ct = self.convert(m.type, depth + 1)
                layout.struct_member(m.name, ct, m.offset_bits // 8, _is_anon_composite(m))
                i += 1
                continue
            j = i
            run: list[tuple[str, int, int, bool]] = []
            while j < len(members):
                bf = _bitfield_of(members[j])
                if bf is None:
                    break
                run.append((members[j].name, *bf))
                j += 1
            limit = members[j].offset_bits // 8 if j < len(members) else size
            layout.bitfields(run, limit)
            i = j


def _is_anon_composite(m: Member) -> bool:
    return m.name == "" and isinstance(skip_typedefs(m.type), Composite)


class _Layout:
    """Builds the _fields_ of one generated ctypes class."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self.fields: list[tuple[Any, ...]] = []
        self.anonymous: list[str] = []
        self.props: dict[str, property] = {}
        # how each property is made, for `ebpf gen` (which writes these classes as source):
        # bitfield name -> (byte offset, bytes, bit offset, bits, signed); forwarded
        # name -> the anonymous member it lives in
        self.bitprops: dict[str, tuple[int, int, int, int, bool]] = {}
        self.forwards: dict[str, str] = {}
        self.members: list[str] = []
        self.cursor = 0
        self.npad = 0

    def _pad_to(self, offset: int, what: str) -> None:
        if offset < self.cursor:
            raise BTFError(f"{what} of {self.name} at byte {offset} overlaps the member "
                           f"before it (which ends at byte {self.cursor})")
        if offset > self.cursor:
            self.fields.append((f"_pad{self.npad}", ctypes.c_uint8 * (offset - self.cursor)))
            self.npad += 1
            self.cursor = offset

    def _anon_name(self) -> str:
        return f"_anon{len(self.anonymous)}"

    def struct_member(self, name: str, ct: CType, offset: int, anon: bool) -> None:
        self._pad_to(offset, f"member {name!r}")
        if anon:
            name = self._anon_name()
            self.anonymous.append(name)
            self._forward_props(name, ct)
        elif not name:
            name = f"_unnamed{len(self.fields)}"
        self.fields.append((name, ct))
        self.members.append(name)
        self.cursor = offset + ctypes.sizeof(ct)
        if self.cursor > self.size:
            raise BTFError(f"member {name!r} of {self.name} ends at byte {self.cursor}, "
                           f"beyond its size {self.size}")

    def union_member(self, name: str, ct: CType, anon: bool,
                     wrapped: _Layout | None = None) -> None:
        if ctypes.sizeof(ct) > self.size:
            raise BTFError(f"member {name!r} of {self.name} is bigger than the union")
        if anon:
            name = self._anon_name() if wrapped is None else name
            self.anonymous.append(name)
            self._forward_props(name, ct)
        elif not name:
            name = f"_unnamed{len(self.fields)}"
        self.fields.append((name, ct))
        if wrapped is not None:
            self.members.extend(wrapped.members)
        else:
            self.members.append(name)

    def _forward_props(self, anon: str, ct: CType) -> None:
        """ctypes promotes the fields of an anonymous member, not its properties."""
        for pname in getattr(ct, "_btf_props_", ()):
            self.props[pname] = _forward(anon, pname)
            self.forwards[pname] = anon

    def bitfields(self, run: list[tuple[str, int, int, bool]], limit: int) -> None:
        """Place a run of consecutive bitfields (name, bit offset, bits, signed) that
        must end before byte `limit`."""
        for name, off, bits, _ in run:
            if bits <= 0 or off < 8 * self.cursor:
                raise BTFError(f"bitfield {name!r} of {self.name} at bit {off} overlaps "
                               "the member before it")
        units = _ctypes_units(run, self.cursor, limit) if _LITTLE else None
        if units is not None:
            for start, usize, fields in units:
                self._pad_to(start, "a bitfield")
                for fname, fbits, signed in fields:
                    if fname:
                        self.members.append(fname)
                    self.fields.append((fname or f"_bits{len(self.fields)}",
                                        _INTS[(usize, signed)], fbits))
                self.cursor = start + usize
            return
        lo = min(off for _, off, _, _ in run) // 8
        hi = (max(off + bits for _, off, bits, _ in run) + 7) // 8
        if hi > limit:
            raise BTFError(f"bitfields of {self.name} run past byte {limit}")
        self._pad_to(lo, "a bitfield")
        hidden = f"_bitfields{len(self.fields)}"
        self.fields.append((hidden, ctypes.c_uint8 * (hi - lo)))
        self.cursor = hi
        for name, off, bits, signed in run:
            if name:
                self.props[name] = _bit_property(lo, hi - lo, off - 8 * lo, bits, signed)
                self.bitprops[name] = (lo, hi - lo, off - 8 * lo, bits, signed)
                self.members.append(name)

    def build(self, is_union: bool, size: int) -> CType:
        if not is_union:
            self._pad_to(size, "the end")
        else:
            self.fields.append(("_btf_size_", ctypes.c_uint8 * size))
        ns: dict[str, Any] = {"_pack_": 1, "_btf_members_": tuple(self.members),
                              "_btf_props_": tuple(self.props),
                              "_btf_bitprops_": dict(self.bitprops),
                              "_btf_forwards_": dict(self.forwards)}
        if sys.version_info >= (3, 13):
            ns["_layout_"] = "ms"  # _pack_ means MSVC-like layout there (as here)
        if self.anonymous:
            ns["_anonymous_"] = tuple(self.anonymous)
        ns["_fields_"] = self.fields
        ns.update(self.props)
        base = ctypes.Union if is_union else ctypes.Structure
        cls_name = self.name.replace(" ", "_").replace("(anon)", "anon")
        try:
            ct = type(cls_name, (base,), ns)
        except (TypeError, ValueError, AttributeError) as e:
            raise BTFError(f"cannot lay out {self.name} with ctypes: {e}") from None
        if ctypes.sizeof(ct) != size:
            raise BTFError(f"{self.name}: ctypes layout is {ctypes.sizeof(ct)} bytes, "
                           f"BTF says {size}")
        return ct


def _ctypes_units(run: list[tuple[str, int, int, bool]], cursor: int,
                  limit: int) -> list[tuple[int, int, list[tuple[str, int, bool]]]] | None:
    """Storage units (start byte, size, [(name, bits, signed)]) holding the run as
    ctypes bitfields (filler fields have no name), or None if they cannot."""
    units: list[tuple[int, int, list[tuple[str, int, bool]]]] = []
    used = 0  # bits used of the last unit
    for name, off, bits, signed in run:
        if units:
            start, usize, fields = units[-1]
            rel = off - 8 * start
            if rel >= used and rel + bits <= 8 * usize:
                if rel > used:
                    fields.append(("", rel - used, False))
                fields.append((name, bits, signed))
                used = rel + bits
                continue
            if used < 8 * usize:
                fields.append(("", 8 * usize - used, False))
            cursor = start + usize
        start = max(cursor, off // 8)
        for usize in (1, 2, 4, 8):
            if 8 * (start + usize) >= off + bits and start + usize <= limit:
                break
        else:
            return None
        rel = off - 8 * start
        if rel < 0:
            return None
        fields = [("", rel, False)] if rel else []
        fields.append((name, bits, signed))
        units.append((start, usize, fields))
        used = rel + bits
    if units:
        start, usize, fields = units[-1]
        if used < 8 * usize:
            fields.append(("", 8 * usize - used, False))
    return units


def _bit_property(byte_off: int, nbytes: int, bit_off: int, bits: int,
                  signed: bool) -> property:
    mask = (1 << bits) - 1
    total = 8 * nbytes
    shift = bit_off if _LITTLE else total - bit_off - bits
    order: Any = sys.byteorder

    def get(self: ctypes.Structure) -> int:
        raw = int.from_bytes(ctypes.string_at(ctypes.addressof(self) + byte_off, nbytes), order)
        v = (raw >> shift) & mask
        if signed and v >> (bits - 1):
            v -= 1 << bits
        return v

    def set_(self: ctypes.Structure, value: int) -> None:
        addr = ctypes.addressof(self) + byte_off
        raw = int.from_bytes(ctypes.string_at(addr, nbytes), order)
        raw = (raw & ~(mask << shift)) | ((int(value) & mask) << shift)
        ctypes.memmove(addr, raw.to_bytes(nbytes, order), nbytes)

    return property(get, set_)


def _forward(anon: str, name: str) -> property:
    def get(self: ctypes.Structure) -> Any:
        return getattr(getattr(self, anon), name)

    def set_(self: ctypes.Structure, value: Any) -> None:
        setattr(getattr(self, anon), name, value)

    return property(get, set_)


def to_dtype(t: Type) -> Any:
    """A numpy dtype with the layout of BTF type `t` (char arrays become ``S<n>``,
    pointers u8 integers; bitfields are left out). Needs numpy."""
    import numpy as np  # optional dependency, only for numpy output

    inner = strip_qualifiers(skip_typedefs(t))
    inner = skip_typedefs(strip_qualifiers(inner))
    if isinstance(inner, Int):
        if inner.name == "_Bool":
            return np.dtype(np.bool_)
        if inner.size in (1, 2, 4, 8):
            return np.dtype(f"{'i' if inner.signed else 'u'}{inner.size}")
        return np.dtype(f"V{inner.size}")
    if isinstance(inner, Enum):
        return np.dtype(f"{'i' if inner.signed else 'u'}{inner.size}")
    if isinstance(inner, Float):
        return np.dtype(f"f{inner.size}")
    if isinstance(inner, Pointer):
        return np.dtype("u8")
    if isinstance(inner, Array):
        elem = strip_qualifiers(skip_typedefs(inner.type))
        if isinstance(elem, Int) and elem.size == 1 and "char" in elem.name:
            return np.dtype(f"S{inner.nelems}")
        return np.dtype((to_dtype(inner.type), (inner.nelems,)))
    if isinstance(inner, Composite):
        names: list[str] = []
        formats: list[Any] = []
        offsets: list[int] = []
        for i, m in enumerate(inner.members):
            if m.bitfield_size:
                continue
            names.append(m.name or f"_anon{i}")
            formats.append(to_dtype(m.type))
            offsets.append(m.offset_bits // 8)
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "itemsize": inner.size})
    raise InvalidArgumentError(f"cannot make a numpy dtype for BTF type {t.type_name}")


__all__ = ["clear_cache", "to_ctypes", "to_dtype"]

