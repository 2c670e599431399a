"""Input validation at the boundary: integers the kernel holds in N bits are range
checked where they enter, wrongly typed arguments and paths with NUL bytes are refused
with InvalidArgumentError, pinned objects are opened as what they are, and variables
are written only with values of their size and only inside their section. Every
refusal happens before a kernel object exists: no descriptor is left open and no
object of the test's name appears in the kernel."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from bpfbuild import compile_bpf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ebpf
from ebpf import asm
from ebpf._sys.prog import prog_get_next_id
from ebpf.errors import ELFError, InvalidArgumentError
from ebpf.maps import Map, MapSpec, MapType, PinType, map_ids
from ebpf.programs import Program, ProgramSpec, ProgramType

pytestmark = pytest.mark.kernel

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
    base: dict[str, Any] = dict(name=NAME, type=MapType.HASH, key_size=4, value_size=8,
                                max_entries=4)
    base.update(kw)
    return MapSpec(**base)


def _prog_spec(**kw: Any) -> ProgramSpec:
    base: dict[str, Any] = dict(name=NAME, type=ProgramType.SOCKET_FILTER, license="GPL",
                                instructions=[asm.mov_imm(asm.R0, 0), asm.exit()])
    base.update(kw)
    return ProgramSpec(**base)


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
