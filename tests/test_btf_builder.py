"""The BTF writer (Builder, marshal_types), loading BTF into the kernel (Handle),
and sanitizing BTF for kernels without newer kinds."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import time

import pytest
from bpfbuild import compile_bpf

from ebpf import btf
from ebpf._sys.syscall import bpf_errno
from ebpf._sys.types import Cmd, MapCreateAttr, MapType
from ebpf.btf.builder import Builder, marshal_types
from ebpf.btf.handle import BTFLoadError, Handle
from ebpf.btf.kernel import VMLINUX, read_btf_file
from ebpf.btf.sanitize import sanitize
from ebpf.btf.spec import Spec
from ebpf.btf.types import Kind
from ebpf.errors import BTFError, KeyNotFoundError

OBJECTS = ["btf_kinds", "elf_smoke", "loader_maps", "loader_globals", "loader_calls"]


def obj_spec(name: str, target: str = "bpf") -> Spec:
    return btf.load_spec(str(compile_bpf(name, target=target)))


def fixup_datasecs(spec: Spec) -> Spec:
    """What the loader does from the ELF symbols: DATASEC sizes and var offsets."""
    for t in spec:
        if isinstance(t, btf.Datasec) and t.size == 0:
            off = 0
            for v in t.vars:
                vt = v.type.type if isinstance(v.type, btf.Var) else v.type
                size, align = btf.sizeof(vt), btf.alignof(vt)
                off = (off + align - 1) // align * align
                v.offset, v.size = off, size
                off += size
            t.size = max(off, 1)
    return spec


def same_type(a: btf.Type, b: btf.Type, seen: set[tuple[int, int]] | None = None) -> bool:
    """Structural equality (following references, cycles allowed)."""
    seen = set() if seen is None else seen
    if (id(a), id(b)) in seen:
        return True
    seen.add((id(a), id(b)))
    if type(a) is not type(b) or a.name != b.name:
        return False
    for attr in ("size", "bits", "offset", "encoding", "nelems", "union", "linkage",
                 "component_idx", "attribute", "signed", "is64"):
        if getattr(a, attr, None) != getattr(b, attr, None):
            return False
    if isinstance(a, btf.Composite) and isinstance(b, btf.Composite):
        if [(m.name, m.offset_bits, m.bitfield_size) for m in a.members] != [
                (m.name, m.offset_bits, m.bitfield_size) for m in b.members]:
            return False
    if isinstance(a, btf.Enum) and isinstance(b, btf.Enum) and a.values != b.values:
        return False
    if isinstance(a, btf.FuncProto) and isinstance(b, btf.FuncProto) and (
            [p.name for p in a.params] != [p.name for p in b.params]):
        return False
    if isinstance(a, btf.Datasec) and isinstance(b, btf.Datasec) and (
            [(v.offset, v.size) for v in a.vars] != [(v.offset, v.size) for v in b.vars]):
        return False
    ra, rb = list(a.refs()), list(b.refs())
    return len(ra) == len(rb) and all(same_type(x, y, seen) for x, y in zip(ra, rb,
                                                                            strict=True))


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("target", ["bpfel", "bpfeb"])
@pytest.mark.parametrize("name", OBJECTS)
def test_round_trip_objects(name: str, target: str) -> None:
    spec = obj_spec(name, target)
    out = Builder.from_spec(spec).marshal()
    assert out == spec.raw  # byte for byte: same ids, same string offsets
    back = Spec(out)
    assert len(back) == len(spec)
    for a, b in zip(spec, back, strict=True):
        assert same_type(a, b), (a, b)


@pytest.mark.skipif(not os.path.exists(VMLINUX), reason=f"{VMLINUX} is missing")
def test_round_trip_vmlinux() -> None:
    data = read_btf_file(VMLINUX)
    spec = Spec(data, lazy=True)
    start = time.perf_counter()
    b = Builder.from_spec(spec)
    out = b.marshal()
    elapsed = time.perf_counter() - start
    assert out == bytes(data), "marshalled vmlinux BTF differs from the original"
    back = Spec(out, lazy=True)
    for name in ("task_struct", "sk_buff", "bpf_attr", "pt_regs", "bpf_func_id"):
        (a,), (c,) = spec.types_by_name(name), back.types_by_name(name)
        assert same_type(a, c)
    print(f"vmlinux: {len(spec)} types marshalled in {elapsed:.2f}s")


def test_from_spec_copies_what_was_never_decoded() -> None:
    """A type the spec never decoded is marshalled as a copy of its record; one that was
    decoded (and maybe changed) is encoded from the object; ids stay the spec's."""
    raw = obj_spec("btf_kinds").raw
    spec = Spec(raw, lazy=True)
    b = Builder.from_spec(spec)
    assert b.marshal() == raw and set(spec._by_id) <= {0}
    s = next(t for t in spec.types_of_kind(btf.Kind.STRUCT) if t.name)
    tid = spec.type_id(s)
    s.size += 8
    assert b.type_id(s) == tid and b.add(s) == tid and b.type_by_id(tid) is s
    assert b.ids_of_kind(btf.Kind.STRUCT) == [spec.type_id(t) for t in
                                              spec.types_of_kind(btf.Kind.STRUCT)]
    back = Spec(b.marshal())
    assert len(back) == len(spec) and back.type_by_id(tid).size == s.size
    assert len(spec._by_id) < len(spec)  # the rest still undecoded
    assert [t.name for t in b] == [t.name for t in list(spec)[1:]]  # iterating takes all


