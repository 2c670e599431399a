"""An iterator link holds the map it hands the kernel (iter/bpf_map_elem): creating one
racing the map's close() raises ClosedError and never iterates the map that took the
descriptor number. Runs where the kernel allows the bpf_map_elem iterator (the matrix
kernels; the host refuses it by policy)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires
from test_lifecycle import ROUNDS, Hammer
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf.errors import ClosedError

pytestmark = [pytest.mark.kernel]


@pytest.fixture(scope="module")
def dump_elems() -> Iterator[ebpf.Program]:
    obj = compile_bpf("link_tracing", extra_flags=[f"-I{vmlinux_include_dir()}"])
    spec = ebpf.load_collection_spec(obj)
    with ebpf.Collection(spec, programs=["dump_elems"]) as coll:
        yield coll.programs["dump_elems"]


def _hash_map() -> ebpf.Map:
    return ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.HASH, key_size=4, value_size=8,
                                 max_entries=8, name="iter_race"))


@requires("iter_target:bpf_map_elem", min_kernel="5.9", refusable=True)
@pytest.mark.usefixtures("fast_switching")
def test_iter_link_racing_map_close(dump_elems: ebpf.Program) -> None:
    closed = _hash_map()
    closed.close()
    with pytest.raises(ClosedError, match=r"^map 'iter_race' is closed$"):
        ebpf.link.iter(dump_elems, map=closed)
    reused = 0
    for _ in range(ROUNDS):
        old = _hash_map()

        def attach(_: int, m: ebpf.Map = old) -> None:
            ebpf.link.iter(dump_elems, map=m).close()
            time.sleep(0.0001)  # some closes land between calls, some inside one

        links = Hammer(2, attach)
        links.start()
        number = old.fileno()
        old.close()
        new = _hash_map()
        try:
            reused += new.fileno() == number
            links.join()  # a thread that linked the new map would still be running
            for e in links.ended:
                assert isinstance(e, ClosedError), repr(e)
                assert str(e) == "map 'iter_race' is closed"
        finally:
            new.close()
    assert reused > 0, "the descriptor number was never reused: the race was not tested"
