"""Property tests: random type graphs survive marshal -> parse unchanged, and
mutated blobs only ever raise BTFError (from parsing, lookups, sizeof/alignof,
typedef skipping, to_ctypes, the C dump and re-marshalling), never hang."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_btf_builder import same_type

from ebpf import btf
from ebpf.btf.builder import Builder
from ebpf.btf.ctypes_conv import to_ctypes
from ebpf.btf.spec import Spec
from ebpf.errors import BTFError, InvalidArgumentError, KeyNotFoundError

# EBPF_FUZZ_EXAMPLES=5000 for a longer run.
SETTINGS = settings(max_examples=int(os.environ.get("EBPF_FUZZ_EXAMPLES", "300")), deadline=5000,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NAMES = st.text(alphabet="abcxyz_", min_size=0, max_size=5)
IDENTS = st.text(alphabet="abcxyz_", min_size=1, max_size=5)
U32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def type_graphs(draw: st.DrawFn) -> list[btf.Type]:
    """A list of types referring to each other (with cycles now and then)."""
    pool: list[btf.Type] = [btf.Int("int", 4, btf.IntEncoding.SIGNED)]

    def ref() -> btf.Type:
        return draw(st.sampled_from(pool))

    for _ in range(draw(st.integers(0, 16))):
        kind = draw(st.sampled_from([
            "int", "float", "ptr", "array", "struct", "union", "enum", "enum64", "fwd",
            "typedef", "volatile", "const", "restrict", "type_tag", "func", "var", "datasec",
            "decl_tag"]))
        t: btf.Type
        if kind == "int":
            size = draw(st.sampled_from([1, 2, 4, 8, 16]))
            t = btf.Int(draw(IDENTS), size, draw(st.sampled_from(list(btf.IntEncoding))),
                        draw(st.integers(1, 8 * size)))
        elif kind == "float":
            t = btf.Float(draw(IDENTS), draw(st.sampled_from([2, 4, 8, 16])))
        elif kind == "ptr":
            t = btf.Pointer(ref())
        elif kind == "array":
            t = btf.Array(ref(), draw(st.integers(0, 9)))
        elif kind in ("struct", "union"):
            members = [btf.Member(draw(NAMES), ref(), draw(st.integers(0, 512)),
                                  draw(st.sampled_from([0, 0, 0, 1, 3, 7])))
                       for _ in range(draw(st.integers(0, 5)))]
            cls = btf.Struct if kind == "struct" else btf.Union
            t = cls(draw(NAMES), draw(st.integers(0, 128)), members)
        elif kind in ("enum", "enum64"):
            lim = (1 << 31) if kind == "enum" else (1 << 63)
            signed = draw(st.booleans())
            values = [btf.EnumValue(draw(IDENTS), draw(st.integers(-lim if signed else 0,
                                                                   lim - 1)))
                      for _ in range(draw(st.integers(0, 4)))]
            t = btf.Enum(draw(NAMES), 8 if kind == "enum64" else 4, values, signed=signed)
        elif kind == "fwd":
            t = btf.Fwd(draw(IDENTS), draw(st.booleans()))
        elif kind == "typedef":
            t = btf.Typedef(draw(IDENTS), ref())
        elif kind in ("volatile", "const", "restrict"):
            t = {"volatile": btf.Volatile, "const": btf.Const, "restrict": btf.Restrict}[kind](
                ref())
        elif kind == "type_tag":
            t = btf.TypeTag(draw(IDENTS), ref(), draw(st.booleans()))
        elif kind == "func":
            params = [btf.FuncParam(draw(NAMES), ref()) for _ in range(draw(st.integers(0, 3)))]
            t = btf.Func(draw(IDENTS), btf.FuncProto(ref(), params),
                         draw(st.sampled_from(list(btf.Linkage))))
        elif kind == "var":
            t = btf.Var(draw(IDENTS), ref(), draw(st.sampled_from(list(btf.Linkage))))
        elif kind == "datasec":
            vars_ = [btf.VarSecinfo(btf.Var(draw(IDENTS), ref()), draw(st.integers(0, 64)),
                                    draw(st.integers(0, 16)))
                     for _ in range(draw(st.integers(0, 3)))]
            t = btf.Datasec(draw(IDENTS), draw(st.integers(0, 128)), vars_)
        else:
            t = btf.DeclTag(draw(IDENTS), ref(), draw(st.integers(-1, 3)),
                            draw(st.booleans()))
        pool.append(t)
    for _ in range(draw(st.integers(0, 2))):  # make some reference cycles
        a = draw(st.sampled_from(pool))
        if isinstance(a, (btf.Pointer, btf.Typedef, btf.Const, btf.Volatile, btf.TypeTag)):
            a.type = ref()
    return pool


def marshal(types: list[btf.Type]) -> tuple[bytes, list[int], int]:
    b = Builder()
    ids = [b.add(t) for t in types]
    return b.marshal(), ids, len(b)


def quiet(fn: Callable[[], Any]) -> None:
    """Run `fn`; BTFError and KeyNotFoundError are fine, anything else fails."""
    try:
        fn()
    except (BTFError, KeyNotFoundError):
        pass


def exercise(spec: Spec) -> None:
    ids = range(len(spec))
    for tid in ids:
        t = spec.type_by_id(tid)
        quiet(lambda t=t: list(t.refs()))  # type: ignore[misc]
        repr(t)
        assert isinstance(t.type_name, str)
        for fn in (btf.sizeof, btf.alignof, btf.skip_typedefs, btf.strip_qualifiers,
                   to_ctypes):
            quiet(lambda fn=fn, t=t: fn(t))  # type: ignore[misc]
        if isinstance(t, btf.Composite):
            quiet(lambda t=t: t.member("a"))  # type: ignore[misc]
        if t.name:
            quiet(lambda t=t: spec.type_by_name(t.name))  # type: ignore[misc]
    quiet(lambda: btf.dump_c(spec))
    quiet(lambda: Spec(Builder.from_spec(spec).marshal()))


@SETTINGS
@given(type_graphs())
def test_round_trip(types: list[btf.Type]) -> None:
    data, ids, n = marshal(types)
    spec = Spec(data)
    assert len(spec) == n
    for t, tid in zip(types, ids, strict=True):
        assert same_type(t, spec.type_by_id(tid)), t
    assert Builder.from_spec(spec).marshal() == data
    exercise(spec)


MUTATIONS = st.lists(st.tuples(st.sampled_from(["flip", "u32", "small", "truncate", "junk"]),
                               st.integers(0, 1 << 16), U32), min_size=1, max_size=4)


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, value in ops:
        if not buf:
            break
        if op == "flip":
            buf[pos % len(buf)] ^= 1 << (value % 8)
        elif op in ("u32", "small") and len(buf) >= 4:
            at = (pos % (len(buf) // 4)) * 4
            struct.pack_into("<I", buf, at, value if op == "u32" else value % 40)
        elif op == "truncate":
            del buf[pos % len(buf):]
        else:
            buf += value.to_bytes(4, "little")[: 1 + pos % 4]
    return bytes(buf)


@SETTINGS
@given(type_graphs(), MUTATIONS, st.booleans())
def test_mutated_blobs_raise_only_btf_error(types: list[btf.Type],
                                           ops: list[tuple[str, int, int]], lazy: bool) -> None:
    data, _, _ = marshal(types)
    bad = mutate(data, ops)
    assume(bad != data)
    try:
        spec = Spec(bad, lazy=lazy)
        if lazy:
            for t in types:
                if t.name:
                    spec.ids_by_name(t.name)
        exercise(spec)
    except BTFError as e:
        assert str(e)
    except KeyNotFoundError:
        pass


@SETTINGS
@given(st.binary(min_size=0, max_size=200), st.booleans())
def test_random_bytes(data: bytes, lazy: bool) -> None:
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 0)
    for blob in (data, header + data, header[:12] + struct.pack("<IIII", len(data) // 8 * 4, 0,
                                                                 len(data) // 8 * 4,
                                                                 len(data) - len(data) // 8 * 4)
                 + data):
        try:
            exercise(Spec(blob, lazy=lazy))
        except BTFError:
            pass


# -- crashes found by tools/fuzz.py ---------------------------------------------------------

INT = btf.Int("int", 4, btf.IntEncoding.SIGNED)


def test_member_past_its_struct_is_btf_error() -> None:
    # a member at byte 66846720 of a 192-byte struct: decoding read past the value
    # (struct.error); the kernel refuses such BTF as well
    from ebpf.btf import values

    for member in (btf.Member("far", INT, 534773780 * 8), btf.Member("edge", INT, 8 * 190),
                   btf.Member("bits", INT, 8 * 190, 17)):
        s = btf.Struct("s", 192, [btf.Member("a", INT, 0), member])
        with pytest.raises(BTFError, match=f"member '{member.name}' of struct s ends at bit"):
            values.decode(s, bytes(192))
        with pytest.raises(BTFError, match="past its 192 bytes"):
            values.encode(s, {"a": 1})
    fits = btf.Struct("s", 192, [btf.Member("a", INT, 0), btf.Member("z", INT, 8 * 188),
                                 btf.Member("b", INT, 8 * 191, 8)])
    assert values.decode(fits, bytes(192)) == {"a": 0, "z": 0, "b": 0}


def test_decode_short_data_is_invalid_argument() -> None:
    from ebpf.btf import values

    with pytest.raises(InvalidArgumentError, match="needs 8 bytes, got 0"):
        values.decode(btf.Int("long", 8, btf.IntEncoding.SIGNED), b"")
    assert values.decode(INT, b"\x01\0\0\0\xff") == 1     # longer is fine (a slice)


def test_huge_array_of_empty_structs_is_refused_not_decoded() -> None:
    # sizeof is 0, so no buffer bounds it: decoding made a list of 2**32 dicts (a hang)
    from ebpf.btf import values

    empty = btf.Struct("e", 0, [])
    with pytest.raises(BTFError, match="4294967295 elements of zero size"):
        values.decode(btf.Array(empty, 0xFFFFFFFF), b"")
    assert values.decode(btf.Array(empty, 3), b"") == [{}, {}, {}]
