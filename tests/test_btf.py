"""The BTF parser: every kind clang emits (both byte orders), the lazily indexed
kernel BTF, name lookups (scan, dict index and hashed index agree), and
malformed blobs (BTFError with an offset, never anything else, never a hang)."""

from __future__ import annotations

import mmap
import os
import random
import struct

import pytest
from bpfbuild import compile_bpf

from ebpf import btf
from ebpf.btf.kernel import VMLINUX, read_btf_file
from ebpf.btf.spec import CHECKPOINT_SHIFT, CachedIndex, Spec
from ebpf.errors import BTFError, KeyNotFoundError

HAVE_VMLINUX = os.path.exists(VMLINUX)
needs_vmlinux = pytest.mark.skipif(not HAVE_VMLINUX, reason=f"{VMLINUX} is missing")


def kinds_spec(target: str = "bpf") -> Spec:
    return btf.load_spec(str(compile_bpf("btf_kinds", target=target)))


def header(type_len: int, str_len: int, *, magic: int = 0xEB9F, version: int = 1,
           hdr_len: int = 24, type_off: int = 0, str_off: int | None = None) -> bytes:
    return struct.pack("<HBBIIIII", magic, version, 0, hdr_len, type_off, type_len,
                       type_len if str_off is None else str_off, str_len)


def blob(words: list[int], strings: bytes = b"\0") -> bytes:
    types = struct.pack(f"<{len(words)}I", *words)
    return header(len(types), len(strings)) + types + strings


# -- every kind, from clang ----------------------------------------------------------


@pytest.fixture(scope="module", params=["bpfel", "bpfeb"])
def spec(request: pytest.FixtureRequest) -> Spec:
    return kinds_spec(request.param)


def test_all_kinds_present(spec: Spec) -> None:
    kinds = {type(t) for t in spec}
    for cls in (btf.Void, btf.Int, btf.Pointer, btf.Array, btf.Struct, btf.Union, btf.Enum,
                btf.Fwd, btf.Typedef, btf.Volatile, btf.Const, btf.Restrict, btf.Func,
                btf.FuncProto, btf.Var, btf.Datasec, btf.Float, btf.DeclTag, btf.TypeTag):
        assert cls in kinds, cls.__name__


def test_byte_order(spec: Spec) -> None:
    assert spec.byteorder in ("little", "big")


def test_bitfields(spec: Spec) -> None:
    bits = spec.type_by_name("bits", btf.Struct)
    assert bits.size == 64
    got = [(m.name, m.offset_bits, m.bitfield_size) for m in bits.members[:5]]
    assert got == [("a", 0, 3), ("b", 3, 5), ("c", 8, 40), ("d", 48, 1), ("flag", 56, 0)]
    assert btf.skip_typedefs(bits.member("d").type).name == "unsigned char"
    b = btf.skip_typedefs(bits.member("b").type)
    assert isinstance(b, btf.Int) and b.signed
    name = bits.member("name").type
    assert isinstance(name, btf.Array) and name.nelems == 16
    wide = bits.member("wide").type
    assert isinstance(wide, btf.Int) and wide.size == 16 and btf.alignof(wide) == 16


def test_enums(spec: Spec) -> None:
    small = spec.type_by_name("small", btf.Enum)
    assert not small.is64 and small.signed and small.value("SMALL_A") == -1
    big = spec.type_by_name("big", btf.Enum)
    assert big.is64 and big.size == 8 and big.value("BIG_A") == 0xFFFFFFFFFF
    neg = spec.type_by_name("negbig", btf.Enum)
    assert neg.is64 and neg.signed and neg.value("NEGBIG_A") == -0x1FFFFFFFF


