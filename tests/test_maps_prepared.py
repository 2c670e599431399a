"""A map made again from a spec reuses what the spec's fields decided the first time
(`ebpf.maps.core.prepare`: the BPF_MAP_CREATE attrs, the key/value type ids, what
`Map._setup` derives): only while every field is the very same object. An edited spec,
field by field, or one whose values are equal but of another kind (4.0, True) is
prepared again, with the checks and errors of a first map; threads share the
preparations; and they die with the BTF they were made from."""

from __future__ import annotations

import gc
import pathlib
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from bpfbuild import compile_bpf

import ebpf
from ebpf import btf
from ebpf._objcache import Bounded
from ebpf._sys.ops import possible_cpus
from ebpf._sys.types import BPF_F_NUMA_NODE
from ebpf.btf.handle import Handle
from ebpf.errors import Error, InvalidArgumentError
from ebpf.maps import Map, MapFlags, MapSpec, core
from ebpf.programs import object_btf_blob
from ebpf.spec import kernel_name

pytestmark = pytest.mark.kernel

T = ebpf.MapType
U32 = btf.Int("unsigned int", 4)


@pytest.fixture(scope="module")
def obj() -> pathlib.Path:
    return compile_bpf("loader_globals")


@pytest.fixture
def spec(obj: pathlib.Path) -> ebpf.CollectionSpec:
    return ebpf.load_collection_spec(str(obj))  # (its own BTF: no preparation kept yet)


@pytest.fixture
def handle(spec: ebpf.CollectionSpec) -> Iterator[Handle]:
    with Handle(object_btf_blob(spec.btf)) as h:
        yield h


@pytest.fixture
def prepared(monkeypatch: pytest.MonkeyPatch) -> list[MapSpec]:
    """The specs `prepare` made attrs for (not served from a preparation); none kept yet
    for maps without BTF (other tests' maps of the same field objects would be)."""
    made: list[MapSpec] = []
    real = core.create_attr
    monkeypatch.setattr(core, "_prepared", Bounded(core._PREPARED_MAX))

    def create_attr(spec: MapSpec) -> Any:
        made.append(spec)
        return real(spec)

    monkeypatch.setattr(core, "create_attr", create_attr)
    return made


def check(m: Map, spec: MapSpec) -> None:
    """`m` is what `spec` describes, for the kernel and for the Map object."""
    info = m.info()
    numa = 0 if spec.numa_node is None else BPF_F_NUMA_NODE
    assert (info.name, info.type, info.key_size, info.value_size, info.max_entries,
            int(info.flags), info.map_extra) == (
        kernel_name(spec.name), spec.type, spec.key_size, spec.value_size, spec.max_entries,
        spec.flags | numa, spec.map_extra)
    assert (m.name, m.type, m.key_size, m.value_size) == (
        spec.name, spec.type, spec.key_size, spec.value_size)
    assert m.is_per_cpu == (spec.type == T.PERCPU_ARRAY)
    assert m.key_type is spec.key and m.value_type is spec.value
    assert m.spec == spec


def test_a_spec_is_prepared_once(spec: ebpf.CollectionSpec, handle: Handle,
                                 prepared: list[MapSpec]) -> None:
    data = spec.maps[".data"]
    for s in (data, data, data.copy()):  # (a copy has the very same field objects)
        with Map(s, btf_handle=handle) as m:
            check(m, data)
            assert m[0] == bytes(data.contents[0][1])
            assert m.info().btf_value_type_id == spec.btf.type_id(data.value)
    assert prepared == [data]
    rodata = spec.maps[".rodata"]
    for _ in range(2):
        with Map(rodata, btf_handle=handle) as m:
            check(m, rodata)
            assert m.frozen
    assert prepared == [data, rodata]


HAND_MADE = btf.Datasec(".data", 16)

EDITS: dict[str, dict[str, Any]] = {
    "name": {"name": "renamed"},
    "type": {"type": T.PERCPU_ARRAY, "flags": 0, "contents": []},
    "key_size": {"type": T.HASH, "key_size": 8, "flags": 0, "contents": []},
    "value_size": {"value_size": 32, "contents": []},
    "max_entries": {"max_entries": 3},
    "numa_node": {"numa_node": 0},
    "flags": {"flags": int(MapFlags.MMAPABLE | MapFlags.RDONLY_PROG)},
    "no flags": {"flags": 0},
    "value": {"value": None},
    "hand-made value": {"value": HAND_MADE},
    "key": {"key": U32},
    "inner_map": {"inner_map": MapSpec(type=T.ARRAY, key_size=4, value_size=4,
                                       max_entries=1)},
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=list(EDITS))
def test_an_edited_spec_is_prepared_again(spec: ebpf.CollectionSpec, handle: Handle,
                                          prepared: list[MapSpec], edit: dict[str, Any]) -> None:
    data = spec.maps[".data"]
    with Map(data, btf_handle=handle) as m:
        check(m, data)
    for field, value in edit.items():
        setattr(data, field, value)
    for _ in range(2):
        with Map(data, btf_handle=handle) as m:
            check(m, data)
            if data.value is None:
                assert m.info().btf_value_type_id == 0
    # (prepared again; kept unless a BTF type decides its elements)
    assert prepared == [data] * (3 if "key" in edit or "inner_map" in edit else 2)