def test_builder_ids_of_kind() -> None:
    """ids_of_kind reads the kinds of untaken types from the spec's records, of taken,
    replaced and added ones from the objects, in id order."""
    raw = obj_spec("btf_kinds").raw
    spec = Spec(raw, lazy=True)
    b = Builder.from_spec(spec)
    structs = [spec.type_id(t) for t in spec.types_of_kind(btf.Kind.STRUCT)]
    b.type_by_id(structs[-1])  # taken
    first = structs[0]
    b.replace(first, btf.Int("now_an_int", 4))
    added = b.add(btf.Struct("added", 0, []))
    e64 = b.add(btf.Enum("e64", 8, [btf.EnumValue("A", 1 << 40)]))
    want = [*structs[1:], added]
    kinds = (btf.Kind.STRUCT, btf.Kind.ENUM64)
    assert b.ids_of_kind(*kinds) == sorted([*want, e64, *(
        spec.type_id(t) for t in spec.types_of_kind(btf.Kind.ENUM64))])
    assert b.ids_of_kind(btf.Kind.STRUCT) == want
    assert first in b.ids_of_kind(btf.Kind.INT)
    scratch = Builder()
    i = scratch.add(btf.Int("i", 4))
    assert scratch.ids_of_kind(btf.Kind.INT) == [i] and scratch.ids_of_kind(btf.Kind.ENUM) == []


def test_builder_from_scratch() -> None:
    u32 = btf.Int("u32", 4)
    s64 = btf.Int("s64", 8, btf.IntEncoding.SIGNED)
    node = btf.Struct("node", 16, [])
    node.members.extend([btf.Member("val", u32, 0), btf.Member("next", btf.Pointer(node), 64)])
    for m in node.members:
        m._owner = node
    e = btf.Enum("e", 8, [btf.EnumValue("BIG", 1 << 40), btf.EnumValue("NEG", -1)], signed=True)
    flags = btf.Struct("flags", 4, [btf.Member("a", u32, 0, 3), btf.Member("b", u32, 3, 29)])
    arr = btf.Array(s64, 4)
    proto = btf.FuncProto(u32, [btf.FuncParam("n", s64), btf.FuncParam("p", btf.Pointer(node))])
    fn = btf.Func("f", proto, btf.Linkage.GLOBAL)
    var = btf.Var("v", arr, btf.Linkage.GLOBAL)
    sec = btf.Datasec(".data", 32, [btf.VarSecinfo(var, 0, 32)])
    tag = btf.DeclTag("tag", node, 1)
    tt = btf.Pointer(btf.TypeTag("user", u32))
    fl = btf.Float("double", 8)
    td = btf.Typedef("node_t", btf.Volatile(btf.Const(btf.Restrict(btf.Pointer(node)))))
    fwd = btf.Fwd("later", union=True)
    types = [node, e, flags, arr, fn, sec, tag, tt, fl, td, fwd]

    b = Builder()
    ids = [b.add(t) for t in types]
    assert b.add(node) == ids[0] == 1  # added once
    assert b.type_id(u32) > 0 and b.type_id(btf.Void()) == 0
    with pytest.raises(KeyNotFoundError):
        b.type_id(btf.Int("other", 4))
    spec = Spec(b.marshal())
    assert len(spec) == len(b)
    for t, tid in zip(types, ids, strict=True):
        assert same_type(t, spec.type_by_id(tid)), t
    got = spec.type_by_id(ids[1])
    assert isinstance(got, btf.Enum) and got.is64 and got.values == e.values
    assert spec.type_by_name("flags", btf.Struct).members[1].bitfield_size == 29


def test_array_index_type_is_shared() -> None:
    b = Builder()
    b.add(btf.Array(btf.Int("char", 1), 4))
    b.add(btf.Array(btf.Int("int", 4), 8))
    names = [t.name for t in b]
    assert names.count("__ARRAY_SIZE_TYPE__") == 1


