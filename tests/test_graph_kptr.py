"""Program-allocated objects in rbtrees, linked lists and kptr stashes (issue 12,
conformance against libbpf 1.5: the 35 programs of the selftests' rbtree,
refcounted_kptr, local_kptr_stash and linked_list objects that libbpf loads).

The verifier matches the type of a ``bpf_obj_new()`` object against the
``bpf_rb_root``/``bpf_list_head``/kptr field of the map value that holds it by BTF
object, not by content: a collection's programs must refer to the BTF object its maps
were created with (libbpf loads one BTF object per ELF object). The inner map template
of a map-in-map is compared with the inner maps by their special fields, BTF object
included, so it must be created with that BTF object too.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Iterator

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf import btf
from ebpf.programs import object_btf_blob

pytestmark = pytest.mark.kernel

# bpf_obj_new, rbtrees and lists with the _impl kfuncs, local kptrs in map values
GRAPHS = "bpf_obj_new objects in rbtrees, linked lists and kptr fields"
GRAPHS_SINCE = "6.6"
PACKET = bytes(64)


@pytest.fixture(scope="module")
def obj() -> pathlib.Path:
    return compile_bpf("graph_kptr", extra_flags=[f"-I{vmlinux_include_dir()}"])


@pytest.fixture(scope="module")
def globals_only() -> pathlib.Path:
    """count_calls alone (graph_kptr_globals.c): no graph types, any kernel."""
    return compile_bpf("graph_kptr_globals")


@pytest.fixture
def quiet(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The loads go without a warning (no BTF fallback)."""
    caplog.set_level(logging.WARNING, logger="ebpf")
    yield
    warned = [r.getMessage() for r in caplog.records if r.name == "ebpf"]
    assert not warned, warned


def _btf_id(what: ebpf.Program | ebpf.Map) -> int:
    btf_id = int(what.info().btf_id)
    assert btf_id, f"{what!r} has no BTF"
    return btf_id


@requires(GRAPHS, min_kernel=GRAPHS_SINCE)
def test_rbtree_of_allocated_nodes(obj: pathlib.Path, quiet: None) -> None:
    spec = ebpf.load_collection_spec(obj)
    with ebpf.Collection(spec, programs=["tree_take_smallest"]) as coll:
        prog = coll.programs["tree_take_smallest"]
        assert prog.test_run(data=PACKET).retval == 0
        assert coll.variables["tree_smallest"].get() == 10      # of 30, 10, 20
        coll.variables["tree_keys"].set([5, 50, 60])
        assert prog.test_run(data=PACKET).retval == 0
        assert coll.variables["tree_smallest"].get() == 5
        # the nodes left in the tree are still there: 20 is the smallest now
        coll.variables["tree_keys"].set([100, 200, 300])
        assert prog.test_run(data=PACKET).retval == 0
        assert coll.variables["tree_smallest"].get() == 20
        assert _btf_id(prog) == _btf_id(coll.maps[".bss.tree"])


@requires(GRAPHS, min_kernel=GRAPHS_SINCE)
def test_stashed_kptr_of_an_allocated_object(obj: pathlib.Path, quiet: None) -> None:
    spec = ebpf.load_collection_spec(obj)
    spec.variables["stash_key"].set(1234)
    with ebpf.Collection(spec, programs=["stash_object", "unstash_object"]) as coll:
        stash, unstash = coll.programs["stash_object"], coll.programs["unstash_object"]
        assert unstash.test_run(data=PACKET).retval == 2       # nothing stashed yet
        assert stash.test_run(data=PACKET).retval == 0
        assert unstash.test_run(data=PACKET).retval == 0
        assert coll.variables["unstashed"].get() == 1234
        assert unstash.test_run(data=PACKET).retval == 2       # taken out
        assert _btf_id(stash) == _btf_id(unstash) == _btf_id(coll.maps["stash"])


