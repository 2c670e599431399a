"""Parsed specs pickle (protocols 2 and 5) and deep-copy: what a user sees survives the
round trip, and the copy loads and runs like the original, in this process or in a
worker process; the running kernel's BTF pickles by name; kernel objects (maps,
programs, collections, variables, links, readers, BTF objects, descriptors) refuse
with `ebpf.NotPicklableError`, saying what to send instead."""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf import btf
from ebpf.btf.ext import CoreRelo, LineInfo

# globals and .rodata, CO-RE, BTF-defined maps and map-in-maps, subprograms, externs,
# struct_ops, ring and perf buffers
OBJECTS = ["loader_globals", "core_fields", "loader_maps", "loader_calls", "loader_externs",
           "net_struct_ops", "events"]
NEEDS_VMLINUX_H = {"net_struct_ops"}

ROUND_TRIPS: dict[str, Callable[[Any], Any]] = {
    "pickle-2": lambda obj: pickle.loads(pickle.dumps(obj, 2)),
    "pickle-5": lambda obj: pickle.loads(pickle.dumps(obj, 5)),
    "deepcopy": copy.deepcopy,
}


def obj_path(name: str) -> str:
    flags = [f"-I{vmlinux_include_dir()}"] if name in NEEDS_VMLINUX_H else []
    return str(compile_bpf(name, extra_flags=flags))


def parse(name: str) -> ebpf.CollectionSpec:
    return ebpf.load_collection_spec(obj_path(name))


def plain(x: Any) -> Any:
    """`x` as comparable plain data; a BTF type as its kind, name and id in the spec it
    was parsed from (KeyNotFoundError when that spec does not hold it: a load would
    fail the same way)."""
    if isinstance(x, btf.Type):
        return ("type", x.kind, x.type_name, None if x.spec is None else x.spec.type_id(x))
    if isinstance(x, (LineInfo, CoreRelo)):
        return (type(x).__name__, *(plain(getattr(x, s)) for s in x.__slots__))
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, (bytes, bytearray)):
        return bytes(x)
    return x


def map_view(m: ebpf.MapSpec) -> Any:
    fields = {f: plain(getattr(m, f)) for f in m._FIELDS if f != "inner_map"}
    return fields, None if m.inner_map is None else map_view(m.inner_map)


def view(spec: ebpf.CollectionSpec) -> dict[str, Any]:
    """What a user sees of a collection spec (decoding, lazily, whatever it needs)."""
    return {
        "programs": {n: (p.type, p.section, p.license, p.attach_type, p.attach_to, p.flags,
                         p.autoload, p.kernel_version,
                         [(i.opcode, i.dst, i.src, i.off, i.imm, i.symbol, i.reference,
                           plain(i.meta)) for i in p.instructions])
                     for n, p in spec.programs.items()},
        "maps": {n: map_view(m) for n, m in spec.maps.items()},
        "variables": {n: (v.section, v.offset, v.size, plain(v.type), plain(v.get()))
                      for n, v in spec.variables.items()},
        "externs": {n: (e.section, plain(e.type), e.weak, e.offset, e.size, e.is_func)
                    for n, e in spec.externs.items()},
        "struct_ops": {n: (s.type_name, plain(s.type), bytes(s.data), s.programs, s.link,
                           s.section, s.autocreate) for n, s in spec.struct_ops.items()},
        "byteorder": spec.byteorder,
    }


def btf_view(spec: btf.Spec) -> list[Any]:
    """Every type of `spec` by id, kind and name, and each named type found by name."""
    types = [(spec.type_id(t), t.kind, t.type_name) for t in spec]
    by_name = [(t.name, [spec.type_by_id(i).type_name for i in spec.ids_by_name(t.name)])
               for t in spec if t.name]
    return [types, by_name, spec.raw]


@pytest.mark.parametrize("how", ROUND_TRIPS)
@pytest.mark.parametrize("name", OBJECTS)
def test_round_trip_keeps_what_a_user_sees(name: str, how: str) -> None:
    spec = parse(name)
    again = ROUND_TRIPS[how](spec)  # (before anything beyond parsing was decoded)
    assert view(again) == view(spec)
    assert btf_view(again.btf) == btf_view(spec.btf)
    if how == "deepcopy":  # shared, as copy() shares it
        assert again.btf is spec.btf
    else:  # one BTF spec for the whole collection again
        assert again.btf is not spec.btf
        assert all(p.btf is again.btf for p in again.programs.values())
    for v in again.variables.values():
        assert v._spec is again


@pytest.mark.parametrize("how", ROUND_TRIPS)
def test_program_and_map_specs_alone(how: str) -> None:
    spec = parse("loader_maps")
    prog = ROUND_TRIPS[how](spec.programs["check_maps"])
    points = ROUND_TRIPS[how](spec.maps["points"])
    assert view(ebpf.CollectionSpec(programs=ebpf.spec.Programs(check_maps=prog))) == view(
        ebpf.CollectionSpec(programs=ebpf.spec.Programs(check_maps=spec.programs["check_maps"])))
    assert map_view(points) == map_view(spec.maps["points"])
    assert points.value is not None and points.value.spec is not None
    assert btf_view(points.value.spec) == btf_view(spec.btf)


