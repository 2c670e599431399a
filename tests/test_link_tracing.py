"""Tracepoints, raw tracepoints, tp_btf, perf_event sampling, iterators, section-name
auto-attach and the Link operations (pin, open_pinned, unpin, update, info, detach)."""

from __future__ import annotations

import ctypes
import gc
import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires
from vmlinux import vmlinux_include_dir

import ebpf
import ebpf.link
from ebpf import LinkType, NotSupportedError, ProgramType
from ebpf._sys import perf as _perf
from ebpf.errors import InvalidArgumentError

pytestmark = pytest.mark.kernel

_libc = ctypes.CDLL(None, use_errno=True)
_NR_GETPID = 39  # x86_64

TP_GETPID, TP_COOKIE, RAW_GETPID, BTF_GETPID, EXECS, SAMPLES, RAW_COOKIE = range(7)


def getpid_syscalls(n: int) -> None:
    """Make n real getpid system calls (no libc caching)."""
    for _ in range(n):
        _libc.syscall(_NR_GETPID)


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail if the test leaves a descriptor open."""
    before = _fds()
    yield
    gc.collect()  # objects may hold descriptors until collected (mmaps of maps)
    leaked = {fd: _target(fd) for fd in _fds() - before}
    # the kernel BTF is opened once and cached for the process
    leaked = {fd: t for fd, t in leaked.items()
              if t is not None and not t.startswith("/sys/kernel/btf/")}
    assert not leaked, f"leaked descriptors: {leaked}"


def _target(fd: str) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


@pytest.fixture(scope="module")
def spec() -> ebpf.CollectionSpec:
    obj = compile_bpf("link_tracing", extra_flags=[f"-I{vmlinux_include_dir()}"])
    s = ebpf.load_collection_spec(obj)
    s.variables["target_pid"].set(os.getpid())
    return s


@pytest.fixture
def coll(spec: ebpf.CollectionSpec, marked_programs: list[str]) -> Iterator[ebpf.Collection]:
    """Only the programs the test names with @pytest.mark.programs: a kernel that refuses
    one hook costs exactly the tests of that hook."""
    with ebpf.Collection(spec.copy(), programs=marked_programs) as c:
        yield c


def count(coll: ebpf.Collection, slot: int) -> int:
    return int(coll.maps["counts"][slot])


# --------------------------------------------------------------------------- tracepoints


@pytest.mark.programs("tp_getpid")
def test_tracepoint_counts_getpid(no_leaks: None, coll: ebpf.Collection, tracefs: str) -> None:
    prog = coll.programs["tp_getpid"]
    with ebpf.link.tracepoint(prog, "syscalls", "sys_enter_getpid", cookie=0xC0FFEE) as link:
        getpid_syscalls(7)
        assert isinstance(link, ebpf.link.PerfEventLink)
        assert link.has_bpf_link
        info = link.info()
        assert LinkType(info.type) == LinkType.PERF_EVENT
        assert info.prog_id == prog.id
        assert link.id == info.id
    after = count(coll, TP_GETPID)
    assert after == 7
    assert count(coll, TP_COOKIE) == 0xC0FFEE
    getpid_syscalls(3)  # detached: no more counts
    assert count(coll, TP_GETPID) == after


@pytest.mark.programs("on_exec")
def test_tracepoint_sched_process_exec(no_leaks: None, coll: ebpf.Collection, tracefs: str) -> None:
    with ebpf.link.tracepoint(coll.programs["on_exec"], "sched", "sched_process_exec"):
        for _ in range(3):
            subprocess.run(["true"], check=True)
    assert count(coll, EXECS) >= 3


@pytest.mark.programs("tp_getpid")
def test_tracepoint_without_tracefs(no_leaks: None, coll: ebpf.Collection,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_perf, "TRACEFS_CANDIDATES", ("/nonexistent/tracing",))
    with pytest.raises(NotSupportedError, match="mount -t tracefs"):
        ebpf.link.tracepoint(coll.programs["tp_getpid"], "syscalls", "sys_enter_getpid")


@pytest.mark.programs("tp_getpid")
def test_tracepoint_missing(no_leaks: None, coll: ebpf.Collection, tracefs: str) -> None:
    with pytest.raises(ebpf.SyscallError, match="does not exist"):
        ebpf.link.tracepoint(coll.programs["tp_getpid"], "syscalls", "sys_enter_no_such_call")


@pytest.mark.programs("raw_sys_enter")
def test_tracepoint_wrong_program_type(coll: ebpf.Collection, tracefs: str) -> None:
    with pytest.raises(InvalidArgumentError, match="TRACEPOINT"):
        ebpf.link.tracepoint(coll.programs["raw_sys_enter"], "syscalls", "sys_enter_getpid")


@pytest.mark.programs("tp_getpid")
def test_tracepoint_link_pin(no_leaks: None, coll: ebpf.Collection, tracefs: str,
                             pin_dir: str) -> None:
    path = os.path.join(pin_dir, "tp")
    link = ebpf.link.tracepoint(coll.programs["tp_getpid"], "syscalls", "sys_enter_getpid")
    link.pin(path)
    link.close()  # pinned: stays attached
    getpid_syscalls(4)
    assert count(coll, TP_GETPID) == 4
    with ebpf.link.open_pinned(path) as again:
        assert LinkType(again.info().type) == LinkType.PERF_EVENT
        again.unpin()
    assert not os.path.exists(path)
    getpid_syscalls(4)
    assert count(coll, TP_GETPID) == 4
    with pytest.raises(NotSupportedError):
        link2 = ebpf.link.tracepoint(coll.programs["tp_getpid"], "syscalls", "sys_enter_getpid")
        try:
            link2.update(coll.programs["tp_getpid"])
        finally:
            link2.close()


# --------------------------------------------------------------------------- raw tracepoints


@pytest.mark.programs("raw_sys_enter")
def test_raw_tracepoint(no_leaks: None, coll: ebpf.Collection) -> None:
    prog = coll.programs["raw_sys_enter"]
    with ebpf.link.raw_tracepoint(prog, "sys_enter") as link:
        getpid_syscalls(5)
        info = link.info()
        assert LinkType(info.type) == LinkType.RAW_TRACEPOINT
        assert info.prog_id == prog.id
    assert count(coll, RAW_GETPID) == 5
    getpid_syscalls(5)
    assert count(coll, RAW_GETPID) == 5


@requires("helper:RAW_TRACEPOINT:get_attach_cookie", min_kernel="6.10")
def test_raw_tracepoint_cookie(no_leaks: None, spec: ebpf.CollectionSpec) -> None:
    with ebpf.Collection(spec.copy(), programs=["raw_cookie"]) as c:
        with ebpf.link.raw_tracepoint(c.programs["raw_cookie"], "sys_enter", cookie=1234):
            getpid_syscalls(1)
        assert int(c.maps["counts"][RAW_COOKIE]) == 1234


@pytest.mark.programs("raw_sys_enter")
def test_raw_tracepoint_unknown(coll: ebpf.Collection) -> None:
    with pytest.raises(ebpf.SyscallError, match="does not exist"):
        ebpf.link.raw_tracepoint(coll.programs["raw_sys_enter"], "no_such_tracepoint_xyz")


@pytest.mark.programs("raw_sys_enter")
def test_raw_tracepoint_pin_open_detach(no_leaks: None, coll: ebpf.Collection,
                                        pin_dir: str) -> None:
    path = os.path.join(pin_dir, "raw")
    with ebpf.link.raw_tracepoint(coll.programs["raw_sys_enter"], "sys_enter") as link:
        link.pin(path)
        assert link.pinned_path == path
        link_id = link.id
    getpid_syscalls(2)
    assert count(coll, RAW_GETPID) == 2  # still attached through the pin
    with ebpf.link.open_pinned(path) as pinned:
        assert pinned.id == link_id
        with ebpf.link.from_id(link_id) as by_id:
            assert LinkType(by_id.type) == LinkType.RAW_TRACEPOINT
        # the kernel can force-detach only some link types (cgroup, xdp, tcx, netns, ...)
        with pytest.raises(NotSupportedError):
            pinned.detach()
        pinned.unpin()
    assert not os.path.exists(path)
    getpid_syscalls(2)
    assert count(coll, RAW_GETPID) == 2  # the last reference is gone: detached


# --------------------------------------------------------------------------- tp_btf


@pytest.mark.programs("btf_sys_enter")
def test_tp_btf(no_leaks: None, coll: ebpf.Collection) -> None:
    prog = coll.programs["btf_sys_enter"]
    with ebpf.link.tracing(prog) as link:
        getpid_syscalls(6)
        assert LinkType(link.info().type) == LinkType.RAW_TRACEPOINT
    assert count(coll, BTF_GETPID) == 6
    getpid_syscalls(2)
    assert count(coll, BTF_GETPID) == 6
    # raw_tracepoint() hands BTF tracepoints to tracing()
    with ebpf.link.raw_tracepoint(prog):
        getpid_syscalls(1)
    assert count(coll, BTF_GETPID) == 7


# --------------------------------------------------------------------------- perf events


@pytest.mark.programs("on_sample")
def test_perf_event_sampling(no_leaks: None, coll: ebpf.Collection) -> None:
    prog = coll.programs["on_sample"]
    cpus = _perf.online_cpus()
    with ebpf.link.perf_event(prog, frequency=1000) as group:
        assert len(group) == len(cpus)
        assert all(isinstance(link, ebpf.link.PerfEventLink) for link in group)
        deadline = time.monotonic() + 0.5
        x = 0
        while time.monotonic() < deadline:
            x += 1
    samples = count(coll, SAMPLES)
    assert samples > 10
    per_cpu = coll.maps["samples_per_cpu"]
    assert sum(int(per_cpu[c]) for c in cpus) == samples
    time.sleep(0.05)
    assert count(coll, SAMPLES) == samples  # closed: no more samples


@pytest.mark.programs("on_sample", "tp_getpid")
def test_perf_event_arguments(coll: ebpf.Collection) -> None:
    with pytest.raises(InvalidArgumentError):
        ebpf.link.perf_event(coll.programs["on_sample"])
    with pytest.raises(InvalidArgumentError, match="PERF_EVENT"):
        ebpf.link.perf_event(coll.programs["tp_getpid"], frequency=10)


# --------------------------------------------------------------------------- iterators


@requires("iter_target:task", min_kernel="5.8")
@pytest.mark.programs("dump_task")
def test_iter_task(no_leaks: None, coll: ebpf.Collection) -> None:
    with ebpf.link.iter(coll.programs["dump_task"]) as it:
        assert LinkType(it.info().type) == LinkType.ITER
        with it.open() as f:
            assert f.readline() == b"tgid pid comm\n"
            text = f.read().decode()
        rows = [line.split(" ", 2) for line in text.splitlines()]
        mine = [r for r in rows if r[0] == str(os.getpid()) and r[1] == str(os.getpid())]
        assert len(mine) == 1
        with open("/proc/self/comm") as comm:
            assert mine[0][2] == comm.read().strip()
        # each open() is a new pass
        assert it.read().startswith(b"tgid pid comm\n")


@requires("iter_target:task", min_kernel="5.9")
@pytest.mark.programs("dump_task", "dump_task_v2")
def test_iter_update_and_pin(no_leaks: None, coll: ebpf.Collection, pin_dir: str) -> None:
    path = os.path.join(pin_dir, "tasks")
    with ebpf.link.iter(coll.programs["dump_task"]) as it:
        it.update(coll.programs["dump_task_v2"])
        lines = it.read().decode().splitlines()
        assert f"v2 {os.getpid()}" in lines
        it.update(coll.programs["dump_task"], old=coll.programs["dump_task_v2"])
        assert it.read().startswith(b"tgid pid comm\n")
        with pytest.raises(ebpf.SyscallError):
            it.update(coll.programs["dump_task_v2"], old=coll.programs["dump_task_v2"])
        it.pin(path)
    # a pinned iterator is read like a file
    with open(path, "rb") as f:
        assert f.readline() == b"tgid pid comm\n"
    with ebpf.link.open_pinned(path) as again:
        assert isinstance(again, ebpf.link.IterLink)  # typed by its kernel link type
        assert again.read().startswith(b"tgid pid comm\n")
        again.unpin()


@requires("iter_target:bpf_map", min_kernel="5.8")
@pytest.mark.programs("dump_map")
def test_iter_bpf_map(no_leaks: None, coll: ebpf.Collection) -> None:
    with ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.HASH, key_size=4, value_size=8,
                               max_entries=77, name="iter_probe_me")) as m:
        with ebpf.link.iter(coll.programs["dump_map"]) as it:
            rows = [line.split() for line in it.read().decode().splitlines()]
        assert [str(m.id), "iter_probe_me", "77"] in rows


@requires("iter_target:bpf_map_elem", min_kernel="5.9", refusable=True)
@pytest.mark.programs("dump_elems")
def test_iter_bpf_map_elem(no_leaks: None, coll: ebpf.Collection) -> None:
    import struct

    with ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.HASH, key_size=4, value_size=8,
                               max_entries=8, name="iter_elems")) as m:
        for k in range(5):
            m[k] = k * 11
        with ebpf.link.iter(coll.programs["dump_elems"], map=m) as it:
            raw = it.read()
        with pytest.raises(ebpf.SyscallError):  # a map iterator needs a map
            ebpf.link.iter(coll.programs["dump_elems"])
    got = dict(struct.iter_unpack("=IQ", raw))
    assert got == {k: k * 11 for k in range(5)}


@pytest.mark.programs("tp_getpid")
def test_iter_wrong_program(coll: ebpf.Collection) -> None:
    with pytest.raises(InvalidArgumentError):
        ebpf.link.iter(coll.programs["tp_getpid"])


@requires("iter_target:task", min_kernel="5.8")
@pytest.mark.programs("dump_task")
def test_iter_file_is_cloexec(no_leaks: None, coll: ebpf.Collection) -> None:
    import fcntl

    with ebpf.link.iter(coll.programs["dump_task"]) as it, it.open() as f:
        assert fcntl.fcntl(f.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert fcntl.fcntl(it.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC


# --------------------------------------------------------------------------- auto-attach


@pytest.mark.parametrize("name,slot,kind", [
    ("tp_getpid", TP_GETPID, LinkType.PERF_EVENT),
    ("raw_sys_enter", RAW_GETPID, LinkType.RAW_TRACEPOINT),
    ("btf_sys_enter", BTF_GETPID, LinkType.RAW_TRACEPOINT),
])
def test_auto_attach(no_leaks: None, spec: ebpf.CollectionSpec, tracefs: str,
                     name: str, slot: int, kind: LinkType) -> None:
    with ebpf.Collection(spec.copy(), programs=[name]) as coll:
        link = ebpf.link.attach_program(coll.programs[name], spec.programs[name])
        assert link is not None
        with link:
            assert LinkType(link.info().type) == kind
            getpid_syscalls(3)
        assert count(coll, slot) == 3


@requires("iter_target:task", min_kernel="5.8")
@pytest.mark.programs("dump_task", "on_sample")
def test_auto_attach_iter_and_none(no_leaks: None, spec: ebpf.CollectionSpec,
                                   coll: ebpf.Collection) -> None:
    link = ebpf.link.attach_program(coll.programs["dump_task"], spec.programs["dump_task"])
    assert isinstance(link, ebpf.link.IterLink)
    link.close()
    # SEC("perf_event") names no target: libbpf does not auto-attach it either
    assert ebpf.link.attach_program(coll.programs["on_sample"],
                                    spec.programs["on_sample"]) is None
    # a Program that does not know its spec has no section to go by
    if getattr(coll.programs["on_sample"], "spec", None) is None:
        assert ebpf.link.attach_program(coll.programs["on_sample"]) is None


def test_program_attach_and_attach_all(no_leaks: None, spec: ebpf.CollectionSpec,
                                       tracefs: str) -> None:
    s = spec.copy()
    with ebpf.Collection(s, programs=["tp_getpid", "raw_sys_enter", "on_sample"]) as c:
        links = c.attach_all()
        try:
            assert len(links) == 2  # on_sample names no target
            getpid_syscalls(2)
        finally:
            for link in links:
                link.close()
        assert int(c.maps["counts"][TP_GETPID]) == 2
        assert int(c.maps["counts"][RAW_GETPID]) == 2


@pytest.mark.programs("raw_sys_enter", "tp_getpid")
def test_program_type_checks(coll: ebpf.Collection) -> None:
    assert coll.programs["raw_sys_enter"].type == ProgramType.RAW_TRACEPOINT
    with pytest.raises(InvalidArgumentError):
        ebpf.link.tracing(coll.programs["raw_sys_enter"])
    with pytest.raises(InvalidArgumentError):
        ebpf.link.raw_tracepoint(coll.programs["tp_getpid"], "sys_enter")