def test_tags_float_fwd(spec: Spec) -> None:
    tags = {t.name: t for t in spec if isinstance(t, btf.DeclTag)}
    assert tags["kinds-struct"].component_idx == -1
    assert tags["kinds-struct"].type is spec.type_by_name("kinds")
    assert tags["param"].component_idx == 0
    assert isinstance(tags["param"].type, btf.Func)
    assert isinstance(tags["global-var"].type, btf.Var)
    tt = [t for t in spec if isinstance(t, btf.TypeTag)]
    assert [t.name for t in tt] == ["user"] and not tt[0].attribute
    kinds = spec.type_by_name("kinds", btf.Struct)
    ptr = kinds.member("tagged_ptr").type
    assert isinstance(ptr, btf.Pointer) and isinstance(ptr.type, btf.TypeTag)
    assert spec.type_by_name("float", btf.Float).size == 4
    assert spec.type_by_name("opaque", btf.Fwd).union is False
    assert spec.type_by_name("opaque_union", btf.Fwd).union is True


def test_funcs_and_datasecs(spec: Spec) -> None:
    helper = spec.type_by_name("helper", btf.Func)
    assert helper.linkage == btf.Linkage.GLOBAL
    proto = helper.type
    assert isinstance(proto, btf.FuncProto)
    assert [p.name for p in proto.params] == ["k", "n"]
    assert proto.return_type.name == "int"
    secs = {t.name: t for t in spec if isinstance(t, btf.Datasec)}
    assert {".bss", ".data", ".rodata", "license"} <= set(secs)
    var = secs[".data"].vars[0].type
    assert isinstance(var, btf.Var) and var.name == "counter"
    assert var.linkage == btf.Linkage.GLOBAL


def test_anonymous_members(spec: Spec) -> None:
    inner = spec.type_by_name("inner", btf.Struct)
    y = inner.member("y")  # through the anonymous union
    assert y.offset_bits == 32
    assert inner.member("named").offset_bits == 64
    with pytest.raises(KeyNotFoundError):
        inner.member("nope")


def test_ids_and_names(spec: Spec) -> None:
    for tid in range(1, len(spec)):
        t = spec.type_by_id(tid)
        assert spec.type_id(t) == tid
        if t.name and not isinstance(t, (btf.DeclTag,)):
            assert tid in spec.ids_by_name(t.name)
    assert spec.types_by_name("no_such_type") == []
    with pytest.raises(KeyNotFoundError):
        spec.type_by_name("no_such_type")
    with pytest.raises(KeyNotFoundError):
        spec.type_by_name("kinds", btf.Union)
    with pytest.raises(BTFError):
        spec.type_by_id(len(spec))
    with pytest.raises(BTFError):
        spec.type_by_id(-1)


def test_both_byte_orders_agree() -> None:
    le, be = kinds_spec("bpfel"), kinds_spec("bpfeb")
    assert le.byteorder == "little" and be.byteorder == "big"
    assert len(le) == len(be)
    for a, b in zip(le, be, strict=True):
        assert type(a) is type(b) and a.name == b.name


def test_lazy_and_eager_agree() -> None:
    data = kinds_spec().raw
    eager, lazy = Spec(data, lazy=False), Spec(data, lazy=True)
    names = sorted({t.name for t in eager if t.name})
    for name in names:
        assert lazy.ids_by_name(name) == eager.ids_by_name(name), name
    assert len(lazy) == len(eager)


# -- the kernel's BTF ----------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel() -> Spec:
    if not HAVE_VMLINUX:
        pytest.skip(f"{VMLINUX} is missing")
    return btf.load_kernel_spec()


@needs_vmlinux
def test_kernel_lazy_lookup() -> None:
    spec = Spec(read_btf_file(VMLINUX), lazy=True)
    ts = spec.type_by_name("task_struct", btf.Struct)
    assert not spec._complete  # found without indexing everything
    assert ts.member("pid").offset_bits > 0 and ts.size > 1000
    assert spec.type_id(ts) in spec.ids_by_name("task_struct")
    n = len(spec)
    assert spec._complete and n > 10000
    last = spec.type_by_id(n - 1)
    assert spec.type_id(last) == n - 1