@pytest.mark.parametrize("edit", [{"map_extra": 1}, {"key_size": 8}, {"value_size": 0}])
def test_an_edit_the_kernel_refuses_is_refused(spec: ebpf.CollectionSpec, handle: Handle,
                                               edit: dict[str, Any]) -> None:
    data = spec.maps[".data"]
    Map(data, btf_handle=handle).close()
    for field, value in edit.items():
        setattr(data, field, value)
    with pytest.raises(Error):
        Map(data, btf_handle=handle)


@pytest.mark.parametrize(("field", "value"), [
    ("key_size", 4.0), ("max_entries", True), ("flags", float(MapFlags.MMAPABLE)),
    ("map_extra", False), ("type", 2.0), ("name", b".data")])
def test_equal_values_of_another_kind_are_still_refused(
        spec: ebpf.CollectionSpec, handle: Handle, field: str, value: object) -> None:
    data = spec.maps[".data"]
    Map(data, btf_handle=handle).close()
    edited = data.copy()
    setattr(edited, field, value)
    assert getattr(edited, field) == getattr(data, field) or field == "name"
    with pytest.raises(InvalidArgumentError, match=rf"MapSpec\.{field}"):
        Map(edited, btf_handle=handle)


def test_equal_values_of_an_accepted_kind_make_the_same_map(
        spec: ebpf.CollectionSpec, handle: Handle, prepared: list[MapSpec]) -> None:
    data = spec.maps[".data"]
    Map(data, btf_handle=handle).close()
    edited = data.copy()
    edited.type = 2  # (a plain int, as the checked path takes it)
    edited.max_entries = int("1")  # (an equal int, another object)
    for _ in range(2):
        with Map(edited, btf_handle=handle) as m:
            check(m, edited)
    assert prepared == [data, edited]


def test_an_unhashable_field_is_refused(spec: ebpf.CollectionSpec, handle: Handle) -> None:
    data = spec.maps[".data"]
    Map(data, btf_handle=handle).close()
    data.name = [".data"]  # type: ignore[assignment]
    with pytest.raises(InvalidArgumentError, match=r"MapSpec\.name must be a str"):
        Map(data, btf_handle=handle)


def test_each_map_gets_its_own_attrs(prepared: list[MapSpec]) -> None:
    # create() sets a per-CPU event array's size in the attrs it is given: never in the
    # prepared ones, nor in the caller's spec
    events = MapSpec(name="events", type=T.PERF_EVENT_ARRAY, key_size=4, value_size=4)
    for _ in range(2):
        with Map(events) as m:
            assert m.max_entries == m.info().max_entries == possible_cpus()
    assert events.max_entries == 0
    assert prepared == [events]


def test_maps_prepared_by_threads_at_once(spec: ebpf.CollectionSpec, handle: Handle) -> None:
    data = spec.maps[".data"]
    specs = [data] * 4 + [data.replace(max_entries=n) for n in (2, 3, 4, 5)]
    start = threading.Barrier(len(specs))
    failures: list[BaseException] = []

    def run(s: MapSpec) -> None:
        try:
            start.wait()
            for _ in range(25):
                with Map(s, btf_handle=handle) as m:
                    check(m, s)
                    assert m[0] == bytes(s.contents[0][1])
        except BaseException as e:  # pragma: no cover - reported below
            failures.append(e)

    threads = [threading.Thread(target=run, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures


def test_preparations_die_with_their_btf(obj: pathlib.Path) -> None:
    spec = ebpf.load_collection_spec(str(obj))
    with Handle(object_btf_blob(spec.btf)) as h:
        for name in (".data", ".rodata", ".bss"):
            Map(spec.maps[name], btf_handle=h).close()
    assert len(vars(spec.btf)["_maps_prepared"]) == 3
    gone = weakref.ref(spec.btf)
    del spec
    gc.collect()
    assert gone() is None
