"""Objects that declare kfuncs keep their BTF in the kernel (issue 12, causes 1 and 2).

clang gives a kfunc declared ``extern ... __ksym`` a FUNC of extern linkage (and its
prototype unnamed parameters), which BPF_BTF_LOAD refuses. The loader must hand the
kernel the object's own BTF anyway (same type ids), so that maps keep their BTF
(spin locks, kptrs), global subprograms keep their decl tags (``arg:ctx``), local
type ids stay right and exception callbacks are found. When the kernel does refuse
an object's BTF (a ``__naked`` function's unnamed parameters), the loader says so
through the ``ebpf`` logger and loads without it, as libbpf does.

The objects are also loaded by libbpf (tools/c/libbpf_each.c, the reference loader of
tools/realworld.py): every program libbpf loads loads here too.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys
from collections.abc import Iterator

import pytest
from bpfbuild import REPO_DIR, compile_bpf
from kernelmatrix import requires
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf import btf
from ebpf.maps import MapFlags

sys.path.insert(0, str(REPO_DIR / "tools"))
import realworld

sys.path.remove(str(REPO_DIR / "tools"))


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "ebpf" and r.levelno >= logging.WARNING]


@pytest.fixture(scope="module")
def kfunc_obj() -> pathlib.Path:
    return compile_bpf("kfunc_btf", extra_flags=[f"-I{vmlinux_include_dir()}"])


@pytest.fixture
def warnings_seen(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="ebpf")
    yield caplog


def _kernel_btf_of(prog: ebpf.Program) -> btf.Spec:
    """The BTF the kernel holds for a loaded program."""
    btf_id = prog.info().btf_id
    assert btf_id, f"program {prog.name!r} was loaded without BTF"
    with btf.Handle.from_id(btf_id) as h:
        return h.spec()


@requires("global subprogram arguments tagged arg:ctx (kfuncs bpf_rcu_read_lock/unlock)",
          min_kernel="6.8")
def test_kfunc_object_loads_with_its_whole_btf(
        kfunc_obj: pathlib.Path, warnings_seen: pytest.LogCaptureFixture) -> None:
    spec = ebpf.load_collection_spec(kfunc_obj)
    with ebpf.Collection(spec, programs=["rcu_and_ctx"]) as coll:
        prog = coll.programs["rcu_and_ctx"]
        assert prog.test_run().retval == 0
        # bpf_get_stack() accepted the subprogram's argument as the context only
        # because the kernel saw its arg:ctx decl tag
        assert coll.variables["stack_bytes"].get() > 0
        kernel = _kernel_btf_of(prog)
        local_id = coll.variables["local_type_id"].get()
        # bpf_core_type_id_local() is the id in the object's BTF, which is the
        # BTF the kernel holds for the program (same ids, named types included)
        assert spec.btf is not None
        assert local_id == spec.btf.type_id(spec.btf.type_by_name("ebpf_test_local"))
        assert kernel.type_by_id(local_id).name == "ebpf_test_local"
        assert isinstance(kernel.type_by_name("locked_value"), btf.Struct)
        assert kernel.type_by_name("bpf_rcu_read_lock", btf.Func)
        # the maps were created with the object's BTF too
        info = coll.maps["locked"].info()
        assert info.btf_id and info.btf_value_type_id
    assert not _warnings(warnings_seen)


@requires("kfuncs bpf_task_from_pid/bpf_task_release in syscall programs",
          min_kernel="6.2")
def test_kfunc_called(kfunc_obj: pathlib.Path,
                      warnings_seen: pytest.LogCaptureFixture) -> None:
    spec = ebpf.load_collection_spec(kfunc_obj)
    spec.variables["target_pid"].set(os.getpid())
    with ebpf.Collection(spec, programs=["task_of_pid"]) as coll:
        assert coll.programs["task_of_pid"].test_run().retval == 0
        assert coll.variables["found_pid"].get() == os.getpid()
        assert _kernel_btf_of(coll.programs["task_of_pid"]).type_by_name("task_struct")
    assert not _warnings(warnings_seen)


@requires("bpf_spin_lock in global data", min_kernel="6.2")
def test_spin_locks_in_a_map_value_and_in_bss(
        kfunc_obj: pathlib.Path, warnings_seen: pytest.LogCaptureFixture) -> None:
    spec = ebpf.load_collection_spec(kfunc_obj)
    # hidden globals are static to the loader (as libbpf marks them): a section of only
    # static variables is not mmap()able, which is what lets it hold a spin lock
    assert not spec.maps[".bss.locked"].flags & MapFlags.MMAPABLE
    assert spec.maps[".bss"].flags & MapFlags.MMAPABLE
    with ebpf.Collection(spec, programs=["spin_locks"]) as coll:
        prog = coll.programs["spin_locks"]
        for _ in range(3):
            assert prog.test_run(data=bytes(64)).retval == 0
        assert coll.maps["locked"][0].count == 3
        assert coll.variables["bss_count"].get() == 6
        assert coll.variables["shared_count"].get() == 15
        coll.variables["shared_count"].set(1)
        assert prog.test_run(data=bytes(64)).retval == 0
        assert coll.variables["shared_count"].get() == 6
        assert coll.maps[".bss.locked"].info().btf_value_type_id
    assert not _warnings(warnings_seen)


@requires("BPF exceptions (bpf_throw, exception_callback decl tag)", min_kernel="6.7")
def test_exception_callback(warnings_seen: pytest.LogCaptureFixture) -> None:
    # libbpf 1.1 (installed) predates exceptions and refuses this object; the
    # documented semantics (bpf_experimental.h): with __exception_cb(cb) the program
    # returns cb(cookie), without it the cookie itself
    obj = compile_bpf("kfunc_exception", extra_flags=[f"-I{vmlinux_include_dir()}"])
    spec = ebpf.load_collection_spec(obj)
    names = [i.symbol for i in spec.programs["throws_to_callback"].instructions if i.symbol]
    assert names == ["throws_to_callback", "add_hundred"]   # the callback is linked in
    with ebpf.Collection(spec) as coll:
        assert coll.programs["throws_to_callback"].test_run(data=bytes(64)).retval == 107
        assert coll.programs["throws_default"].test_run(data=bytes(64)).retval == 7
        coll.variables["throw_cookie"].set(0)
        assert coll.programs["throws_to_callback"].test_run(data=bytes(64)).retval == 1
    assert not _warnings(warnings_seen)


def test_refused_btf_loads_without_btf_loudly(
        warnings_seen: pytest.LogCaptureFixture) -> None:
    obj = compile_bpf("naked_btf")
    spec = ebpf.load_collection_spec(obj)
    with ebpf.Collection(spec) as coll:
        calls = coll.programs["calls_naked"]
        assert calls.test_run(data=bytes(64)).retval == 42
        # the prototypes alone still hold the naked function: no BTF at all (libbpf
        # too loads this object without BTF)
        assert calls.info().btf_id == 0
        assert coll.programs["naked_prog"].test_run(data=bytes(64)).retval == 42
    msgs = _warnings(warnings_seen)
    assert any("refused the object's BTF" in m and "add_one" in m for m in msgs), msgs
    assert any("program 'calls_naked'" in m and "loading without BTF" in m
               for m in msgs), msgs


@requires("kfuncs bpf_rcu_read_lock/unlock, arg:ctx decl tags", min_kernel="6.8")
@pytest.mark.parametrize("name", ["kfunc_btf", "naked_btf"])
def test_libbpf_loads_nothing_more(name: str) -> None:
    flags = [f"-I{vmlinux_include_dir()}"] if name.startswith("kfunc") else []
    obj = realworld.CorpusObject(name, compile_bpf(name, extra_flags=flags), "tests/bpf")
    res = realworld.compare_object(obj, realworld.build_libbpf_each())
    assert res.libbpf_open and res.ebpf_open, (res.libbpf_open_error, res.ebpf_open_error)
    assert {p.name for p in res.programs if p.libbpf_ok} == {p.name for p in res.programs}
    assert not [p.name for p in res.programs if p.mismatch], res.programs


@pytest.mark.kernel  # every kernel of the matrix must take the sized forward enum
def test_enum_forward_keeps_btf(warnings_seen: pytest.LogCaptureFixture) -> None:
    """`enum lone;` is an ENUM of size 0 in clang's BTF, which every kernel refuses
    (libbpf then loads without BTF); the loader gives it the size of an int, so the
    program keeps the object's BTF, the forward enum named as in the C."""
    spec = ebpf.load_collection_spec(compile_bpf("enum_fwd_a"))
    assert spec.btf is not None
    fwd = spec.btf.type_by_name("lone")
    assert isinstance(fwd, btf.Enum) and fwd.size == 0 and not fwd.values  # spec untouched
    with ebpf.Collection(spec) as coll:
        coll.variables["holder_a"].set({"x": 7})
        prog = coll.programs["enum_fwd_a"]
        assert prog.test_run(data=bytes(64)).retval == 7
        kernel = _kernel_btf_of(prog)
    lone = kernel.type_by_name("lone")
    assert isinstance(lone, btf.Enum) and lone.size == 4 and not lone.values
    assert not _warnings(warnings_seen)