def test_marshal_types() -> None:
    u8 = btf.Int("u8", 1)
    s = btf.Struct("s", 2, [btf.Member("a", u8, 0), btf.Member("b", u8, 8)])
    data, ids = marshal_types([s, u8])
    spec = Spec(data)
    assert set(ids) == {s, u8}
    assert spec.type_by_id(ids[s]).name == "s" and spec.type_by_id(ids[u8]).name == "u8"


def test_strings() -> None:
    b = Builder()
    off = b.add_string("file.c")
    assert b.add_string("file.c") == off
    assert b.add_string("") == 0
    other = b.add_string("line of code;")
    spec = Spec(b.marshal())
    assert spec.string(off) == "file.c" and spec.string(other) == "line of code;"
    with pytest.raises(BTFError):
        b.add_string("nul\0inside")


def test_from_spec_keeps_string_offsets() -> None:
    spec = obj_spec("btf_kinds")
    b = Builder.from_spec(spec)
    name_off = spec._words[spec._offsets[0]] if spec._words[spec._offsets[0]] else None
    if name_off:
        assert b.add_string(spec.string(name_off)) == name_off
    n = b.add_string("a string clang did not emit")
    assert n >= spec._str_len
    b.add(btf.Int("brand_new", 2))
    back = Spec(b.marshal())
    assert len(back) == len(spec) + 1
    assert back.string(n) == "a string clang did not emit"


def test_from_spec_strings_decoded_or_not() -> None:
    """A builder from a spec finds a string the spec decoded at the offset it was
    decoded from, one it did not decode in its table (nothing appended), and appends
    only strings the table lacks."""
    spec = Spec(bytes(obj_spec("btf_kinds")._buf), lazy=True)  # (nothing decoded yet)
    spec._ensure_complete()
    w = spec._words
    offs = sorted({w[i] for i in spec._offsets if w[i]})
    decoded, undecoded = offs[0], offs[-1]
    name = spec.string(decoded)
    b = Builder.from_spec(spec)
    seeded = len(b._strtab)
    assert b.add_string(name) == decoded
    text = bytes(spec.string_table[undecoded:]).split(b"\0")[0].decode()
    assert undecoded not in spec._strcache
    found = b.add_string(text)
    assert spec.string(found) == text and len(b._strtab) == seeded
    assert b.add_string("not in the table") == seeded
    assert b.add_string(name) == decoded and b.add_string(text) == found
    back = Spec(b.marshal())
    assert back.string(seeded) == "not in the table"


@pytest.mark.parametrize("bad", [
    btf.Struct("s", 4, [btf.Member("x", btf.Int("i", 4), 1 << 25, 3)]),
    btf.Enum("e", 4, [btf.EnumValue("X", 1 << 70)]),
    btf.Int("i", 4, bits=40),
    btf.Struct("s", 1 << 33, []),
    btf.Int("nul\0", 4),
])
def test_marshal_errors(bad: btf.Type) -> None:
    b = Builder()
    b.add(bad)
    with pytest.raises(BTFError):
        b.marshal()


def test_big_endian_output() -> None:
    spec = obj_spec("btf_kinds", "bpfel")
    out = Builder.from_spec(spec, byteorder="big").marshal()
    assert out == obj_spec("btf_kinds", "bpfeb").raw


# -- the kernel accepts what we write ------------------------------------------------


def test_handle_from_spec() -> None:
    spec = fixup_datasecs(obj_spec("btf_kinds"))
    with Handle.from_spec(spec) as h:
        info = h.info()
        assert h.id == info.id > 0 and not info.kernel_btf and info.size > 0
        assert h.raw() == Builder.from_spec(spec).marshal()
        assert h.blob_size() == info.size == len(h.raw())
        back = h.spec()
        assert same_type(back.type_by_name("kinds"), spec.type_by_name("kinds"))
        with Handle.from_id(h.id) as again:
            assert again.id == h.id and again.blob_size() == info.size
    assert h.closed


def test_handle_struct_key_value_map() -> None:
    """A Builder-made blob describing a map's key and value, used to create a map."""
    key = btf.Struct("key", 8, [btf.Member("pid", btf.Int("u32", 4), 0),
                                btf.Member("cpu", btf.Int("u32", 4), 32)])
    val = btf.Struct("val", 24, [
        btf.Member("count", btf.Int("u64", 8), 0),
        btf.Member("comm", btf.Array(btf.Int("char", 1, btf.IntEncoding.SIGNED), 8), 64),
        btf.Member("flags", btf.Int("unsigned int", 4), 128, 3),
        btf.Member("kind", btf.Int("unsigned int", 4), 131, 5),
    ])
    b = Builder()
    kid, vid = b.add(key), b.add(val)
    with Handle(b.marshal()) as h:
        attr = MapCreateAttr(map_type=MapType.HASH, key_size=8, value_size=24, max_entries=4,
                             btf_fd=h.fileno(), btf_key_type_id=kid, btf_value_type_id=vid)
        fd = bpf_errno(Cmd.MAP_CREATE, attr)
        assert fd >= 0, os.strerror(-fd)
        os.close(fd)
        # a value type of the wrong size is refused by the kernel: the BTF is checked
        attr.value_size = 16
        assert bpf_errno(Cmd.MAP_CREATE, attr) == -errno.EINVAL