@pytest.mark.parametrize("how", ROUND_TRIPS)
def test_btf_spec_alone_and_its_types(how: str) -> None:
    spec = parse("loader_maps")
    b = spec.btf
    pt = b.type_by_name("pt", btf.Struct)
    pt.members[0].name = "renamed"  # an edit of a decoded type travels with it
    again = ROUND_TRIPS[how](b)
    assert btf_view(again) == btf_view(b)
    assert again.type_by_name("pt", btf.Struct).members[0].name == "renamed"
    t_again = ROUND_TRIPS[how]((b, pt))[1]
    if how == "deepcopy":  # a type deep-copied by itself stays a copy
        assert t_again is not pt and t_again.spec is b
    else:  # found by identity in its unpickled spec
        assert t_again.spec is not None and t_again.spec.type_id(t_again) == b.type_id(pt)
    big_endian = btf.Spec(ebpf.load_collection_spec(
        compile_bpf("loader_globals", target="bpfeb")).btf.raw)
    assert big_endian.byteorder == "big"
    assert btf_view(ROUND_TRIPS[how](big_endian)) == btf_view(big_endian)


def test_pickles_are_about_the_size_of_the_object() -> None:
    for name in OBJECTS:
        size = os.path.getsize(obj_path(name))
        assert len(pickle.dumps(parse(name), 5)) < 3 * size, name


def test_kernel_btf_pickles_by_name() -> None:
    kernel = btf.load_kernel_spec()
    blob = pickle.dumps(kernel, 5)
    assert len(blob) < 200  # a reference, not the kernel's megabytes
    assert pickle.loads(blob) is kernel and copy.deepcopy(kernel) is kernel
    task = kernel.type_by_name("task_struct", btf.Struct)
    again = pickle.loads(pickle.dumps(task, 5))
    assert again.spec is kernel and again.size == task.size
    assert [m.name for m in again.members] == [m.name for m in task.members]
    for module in btf.kernel.kernel_module_names()[:1]:
        split = btf.kernel.load_kernel_module_spec(module)
        assert pickle.loads(pickle.dumps(split)) is split


# -- loading what was unpickled -----------------------------------------------------------

def _configured(spec: ebpf.CollectionSpec) -> ebpf.CollectionSpec:
    spec.variables["cfg_magic"].set(99)
    spec.variables["cfg_enabled"].set(1)
    return spec


@requires("program_type:SYSCALL", min_kernel="5.14")
@pytest.mark.parametrize("how", ROUND_TRIPS)
def test_unpickled_globals_load_and_run(how: str) -> None:
    spec = ROUND_TRIPS[how](parse("loader_globals"))
    with ebpf.Collection(spec) as coll:
        assert coll.programs["check_defaults"].test_run().retval == 0
        assert coll.variables["data_counter"].get() == 101
        assert coll.variables["bss_bytes"].get() == [0, 0xAA, 0]
    edited = ROUND_TRIPS[how](_configured(parse("loader_globals")))  # .rodata edits travel
    assert edited.variables["cfg_magic"].get() == 99
    with ebpf.Collection(edited, programs=["read_config"]) as coll:
        assert coll.programs["read_config"].test_run().retval == 99 + 7


@requires("program_type:SYSCALL", min_kernel="5.14")
@pytest.mark.parametrize("how", ROUND_TRIPS)
def test_unpickled_maps_and_subprograms_load_and_run(how: str) -> None:
    with ebpf.Collection(ROUND_TRIPS[how](parse("loader_maps")),
                         programs=["check_maps"]) as coll:
        assert coll.programs["check_maps"].test_run().retval == 0
        inner = ebpf.Map.from_id(int.from_bytes(coll.maps["outer"][1], "little"))
        with inner:
            assert inner[0] == 77  # (typed: the kernel keeps the map's BTF)
        assert coll.maps["points"].value_type is not None
    with ebpf.Collection(ROUND_TRIPS[how](parse("loader_calls"))) as coll:
        assert coll.programs["check_calls"].test_run().retval == 0
        assert coll.programs["second_user"].test_run().retval == 42


CORE_OUT = ("pid", "tgid", "ppid", "uid", "pid_size", "comm_size", "pid_off", "comm3_off",
            "pid_exists", "ts_size", "tid_kernel", "ringbuf_value", "old_pid_off",
            "direct_pid", "state_dead")


def _core_out(spec: ebpf.CollectionSpec) -> dict[str, int]:
    with ebpf.Collection(spec) as coll:
        assert coll.programs["core_fields"].test_run(ctx=bytes(8)).retval == 0
        out = coll.variables["out"].get()
    return {k: out[k] for k in CORE_OUT}


