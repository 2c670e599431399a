"""The README's demo and the examples run as a user runs them (inside a test network
namespace, so their traffic stays there) and show live data."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent


def run_in(netns: str, *argv: str) -> str:
    r = subprocess.run(["ip", "netns", "exec", netns, sys.executable, *argv],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_demo(netns: str) -> None:
    out = run_in(netns, "examples/demo.py", "--seconds", "1")
    # part 1: the socket filter's per-protocol counters moved
    rows = re.finditer(r"^(TCP|UDP|ICMP)\s+\d+\s+(\d+)$", out, re.M)
    counts = {m.group(1): int(m.group(2)) for m in rows}
    assert set(counts) == {"TCP", "UDP", "ICMP"} and all(counts.values()), out
    # part 2: execsnoop saw the commands the demo ran, none dropped
    assert re.search(r"^\s+[\d.]+\s+\d+\s+\d+\s+0 true\s+/bin/true$", out, re.M), out
    assert re.search(r"execs by uid: \{0: [1-9]\d*\}  dropped: 0", out), out


def test_execsnoop(netns: str) -> None:
    out = run_in(netns, "examples/execsnoop.py", "--seconds", "1")
    assert re.search(r"\s/bin/(true|echo|ls|uname)$", out, re.M), out
