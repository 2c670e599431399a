"""`ebpf trace`: trace_pipe lines as they come, as text or JSON records."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel


def _wait_for_trace_pipe(proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    """Until the child has trace_pipe open (its start takes longer on a busy machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        with contextlib.suppress(OSError):
            fds = os.listdir(f"/proc/{proc.pid}/fd")
            if any(os.readlink(f"/proc/{proc.pid}/fd/{fd}").endswith("/trace_pipe")
                   for fd in fds):
                return
        time.sleep(0.02)
    raise AssertionError("ebpf trace did not open trace_pipe within 30 s")


def _run_while_marking(tracefs: str, *args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run `ebpf trace ARGS` and write a unique marker to trace_marker meanwhile."""
    marker = f"ebpf-cli-trace-{random.getrandbits(48):x}"
    proc = subprocess.Popen([sys.executable, "-m", "ebpf", "trace", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_trace_pipe(proc)
    with open(os.path.join(tracefs, "trace_marker"), "w") as f:
        f.write(marker + "\n")
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), marker


def test_trace_text(tracefs: str) -> None:
    res, marker = _run_while_marking(tracefs, "--timeout", "2.5")
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.endswith(marker)]
    assert len(lines) == 1
    assert f"tracing_mark_write: {marker}" in lines[0]


def test_trace_json(tracefs: str) -> None:
    res, marker = _run_while_marking(tracefs, "--timeout", "2.5", "--json")
    assert res.returncode == 0, res.stderr
    recs = [json.loads(ln) for ln in res.stdout.splitlines()]
    mine = [r for r in recs if r["message"] == marker]
    assert len(mine) == 1
    assert mine[0]["event"] == "tracing_mark_write"
    assert set(mine[0]) == {"task", "pid", "cpu", "flags", "timestamp", "message", "event",
                            "tgid"}


def test_trace_not_mounted(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "ebpf", "trace", "--tracefs", str(tmp_path),
                          "--timeout", "1"], capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("ebpf: ")
    assert "mount -t tracefs tracefs /sys/kernel/tracing" in res.stderr
