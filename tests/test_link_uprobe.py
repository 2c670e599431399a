"""uprobes and uretprobes: libc's getaddrinfo called by a child process (the DNS
tracing case of references/001), symbols vs offsets in PIE and non-PIE binaries,
pid filters, uprobe_multi, the legacy tracefs interface and section auto-attach."""

from __future__ import annotations

import gc
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bpfbuild import compile_bpf
from conftest import need_tool
from kernelmatrix import requires
from vmlinux import vmlinux_include_dir

import ebpf
import ebpf.link
from ebpf import LinkType, NotSupportedError
from ebpf._sys import probe as _probe
from ebpf.errors import InvalidArgumentError, KeyNotFoundError
from ebpf.link.uprobe import function_symbols, resolve_binary, symbol_offset

pytestmark = pytest.mark.kernel

DNS_CHILD = """
import socket, sys
sys.stdin.read(1)  # wait until the parent says go (pid-filter tests)
for _ in range(int(sys.argv[1])):
    socket.getaddrinfo("localhost", 80)
"""

TARGET_C = r"""
#include <stdlib.h>
__attribute__((noinline)) int ebpf_test_target(int x) { __asm__ volatile(""); return x * 2; }
__attribute__((noinline)) int ebpf_test_other(int x) { __asm__ volatile(""); return x + 2; }
int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1, s = 0;
    for (int i = 0; i < n; i++)
        s += ebpf_test_target(i) + ebpf_test_other(i) + ebpf_test_other(i);
    return s == -1;
}
"""


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail if the test leaves a descriptor open or a tracefs probe behind."""
    before = _fds()
    yield
    gc.collect()  # objects may hold descriptors until collected (mmaps of maps)
    leaked = []
    for fd in _fds() - before:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if not target.startswith("/sys/kernel/btf/"):  # the cached kernel BTF
                leaked.append(target)
        except OSError:
            pass
    assert not leaked, f"leaked descriptors: {leaked}"
    assert not _our_tracefs_probes()


def _our_tracefs_probes() -> list[str]:
    out = []
    for kind in ("kprobe", "uprobe"):
        path = _probe.probe_events_file(kind)
        if path is not None:
            with open(path) as f:
                out += [ln for ln in f if f"ebpf_{os.getpid()}_" in ln]
    return out


@pytest.fixture(autouse=True)
def _need_uprobes() -> None:
    reason = _probe.uprobes_missing()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def spec() -> ebpf.CollectionSpec:
    return ebpf.load_collection_spec(
        compile_bpf("link_uprobe", extra_flags=[f"-I{vmlinux_include_dir()}"]))


@pytest.fixture
def coll(spec: ebpf.CollectionSpec, marked_programs: list[str]) -> Iterator[ebpf.Collection]:
    """Only the programs the test names with @pytest.mark.programs."""
    with ebpf.Collection(spec.copy(), programs=marked_programs) as c:
        yield c


def run_dns_child(n: int) -> int:
    proc = subprocess.run([sys.executable, "-c", DNS_CHILD, str(n)], input=b"x", check=True)
    return proc.returncode


def spawn_dns_child(n: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", DNS_CHILD, str(n)], stdin=subprocess.PIPE)


def read_global(coll: ebpf.Collection, name: str) -> object:
    """A global variable's value, read with a map lookup (Collection.variables would
    mmap the data map, and the mapping keeps a descriptor until garbage collection)."""
    from ebpf.btf import values

    vs = coll.spec.variables[name]
    raw = coll.maps[vs.section].lookup(0, raw=True)[vs.offset:vs.offset + vs.size]
    return values.decode(vs.type, raw) if vs.type is not None else raw


def per_pid(m: ebpf.Map) -> dict[int, int]:
    return {int(k): int(v) for k, v in m.items()}


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test target built as PIE and as a non-PIE executable whose text is
    mapped at an address unrelated to its file offset."""
    need_tool("gcc")
    d = tmp_path_factory.mktemp("uprobe")
    src = d / "target.c"
    src.write_text(TARGET_C)
    out = {}
    for name, flags in (("pie", ["-fPIE", "-pie"]),
                        ("nopie", ["-fno-pie", "-no-pie", "-Wl,-Ttext-segment=0x20000000"])):
        exe = d / f"target-{name}"
        subprocess.run(["gcc", "-O2", *flags, "-o", str(exe), str(src)], check=True)
        out[name] = exe
    return out


