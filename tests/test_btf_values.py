"""btf.values: Python values <-> the bytes of BTF-described C types (template variables,
typed map values). Property tests over every struct and union of the kernel's BTF and
clang's own types, plus the errors a user sees."""

from __future__ import annotations

import ctypes
import os
import struct

import pytest
from bpfbuild import compile_bpf
from hypothesis import given, settings
from hypothesis import strategies as st

from ebpf import btf
from ebpf.btf import values
from ebpf.btf.ctypes_conv import to_ctypes
from ebpf.btf.kernel import VMLINUX
from ebpf.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def clang() -> btf.Spec:
    return btf.load_spec(str(compile_bpf("btf_kinds")))


def _has_union(t: btf.Type, depth: int = 0) -> bool:
    t = btf.skip_typedefs(t)
    while isinstance(t, btf.Array):
        t = btf.skip_typedefs(t.type)
    if isinstance(t, btf.Union):
        return True
    return isinstance(t, btf.Struct) and depth < 32 and any(
        _has_union(m.type, depth + 1) for m in t.members)


def _kernel_structs() -> list[btf.Type]:
    """Structs without unions: a union's members overlap, so a dict of all of them
    cannot round-trip (the last one written wins)."""
    if not os.path.exists(VMLINUX):
        return []
    return [t for t in btf.load_kernel_spec()
            if isinstance(t, btf.Struct) and 0 < btf.sizeof(t) <= 1024 and not _has_union(t)]


KERNEL_TYPES = _kernel_structs()


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_kernel_types_round_trip(data: st.DataObject) -> None:
    """decode -> encode -> decode is stable for the kernel's structs (ints of every
    size, bitfields, bools, enums, char arrays with any bytes, nested arrays)."""
    assert KERNEL_TYPES, f"{VMLINUX} has no structs?"
    t = data.draw(st.sampled_from(KERNEL_TYPES))
    raw = data.draw(st.binary(min_size=btf.sizeof(t), max_size=btf.sizeof(t)))
    v = values.decode(t, raw)
    again = values.encode(t, v)
    assert len(again) == btf.sizeof(t)
    assert values.decode(t, again) == v


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(min_size=1, max_size=1))
def test_bits_struct_matches_ctypes(clang: btf.Spec, raw: bytes) -> None:
    """Every member of a struct full of bitfields, each kind of int, a bool and a
    char array reads back what ctypes (an independent layout) reads."""
    t = clang.type_by_name("bits")
    size = btf.sizeof(t)
    data = (raw * size)[:size]
    v = values.decode(t, data)
    obj = to_ctypes(t).from_buffer_copy(data)
    for name in ("a", "b", "c", "d", "flag", "s", "us", "sc", "l"):
        assert v[name] == getattr(obj, name), name
    assert v["wide"] == int.from_bytes(bytes(obj.wide), "little", signed=True)  # __int128
    # char arrays: str up to the first NUL, or bytes where that is not UTF-8
    name = obj.name.split(b"\0", 1)[0]
    assert v["name"] == (name.decode() if raw < b"\x80" else name)
    assert values.decode(t, values.encode(t, v)) == v


def test_struct_by_members(clang: btf.Spec) -> None:
    t = clang.type_by_name("kinds")
    data = values.encode(t, {
        "bits": {"a": 5, "b": -3, "c": (1 << 40) - 1, "flag": 7, "name": "comm"},
        "inner": {"x": 1, "y": 2, "named": {"z": -4, "d": 1.5}},
        "small": "SMALL_A", "big": 0xffffffffff, "negbig": -0x1ffffffff,
        "matrix": [[1, 2], [3]], "fl": 0.25, "opaque": (1 << 64) - 1,
    })
    obj = to_ctypes(t).from_buffer_copy(data)
    assert (obj.bits.a, obj.bits.b, obj.bits.c, obj.bits.flag) == (5, -3, (1 << 40) - 1, True)
    assert obj.bits.name == b"comm"
    assert (obj.inner.x, obj.inner.y, obj.inner.named.z, obj.inner.named.d) == (1, 2, -4, 1.5)
    assert (obj.small, obj.big, obj.negbig) == (-1, 0xffffffffff, -0x1ffffffff)
    assert [list(row) for row in obj.matrix] == [[1, 2, 0, 0], [3, 0, 0, 0], [0, 0, 0, 0]]
    assert obj.fl == 0.25
    v = values.decode(t, data)
    assert v["inner"]["y"] == 2 and v["inner"]["named"] == {"z": -4, "d": 1.5}
    assert v["opaque"] == (1 << 64) - 1
    with pytest.raises(InvalidArgumentError, match=r"value\.opaque=1180591620717411303424 "
                                                   r"does not fit a 64-bit pointer"):
        values.encode(t, {"opaque": 1 << 70})  # not wrapped to 0 modulo 2**64


@pytest.mark.parametrize("value, message", [
    ({"x": 1 << 31}, r"value\.x=2147483648 does not fit int \(4 bytes, signed\)"),
    ({"x": "1"}, r"value\.x must be an int for int, got str"),
    ({"nope": 1}, r"struct inner has no member 'nope' \(members: named, x\)"),
    ({"named": 3}, r"value\.named must be a dict of members \(or bytes\)"),
    ([1], r"value must be a dict of members \(or bytes\) for struct inner"),
    (b"\0" * 3, r"value must be 24 bytes for struct inner, got 3"),
])
def test_errors_say_what_was_wrong(clang: btf.Spec, value: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        values.encode(clang.type_by_name("inner"), value)


def test_array_and_string_errors(clang: btf.Spec) -> None:
    kinds = clang.type_by_name("kinds")
    with pytest.raises(InvalidArgumentError,
                       match=r"value\.matrix has 4 elements, int\[3\]\[4\] holds 3"):
        values.encode(kinds, {"matrix": [[0]] * 4})
    with pytest.raises(InvalidArgumentError, match=r"value\.matrix\[1\] must be a sequence"):
        values.encode(kinds, {"matrix": [[0], 1]})
    with pytest.raises(InvalidArgumentError, match=r"value\.bits\.name is 17 bytes, longer"):
        values.encode(kinds, {"bits": {"name": "x" * 17}})
    with pytest.raises(InvalidArgumentError, match=r"value\.bits\.a must be an int in \[0, 8\)"):
        values.encode(kinds, {"bits": {"a": 8}})
    with pytest.raises(InvalidArgumentError, match=r"value\.bits\.b must be an int in \[-16, 32\)"):
        values.encode(kinds, {"bits": {"b": -17}})


def test_raw_bytes_and_ctypes_pass_through(clang: btf.Spec) -> None:
    t = clang.type_by_name("inner")
    raw = struct.pack("<ii", 7, 8) + bytes(16)
    assert values.encode(t, raw) == raw
    obj = to_ctypes(t).from_buffer_copy(raw)
    assert values.encode(t, obj) == raw
    with pytest.raises(InvalidArgumentError, match="got a 4-byte c_int"):
        values.encode(t, ctypes.c_int(1))