@requires("program_type:RAW_TRACEPOINT", min_kernel="5.10")  # test_run of raw tracepoints
@pytest.mark.parametrize("how", ROUND_TRIPS)
def test_unpickled_core_relocations_load_and_run(how: str) -> None:
    spec = parse("core_fields")
    again = ROUND_TRIPS[how](spec)
    got = _core_out(again)
    assert got == _core_out(spec)
    assert got["pid"] == got["direct_pid"] and got["tgid"] == os.getpid()


@requires("program_type:SYSCALL", min_kernel="5.14")
def test_a_loaded_spec_pickles_and_loads_again() -> None:
    spec = parse("loader_globals")
    with ebpf.Collection(spec) as coll:  # (the load leaves its caches on the spec)
        assert coll.programs["check_defaults"].test_run().retval == 0
        again = pickle.loads(pickle.dumps(coll.spec))
    with ebpf.Collection(again) as coll:
        assert coll.programs["check_defaults"].test_run().retval == 0


def _load_in_worker(spec: ebpf.CollectionSpec, program: str) -> tuple[int, Any]:
    """Run in a worker process: load the collection spec it was sent, run `program`."""
    with ebpf.Collection(spec, programs=[program]) as coll:
        ret = coll.programs[program].test_run().retval
        return ret, coll.variables["cfg_magic"].get()


@pytest.mark.hostonly  # pickling across processes: the same on every kernel (two spawned
@requires("program_type:SYSCALL", min_kernel="5.14")  # interpreters: ~20 s under TCG)
def test_specs_load_in_worker_processes() -> None:
    specs = [parse("loader_globals"), _configured(parse("loader_globals"))]
    programs = ["check_defaults", "read_config"]
    # spawn: the worker unpickles into a fresh interpreter (no parsed state inherited)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_load_in_worker, specs, programs))
    assert results == [(0, 0x1234), (99 + 7, 99)]


# -- kernel objects refuse ------------------------------------------------------------------

def _refused(obj: Any, instead: str) -> None:
    for attempt in (lambda: pickle.dumps(obj, 2), lambda: pickle.dumps(obj, 5),
                    lambda: copy.deepcopy(obj)):
        with pytest.raises(ebpf.NotPicklableError, match=instead) as ei:
            attempt()
        assert isinstance(ei.value, TypeError) and isinstance(ei.value, ebpf.Error)
        assert "cannot be pickled or deep-copied" in str(ei.value)


@requires("program_type:SYSCALL", min_kernel="5.14")
def test_kernel_objects_refuse_saying_what_to_send_instead() -> None:
    from ebpf.btf.builder import Builder
    from ebpf.link.base import Link

    spec = parse("loader_globals")
    with ebpf.Collection(spec) as coll:
        m, p = coll.maps[".data"], coll.programs["check_defaults"]
        _refused(coll, r"its CollectionSpec \(Collection.spec\)")
        _refused(m, r"map '.data' .*its MapSpec .*Map.open_pinned")
        _refused(p, r"program 'check_defaults' .*its ProgramSpec .*Program.open_pinned")
        _refused(coll.variables["data_counter"], r"its VariableSpec")
        _refused(m.fd, "pin path")
        _refused(Link(None, p), r"link of program 'check_defaults' .*ebpf.link.open_pinned")
        # copy.copy still makes the shallow copy it always made
        assert copy.copy(m).fd is m.fd and copy.copy(p).fd is p.fd
        # a spec holding a loaded program: pickles refuse, deep copies share it
        freplace = spec.programs["read_config"].copy()
        freplace.attach_prog = p
        with pytest.raises(ebpf.NotPicklableError, match="program 'check_defaults'"):
            pickle.dumps(freplace)
        assert copy.deepcopy(freplace).attach_prog is p
    b = Builder()
    b.add(btf.Int("int", 4, btf.IntEncoding.SIGNED))
    with btf.Handle(b.marshal()) as handle:
        _refused(handle, r"btf\.Spec")


@requires("map_type:RINGBUF", min_kernel="5.8")
def test_readers_refuse() -> None:
    from ebpf import perf, ringbuf

    with ebpf.Map(ebpf.MapSpec("rb", ebpf.MapType.RINGBUF, max_entries=4096)) as rb, \
            ringbuf.Reader(rb) as reader:
        _refused(reader, "ring buffer reader .*pin its map")
    with ebpf.Map(ebpf.MapSpec("pb", ebpf.MapType.PERF_EVENT_ARRAY, key_size=4,
                               value_size=4)) as pb, perf.Reader(pb) as reader:
        _refused(reader, "perf reader .*pin its map")


@requires("map_type:USER_RINGBUF", min_kernel="6.1")
def test_user_ringbuf_writer_and_samples_refuse() -> None:
    from ebpf import ringbuf

    with ebpf.Map(ebpf.MapSpec("urb", ebpf.MapType.USER_RINGBUF, max_entries=4096)) as urb, \
            ringbuf.Writer(urb) as writer:
        _refused(writer, "user ring buffer writer .*pin its map")
        sample = writer.reserve(8)
        _refused(sample, r"sample .*bytes\(sample.data\)")
        with pytest.raises(ebpf.NotPicklableError):
            copy.copy(sample)
        sample.discard()
