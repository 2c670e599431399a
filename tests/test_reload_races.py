"""Template reloads from several threads at once: copies of one template
(`CollectionSpec.copy(share_programs=True)`) share its programs, their templates and
what a load keeps on them (the load attr, the func/line info records, the object's BTF
blob, the maps' prepared attrs), while each copy holds its own configuration. Loaded
from threads of their own and by `ebpf.load_many`, with the interpreter switching
threads as often as it can, every program returns its own copy's value and nothing
stays open."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from bpfbuild import compile_bpf
from conftest import (
    fork_while_held,
    frequent_thread_switches,
    leaked_descriptors,
    open_fds,
    wait_for_child,
)
from kernelmatrix import requires
from test_collection_btf import configured_copies, magic_of, overwrite_freed_memory, template

import ebpf
from ebpf import btf
from ebpf.btf.handle import Handle

# library thread safety: races need two CPUs (the matrix guests have one)
pytestmark = [pytest.mark.kernel, pytest.mark.hostonly]


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
                    copies = configured_copies(spec, [0x7000 + i for i in range(4)])
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


def close_in_another_thread(handle: Handle, made: list[Handle], blob: bytes) -> None:
    """What a thread closing `handle` and loading another BTF object does (the latter
    takes the lowest free descriptor number: the one `handle` freed, if it did)."""

    def run() -> None:
        handle.close()
        made.append(Handle(blob))

    t = threading.Thread(target=run)
    t.start()
    t.join()


@requires("program_type:SYSCALL", min_kernel="5.14")
def test_a_btf_handle_closed_by_another_thread_during_a_load_is_not_reused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A map or program made with `btf_handle` holds its descriptor as a load holds the
    maps': a thread closing the handle while the map or program is made leaves the
    number to it until it is done, and a BTF object opened meanwhile gets another."""
    from ebpf._sys import prog as _prog
    from ebpf.maps import core as map_core
    from ebpf.programs import object_btf_blob

    spec = template()
    blob = object_btf_blob(spec.btf)
    before = open_fds()
    made: list[Handle] = []  # (opened by the closing thread)
    loaded: list[tuple[int, int]] = []  # (the given handle's BTF id, the object's)
    real_create, real_load = map_core._bpf_errno, _prog.prog_load
    map_handle, prog_handle = Handle(blob), Handle(blob)

    def create(cmd: int, attr: Any, size: int | None = None) -> int:
        if not map_handle.closed:  # (the first attempt: right before the system call)
            close_in_another_thread(map_handle, made, blob)
        return real_create(cmd, attr, size)

    def load(attr: Any) -> int:
        if not prog_handle.closed:
            close_in_another_thread(prog_handle, made, blob)
        return real_load(attr)

    try:
        given = map_handle.id
        monkeypatch.setattr(map_core, "_bpf_errno", create)
        with ebpf.Map(spec.maps[".rodata"], btf_handle=map_handle) as m:
            monkeypatch.undo()
            loaded.append((given, m.info().btf_id))
            given = prog_handle.id
            monkeypatch.setattr(_prog, "prog_load", load)
            with ebpf.Program(spec.programs["read_config"], maps={".rodata": m},
                              btf_handle=prog_handle) as p:
                monkeypatch.undo()
                loaded.append((given, p.info().btf_id))
                assert p.test_run(ctx=b"").retval == 0x1234
        others = [h.id for h in made]
    finally:
        monkeypatch.undo()
        for h in (map_handle, prog_handle, *made):
            h.close()
    # each made with the BTF object it was given, none with one opened meanwhile
    assert [given == got for given, got in loaded] == [True, True], (loaded, others)
    assert len(others) == 2 and not set(others) & {got for _, got in loaded}
    assert leaked_descriptors(before) == []


