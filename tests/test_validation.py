"""Input validation at the boundary: integers the kernel holds in N bits are range
checked where they enter, wrongly typed arguments and paths with NUL bytes are refused
with InvalidArgumentError, pinned objects are opened as what they are, and variables
are written only with values of their size and only inside their section. Every
refusal happens before a kernel object exists: no descriptor is left open and no
object of the test's name appears in the kernel."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bpfbuild import compile_bpf
from conftest import small_map_spec, small_prog_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ebpf
from ebpf._sys.prog import prog_get_next_id
from ebpf.errors import ELFError, InvalidArgumentError
from ebpf.maps import Map, MapSpec, MapType, PinType, map_ids
from ebpf.programs import Program, ProgramSpec

pytestmark = [pytest.mark.kernel, pytest.mark.hostonly]

U32 = 2**32 - 1
U64 = 2**64 - 1
NAME = "valcheck"  # the name of every object these tests try to create


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _maps_named(name: str) -> list[int]:
    out = []
    for i in map_ids():
        try:
            with Map.from_id(i) as m:
                if m.name == name:
                    out.append(i)
        except ebpf.Error:
            continue  # gone in between
    return out


def _prog_ids() -> Iterator[int]:
    cur = prog_get_next_id(0)
    while cur is not None:
        yield cur
        cur = prog_get_next_id(cur)


def _progs_named(name: str) -> list[int]:
    out = []
    for i in _prog_ids():
        try:
            with Program.from_id(i) as p:
                if p.name == name:
                    out.append(i)
        except ebpf.Error:
            continue
    return out


@pytest.fixture
def nothing_created() -> Iterator[None]:
    """The test leaves no descriptor open and no map or program named NAME."""
    before = _fds()
    assert not _maps_named(NAME) and not _progs_named(NAME)
    yield
    assert _fds() - before == set()
    assert _maps_named(NAME) == []
    assert _progs_named(NAME) == []


def _map_spec(**kw: Any) -> MapSpec:
    spec: MapSpec = small_map_spec(**{"name": NAME, **kw})
    return spec


def _prog_spec(**kw: Any) -> ProgramSpec:
    spec: ProgramSpec = small_prog_spec(**{"name": NAME, **kw})
    return spec


def _outside(bits: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(max_value=-1), st.integers(min_value=1 << bits))


# -- integers the kernel holds in N bits ------------------------------------------------

MAP_FIELDS = [("key_size", 32), ("value_size", 32), ("max_entries", 32), ("flags", 32),
              ("map_extra", 64), ("numa_node", 32), ("type", 32)]


def test_value_size_beyond_32_bits_is_refused(nothing_created: None) -> None:
    # the reported case: 2**32 + 8 used to create a map of value size 8
    with pytest.raises(InvalidArgumentError) as ei:
        Map(_map_spec(value_size=2**32 + 8))
    assert str(ei.value) == "MapSpec.value_size must be in 0..4294967295, got 4294967304"


@pytest.mark.parametrize(("field", "bits"), MAP_FIELDS)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_map_spec_integer_out_of_range(field: str, bits: int, data: st.DataObject,
                                       nothing_created: None) -> None:
    value = data.draw(_outside(bits))
    with pytest.raises(InvalidArgumentError) as ei:
        Map(_map_spec(**{field: value}))
    assert str(ei.value) == f"MapSpec.{field} must be in 0..{(1 << bits) - 1}, got {value}"


@pytest.mark.parametrize(("field", "bits"), MAP_FIELDS)
@pytest.mark.parametrize("value", [None, "8", 8.0, True, b"\x08"])
def test_map_spec_integer_wrong_type(field: str, bits: int, value: object,
                                     nothing_created: None) -> None:
    if field == "numa_node" and value is None:
        value = "any"  # None is numa_node's "no preference"
    with pytest.raises(InvalidArgumentError, match=rf"^MapSpec\.{field} must be an integer "
                       rf"in 0\.\.{(1 << bits) - 1}, got {type(value).__name__}"):
        Map(_map_spec(**{field: value}))


@pytest.mark.parametrize("spec", [None, "hash", {"type": 1}])
def test_map_needs_a_map_spec(spec: object, nothing_created: None) -> None:
    with pytest.raises(InvalidArgumentError, match="expected a MapSpec"):
        Map(spec)  # type: ignore[arg-type]


def test_map_name_must_be_str(nothing_created: None) -> None:
    with pytest.raises(InvalidArgumentError, match=r"MapSpec\.name must be a str, got NoneType"):
        Map(_map_spec(name=None))


def test_inner_map_is_checked_too(nothing_created: None) -> None:
    outer = _map_spec(type=MapType.ARRAY_OF_MAPS, value_size=4,
                      inner_map=_map_spec(max_entries=2**32))
    with pytest.raises(InvalidArgumentError, match=r"MapSpec\.max_entries must be in "
                       r"0\.\.4294967295, got 4294967296"):
        Map(outer)


def test_valid_sizes_read_back() -> None:
    with Map(_map_spec(value_size=8, flags=0, map_extra=0)) as m:
        m[1] = 2**64 - 1
        assert m.lookup(1, raw=True) == b"\xff" * 8
        info = m.info()
        assert (info.key_size, info.value_size, info.max_entries) == (4, 8, 4)


def test_map_element_flags_are_checked() -> None:
    with Map(_map_spec()) as m:
        with pytest.raises(InvalidArgumentError,
                           match=r"^flags must be in 0\.\.18446744073709551615, "
                           r"got 18446744073709551616$"):
            m.update(1, 1, 2**64)
        with pytest.raises(KeyError):
            m.lookup(1)  # nothing was written
        with pytest.raises(InvalidArgumentError, match="flags must be an integer"):
            m.lookup(1, flags="lock")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="flags must be an integer"):
            m.update_batch([1], [2], flags=None)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="chunk_size must be in"):
            m.lookup_batch(chunk_size=-1)
        assert len(m) == 0


def test_map_element_type_errors() -> None:
    with Map(_map_spec()) as m:
        for bad in (None, "1", 1.0):
            with pytest.raises(InvalidArgumentError, match="key must be"):
                m[bad] = 1
            with pytest.raises(InvalidArgumentError, match="value must be"):
                m[1] = bad
        assert len(m) == 0


def test_ids_are_not_truncated(nothing_created: None) -> None:
    with Map(_map_spec(name="valcheck_id")) as m:
        # 2**32 + id used to open the map with that id
        with pytest.raises(InvalidArgumentError, match=r"^id must be in 0\.\.4294967295"):
            Map.from_id(2**32 + m.id)
        with pytest.raises(InvalidArgumentError, match="id must be an integer"):
            Map.from_id("1")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match=r"^id must be in 0\.\.4294967295"):
            Program.from_id(-1)
        with pytest.raises(InvalidArgumentError, match="fd must be an integer"):
            Map.from_fd("3")  # type: ignore[arg-type]


PROG_FIELDS = [("flags", 32), ("kernel_version", 32), ("ifindex", 32), ("type", 32),
               ("attach_btf_id", 32), ("attach_type", 32)]


@pytest.mark.parametrize(("field", "bits"), PROG_FIELDS)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_program_spec_integer_out_of_range(field: str, bits: int, data: st.DataObject,
                                           nothing_created: None) -> None:
    value = data.draw(_outside(bits))
    with pytest.raises(InvalidArgumentError) as ei:
        Program(_prog_spec(**{field: value}))
    assert str(ei.value) == f"ProgramSpec.{field} must be in 0..{(1 << bits) - 1}, got {value}"


@pytest.mark.parametrize(("field", "bits"), PROG_FIELDS)
@pytest.mark.parametrize("value", ["1", 1.5, False])
def test_program_spec_integer_wrong_type(field: str, bits: int, value: object,
                                         nothing_created: None) -> None:
    with pytest.raises(InvalidArgumentError, match=rf"^ProgramSpec\.{field} must be an "
                       rf"integer in 0\.\.{(1 << bits) - 1}, got {type(value).__name__}"):
        Program(_prog_spec(**{field: value}))


@pytest.mark.parametrize("field", ["name", "license", "attach_to"])
def test_program_spec_strings(field: str, nothing_created: None) -> None:
    with pytest.raises(InvalidArgumentError,
                       match=rf"^ProgramSpec\.{field} must be a str, got NoneType$"):
        Program(_prog_spec(**{field: None}))


def test_program_needs_a_program_spec(nothing_created: None) -> None:
    with pytest.raises(InvalidArgumentError, match="expected a ProgramSpec, got NoneType"):
        Program(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError,
                       match=r"log_size must be an integer in 1\.\.1073741823, got str"):
        Program(_prog_spec(), log_size="big")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="log_level must be in"):
        Program(_prog_spec(), log_level=2**32)


def test_unknown_program_type_is_invalid(nothing_created: None) -> None:
    with pytest.raises(InvalidArgumentError, match=r"ProgramSpec\.type 4000000 is not a "
                       r"program type"):
        Program(_prog_spec(type=4_000_000))


def test_test_run_arguments() -> None:
    with Program(_prog_spec()) as p:
        with pytest.raises(InvalidArgumentError, match=r"^repeat must be in 0\.\.4294967295, "
                           r"got 4294967296$"):
            p.test_run(b"\0" * 64, repeat=2**32)
        with pytest.raises(InvalidArgumentError, match=r"^cpu must be in 0\.\.4294967295"):
            p.test_run(b"\0" * 64, cpu=-1)
        with pytest.raises(InvalidArgumentError, match="flags must be an integer"):
            p.test_run(b"\0" * 64, flags="x")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="data must be bytes-like, got str"):
            p.test_run("packet")  # type: ignore[arg-type]
        assert p.test_run(b"\0" * 64, repeat=3).retval == 0


# -- paths --------------------------------------------------------------------------------

def test_nul_in_pin_paths(pin_dir: str, nothing_created: None) -> None:
    bad = os.path.join(pin_dir, "x\0y")
    msg = r"pin path '.*x\\x00y' contains a NUL byte"
    with Map(_map_spec(name="valcheck_pin")) as m, Program(_prog_spec(name="valcheck_pin")) as p:
        with pytest.raises(InvalidArgumentError, match=msg):
            m.pin(bad)
        with pytest.raises(InvalidArgumentError, match=msg):
            p.pin(bad)
        with pytest.raises(InvalidArgumentError, match=msg):
            p.pin(os.fsencode(bad))  # type: ignore[arg-type]
        assert m.pinned is None and p.pinned_path is None
        m.unpin()  # nothing pinned: nothing to do
    # the kernel would have pinned at the path cut at the NUL
    assert os.listdir(pin_dir) == []
    for opener in (Map.open_pinned, Program.open_pinned, ebpf.link.open_pinned):
        with pytest.raises(InvalidArgumentError, match=msg):
            opener(bad)
    with pytest.raises(InvalidArgumentError, match=r"pin path must be a str, bytes or "
                       r"os\.PathLike, got NoneType"):
        ebpf.link.open_pinned(None)  # type: ignore[arg-type]


def test_nul_in_map_pin_directory(pin_dir: str, nothing_created: None) -> None:
    spec = _map_spec(pinning=PinType.BY_NAME)
    with pytest.raises(InvalidArgumentError, match=r"pin_path .* contains a NUL byte"):
        Map(spec, pin_path=pin_dir + "\0/sub")
    obj = ebpf.load_collection_spec(compile_bpf("loader_globals"))
    with pytest.raises(InvalidArgumentError, match=r"pin_path .* contains a NUL byte"):
        ebpf.Collection(obj, pin_path=pin_dir + "\0/sub")
    assert os.listdir(pin_dir) == []


def test_nul_in_object_path() -> None:
    path = str(compile_bpf("loader_globals"))
    with pytest.raises(InvalidArgumentError, match=r"object file path .* contains a NUL byte"):
        ebpf.load_collection_spec(path + "\0.ignored")
    with pytest.raises(InvalidArgumentError, match="object file path must be a str"):
        ebpf.load_collection_spec(None)  # type: ignore[arg-type]


# -- pinned objects are opened as what they are ----------------------------------------------

def test_open_pinned_checks_the_object_type(pin_dir: str, nothing_created: None) -> None:
    mpath, ppath = os.path.join(pin_dir, "m"), os.path.join(pin_dir, "p")
    with Map(_map_spec(name="valcheck_kind")) as m, \
            Program(_prog_spec(name="valcheck_kind")) as p:
        m.pin(mpath)
        p.pin(ppath)
    before = _fds()
    with pytest.raises(InvalidArgumentError) as ei:
        ebpf.link.open_pinned(mpath)
    assert str(ei.value) == f"{mpath} is a map, not a link"
    with pytest.raises(InvalidArgumentError) as ei:
        ebpf.link.open_pinned(ppath)
    assert str(ei.value) == f"{ppath} is a program, not a link"
    with pytest.raises(InvalidArgumentError, match=r"is not a pinned program \(it is a map\)"):
        Program.open_pinned(mpath)
    with pytest.raises(InvalidArgumentError, match="bpf-prog, not a map"):
        Map.open_pinned(ppath)
    assert _fds() == before
    with Map.open_pinned(mpath) as again:
        assert again.name == "valcheck_kind"
        again.unpin()
    os.unlink(ppath)


# -- variables ------------------------------------------------------------------------------

@pytest.fixture
def untyped_globals() -> ebpf.CollectionSpec:
    """loader_globals with the BTF types of its variables dropped."""
    spec = ebpf.load_collection_spec(compile_bpf("loader_globals"))
    for v in spec.variables.values():
        v.type = None
    return spec


def test_live_variable_without_btf_takes_bytes_of_its_size(
        untyped_globals: ebpf.CollectionSpec) -> None:
    with ebpf.Collection(untyped_globals, programs=[]) as coll:
        var = coll.variables["data_counter"]
        before = var.get()
        assert before == (100).to_bytes(8, "little")
        with pytest.raises(InvalidArgumentError, match=r"variable 'data_counter' has no BTF; "
                           r"pass 8 raw bytes, not int"):
            var.set(5)  # used to write bytes(5): five zero bytes
        with pytest.raises(InvalidArgumentError, match="is 8 bytes, got 5"):
            var.set(b"\0" * 5)
        assert var.get() == before
        var.set((7).to_bytes(8, "little"))
        assert var.get() == (7).to_bytes(8, "little")


def test_variable_spec_without_btf_takes_bytes(untyped_globals: ebpf.CollectionSpec) -> None:
    var = untyped_globals.variables["cfg_magic"]
    with pytest.raises(InvalidArgumentError, match="has no BTF; pass 4 raw bytes"):
        var.set(5)
    assert var.get() == (0x1234).to_bytes(4, "little")


@pytest.mark.parametrize(("offset", "size"), [(None, 4), (0, 10**6), (-4, 4)])
def test_variable_outside_its_section(untyped_globals: ebpf.CollectionSpec,
                                      offset: int | None, size: int) -> None:
    var = untyped_globals.variables["cfg_magic"]
    section_size = untyped_globals.maps[var.section].value_size
    var.offset = section_size if offset is None else offset
    var.size = size
    for op in (var.get, lambda: var.set(b"\0" * size)):
        with pytest.raises(ELFError) as ei:
            op()
        assert ei.value.section == var.section
        assert f"variable 'cfg_magic' at offset {var.offset} size {size} lies outside " \
               f"its section ({section_size} bytes)" in str(ei.value)


def test_live_variable_outside_its_section(untyped_globals: ebpf.CollectionSpec) -> None:
    with ebpf.Collection(untyped_globals, programs=[]) as coll:
        var = coll.variables["data_counter"]
        var.spec = var.spec.__class__(var.spec.name, var.spec.section,
                                      coll.maps[var.spec.section].value_size, 8)
        with pytest.raises(ELFError, match=r"variable 'data_counter' .* lies outside"):
            var.get()
        with pytest.raises(ELFError, match=r"variable 'data_counter' .* lies outside"):
            var.set(b"\0" * 8)


# -- ebpf gen: malformed BTF, names that are not UTF-8, no temporary files ---------------------

CYCLES_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char _license[] SEC("license") = "GPL";
struct node { struct node *next; int v; };
typedef int *ip_t;
struct node head_node;
ip_t gp_typedef;
long *gp_self;
const struct node *unused_node __attribute__((unused));
SEC("syscall") int prog(void *ctx) { return head_node.v + (gp_typedef != 0) + (gp_self != 0); }
SEC("syscall") int bad(void *ctx) { return *(char *)(long)bpf_get_prandom_u32(); }
"""