def _file_offset_by_binutils(path: Path, symbol: str) -> int:
    """An independent computation of a symbol's file offset with nm and readelf."""
    nm = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    vaddr = next(int(line.split()[0], 16) for line in nm.splitlines()
                 if line.split()[-1] == symbol)
    phdrs = subprocess.run(["readelf", "-lW", str(path)], capture_output=True, text=True,
                           check=True).stdout
    for line in phdrs.splitlines():
        parts = line.split()
        if parts and parts[0] == "LOAD":
            off, va, memsz = int(parts[1], 16), int(parts[2], 16), int(parts[5], 16)
            if va <= vaddr < va + memsz:
                return vaddr - va + off
    raise AssertionError(f"{symbol} not in a LOAD segment")


# --------------------------------------------------------------------------- resolution


def test_resolve_libc() -> None:
    path = resolve_binary("libc.so.6")
    assert os.path.isabs(path) and os.path.basename(path) == "libc.so.6"
    with open(path, "rb") as f:
        assert f.read(4) == b"\x7fELF"
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    if os.path.exists(ldconfig):
        listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout
        paths = re.findall(r"libc\.so\.6 \(.*x86-64.*\) => (\S+)", listing)
        if paths:
            assert os.path.realpath(path) == os.path.realpath(paths[0])


def test_resolve_program_in_path() -> None:
    assert resolve_binary("true") == shutil.which("true")
    with pytest.raises(FileNotFoundError):
        resolve_binary("libebpf-no-such-library.so.1")
    with pytest.raises(FileNotFoundError):
        resolve_binary("/nonexistent/binary")


def test_symbol_offsets_match_binutils(binaries: dict[str, Path]) -> None:
    for exe in binaries.values():
        for sym in ("ebpf_test_target", "ebpf_test_other"):
            assert symbol_offset(exe, sym) == _file_offset_by_binutils(exe, sym)
    # the non-PIE target's text is far from its file offset
    assert symbol_offset(binaries["nopie"], "ebpf_test_target") < 0x20000000
    with pytest.raises(KeyNotFoundError):
        symbol_offset(binaries["pie"], "no_such_function")
    found = function_symbols(binaries["pie"], "ebpf_test_*")
    assert set(found) == {"ebpf_test_target", "ebpf_test_other"}


# --------------------------------------------------------------------------- libc getaddrinfo


@pytest.mark.programs("dns_enter", "dns_exit")
def test_getaddrinfo_uprobe_and_uretprobe(no_leaks: None, coll: ebpf.Collection) -> None:
    calls, returns = coll.maps["calls"], coll.maps["returns"]
    with ebpf.link.uprobe(coll.programs["dns_enter"], "libc.so.6", "getaddrinfo") as up, \
            ebpf.link.uretprobe(coll.programs["dns_exit"], "libc.so.6", "getaddrinfo") as ret:
        assert LinkType(up.info().type) == LinkType.PERF_EVENT
        assert ret.has_bpf_link
        child = spawn_dns_child(3)
        child.communicate(b"x")
        assert child.returncode == 0
    assert per_pid(calls).get(child.pid) == 3
    assert per_pid(returns).get(child.pid) == 3
    assert read_global(coll, "last_node") == "localhost"
    assert read_global(coll, "last_ret") == 0
    run_dns_child(2)  # detached
    assert sum(per_pid(calls).values()) == sum(per_pid(returns).values())


@pytest.mark.programs("dns_enter")
def test_getaddrinfo_by_offset(no_leaks: None, coll: ebpf.Collection) -> None:
    libc = resolve_binary("libc.so.6")
    offset = symbol_offset(libc, "getaddrinfo")
    with ebpf.link.uprobe(coll.programs["dns_enter"], libc, offset=offset):
        child = spawn_dns_child(2)
        child.communicate(b"x")
    assert per_pid(coll.maps["calls"]).get(child.pid) == 2


@pytest.mark.programs("dns_enter")
def test_uprobe_pid_filter(no_leaks: None, coll: ebpf.Collection) -> None:
    traced, other = spawn_dns_child(2), spawn_dns_child(2)
    try:
        with ebpf.link.uprobe(coll.programs["dns_enter"], "libc.so.6", "getaddrinfo",
                              pid=traced.pid):
            traced.communicate(b"x")
            other.communicate(b"x")
    finally:
        for p in (traced, other):
            if p.poll() is None:
                p.kill()
                p.wait()
    got = per_pid(coll.maps["calls"])
    assert got.get(traced.pid) == 2
    assert other.pid not in got


