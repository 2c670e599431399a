"""kprobes, kretprobes, ksyscall and kprobe_multi (with cookies and patterns), through
the kprobe PMU and through tracefs' legacy kprobe_events.

Kernels built without CONFIG_KPROBES (like the 6.18 development VM) skip the
attaching tests and check that the library says why instead; the kernel matrix
(Debian 6.1 / 6.12) runs them for real: their `requires` declarations make a skip on a
kernel with the config options (and version) a failure. kprobe_multi needs
CONFIG_FPROBE, which Debian's 6.1 lacks and 6.12 has."""

from __future__ import annotations

import errno
import os
import platform
from collections.abc import Iterator
from pathlib import Path

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires
from vmlinux import vmlinux_include_dir

import ebpf
import ebpf.link
from ebpf import LinkType, NotSupportedError
from ebpf._sys import probe as _probe
from ebpf.errors import InvalidArgumentError
from ebpf.link.kprobe import kprobes_missing, syscall_function

pytestmark = pytest.mark.kernel


def _our_tracefs_probes() -> list[str]:
    path = _probe.probe_events_file("kprobe")
    if path is None:
        return []
    with open(path) as f:
        return [ln for ln in f if f"ebpf_{os.getpid()}_" in ln]


@pytest.fixture
def no_leaks(no_fd_leaks: None) -> Iterator[None]:
    """Fail if the test leaves a descriptor open or a kprobe_events entry behind."""
    yield
    assert not _our_tracefs_probes()


@pytest.fixture
def need_kprobes() -> None:
    reason = kprobes_missing()
    if reason is not None:
        pytest.skip(f"kprobes: {reason}")


@pytest.fixture(scope="module")
def spec() -> ebpf.CollectionSpec:
    s = ebpf.load_collection_spec(
        compile_bpf("link_kprobe", extra_flags=[f"-I{vmlinux_include_dir()}"]))
    s.variables["target_pid"].set(os.getpid())
    return s


@pytest.fixture
def coll(spec: ebpf.CollectionSpec, marked_programs: list[str]) -> Iterator[ebpf.Collection]:
    """Only the programs the test names with @pytest.mark.programs."""
    with ebpf.Collection(spec.copy(), programs=marked_programs) as c:
        yield c


def read_global(coll: ebpf.Collection, name: str) -> object:
    """A global's value through a map lookup (see test_link_uprobe.read_global)."""
    from ebpf.btf import values

    vs = coll.spec.variables[name]
    raw = coll.maps[vs.section].lookup(0, raw=True)[vs.offset:vs.offset + vs.size]
    return values.decode(vs.type, raw) if vs.type is not None else raw


def unlink_files(tmp: Path, n: int, missing: int = 0) -> None:
    """n successful unlinks, then `missing` failing ones (ENOENT)."""
    for i in range(n):
        p = tmp / f"f{i}"
        p.write_bytes(b"")
        os.unlink(p)
    for i in range(missing):
        try:
            os.unlink(tmp / f"missing{i}")
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------- without kprobes


@pytest.mark.programs("kprobe_unlinkat", "kretprobe_unlinkat", "ksyscall_getppid", "multi_unlink")
def test_missing_kprobes_are_reported(coll: ebpf.Collection) -> None:
    reason = kprobes_missing()
    if reason is None:
        pytest.skip("this kernel has kprobes")
    assert "kprobe" in reason
    for attach in (lambda: ebpf.link.kprobe(coll.programs["kprobe_unlinkat"], "do_unlinkat"),
                   lambda: ebpf.link.kretprobe(coll.programs["kretprobe_unlinkat"],
                                               "do_unlinkat"),
                   lambda: ebpf.link.ksyscall(coll.programs["ksyscall_getppid"], "getppid"),
                   lambda: ebpf.link.kprobe_multi(coll.programs["multi_unlink"],
                                                  ["do_unlinkat"])):
        with pytest.raises(NotSupportedError, match="kprobes") as info:
            attach()
        assert info.value.feature == "kprobes"


def test_syscall_function() -> None:
    name = syscall_function("getppid")
    assert name.endswith("sys_getppid")
    if platform.machine() == "x86_64" and _probe.kallsyms():
        assert name == "__x64_sys_getppid"
        assert name in _probe.kallsyms()
    assert syscall_function("sys_openat") == syscall_function("openat")


@pytest.mark.programs("kprobe_unlinkat", "multi_unlink")
def test_argument_checks(coll: ebpf.Collection) -> None:
    with pytest.raises(InvalidArgumentError):
        ebpf.link.kprobe(coll.programs["kprobe_unlinkat"])
    with pytest.raises(InvalidArgumentError):
        ebpf.link.kprobe_multi(coll.programs["multi_unlink"], ["a"], pattern="b*")
    prog = ebpf.Program(ebpf.ProgramSpec(
        type=ebpf.ProgramType.SOCKET_FILTER, license="GPL",
        instructions=[ebpf.asm.mov_imm(ebpf.asm.R0, 0), ebpf.asm.exit()]))
    with prog, pytest.raises(InvalidArgumentError, match="KPROBE"):
        ebpf.link.kprobe(prog, "do_unlinkat")


# --------------------------------------------------------------------------- with kprobes


