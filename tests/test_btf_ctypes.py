"""btf.to_ctypes: exact layouts (sizes, offsets, every bit of every bitfield) for
clang's structs and every struct and union of the kernel's BTF."""

from __future__ import annotations

import ctypes
import os
from typing import Any

import pytest
from bpfbuild import compile_bpf

from ebpf import btf
from ebpf.btf.ctypes_conv import clear_cache, to_ctypes
from ebpf.btf.kernel import VMLINUX
from ebpf.btf.spec import Spec
from ebpf.errors import BTFError


@pytest.fixture(scope="module")
def spec() -> Spec:
    return btf.load_spec(str(compile_bpf("btf_kinds")))


def int_members(t: btf.Type, base_bits: int = 0, prefix: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """(path, bit offset, bits, signed, is_bool) of every integer leaf reachable by name."""
    t = btf.skip_typedefs(t)
    assert isinstance(t, btf.Composite)
    for m in t.members:
        inner = btf.skip_typedefs(m.type)
        off = base_bits + m.offset_bits
        if m.name == "" and isinstance(inner, btf.Composite):
            yield from int_members(inner, off, prefix)  # promoted through _anonymous_
        elif isinstance(inner, btf.Composite):
            yield from int_members(inner, off, (*prefix, m.name))
        elif isinstance(inner, (btf.Int, btf.Enum)) and m.name and inner.size <= 8:
            if m.bitfield_size:
                bits = m.bitfield_size
            elif isinstance(inner, btf.Int) and (inner.offset or inner.bits != 8 * inner.size):
                off, bits = off + inner.offset, inner.bits
            else:
                bits = 8 * inner.size
            is_bool = isinstance(inner, btf.Int) and bool(inner.encoding & btf.IntEncoding.BOOL)
            signed = (isinstance(inner, btf.Int) and inner.signed) or (
                isinstance(inner, btf.Enum) and inner.signed)
            yield (*prefix, m.name), off, bits, signed, is_bool


def check_layout(t: btf.Type, ct: Any = None) -> None:
    """`ct` (default: to_ctypes(t)) has t's size, and every integer leaf (bitfields
    included) lands on exactly its bits."""
    ct = to_ctypes(t) if ct is None else ct
    assert ctypes.sizeof(ct) == btf.sizeof(t)
    if not isinstance(btf.skip_typedefs(t), btf.Struct):
        return
    for path, off, bits, signed, is_bool in int_members(t):
        obj = ct()
        holder = obj
        for p in path[:-1]:
            holder = getattr(holder, p)
        if isinstance(getattr(holder, path[-1]), bytes):
            continue  # a lone char as c_char
        value = True if is_bool else (-1 if signed else (1 << bits) - 1)
        setattr(holder, path[-1], value)
        raw = int.from_bytes(bytes(obj), "little")
        ones = 1 if is_bool else (1 << bits) - 1
        assert raw == ones << off, (t.type_name, path, hex(raw), hex(ones << off))
        assert getattr(holder, path[-1]) == value, (t.type_name, path)


@pytest.mark.parametrize("name", ["bits", "inner", "packed", "aligned", "kinds"])
def test_clang_structs(spec: Spec, name: str) -> None:
    check_layout(spec.type_by_name(name))


def test_values(spec: Spec) -> None:
    kinds = to_ctypes(spec.type_by_name("kinds"))
    k = kinds()
    k.bits.name = b"comm"
    assert k.bits.name == b"comm"  # char arrays are bytes
    k.inner.y = 7  # through the anonymous union
    assert k.inner.y == 7
    k.inner.named.d = 1.5
    assert k.inner.named.d == 1.5
    k.fl = 0.25
    assert k.fl == 0.25
    k.bits.flag = True
    assert k.bits.flag is True
    k.opaque = 0xFFFF_FFFF_FFFF_0000  # pointers are 64-bit integers
    assert k.opaque == 0xFFFF_FFFF_FFFF_0000
    k.matrix[2][3] = -5
    assert k.matrix[2][3] == -5
    assert type(k)._btf_members_[:3] == ("bits", "inner", "packed")
    b = to_ctypes(spec.type_by_name("bits"))
    # a, b, c, d cannot be ctypes bitfields here (a 40-bit field next to a char
    # inside 8 bytes): they are properties over the bytes they occupy
    assert set(b._btf_props_) == {"a", "b", "c", "d"}
    v = b.from_buffer_copy(bytes(64))
    v.b = -3
    v.c = (1 << 40) - 2
    assert (v.a, v.b, v.c, v.d) == (0, -3, (1 << 40) - 2, 0)
    assert v.flag is False


def test_cached(spec: Spec) -> None:
    t = spec.type_by_name("inner")
    assert to_ctypes(t) is to_ctypes(t)
    clear_cache()
    assert to_ctypes(t) is not None


def test_hand_made_types() -> None:
    u8 = btf.Int("u8", 1)
    s = btf.Struct("s", 8, [btf.Member("x", u8, 8), btf.Member("y", btf.Int("u16", 2), 32)])
    ct = to_ctypes(s)
    assert ctypes.sizeof(ct) == 8 and ct.x.offset == 1 and ct.y.offset == 4
    u = btf.Union("u", 8, [btf.Member("a", btf.Int("u32", 4), 0),
                          btf.Member("b", btf.Int("u32", 4), 32),  # not at 0: wrapped
                          btf.Member("c", btf.Int("u32", 4), 3, 5)])  # a bitfield
    cu = to_ctypes(u)()
    cu.b = 0x01020304
    cu.c = 31
    assert bytes(cu) == bytes([0xF8, 0, 0, 0, 4, 3, 2, 1])
    sec = btf.Datasec(".data", 12, [btf.VarSecinfo(btf.Var("n", btf.Int("int", 4)), 8, 4),
                                    btf.VarSecinfo(btf.Var("c", btf.Int("char", 1)), 0, 1)])
    cs = to_ctypes(sec)
    assert ctypes.sizeof(cs) == 12 and cs.n.offset == 8 and cs.c.offset == 0
    e = to_ctypes(btf.Enum("e", 4, [btf.EnumValue("NEG", -1)]))
    assert e is ctypes.c_int32
    assert to_ctypes(btf.Enum("e", 8, [btf.EnumValue("A", 1)])) is ctypes.c_uint64
    assert to_ctypes(btf.Float("float", 4)) is ctypes.c_float
    assert to_ctypes(btf.Int("_Bool", 1, btf.IntEncoding.BOOL)) is ctypes.c_bool
    assert ctypes.sizeof(to_ctypes(btf.Int("__int128", 16))) == 16


@pytest.mark.parametrize("bad", [
    btf.Void(),
    btf.Fwd("f"),
    btf.FuncProto(btf.Void(), []),
    btf.Struct("s", 4, [btf.Member("a", btf.Int("u64", 8), 0)]),  # member beyond the size
    btf.Struct("s", 8, [btf.Member("a", btf.Int("u32", 4), 32),
                        btf.Member("b", btf.Int("u32", 4), 0)]),  # out of order / overlap
    btf.Struct("s", 8, [btf.Member("a", btf.Int("u32", 4), 3)]),  # not byte aligned
])
def test_errors(bad: btf.Type) -> None:
    with pytest.raises(BTFError):
        to_ctypes(bad)


def test_struct_containing_itself() -> None:
    s = btf.Struct("s", 8, [])
    s.members.append(btf.Member("me", s, 0))
    with pytest.raises(BTFError):
        to_ctypes(s)
    t = btf.Typedef("t", btf.Int("int", 4))
    t.type = t
    with pytest.raises(BTFError):
        to_ctypes(t)


@pytest.mark.skipif(not os.path.exists(VMLINUX), reason=f"{VMLINUX} is missing")
def test_every_kernel_struct_and_union() -> None:
    kernel = btf.load_kernel_spec()
    n = 0
    for t in kernel:
        if isinstance(t, btf.Composite):
            ct = to_ctypes(t)
            assert ctypes.sizeof(ct) == t.size, t
            n += 1
    assert n > 1000
    for name in ("task_struct", "sk_buff", "sock", "bpf_prog", "net_device", "inode",
                 "__sk_buff", "xdp_md", "bpf_attr", "perf_event_attr", "tcphdr", "iphdr"):
        for t in kernel.types_by_name(name):
            if isinstance(t, btf.Composite) and t.size:
                check_layout(t)