def test_handle_rejects_invalid_blob() -> None:
    st = btf.Struct("s", 4, [btf.Member("a", btf.Int("int", 4, btf.IntEncoding.SIGNED), 0)])
    data = bytearray(marshal_types([st])[0])
    # make the member's offset exceed the struct: the kernel's log says why
    struct.pack_into("<I", data, 24 + 12 + 8, 64)
    with pytest.raises(BTFLoadError) as e:
        Handle(bytes(data))
    assert e.value.errno == errno.EINVAL
    assert "bits_offset exceeds its struct size" in str(e.value)
    assert "bits_offset exceeds" in e.value.log
    assert isinstance(e.value, BTFError)
    with pytest.raises(BTFError):
        Handle(b"\x9f\xeb\x01\x00garbage")


def test_handle_log_level() -> None:
    data, _ = marshal_types([btf.Int("int", 4, btf.IntEncoding.SIGNED)])
    with Handle(data, log_level=1) as h:
        assert h.id > 0


# -- sanitizing for older kernels ----------------------------------------------------

BASE = {Kind.INT, Kind.PTR, Kind.ARRAY, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FWD,
        Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT}
# What each kernel release added, cumulatively.
RELEASES = [
    ("4.18", set()),
    ("5.0", {Kind.FUNC, Kind.FUNC_PROTO}),
    ("5.2", {Kind.VAR, Kind.DATASEC}),
    ("5.13", {Kind.FLOAT}),
    ("5.16", {Kind.DECL_TAG}),
    ("5.17", {Kind.TYPE_TAG}),
    ("6.0", {Kind.ENUM64}),
]


@pytest.mark.parametrize("upto", range(len(RELEASES)))
def test_sanitize_loads(upto: int) -> None:
    supported = set(BASE)
    for _, kinds in RELEASES[: upto + 1]:
        supported |= kinds
    spec = fixup_datasecs(obj_spec("btf_kinds"))
    b = sanitize(spec, supported, global_funcs=upto >= 2)
    data = b.marshal()
    back = Spec(data)
    assert len(back) >= len(spec)  # ids kept (plus maybe a placeholder at the end)
    for t in back:
        assert t.kind in supported or isinstance(t, btf.Void), t
        if isinstance(t, btf.Func) and upto < 2:
            assert t.linkage == btf.Linkage.STATIC
        if isinstance(t, btf.Enum) and Kind.ENUM64 not in supported:
            assert not t.signed and not t.is64
    for tid in range(1, len(spec)):  # names of the kept kinds stay at their ids
        a, c = spec.type_by_id(tid), back.type_by_id(tid)
        if a.kind in supported and not isinstance(a, (btf.Enum, btf.DeclTag)):
            assert type(a) is type(c) and a.name == c.name
    with Handle(data) as h:
        assert h.id > 0
    # the original spec is untouched
    assert any(isinstance(t, btf.DeclTag) for t in spec)


def test_sanitize_with_a_predicate_and_noop() -> None:
    spec = obj_spec("btf_kinds")
    b = sanitize(spec, lambda k: True)
    assert b.marshal() == spec.raw
    b = sanitize(spec, lambda k: k != Kind.FLOAT)
    assert not any(isinstance(t, btf.Float) for t in b)


def test_sanitize_datasec_names() -> None:
    spec = fixup_datasecs(obj_spec("btf_kinds"))
    back = Spec(sanitize(spec, BASE).marshal())
    names = {t.name for t in back if isinstance(t, btf.Struct)}
    assert {"_bss", "_data", "_rodata"} <= names
    q = btf.Datasec("?.struct_ops", 4, [btf.VarSecinfo(btf.Var("v", btf.Int("i", 4)), 0, 4)])
    b = Builder()
    b.add(q)
    sanitize(b, set(Kind), qmark_datasec=False)
    assert [t.name for t in b if isinstance(t, btf.Datasec)] == ["_.struct_ops"]


def test_lean_import() -> None:
    """Importing the parser must not pull in the writer, ctypes or the syscall layer."""
    code = ("import sys, ebpf.btf; ebpf.btf.load_spec; "
            "print(any(m in sys.modules for m in ('ebpf.btf.builder', 'ebpf.btf.handle', "
            "'ebpf._sys.syscall', 'ebpf.btf.ctypes_conv', 'ebpf.btf.cdump')))")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.strip()
    assert out == "False"
