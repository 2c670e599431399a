"""Shared fixtures: bpffs/tracefs mounts, pin directories, cgroups, network namespaces,
the BPF LSM check.

Mounts are made only when missing and undone at the end of the session; the host's
interfaces are never touched (network tests work inside their own namespaces).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from trampolines import IN_GUEST

# The kernel matrix's plugin: `requires` declarations are enforced (a test skipped on a
# kernel that must support what it needs fails) and --kmatrix-json writes results.
pytest_plugins = ["kernelmatrix.plugin"]

BPFFS = "/sys/fs/bpf"
TRACEFS = "/sys/kernel/tracing"
CGROUP2 = "/sys/fs/cgroup/unified"


SETUP = "sh tools/setup.sh"


def need_tool(name: str, *, present: bool | None = None) -> str:
    """The path of tool `name` (clang-19, bpftool, gcc, llvm-objdump-19, readelf, ...), or
    `name` when `present` says whether a non-executable (a header, a library, a package's
    files) is there. tools/setup.sh installs everything the tests use, and only a kernel
    that lacks a feature may skip a test: a missing tool FAILS the test, naming the tool
    and the setup command. Kernel-matrix guests see the host's file system, tools included.
    """
    path = shutil.which(name) if present is None else (name if present else None)
    if path is None:
        pytest.fail(f"{name} is missing: install the test tools with `{SETUP}` (only a "
                    "kernel that lacks a feature may skip a test)", pytrace=False)
    return path


def _mounted(path: str, fstype: str) -> bool:
    with open("/proc/self/mounts") as f:
        return any(
            line.split()[1] == path and line.split()[2] == fstype for line in f if line.strip()
        )


@contextlib.contextmanager
def _ensure_mount(path: str, fstype: str) -> Iterator[str]:
    made = False
    if not _mounted(path, fstype):
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", fstype, fstype, path], check=True)
        made = True
    try:
        yield path
    finally:
        if made:
            subprocess.run(["umount", "-l", path], check=False)


@pytest.fixture
def marked_programs(request: pytest.FixtureRequest) -> list[str]:
    """The program names of the test's @pytest.mark.programs(...): a fixture that loads a
    collection for a test loads only these, so a hook the kernel refuses costs exactly
    the tests of that hook."""
    marker = request.node.get_closest_marker("programs")
    if marker is None or not marker.args:
        raise pytest.UsageError(
            f"{request.node.nodeid} uses a collection fixture: name the programs it "
            "exercises with @pytest.mark.programs(...)")
    return [str(a) for a in marker.args]


@pytest.fixture(scope="session")
def bpffs() -> Iterator[str]:
    """A mounted bpffs at /sys/fs/bpf."""
    with _ensure_mount(BPFFS, "bpf") as p:
        yield p


@pytest.fixture
def pin_dir(bpffs: str) -> Iterator[str]:
    """A fresh directory on bpffs, removed (with everything pinned in it) afterwards."""
    d = os.path.join(bpffs, f"ebpf-test-{uuid.uuid4().hex[:12]}")
    os.mkdir(d, 0o700)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def tracefs() -> Iterator[str]:
    """A mounted tracefs at /sys/kernel/tracing."""
    with _ensure_mount(TRACEFS, "tracefs") as p:
        yield p


@pytest.fixture
def cgroup() -> Iterator[str]:
    """A fresh cgroup v2 directory, removed afterwards."""
    if not _mounted(CGROUP2, "cgroup2"):
        pytest.skip(f"cgroup2 is not mounted at {CGROUP2}")
    d = os.path.join(CGROUP2, f"ebpf-test-{uuid.uuid4().hex[:12]}")
    os.mkdir(d)
    try:
        yield d
    finally:
        with contextlib.suppress(OSError):
            with open(os.path.join(d, "cgroup.procs")) as f:
                pids = f.read().split()
            with open(os.path.join(CGROUP2, "cgroup.procs"), "w") as f:
                for pid in pids:
                    f.write(pid)
                    f.flush()
        with contextlib.suppress(OSError):
            os.rmdir(d)


@pytest.fixture
def bpf_lsm() -> Iterator[None]:
    """Skip unless the BPF LSM is active (it must be listed in lsm= at boot, or in
    CONFIG_LSM); in a kernel-matrix guest, whose kernels have it, fail instead."""
    lsm_file = "/sys/kernel/security/lsm"
    mounted = False
    if not os.path.exists(lsm_file):
        os.makedirs("/sys/kernel/security", exist_ok=True)
        rc = subprocess.run(["mount", "-t", "securityfs", "securityfs",
                             "/sys/kernel/security"], capture_output=True).returncode
        mounted = rc == 0
    try:
        try:
            with open(lsm_file) as f:
                active = f.read().strip().split(",")
        except OSError:
            pytest.skip("securityfs is not available: cannot tell whether the BPF LSM is on")
        if "bpf" not in active:
            if IN_GUEST:
                pytest.fail(f"the BPF LSM is not active in this guest (lsm={','.join(active)})")
            pytest.skip(f"the BPF LSM is not active (lsm={','.join(active)})")
        yield
    finally:
        if mounted:
            subprocess.run(["umount", "/sys/kernel/security"], check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with a veth pair veth0 (10.77.0.1) <-> veth1 inside a
    second namespace (10.77.0.2). Yields the first namespace's name; the peer namespace
    is `<name>-peer`. Both are deleted afterwards."""
    name = f"ebpf-{uuid.uuid4().hex[:8]}"
    peer = name + "-peer"
    ip = ["ip"]

    def run(*args: str) -> None:
        subprocess.run([*ip, *args], check=True, capture_output=True)

    run("netns", "add", name)
    run("netns", "add", peer)
    try:
        run("-n", name, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
            "netns", peer)
        run("-n", name, "addr", "add", "10.77.0.1/24", "dev", "veth0")
        run("-n", peer, "addr", "add", "10.77.0.2/24", "dev", "veth1")
        for ns, dev in ((name, "veth0"), (peer, "veth1")):
            run("-n", ns, "link", "set", dev, "up")
            run("-n", ns, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run([*ip, "netns", "del", name], check=False, capture_output=True)
        subprocess.run([*ip, "netns", "del", peer], check=False, capture_output=True)


def open_fds() -> set[str]:
    """This process's open descriptors (names in /proc/self/fd)."""
    return set(os.listdir("/proc/self/fd"))


def leaked_descriptors(before: set[str]) -> list[str]:
    """What the descriptors opened since `before` (an `open_fds()`) point at, after a
    garbage collection; kernel BTF files excepted (the library keeps the kernel's BTF
    mapped for the process)."""
    import gc

    gc.collect()
    leaked = []
    for fd in open_fds() - before:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if not target.startswith("/sys/kernel/btf/"):
            leaked.append(target)
    return leaked


@pytest.fixture
def no_fd_leaks() -> Iterator[None]:
    """Fail if the test leaves a descriptor open (see `leaked_descriptors`)."""
    before = open_fds()
    yield
    leaked = leaked_descriptors(before)
    assert not leaked, f"leaked descriptors: {leaked}"


def small_map_spec(**fields: Any) -> Any:
    """A HASH MapSpec of u32 keys and u64 values, `fields` (its name among them) set."""
    from ebpf.maps import MapSpec, MapType

    base: dict[str, Any] = dict(type=MapType.HASH, key_size=4, value_size=8, max_entries=4)
    base.update(fields)
    return MapSpec(**base)


def small_prog_spec(**fields: Any) -> Any:
    """A GPL SOCKET_FILTER ProgramSpec returning 0, `fields` (its name among them) set."""
    from ebpf import asm
    from ebpf.programs import ProgramSpec, ProgramType

    base: dict[str, Any] = dict(type=ProgramType.SOCKET_FILTER, license="GPL",
                                instructions=[asm.mov_imm(asm.R0, 0), asm.exit()])
    base.update(fields)
    return ProgramSpec(**base)


def wait_for_child(pid: int, timeout: float) -> int | None:
    """The exit status of child `pid`, or None (the child killed) when it runs longer
    than `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def fork_while_held(lock: contextlib.AbstractContextManager[object],
                    in_child: Callable[[], object], timeout: float = 5.0) -> int | None:
    """Fork while another thread holds `lock` (where a thread is in the middle of its
    work), run `in_child()` in the child, and give the child's exit status: 0 when it
    returned, 2 when it raised, None when it ran longer than `timeout` seconds (it hung
    on the inherited lock, and was killed)."""
    inside, leave = threading.Event(), threading.Event()

    def holding() -> None:
        with lock:
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=holding, daemon=True)
    t.start()
    try:
        assert inside.wait(10)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                in_child()
                os._exit(0)
            finally:
                os._exit(2)
    finally:
        leave.set()
        t.join()
    return wait_for_child(pid, timeout)


@contextlib.contextmanager
def frequent_thread_switches() -> Iterator[None]:
    """Switch Python threads every microsecond (races show up within a few rounds)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """The whole test under `frequent_thread_switches`."""
    with frequent_thread_switches():
        yield