@needs_vmlinux
def test_kernel_lookup_methods_agree(kernel: Spec) -> None:
    data = read_btf_file(VMLINUX)
    scan = Spec(data, lazy=True)
    indexed = Spec(data, lazy=True)
    indexed.build_name_index()
    buckets, named = indexed.name_buckets()
    checkpoints = indexed._offsets[:: 1 << CHECKPOINT_SHIFT]
    hashed = Spec(data, lazy=True, _index=CachedIndex(len(indexed) - 1, checkpoints, buckets,
                                                      named))
    rng = random.Random(1)
    ids = rng.sample(range(1, len(indexed)), 60)
    names = {indexed.type_by_id(i).name for i in ids} - {""}
    names |= {"task_struct", "sk_buff", "bpf_prog", "int", "u32", "no_such_type_xyz"}
    for name in sorted(names):
        want = indexed.ids_by_name(name)
        assert scan.ids_by_name(name) == want, name
        assert hashed.ids_by_name(name) == want, name
        assert kernel.ids_by_name(name) == want, name


@needs_vmlinux
def test_kernel_spec_is_cached_per_process(kernel: Spec) -> None:
    assert btf.load_kernel_spec() is kernel


@needs_vmlinux
def test_read_btf_file_maps() -> None:
    data = read_btf_file(VMLINUX)
    assert isinstance(data, (mmap.mmap, bytes))
    with open(VMLINUX, "rb") as f:
        assert bytes(data[:4096]) == f.read(4096)


@needs_vmlinux
def test_many_scans_switch_to_an_index() -> None:
    spec = Spec(read_btf_file(VMLINUX), lazy=True)
    for name in ["task_struct"] * 20:
        spec.type_by_name(name)
    assert spec._names is not None


# -- malformed blobs ------------------------------------------------------------------

INT_WORDS = [1, 0x01000000, 4, 32]  # "a": int, 4 bytes, 32 bits
STRINGS = b"\0a\0"


def test_minimal_blob() -> None:
    s = Spec(blob(INT_WORDS, STRINGS))
    assert len(s) == 2
    t = s.type_by_name("a", btf.Int)
    assert t.size == 4 and t.bits == 32


@pytest.mark.parametrize("data, offset", [
    (b"\x9f\xeb\x01", 0),
    (header(0, 1, magic=0x1234) + b"\0", 0),
    (header(0, 1, version=2) + b"\0", 2),
    (header(0, 1, hdr_len=8) + b"\0", 4),
    (header(0, 1, hdr_len=1000) + b"\0", 4),
    (header(6, 1) + b"\0" * 7, 8),
    (header(4, 1, type_off=2) + b"\0" * 7, 8),
    (header(400, 1) + b"\0" * 8, 8),
    (header(4, 3, str_off=2) + b"\0" * 7, 8),
    (header(0, 2) + b"\0a", 25),
    (header(0, 2) + b"a\0", 24),
])
def test_bad_headers(data: bytes, offset: int) -> None:
    with pytest.raises(BTFError) as e:
        Spec(data)
    assert e.value.offset == offset


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("words, offset", [
    ([1, 0x01000000, 4], 24),                       # INT missing its encoding word
    ([1, 0x01000000], 24),                          # header cut off
    ([*INT_WORDS, 0, 0x14000000, 0], 40),           # kind 20 does not exist
    ([*INT_WORDS, 0, 0x1F000000, 0], 40),           # kind 31
    ([0, 0x04000002, 4, 1, 1, 0], 24),              # struct of 2 members, 1 present
    ([*INT_WORDS, 0, 0x02000000, 7], 40),           # pointer to type 7: out of range
    ([99, 0x01000000, 4, 32], 24),                  # name offset beyond the strings
    ([0, 0x00000000, 0], 24),                       # kind 0 (UNKN)
    ([1, 0x0D000001, 0, 99, 1], 24),                # func proto param name out of range
])
def test_bad_types(words: list[int], offset: int, lazy: bool) -> None:
    data = blob(words, STRINGS)
    with pytest.raises(BTFError) as e:
        s = Spec(data, lazy=lazy)
        for tid in range(1, len(s)):
            t = s.type_by_id(tid)
            list(t.refs())
    assert e.value.offset == offset


