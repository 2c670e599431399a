"""The examples gallery's examples for hooks the development host lacks (kprobes,
BPF trampolines, the BPF LSM): run briefly as a user runs them, their output checked
against activity the test makes itself. Each declares its hook with `requires`, so the
kernel matrix's VMs run them (and the host skips them, with the reason).

Under TCG an interpreter takes seconds to start: the activity comes from a child
started first and told to go once the example is ready, and the examples stop on
`--count` (the lines expected) well before their `--duration` bound."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
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


class Child:
    """A Python child that runs `code` once told to go (after the example is ready)."""

    def __init__(self, code: str, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c",
                                      "import sys\nsys.stdin.readline()\n" + code, *args],
                                     stdin=subprocess.PIPE, text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def go(self) -> None:
        """Let it run, and wait for its end (status 0)."""
        self.proc.communicate("go\n", timeout=60)
        assert self.proc.returncode == 0

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


UNLINKS = """
import os
open(sys.argv[1], "w").close()
os.unlink(sys.argv[1])
try:
    os.unlink(sys.argv[1])      # a second time: ENOENT
except FileNotFoundError:
    pass
"""

READY = r"^Successfully started! Reading trace_pipe \(Ctrl-C to stop\)\.$"


def unlinks_seen(example: str, tmp_path: pathlib.Path,
                 running: list[Running]) -> tuple[str, int, str]:
    """Run `example` (a probe on do_unlinkat for one pid) while a child removes a file
    twice (the second time fails: ENOENT); its output and the child's pid."""
    path = str(tmp_path / "ebpf-gallery-unlink")
    with Child(UNLINKS, path) as child:
        r = start(running, example, "--pid", str(child.pid), "--count", "4",
                  "--duration", "60")
        r.wait_for(READY, timeout=120)
        child.go()
        return r.finish(timeout=60), child.pid, path


@requires("kprobes", min_kernel="5.15", config="CONFIG_KPROBES")
def test_kprobe(tmp_path: pathlib.Path, running: list[Running]) -> None:
    out, pid, path = unlinks_seen("examples/kprobe.py", tmp_path, running)
    entry = PRINTK.format(pid=pid) + rf"KPROBE ENTRY pid = {pid}, filename = {path}$"
    exit_ = PRINTK.format(pid=pid) + rf"KPROBE EXIT: pid = {pid}, ret = (-?\d+)$"
    assert len(re.findall(entry, out, re.M)) == 2, out
    assert re.findall(exit_, out, re.M) == ["0", "-2"], out


@requires("program_type:TRACING", min_kernel="5.5", refusable=True)
def test_fentry(tmp_path: pathlib.Path, running: list[Running]) -> None:
    out, pid, path = unlinks_seen("examples/fentry.py", tmp_path, running)
    entry = PRINTK.format(pid=pid) + rf"fentry: pid = {pid}, filename = {path}$"
    exit_ = PRINTK.format(pid=pid) + rf"fexit: pid = {pid}, filename = {path}, ret = (-?\d+)$"
    assert len(re.findall(entry, out, re.M)) == 2, out
    assert re.findall(exit_, out, re.M) == ["0", "-2"], out


SIGNALS = """
import os, signal, threading
signal.signal(signal.SIGUSR1, lambda *_: None)
signal.signal(signal.SIGUSR2, lambda *_: None)
os.kill(os.getpid(), 0)                                     # sends nothing: not shown
os.kill(os.getpid(), signal.SIGUSR1)                        # kill(2)
signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR2)   # tgkill(2)
"""


@requires("kprobes", min_kernel="5.15", config="CONFIG_KPROBES")
def test_ksyscall(running: list[Running]) -> None:
    with Child(SIGNALS) as child:
        r = start(running, "examples/ksyscall.py", "--pid", str(child.pid), "--count", "2",
                  "--duration", "60")
        r.wait_for(READY, timeout=120)
        child.go()
        out = r.finish(timeout=60)
    pid = child.pid
    lines = [line for line in out.splitlines() if "bpf_trace_printk" in line]
    assert len(lines) == 2, out
    assert re.match(PRINTK.format(pid=pid) + rf"KILL syscall called by PID {pid} "
                    rf"\(python3?\S*\) for PID {pid} with signal 10\.$", lines[0]), out
    assert re.match(PRINTK.format(pid=pid) + rf"tgkill syscall called by PID {pid} "
                    rf"\(python3?\S*\) for thread id {pid} with pid {pid} and signal 12\.$",
                    lines[1]), out


OPENS = """
for name, expected in ((sys.argv[1], "denied"), (sys.argv[2], "opened")):
    try:
        open(name).close()
        got = "opened"
    except PermissionError:
        got = "denied"
    assert got == expected, (name, got)
"""


@requires("program_type:LSM", min_kernel="5.7", config="CONFIG_BPF_LSM", refusable=True)
def test_lsm(tmp_path: pathlib.Path, bpf_lsm: None, running: list[Running]) -> None:
    secret, other = tmp_path / "secret", tmp_path / "other"
    secret.write_text("s")
    other.write_text("o")
    with Child(OPENS, str(secret), str(other)) as child:
        r = start(running, "examples/lsm.py", str(secret), "--count", "1", "--duration", "60")
        r.wait_for(r"^TIME\s+PID\s+COMM\s+ACTION\s+FILE$", timeout=120)
        child.go()               # fails unless the open of `secret` was refused
        out = r.finish(timeout=60)
    assert re.match(rf"Denying opens of {secret} \(inode {secret.stat().st_ino} on device "
                    r"\d+:\d+\); Ctrl-C to stop\.\n", out), out
    assert re.search(rf"^\d\d:\d\d:\d\d {child.pid}\s+python3?\S*\s+DENIED\s+secret$", out,
                     re.M), out
    assert secret.read_text() == "s"            # the program is gone with the example