@requires("kprobes", min_kernel="5.15", config="CONFIG_KPROBES")
@pytest.mark.programs("kprobe_unlinkat", "kretprobe_unlinkat")
def test_kprobe_and_kretprobe(no_leaks: None, need_kprobes: None, coll: ebpf.Collection,
                              tmp_path: Path) -> None:
    with ebpf.link.kprobe(coll.programs["kprobe_unlinkat"], "do_unlinkat", cookie=42) as kp, \
            ebpf.link.kretprobe(coll.programs["kretprobe_unlinkat"], "do_unlinkat") as krp:
        assert LinkType(kp.info().type) == LinkType.PERF_EVENT
        assert krp.has_bpf_link
        unlink_files(tmp_path, 4, missing=1)
    assert read_global(coll, "kprobe_hits") == 5
    assert read_global(coll, "kprobe_cookie") == 42
    assert read_global(coll, "kretprobe_hits") == 5
    assert read_global(coll, "kretprobe_ret") == -errno.ENOENT
    unlink_files(tmp_path, 2)
    assert read_global(coll, "kprobe_hits") == 5


@requires("kprobes", min_kernel="5.15", config="CONFIG_KPROBES")
@pytest.mark.programs("ksyscall_getppid")
def test_ksyscall(no_leaks: None, need_kprobes: None, coll: ebpf.Collection) -> None:
    with ebpf.link.ksyscall(coll.programs["ksyscall_getppid"], "getppid"):
        for _ in range(3):
            os.getppid()
    assert read_global(coll, "ksyscall_hits") == 3


@requires("kprobes", min_kernel="5.15", config="CONFIG_KPROBES")
@pytest.mark.programs("kprobe_unlinkat")
def test_kprobe_unknown_function(no_leaks: None, need_kprobes: None,
                                 coll: ebpf.Collection) -> None:
    with pytest.raises(ebpf.SyscallError):
        ebpf.link.kprobe(coll.programs["kprobe_unlinkat"], "ebpf_no_such_kernel_function")


@requires("kprobe_events in tracefs", min_kernel="5.15",
          config=["CONFIG_KPROBES", "CONFIG_KPROBE_EVENTS"])
@pytest.mark.programs("kprobe_unlinkat", "kretprobe_unlinkat")
def test_kprobe_legacy_tracefs(no_leaks: None, need_kprobes: None, coll: ebpf.Collection,
                               tracefs: str, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    if _probe.probe_events_file("kprobe") is None:
        pytest.skip("tracefs has no kprobe_events")
    monkeypatch.setattr(_probe, "pmu_type", lambda kind: None)
    link = ebpf.link.kprobe(coll.programs["kprobe_unlinkat"], "do_unlinkat")
    try:
        assert len(_our_tracefs_probes()) == 1
        unlink_files(tmp_path, 3)
    finally:
        link.close()
    assert not _our_tracefs_probes()
    assert read_global(coll, "kprobe_hits") == 3
    with ebpf.link.kretprobe(coll.programs["kretprobe_unlinkat"], "do_unlinkat"):
        unlink_files(tmp_path, 2)
    assert read_global(coll, "kretprobe_hits") == 2


@requires("multi_attach:TRACE_KPROBE_MULTI", min_kernel="5.18",
          config=["CONFIG_KPROBES", "CONFIG_FPROBE"])
@pytest.mark.programs("multi_unlink")
def test_kprobe_multi(no_leaks: None, need_kprobes: None, coll: ebpf.Collection,
                      tmp_path: Path) -> None:
    prog = coll.programs["multi_unlink"]
    with ebpf.link.kprobe_multi(prog, ["do_unlinkat"], cookies=[7]) as link:
        assert LinkType(link.info().type) == LinkType.KPROBE_MULTI
        unlink_files(tmp_path, 3)
    assert read_global(coll, "multi_hits") == 3
    assert read_global(coll, "multi_cookie_sum") == 21
    with ebpf.link.kprobe_multi(prog, pattern="do_unlinka*"):
        unlink_files(tmp_path, 2)
    assert read_global(coll, "multi_hits") == 5
    with pytest.raises(InvalidArgumentError, match="no traceable"):
        ebpf.link.kprobe_multi(prog, pattern="ebpf_no_such_function_*")


@requires("kprobes", min_kernel="5.15", config="CONFIG_KPROBES")
@pytest.mark.programs("kprobe_unlinkat", "kretprobe_unlinkat", "ksyscall_getppid", "multi_unlink")
def test_auto_attach_kprobes(no_leaks: None, need_kprobes: None, spec: ebpf.CollectionSpec,
                             coll: ebpf.Collection, tmp_path: Path) -> None:
    names = ["kprobe_unlinkat", "kretprobe_unlinkat", "ksyscall_getppid"]
    if ebpf.features.have_link_type(LinkType.KPROBE_MULTI):
        names.append("multi_unlink")
    links = []
    try:
        for name in names:
            link = ebpf.link.attach_program(coll.programs[name], spec.programs[name])
            assert link is not None, name
            links.append(link)
        unlink_files(tmp_path, 2)
        os.getppid()
    finally:
        for link in links:
            link.close()
    assert read_global(coll, "kprobe_hits") == 2
    assert read_global(coll, "kretprobe_hits") == 2
    assert read_global(coll, "ksyscall_hits") == 1
    if "multi_unlink" in names:
        assert read_global(coll, "multi_hits") == 2