@requires(GRAPHS, min_kernel=GRAPHS_SINCE)
def test_list_in_an_inner_map(obj: pathlib.Path, quiet: None) -> None:
    spec = ebpf.load_collection_spec(obj)
    with ebpf.Collection(spec, programs=["list_take_front"]) as coll:
        prog = coll.programs["list_take_front"]
        # the inner map (its value holds a bpf_list_head) went into the outer map
        inner_id = int.from_bytes(coll.maps["lists"].lookup(0, raw=True), "little")
        assert inner_id == coll.maps["inner_lists"].info().id
        assert prog.test_run(data=PACKET).retval == 0
        assert coll.variables["list_front"].get() == 7           # of 7, 35
        coll.variables["list_values"].set([1, 2])
        assert prog.test_run(data=PACKET).retval == 0
        assert coll.variables["list_front"].get() == 35          # 35, 1, 2 were left
        assert _btf_id(prog) == _btf_id(coll.maps["inner_lists"])


@requires(GRAPHS, min_kernel=GRAPHS_SINCE)
def test_whole_object_one_btf_object(obj: pathlib.Path, quiet: None) -> None:
    spec = ebpf.load_collection_spec(obj)
    with ebpf.Collection(spec) as coll:
        ids = {_btf_id(p) for p in coll.programs.values()}
        ids |= {_btf_id(coll.maps[m]) for m in ("stash", "inner_lists", ".bss.tree")}
        assert len(ids) == 1
        assert coll.programs["count_calls"].test_run(data=PACKET).retval == 0
        assert coll.variables["calls"].get() == 1


@requires(GRAPHS, min_kernel=GRAPHS_SINCE)
def test_program_and_maps_given_one_btf_handle(obj: pathlib.Path, quiet: None) -> None:
    # the public pieces a Collection is made of: one btf.Handle for maps and programs
    spec = ebpf.load_collection_spec(obj)
    assert spec.btf is not None
    with btf.Handle(object_btf_blob(spec.btf)) as handle:
        maps = {n: ebpf.Map(spec.maps[n], btf_handle=handle) for n in (".bss", "stash")}
        try:
            ps = spec.programs["stash_object"]
            with ebpf.Program(ps, maps=maps, btf_handle=handle) as prog:
                assert prog.info().btf_id == handle.id
                assert prog.test_run(data=PACKET).retval == 0
            assert not handle.closed          # the program leaves the handle open
        finally:
            for m in maps.values():
                m.close()


def test_program_loads_its_own_btf_when_the_handle_lacks_it(globals_only: pathlib.Path) -> None:
    # a handle that is not the object's BTF (here a tiny one): ignored, the program
    # loads a BTF object of its own
    spec = ebpf.load_collection_spec(globals_only)
    b = btf.Builder()
    b.add(btf.Int("int", 4, btf.IntEncoding.SIGNED))
    with btf.Handle(b.marshal()) as other, \
            ebpf.Collection(spec, programs=["count_calls"]) as coll:
        with ebpf.Program(spec.programs["count_calls"], maps=coll.maps,
                          btf_handle=other) as prog:
            assert _btf_id(prog) != other.id
            assert prog.test_run(data=PACKET).retval == 0
        assert coll.variables["calls"].get() == 1


def test_btf_handle_must_be_an_open_handle(globals_only: pathlib.Path) -> None:
    spec = ebpf.load_collection_spec(globals_only)
    ps = spec.programs["count_calls"]
    with pytest.raises(ebpf.errors.InvalidArgumentError, match=r"must be an ebpf\.btf\.Handle"):
        ebpf.Program(ps, btf_handle=3)  # type: ignore[arg-type]
    b = btf.Builder()
    b.add(btf.Int("int", 4, btf.IntEncoding.SIGNED))
    handle = btf.Handle(b.marshal())
    handle.close()
    with pytest.raises(ebpf.errors.InvalidArgumentError, match="btf_handle is closed"):
        ebpf.Program(ps, btf_handle=handle)
