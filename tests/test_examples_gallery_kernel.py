"""The examples gallery's examples for hooks the development host lacks (kprobes,
BPF trampolines, the BPF LSM): run briefly as a user runs them, their output checked
against activity the test makes itself. Each declares its hook with `requires`, so the
kernel matrix's VMs run them (and the host skips them, with the reason).

Under TCG an interpreter takes seconds to start: the activity comes from the test's
own process once the example is ready (the examples follow it with --pid), and the
examples stop on `--count` (the lines expected) well before their `--duration` bound."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import threading
from collections.abc import Iterator

import pytest
from gallery import Running, start, started
from kernelmatrix import requires

pytestmark = pytest.mark.kernel

# the line bpf_printk writes, as trace_pipe shows it, from process `pid`
PRINTK = r"^\s*\S+-{pid}\s+\[\d+\] \S+\s+[\d.]+: bpf_trace_printk: "


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Examples started by the test, killed if the test fails before they end."""
    yield from started()


def own_comm() -> str:
    """This process's command name, as the kernel reports it."""
    with open("/proc/self/comm") as f:
        return f.read().strip()


READY = r"^Successfully started! Reading trace_pipe \(Ctrl-C to stop\)\.$"


def unlinks_seen(example: str, tmp_path: pathlib.Path, running: list[Running]) -> str:
    """Run `example` (a probe on do_unlinkat for this process only) while this process
    removes a file twice (the second time fails: ENOENT); the example's output."""
    path = tmp_path / "ebpf-gallery-unlink"
    r = start(running, example, "--pid", str(os.getpid()), "--count", "4",
              "--duration", "60")
    r.wait_for(READY, timeout=120)
    path.touch()
    path.unlink()
    with pytest.raises(FileNotFoundError):
        path.unlink()
    return r.finish(timeout=60)


@requires("kprobes", min_kernel="5.15", config="CONFIG_KPROBES")
def test_kprobe(tmp_path: pathlib.Path, running: list[Running]) -> None:
    out = unlinks_seen("examples/kprobe.py", tmp_path, running)
    pid, path = os.getpid(), tmp_path / "ebpf-gallery-unlink"
    entry = PRINTK.format(pid=pid) + rf"KPROBE ENTRY pid = {pid}, filename = {path}$"
    exit_ = PRINTK.format(pid=pid) + rf"KPROBE EXIT: pid = {pid}, ret = (-?\d+)$"
    assert len(re.findall(entry, out, re.M)) == 2, out
    assert re.findall(exit_, out, re.M) == ["0", "-2"], out


@requires("program_type:TRACING", min_kernel="5.5", refusable=True)
def test_fentry(tmp_path: pathlib.Path, running: list[Running]) -> None:
    out = unlinks_seen("examples/fentry.py", tmp_path, running)
    pid, path = os.getpid(), tmp_path / "ebpf-gallery-unlink"
    entry = PRINTK.format(pid=pid) + rf"fentry: pid = {pid}, filename = {path}$"
    exit_ = PRINTK.format(pid=pid) + rf"fexit: pid = {pid}, filename = {path}, ret = (-?\d+)$"
    assert len(re.findall(entry, out, re.M)) == 2, out
    assert re.findall(exit_, out, re.M) == ["0", "-2"], out


@requires("kprobes", min_kernel="5.15", config="CONFIG_KPROBES")
def test_ksyscall(running: list[Running]) -> None:
    r = start(running, "examples/ksyscall.py", "--pid", str(os.getpid()), "--count", "2",
              "--duration", "60")
    r.wait_for(READY, timeout=120)
    handlers = {sig: signal.signal(sig, lambda *_: None)
                for sig in (signal.SIGUSR1, signal.SIGUSR2)}
    try:
        os.kill(os.getpid(), 0)                             # sends nothing: not shown
        os.kill(os.getpid(), signal.SIGUSR1)                # kill(2)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR2)  # tgkill(2)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    out = r.finish(timeout=60)
    pid, tid, comm = os.getpid(), threading.get_native_id(), re.escape(own_comm())
    lines = [line for line in out.splitlines() if "bpf_trace_printk" in line]
    assert len(lines) == 2, out
    assert re.match(PRINTK.format(pid=pid) + rf"KILL syscall called by PID {pid} "
                    rf"\({comm}\) for PID {pid} with signal 10\.$", lines[0]), out
    assert re.match(PRINTK.format(pid=tid) + rf"tgkill syscall called by PID {pid} "
                    rf"\({comm}\) for thread id {tid} with pid {pid} and signal 12\.$",
                    lines[1]), out


@requires("program_type:LSM", min_kernel="5.7", config="CONFIG_BPF_LSM", refusable=True)
def test_lsm(tmp_path: pathlib.Path, bpf_lsm: None, running: list[Running]) -> None:
    secret, other = tmp_path / "secret", tmp_path / "other"
    secret.write_text("s")
    other.write_text("o")
    r = start(running, "examples/lsm.py", str(secret), "--count", "1", "--duration", "60")
    r.wait_for(r"^TIME\s+PID\s+COMM\s+ACTION\s+FILE$", timeout=120)
    with pytest.raises(PermissionError):
        secret.read_text()
    assert other.read_text() == "o"
    out = r.finish(timeout=60)
    assert re.match(rf"Denying opens of {secret} \(inode {secret.stat().st_ino} on device "
                    r"\d+:\d+\); Ctrl-C to stop\.\n", out), out
    assert re.search(rf"^\d\d:\d\d:\d\d {os.getpid()}\s+{re.escape(own_comm())}\s+"
                     r"DENIED\s+secret$", out, re.M), out
    assert secret.read_text() == "s"            # the program is gone with the example
