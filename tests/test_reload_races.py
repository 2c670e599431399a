"""Template reloads from several threads at once: copies of one template
(`CollectionSpec.copy(share_programs=True)`) share its programs, their templates and
what a load keeps on them (the load attr, the func/line info records, the object's BTF
blob, the maps' prepared attrs), while each copy holds its own configuration. Loaded
from threads of their own and by `ebpf.load_many`, with the interpreter switching
threads as often as it can, every program returns its own copy's value and nothing
stays open."""

from __future__ import annotations

import gc
import threading

import pytest
from bpfbuild import compile_bpf
from conftest import frequent_thread_switches, leaked_descriptors, open_fds
from kernelmatrix import requires

import ebpf

# library thread safety: races need two CPUs (the matrix guests have one)
pytestmark = [pytest.mark.kernel, pytest.mark.hostonly]


def template() -> ebpf.CollectionSpec:
    return ebpf.load_collection_spec(str(compile_bpf("loader_globals")))


def magic_of(coll: ebpf.Collection) -> int:
    return coll.programs["read_config"].test_run(ctx=b"").retval


def overwrite_freed_memory() -> None:
    """Fill memory the loads freed with 0xff: a pointer kept into it shows."""
    gc.collect()
    spray = [bytearray(b"\xff" * n) for n in range(8, 64, 8) for _ in range(500)]
    del spray


@requires("program_type:SYSCALL", min_kernel="5.14")
def test_threads_reloading_their_own_copies_and_load_many_get_their_own_values() -> None:
    before = open_fds()
    failures: list[BaseException] = []
    for rnd in range(40):  # a fresh template each round: its first loads race to fill it
        spec = template()
        start = threading.Barrier(3)

        def reload(t: int, spec: ebpf.CollectionSpec = spec, rnd: int = rnd,
                   start: threading.Barrier = start) -> None:
            try:
                mine = spec.copy(share_programs=True)
                start.wait()
                for i in range(6):
                    value = (rnd << 16) | (t << 8) | i
                    mine.variables["cfg_magic"].set(value)
                    with ebpf.Collection(mine, programs=["read_config"]) as coll:
                        assert magic_of(coll) == value
            except BaseException as e:  # reported below
                failures.append(e)

        with frequent_thread_switches():
            threads = [threading.Thread(target=reload, args=(t,)) for t in (1, 2)]
            for th in threads:
                th.start()
            try:
                start.wait()
                for _ in range(2):  # the second reuses what the racing first kept
                    copies = []
                    for i in range(4):
                        c = spec.copy(share_programs=True)
                        c.variables["cfg_magic"].set(0x7000 + i)
                        c.programs["check_defaults"].autoload = False
                        copies.append(c)
                    colls = ebpf.load_many(copies, workers=2)
                    try:
                        assert [magic_of(c) for c in colls] == [0x7000 + i for i in range(4)]
                    finally:
                        for c in colls:
                            c.close()
            finally:
                for th in threads:
                    th.join()
        assert not failures, failures
        overwrite_freed_memory()
    assert leaked_descriptors(before) == []
