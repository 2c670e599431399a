"""Collections loaded from one spec share its BTF object while any of them is open: a
template reloaded while its previous version runs loads its BTF once; once the last of
them closes, nothing of it stays open."""

from __future__ import annotations

import gc
import os
import warnings

import pytest
from bpfbuild import compile_bpf
from conftest import frequent_thread_switches, leaked_descriptors, open_fds
from kernelmatrix import requires

import ebpf

pytestmark = pytest.mark.kernel


def btf_fds() -> list[str]:
    """This process's descriptors of BTF objects it loaded (not kernel BTF files)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:btf":
                out.append(fd)
        except OSError:
            continue
    return out


def template() -> ebpf.CollectionSpec:
    return ebpf.load_collection_spec(str(compile_bpf("loader_globals")))


def load(spec: ebpf.CollectionSpec, magic: int) -> ebpf.Collection:
    spec.variables["cfg_magic"].set(magic)
    return ebpf.Collection(spec, programs=["read_config"])


def magic_of(coll: ebpf.Collection) -> int:
    return coll.programs["read_config"].test_run(ctx=b"").retval


def configured_copies(spec: ebpf.CollectionSpec, magics: list[int]) -> list[ebpf.CollectionSpec]:
    """A copy of `spec` (its programs shared) per value, `cfg_magic` set to it, only
    `read_config` loaded."""
    copies = []
    for magic in magics:
        c = spec.copy(share_programs=True)
        c.variables["cfg_magic"].set(magic)
        c.programs["check_defaults"].autoload = False
        copies.append(c)
    return copies


def overwrite_freed_memory() -> None:
    """Fill memory the loads freed with 0xff: a pointer kept into it shows."""
    gc.collect()
    spray = [bytearray(b"\xff" * n) for n in range(8, 64, 8) for _ in range(500)]
    del spray


@requires("program_type:SYSCALL", min_kernel="5.14")
def test_reloads_share_one_btf_object_until_the_last_closes() -> None:
    spec = template()
    before = open_fds()
    first = load(spec, 0x1111)
    second = load(spec, 0x2222)
    third = load(spec, 0x3333)
    try:
        ids = {c.programs["read_config"].info().btf_id for c in (first, second, third)}
        assert len(ids) == 1 and 0 not in ids
        assert len(btf_fds()) == 1
        first.close()
        second.close()
        assert magic_of(third) == 0x3333  # its programs and maps are untouched
        assert len(btf_fds()) == 1
    finally:
        third.close()
    assert btf_fds() == []
    assert leaked_descriptors(before) == []


@requires("program_type:SYSCALL", min_kernel="5.14")
def test_a_load_after_all_closed_loads_the_btf_again() -> None:
    spec = template()
    with load(spec, 1) as a:
        first_id = a.programs["read_config"].info().btf_id
    with load(spec, 2) as b:
        assert b.programs["read_config"].info().btf_id != first_id
        assert magic_of(b) == 2
    assert btf_fds() == []


@requires("program_type:SYSCALL", min_kernel="5.14")
def test_a_collection_never_closed_gives_its_btf_back_when_collected() -> None:
    spec = template()
    before = open_fds()
    kept = load(spec, 5)
    forgotten = load(spec, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # (its maps and programs warn)
        del forgotten
        gc.collect()
    assert len(btf_fds()) == 1  # still the kept one's
    assert magic_of(kept) == 5
    kept.close()
    assert leaked_descriptors(before) == []


@requires("program_type:SYSCALL", min_kernel="5.14")
def test_load_many_copies_share_one_btf_object() -> None:
    before = open_fds()
    for _ in range(30):  # a fresh template each round: the threads race to load its BTF
        copies = configured_copies(template(), [100 + i for i in range(6)])
        # twice: the second time reuses what the racing first loads kept on the template
        # (which once held func info records freed with the load that made them)
        for _ in range(2):
            with frequent_thread_switches():
                colls = ebpf.load_many(copies, workers=3)
            try:
                assert [magic_of(c) for c in colls] == [100 + i for i in range(6)]
                assert len({c.programs["read_config"].info().btf_id for c in colls}) == 1
                assert len(btf_fds()) == 1
            finally:
                for c in colls:
                    c.close()
            overwrite_freed_memory()
    assert leaked_descriptors(before) == []


@requires("program_type:SYSCALL", min_kernel="5.14")
def test_a_failed_load_gives_the_btf_back() -> None:
    spec = template()
    before = open_fds()
    with load(spec, 7) as ok:
        prog = spec.programs["read_config"]
        good = prog.instructions
        prog.instructions = good[:-1]  # no exit at the end: the verifier refuses it
        try:
            with pytest.raises(ebpf.Error, match="read_config"):
                load(spec, 8)
        finally:
            prog.instructions = good
        assert len(btf_fds()) == 1
        assert magic_of(ok) == 7
    assert leaked_descriptors(before) == []


GC_DURING_LOAD = """
import gc, sys, warnings
sys.path[:0] = sys.argv[2:]
import ebpf
from ebpf import instantiate
warnings.simplefilter("ignore", ResourceWarning)
made = instantiate._SharedBTF.__init__

def collect_first(self, blob):  # the collector running at this allocation
    gc.collect()
    made(self, blob)

instantiate._SharedBTF.__init__ = collect_first
obj = sys.argv[1]
for _ in range(3):
    leaked = ebpf.Collection(ebpf.load_collection_spec(obj), programs=["read_config"])
    leaked.cycle = leaked  # only the collector frees it
    del leaked
    with ebpf.Collection(ebpf.load_collection_spec(obj), programs=["read_config"]) as coll:
        assert coll.programs["read_config"].test_run(ctx=b"").retval == 0x1234
print("ok")
"""


@requires("program_type:SYSCALL", min_kernel="5.14")
def test_a_collection_collected_in_the_middle_of_a_load_gives_its_btf_back() -> None:
    """The collector may free an unclosed collection at any allocation of a load, also
    while another spec's BTF is being set up: its use is given back, nothing hangs."""
    import subprocess
    import sys

    obj = str(compile_bpf("loader_globals"))
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-c", GC_DURING_LOAD, obj, os.path.dirname(here)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