@pytest.mark.parametrize("words, offset", [
    ([*INT_WORDS, 0, 0x14000000, 0], 40),           # kind 20 does not exist
    ([*INT_WORDS, 0, 0x02000000, 7], 40),           # pointer to type 7: out of range
    ([99, 0x01000000, 4, 32], 24),                  # name offset beyond the strings
    ([0, 0x00000000, 0], 24),                       # kind 0 (UNKN)
    ([1, 0x0D000001, 0, 99, 1], 24),                # func proto param name out of range
    ([*INT_WORDS, 0, 0x04000001, 4, 1, 9, 0], 40),  # struct member of type 9
    ([*INT_WORDS, 0, 0x03000000, 0, 1, 5, 2], 40),  # array indexed by type 5
    ([*INT_WORDS, 1, 0x0F000001, 4, 3, 0, 4], 40),  # datasec variable of type 3
])
def test_check_records(words: list[int], offset: int) -> None:
    """`check_records` finds what eager decoding would, without decoding the rest."""
    data = blob(words, STRINGS)
    with pytest.raises(BTFError) as e:
        Spec(data, lazy=True).check_records()
    assert e.value.offset == offset
    good = Spec(blob([*INT_WORDS, 0, 0x02000000, 1, 0, 0x03000000, 0, 1, 1, 4], STRINGS),
                lazy=True)
    good.check_records()
    assert set(good._by_id) == set()


def test_types_of_kind() -> None:
    s = Spec(blob([*INT_WORDS, 0, 0x02000000, 1, 0, 0x02000000, 2], STRINGS), lazy=True)
    assert [s.type_id(t) for t in s.types_of_kind(btf.Kind.PTR)] == [2, 3]
    assert set(s._by_id) == {2, 3}
    assert s.types_of_kind(btf.Kind.STRUCT) == []


def test_not_utf8_name() -> None:
    with pytest.raises(BTFError):
        Spec(blob([1, 0x01000000, 4, 32], b"\0\xff\xfe\0"))


def test_lazy_errors_are_sticky() -> None:
    data = blob([*INT_WORDS, 0, 0x14000000, 0], STRINGS)
    s = Spec(data, lazy=True)
    assert s.type_by_id(1).name == "a"
    for _ in range(2):
        with pytest.raises(BTFError):
            len(s)


# -- cycles and deep nesting terminate -----------------------------------------------


def test_cyclic_typedefs() -> None:
    # typedef a b; typedef b a;
    data = blob([1, 0x08000000, 2, 3, 0x08000000, 1], b"\0a\0b\0")
    s = Spec(data)
    a = s.type_by_name("a")
    for fn in (btf.skip_typedefs, btf.sizeof, btf.alignof):
        with pytest.raises(BTFError):
            fn(a)


def test_struct_containing_itself() -> None:
    # struct s { struct s x; }  (not C, but representable)
    data = blob([1, 0x04000001, 4, 3, 1, 0], b"\0s\0x\0")
    s = Spec(data)
    st = s.type_by_name("s", btf.Struct)
    with pytest.raises(BTFError):
        btf.alignof(st)
    with pytest.raises(KeyNotFoundError):
        st.member("nope")


def test_anonymous_member_cycle() -> None:
    # struct s { struct s; }  with an anonymous member: member() must not recurse forever
    data = blob([1, 0x04000001, 4, 0, 1, 0], b"\0s\0")
    st = Spec(data).type_by_name("s", btf.Struct)
    with pytest.raises(BTFError):
        st.member("nope")