_BTF_EXTRA = {1: 4, 3: 12, 14: 4, 17: 4}            # INT, ARRAY, VAR, DECL_TAG
_BTF_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}


def _btf_entries(data: bytes) -> tuple[int, dict[bytes, tuple[int, int, int, int]]]:
    """(offset of the string section, {name: (type id, entry offset, kind, type field)})
    of the .BTF section of an ELF object, read with the BTF header's own offsets."""
    import struct

    from ebpf.elffile import ELFFile

    elf = ELFFile(data)
    sec = next(s for s in elf.sections if s.name == ".BTF")
    hlen, toff, tlen, soff = struct.unpack_from("<IIII", data, sec.offset + 4)
    tstart, sstart = sec.offset + hlen + toff, sec.offset + hlen + soff
    out: dict[bytes, tuple[int, int, int, int]] = {}
    pos, tid = tstart, 1
    while pos < tstart + tlen:
        name_off, info, field = struct.unpack_from("<III", data, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        name = data[sstart + name_off: data.index(b"\0", sstart + name_off)]
        out.setdefault(name, (tid, pos, kind, field))
        out[b"#%d" % tid] = (tid, pos, kind, field)
        pos += 12 + _BTF_EXTRA.get(kind, 0) + _BTF_PER_MEMBER.get(kind, 0) * vlen
        tid += 1
    return sstart, out


@pytest.fixture(scope="module")
def cycles_obj(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    import subprocess

    from bpfbuild import CLANG

    d = tmp_path_factory.mktemp("cycles")
    (d / "cycles.bpf.c").write_text(CYCLES_C)
    subprocess.run([CLANG, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
                    "-c", str(d / "cycles.bpf.c"), "-o", str(d / "cycles.bpf.o")], check=True)
    return (d / "cycles.bpf.o").read_bytes()


def _retarget(data: bytes, ptr_of: bytes, target: str) -> bytes:
    """`data` with the PTR that variable `ptr_of` reaches (through a typedef when
    `target` is "typedef") pointing at itself, or at that typedef."""
    import struct

    _, types = _btf_entries(data)
    var = types[ptr_of]
    assert var[2] == 14                               # VAR
    first = types[b"#%d" % var[3]]
    ptr = types[b"#%d" % first[3]] if target == "typedef" else first
    assert ptr[2] == 2                                # PTR
    out = bytearray(data)
    struct.pack_into("<I", out, ptr[1] + 8, first[0])  # -> itself, or -> the typedef
    return bytes(out)


def _struct_member_to_itself(data: bytes) -> bytes:
    """struct node's `next` (a PTR to struct node) made a PTR to itself."""
    import struct

    _, types = _btf_entries(data)
    node = types[b"node"]
    member_type = struct.unpack_from("<I", data, node[1] + 12 + 4)[0]   # next: its type
    ptr = types[b"#%d" % member_type]
    assert ptr[2] == 2
    out = bytearray(data)
    struct.pack_into("<I", out, ptr[1] + 8, ptr[0])
    return bytes(out)


def _import(path: str, name: str) -> Any:
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("mutate", ["ptr_self", "typedef_cycle", "member_self", "none"])
def test_gen_survives_self_referential_btf(cycles_obj: bytes, tmp_path: Any,
                                           mutate: str) -> None:
    from ebpf.cli import main

    mutations: dict[str, Callable[[bytes], bytes]] = {
        "ptr_self": lambda d: _retarget(d, b"gp_self", "self"),
        "typedef_cycle": lambda d: _retarget(d, b"gp_typedef", "typedef"),
        "member_self": _struct_member_to_itself,
        "none": lambda d: d,
    }
    data = mutations[mutate](cycles_obj)
    obj = tmp_path / "cycles.bpf.o"
    obj.write_bytes(data)
    out = tmp_path / f"cycles_{mutate}.py"
    assert main(["gen", str(obj), "-o", str(out)]) == 0
    assert sorted(os.listdir(tmp_path)) == sorted([obj.name, out.name])   # no temp file
    text = out.read_text(encoding="utf-8")
    which = {"ptr_self": "gp_self", "typedef_cycle": "gp_typedef"}.get(mutate)
    if which is not None:
        assert f"``<cycle> * {which}``" in text
    mod = _import(str(out), f"cycles_{mutate}")
    spec = mod.Cycles.load_spec()
    assert spec.head_node == {"next": 0, "v": 0}
    spec.gp_self = 5
    assert spec.gp_self == 5


def test_gen_names_that_are_not_utf8(cycles_obj: bytes, tmp_path: Any) -> None:
    from ebpf.elffile import ELFFile
    from ebpf.gen import generate

    data = bytearray(cycles_obj)
    strtab = next(s for s in ELFFile(cycles_obj).sections if s.name == ".strtab")
    at = cycles_obj.index(b"\0prog\0", strtab.offset) + 1
    data[at:at + 4] = b"pr\xffg"                       # the program's symbol name
    obj = tmp_path / "cycles.bpf.o"
    obj.write_bytes(bytes(data))
    assert "pr\udcffg" in ebpf.load_collection_spec(bytes(data)).programs
    src = generate(obj)
    src.encode("utf-8")                                # no lone surrogates
    out = tmp_path / "names_bpf.py"
    out.write_text(src, encoding="utf-8")
    mod = _import(str(out), "names_bpf")
    with mod.Cycles.load(programs=["pr\udcffg"]) as objs:
        assert objs.pr_g.name == "pr\udcffg" and objs.pr_g.test_run().retval == 0
        assert objs.pr_g.info().name == "prg"               # what the kernel keeps


def test_gen_btf_name_not_utf8_is_a_typed_error(cycles_obj: bytes, tmp_path: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import struct

    from ebpf.cli import main
    from ebpf.gen import generate

    sstart, types = _btf_entries(cycles_obj)
    name_off = struct.unpack_from("<I", cycles_obj, types[b"node"][1])[0]
    data = bytearray(cycles_obj)
    data[sstart + name_off: sstart + name_off + 4] = b"n\xffde"
    obj = tmp_path / "bad.bpf.o"
    obj.write_bytes(bytes(data))
    with pytest.raises(ebpf.BTFError, match="is not UTF-8"):
        generate(obj)
    out = tmp_path / "bad_bpf.py"
    out.write_text("previous contents")
    assert main(["gen", str(obj), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("ebpf: ") and captured.err.count("\n") == 1
    assert "is not UTF-8" in captured.err
    assert out.read_text() == "previous contents"      # untouched
    assert sorted(os.listdir(tmp_path)) == ["bad.bpf.o", "bad_bpf.py"]


def test_gen_unwritable_output(cycles_obj: bytes, tmp_path: Any,
                               capsys: pytest.CaptureFixture[str]) -> None:
    from ebpf.cli import main

    obj = tmp_path / "cycles.bpf.o"
    obj.write_bytes(cycles_obj)
    assert main(["gen", str(obj), "-o", str(tmp_path / "missing" / "x.py")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ebpf: ") and err.count("\n") == 1 and "missing" in err
    assert main(["gen", str(obj), "--name", "not valid", "-o", str(tmp_path / "y.py")]) == 1
    err = capsys.readouterr().err
    assert err == "ebpf: 'not valid' is not a valid Python class name\n"
    assert sorted(os.listdir(tmp_path)) == ["cycles.bpf.o"]


# -- the CLI: every error on stderr, one line, exit status 1 --------------------------------------

def test_cli_load_errors_go_to_stderr(cycles_obj: bytes, tmp_path: Any,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from ebpf.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        rc = main(list(argv))
        out, err = capsys.readouterr()
        return rc, out, err

    rc, out, err = run("load", str(tmp_path / "missing.o"))
    assert (rc, out) == (1, "")
    assert err.startswith("ebpf: ") and err.count("\n") == 1 and "No such file" in err
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"\x7fELF" + b"\0" * 60)
    rc, out, err = run("load", str(junk))
    assert (rc, out) == (1, "")
    assert err.startswith(f"ebpf: {junk}: cannot open: ") and err.count("\n") == 1
    obj = tmp_path / "cycles.bpf.o"
    obj.write_bytes(cycles_obj)
    rc, out, err = run("load", str(obj), "--each")
    assert rc == 1
    assert [ln.split()[0] for ln in out.splitlines()] == ["prog"]          # what loaded
    assert err.count("\n") == 1
    assert err.startswith(f"ebpf: {obj}: program bad: program 'bad' rejected by the verifier")
    rc, out, err = run("load", str(obj), "--json")
    assert rc == 1 and not json_ok(out) and err.count("\n") >= 1
    assert all(ln.startswith("ebpf: ") for ln in err.splitlines())
    rc, out, err = run("inspect", str(tmp_path / "nul\0.o"))
    assert (rc, out) == (1, "")
    assert err.startswith("ebpf: object file path") and "NUL byte" in err


def json_ok(out: str) -> bool:
    import json

    d = json.loads(out)
    return bool(d["open"]["ok"] and all(p["ok"] for p in d["programs"]))