@requires("program_type:SYSCALL", min_kernel="5.14")
def test_a_child_forked_while_a_thread_holds_the_new_builder_lock_loads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock of an object's BTF builder is made on first use; a thread may take it
    as soon as it is there. A child forked then has a free one (`forking.reset_lock`),
    also when the fork comes right after the lock was made: its loads do not hang."""
    from ebpf._sys import forking
    from ebpf.programs import object_btf_blob

    spec = template()
    mine = spec.copy(share_programs=True)
    mine.variables["cfg_magic"].set(0x4321)
    real_reset = forking.reset_lock
    at_registration, forked, release = threading.Event(), threading.Event(), threading.Event()

    def reset_lock(owner: Any, attr: str, factory: Any = None) -> None:
        if attr == "_programs_lock" and not at_registration.is_set():
            lock = vars(owner).get(attr)
            if lock is not None:  # another thread takes it (and keeps it for a while)
                held = threading.Event()

                def hold() -> None:
                    with lock:
                        held.set()
                        release.wait(10)

                threading.Thread(target=hold, daemon=True).start()
                held.wait(10)
            at_registration.set()  # the main thread forks now
            forked.wait(10)
        real_reset(owner, attr, *(() if factory is None else (factory,)))

    monkeypatch.setattr(forking, "reset_lock", reset_lock)
    first = threading.Thread(target=object_btf_blob, args=(spec.btf,))  # (makes the lock)
    first.start()
    try:
        assert at_registration.wait(10)
        pid = os.fork()
        if pid == 0:  # the child: loads a copy of the template, and exits
            try:
                with ebpf.Collection(mine, programs=["read_config"]) as coll:
                    os._exit(0 if magic_of(coll) == 0x4321 else 1)
            finally:
                os._exit(2)
    finally:
        forked.set()
        release.set()
        first.join()
        monkeypatch.undo()
    assert wait_for_child(pid, 5) == 0  # None: it hung on the other thread's lock


@pytest.mark.parametrize("module, call", [
    ("ebpf.btf.kernel", "load_kernel_spec"),  # (CO-RE's target, kfuncs, attach targets)
    ("ebpf.symbols.kernel", "kernel_symbols"),
])
def test_a_child_forked_while_a_thread_reads_kernel_data_can_read_it(
        module: str, call: str) -> None:
    """A thread reading the kernel's BTF or symbols holds its module's lock while it
    reads; a child forked meanwhile has a free lock (`forking`'s module locks) and
    reads them itself instead of hanging."""
    import importlib

    mod = importlib.import_module(module)
    # (the module's lock held: where the reading thread is while it reads; None: the
    # child hung on it)
    assert fork_while_held(mod._lock, getattr(mod, call)) == 0


def two_candidates_target(n: int) -> btf.Spec:
    """A CO-RE target with two candidates for each local ``struct foo<i>``: one
    without its fields (found first), one with ``b`` at 4 and ``a`` at 8."""
    from ebpf.btf.builder import Builder

    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    b = Builder()
    for i in range(n):
        b.add(btf.Struct(f"foo{i}___x", 4, [btf.Member("z", i32, 0)]))
        b.add(btf.Struct(f"foo{i}", 12, [btf.Member("pad", i32, 0), btf.Member("b", i32, 32),
                                          btf.Member("a", i32, 64)]))
    return btf.Spec(b.marshal())


@requires("program_type:SYSCALL", min_kernel="5.14")
def test_programs_of_one_object_relocated_by_threads_at_once_find_their_fields() -> None:
    """The programs of one object share its CO-RE candidate cache, whose candidates a
    relocation prunes (those it does not match cannot serve later relocations of the
    type): relocated from two threads at once, neither misses a candidate the other
    pruned under it."""
    obj = str(compile_bpf("core_candidates"))
    target = two_candidates_target(4)
    for _ in range(150):  # a fresh object each round: its cache starts unpruned
        spec = ebpf.load_collection_spec(obj)
        with frequent_thread_switches():
            progs = ebpf.load_many([spec.programs["prog_a"], spec.programs["prog_b"]],
                                   workers=2, kernel_btf=target)
        try:
            assert [p.test_run(ctx=b"").retval for p in progs] == [4032, 4016]
        finally:
            for p in progs:
                p.close()