def test_deep_nesting() -> None:
    n = 5000
    words = list(INT_WORDS)
    for i in range(n):  # const -> const -> ... -> int, then arrays of arrays
        words += [0, 0x0A000000, i + 1]
    s = Spec(blob(words, STRINGS))
    top = s.type_by_id(n + 1)
    for fn in (btf.skip_typedefs, btf.strip_qualifiers, btf.sizeof, btf.alignof):
        with pytest.raises(BTFError):
            fn(top)


@needs_vmlinux
def test_concurrent_lazy_lookups() -> None:
    """Threads racing on a fresh lazily indexed spec see one consistent index."""
    import threading

    data = read_btf_file(VMLINUX)
    ref = Spec(data, lazy=True)
    ref.build_name_index()
    names = ["task_struct", "sk_buff", "bpf_prog", "file", "inode", "sock", "net_device",
             "pt_regs", "mm_struct", "cred", "xdp_md", "bpf_map", "page", "dentry"]
    want = {n: ref.ids_by_name(n) for n in names}
    spec = Spec(data, lazy=True)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(len(names)):
                name = names[(i + k) % len(names)]
                assert spec.ids_by_name(name) == want[name]
                t = spec.type_by_id(want[name][-1])
                assert t.name == name and spec.type_id(t) == want[name][-1]
            spec.type_by_id(len(ref) - 1 - k)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert list(spec._offsets) == list(ref._offsets)[: len(spec._offsets)]
    assert len(spec) == len(ref)


def test_kernel_result_types_load_on_first_use() -> None:
    """`ebpf.btf.kernel` makes KernelType/StructOpsType on first use (process start); they
    are its names all the same (repr, pickling by reference)."""
    import pickle
    import subprocess
    import sys

    code = ("import sys, ebpf.btf.kernel as k; print('ebpf.btf._kernel_types' in sys.modules); "
            "k.KernelType; print('ebpf.btf._kernel_types' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]
    from ebpf.btf import kernel

    assert kernel.KernelType.__module__ == "ebpf.btf.kernel"
    assert pickle.loads(pickle.dumps(kernel.StructOpsType)) is kernel.StructOpsType
    assert repr(kernel.KernelType("m", 1, None)) == "KernelType(module='m', type_id=1, type=None)"


@needs_vmlinux
def test_members_decoded_one_by_one_for_core() -> None:
    """`_type_for_core` makes a big struct whose members are decoded as they are asked
    for (by position, or found by name in the name bytes); they are the members a full
    decode makes, and `members` later decodes the rest around the same objects."""
    data = read_btf_file(VMLINUX)
    full = Spec(data, lazy=True)
    lazy = Spec(data, lazy=True)
    tid = full.ids_by_name("task_struct")[0]
    want = full.type_by_id(tid)
    ts = lazy._type_for_core(tid)
    assert isinstance(ts, btf.Struct) and isinstance(want, btf.Struct)
    assert not isinstance(ts._members, list)
    assert lazy.type_by_id(tid) is ts and lazy.type_id(ts) == tid
    assert (ts.name, ts.size, ts._member_count()) == (want.name, want.size, len(want.members))
    first = ts._member_at(5)
    names = [m.name for m in want.members]
    for name in [*sorted(set(names)), "", "no_such_member"]:
        assert ts._positions(name) == [i for i, n in enumerate(names) if n == name], name
    assert ts._member_at(5) is first
    members = ts.members
    assert isinstance(ts._members, list) and members[5] is first
    assert [(m.name, m.offset_bits, m.bitfield_size, full.type_id(m.type)) for m in want.members] \
        == [(m.name, m.offset_bits, m.bitfield_size, lazy.type_id(m.type)) for m in members]
    assert all(m._owner is ts for m in members)
    small = lazy._type_for_core(lazy.ids_by_name("list_head")[0])  # few members: decoded
    assert isinstance(small, btf.Struct) and isinstance(small._members, list)