@pytest.mark.parametrize("kind", ["pie", "nopie"])
@pytest.mark.programs("count_calls")
def test_uprobe_in_executable(no_leaks: None, coll: ebpf.Collection, binaries: dict[str, Path],
                              kind: str) -> None:
    exe = binaries[kind]
    prog = coll.programs["count_calls"]
    with ebpf.link.uprobe(prog, exe, "ebpf_test_target", cookie=5), \
            ebpf.link.uprobe(prog, exe, offset=symbol_offset(exe, "ebpf_test_other"), cookie=7):
        proc = subprocess.Popen([str(exe), "4"])
        proc.wait()
    assert per_pid(coll.maps["calls"]).get(proc.pid) == 4 + 8
    assert read_global(coll, "cookie_sum") == 4 * 5 + 8 * 7


@requires("multi_attach:TRACE_UPROBE_MULTI", min_kernel="6.6")
@pytest.mark.programs("multi_calls")
def test_uprobe_multi(no_leaks: None, coll: ebpf.Collection, binaries: dict[str, Path]) -> None:
    exe = binaries["pie"]
    prog = coll.programs["multi_calls"]
    with ebpf.link.uprobe_multi(prog, exe, ["ebpf_test_target", "ebpf_test_other"],
                                cookies=[100, 1]) as link:
        assert LinkType(link.info().type) == LinkType.UPROBE_MULTI
        proc = subprocess.Popen([str(exe), "3"])
        proc.wait()
    assert per_pid(coll.maps["calls"]).get(proc.pid) == 9
    assert read_global(coll, "cookie_sum") == 3 * 100 + 6 * 1
    with ebpf.link.uprobe_multi(prog, exe, pattern="ebpf_test_t*"):
        proc2 = subprocess.Popen([str(exe), "5"])
        proc2.wait()
    assert per_pid(coll.maps["calls"]).get(proc2.pid) == 5
    with pytest.raises(InvalidArgumentError):
        ebpf.link.uprobe_multi(prog, exe, pattern="no_such_*")


@pytest.mark.programs("count_calls")
def test_uprobe_legacy_tracefs(no_leaks: None, coll: ebpf.Collection,
                               binaries: dict[str, Path], tracefs: str,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the uprobe PMU, probes are made through tracefs' uprobe_events and
    removed again on close."""
    if _probe.probe_events_file("uprobe") is None:
        pytest.skip("tracefs has no uprobe_events")
    _probe.pmu_type.cache_clear()
    monkeypatch.setattr(_probe, "pmu_type", lambda kind: None)
    exe = binaries["nopie"]
    link = ebpf.link.uprobe(coll.programs["count_calls"], exe, "ebpf_test_target")
    try:
        assert len(_our_tracefs_probes()) == 1
        with pytest.raises(NotSupportedError):
            link.pin("/sys/fs/bpf/never")
        proc = subprocess.Popen([str(exe), "6"])
        proc.wait()
    finally:
        link.close()
    assert not _our_tracefs_probes()
    assert per_pid(coll.maps["calls"]).get(proc.pid) == 6


@pytest.mark.programs("dns_enter")
def test_uprobe_errors(coll: ebpf.Collection, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError):
        ebpf.link.uprobe(coll.programs["dns_enter"], "libc.so.6")
    with pytest.raises(KeyNotFoundError):
        ebpf.link.uprobe(coll.programs["dns_enter"], "libc.so.6", "no_such_function_xyz")
    not_elf = tmp_path / "x.so.1"
    not_elf.write_bytes(b"hello")
    with pytest.raises(ebpf.ELFError):
        ebpf.link.uprobe(coll.programs["dns_enter"], str(not_elf), "main")


@pytest.mark.programs("dns_enter", "dns_exit", "count_calls")
def test_auto_attach_uprobe(no_leaks: None, spec: ebpf.CollectionSpec,
                            coll: ebpf.Collection) -> None:
    links = [ebpf.link.attach_program(coll.programs[n], spec.programs[n])
             for n in ("dns_enter", "dns_exit", "count_calls")]
    assert links[2] is None  # bare SEC("uprobe")
    try:
        child = spawn_dns_child(1)
        child.communicate(b"x")
    finally:
        for link in links:
            if link is not None:
                link.close()
    assert per_pid(coll.maps["calls"]).get(child.pid) == 1
    assert per_pid(coll.maps["returns"]).get(child.pid) == 1
