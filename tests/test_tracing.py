"""ebpf.tracing: bpf_printk lines read back from trace_pipe, the line parser, and the
tracefs-not-mounted error."""

from __future__ import annotations

import ctypes
import os
import random
import subprocess
import threading
import time

import pytest
from bpfbuild import compile_bpf
from hypothesis import given, settings
from hypothesis import strategies as st
from kernelmatrix import requires
from vmlinux import vmlinux_include_dir

import ebpf
import ebpf.link
import ebpf.tracing
from ebpf.tracing import TraceRecord, lost_events, parse_line, trace_pipe

_libc = ctypes.CDLL(None, use_errno=True)
_NR_GETPID = 39  # x86_64


def _comm() -> str:
    with open("/proc/self/comm") as f:
        return f.read().rstrip("\n")


def _first(pipe: ebpf.tracing.TracePipe, message: str) -> TraceRecord:
    """The first record carrying `message` (trace_pipe is global: other lines may come)."""
    for rec in pipe:
        if rec.message == message:
            return rec
    raise AssertionError(f"no trace line {message!r} before the deadline")


# ---------------------------------------------------------------------------- the parser

def test_parse_bpf_printk_line() -> None:
    line = "         python3-4242    [001] d..31  1785.378156: bpf_trace_printk: ebpf-test 42 7"
    assert parse_line(line) == TraceRecord(
        task="python3", pid=4242, cpu=1, flags="d..31", timestamp=1785.378156,
        message="ebpf-test 42 7", event="bpf_trace_printk", tgid=None, raw=line)


def test_parse_variants() -> None:
    # record-tgid on (tgid unknown and known), a task name with spaces and dashes
    rec = parse_line("   Web Content-1-2   (-------) [003] d..31 12.500000: bpf_trace_printk: a: b")
    assert rec is not None
    assert (rec.task, rec.pid, rec.tgid, rec.cpu, rec.message) == ("Web Content-1", 2, None, 3,
                                                                    "a: b")
    rec = parse_line("            bash-30810   (  30800) [000] ...1.  1767.396333: "
                     "tracing_mark_write: hi")
    assert rec is not None and (rec.pid, rec.tgid, rec.event) == (30810, 30800,
                                                                   "tracing_mark_write")
    # irq-info off, a counter clock, a function-tracer line (no event name)
    rec = parse_line("          <idle>-0       [003] 123456789: do_idle <-cpu_startup_entry")
    assert rec is not None
    assert (rec.task, rec.flags, rec.timestamp, rec.event, rec.message) == (
        "<idle>", "", 123456789.0, "", "do_idle <-cpu_startup_entry")
    # a message of its own that looks like a context column
    rec = parse_line("a-1 [2] 3.0: x-5 [003] ...1. 9.000000: bpf_trace_printk: m")
    assert rec is not None and (rec.task, rec.pid, rec.message) == ("a", 1,
                                                                    "x-5 [003] ...1. 9.000000: "
                                                                    "bpf_trace_printk: m")
    assert parse_line("a continuation line") is None
    assert parse_line("") is None
    assert lost_events("CPU:3 [LOST 1234 EVENTS]") == (3, 1234)
    assert lost_events("CPU:3 [LOST EVENTS]") is None


_comms = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")),
                 min_size=1, max_size=15).filter(lambda s: not s[0].isspace())
_messages = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=80)


@settings(max_examples=300, deadline=None)
@given(task=_comms, pid=st.integers(0, 4194304), cpu=st.integers(0, 8191),
       flags=st.sampled_from(["....", "d..1", "...1.", "d.h3.", "dNs21", "Xbrhs"]),
       sec=st.integers(0, 10**9), usec=st.integers(0, 999999),
       tgid=st.none() | st.integers(0, 4194304),
       event=st.from_regex(r"[a-z_][a-z0-9_]{0,30}", fullmatch=True), message=_messages)
def test_parse_kernel_layout(task: str, pid: int, cpu: int, flags: str, sec: int, usec: int,
                             tgid: int | None, event: str, message: str) -> None:
    """Lines written in the kernel's layout (trace_print_context: "%16s-%-7d ",
    "(%7d) " with record-tgid, "[%03d] ", the irq-info flags, "%5llu.%06lu: ") parse
    back into what was written, whatever the command name and message hold."""
    line = f"{task:>16}-{pid:<7} "
    if tgid is not None:
        line += f"({tgid:7d}) "
    line += f"[{cpu:03d}] {flags} {sec:5d}.{usec:06d}: {event}: {message}"
    rec = parse_line(line + "\n")
    assert rec is not None
    assert (rec.task, rec.pid, rec.tgid, rec.cpu, rec.flags, rec.event, rec.message) == (
        task, pid, tgid, cpu, flags, event, message)
    assert rec.timestamp == pytest.approx(sec + usec / 1e6, abs=1e-6)
    assert rec.raw == line


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parse_never_raises(line: str) -> None:
    rec = parse_line(line)
    assert rec is None or rec.raw == line.rstrip("\n")


# ---------------------------------------------------------------------------- tracefs

def test_not_mounted_says_how_to_mount(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(ebpf.NotSupportedError) as exc:
        trace_pipe(tracefs=os.fspath(tmp_path))
    assert "mount -t tracefs tracefs /sys/kernel/tracing" in str(exc.value)
    assert "mount=True" in str(exc.value)
    assert os.listdir(tmp_path) == []  # nothing mounted


@pytest.mark.kernel
def test_mount_when_asked(tmp_path: os.PathLike[str]) -> None:
    target = os.fspath(tmp_path)
    try:
        with trace_pipe(tracefs=target, mount=True, timeout=0) as pipe:
            assert pipe.path == os.path.join(target, "trace_pipe")
        with open("/proc/self/mounts") as f:
            assert any(ln.split()[1:3] == [target, "tracefs"] for ln in f)
    finally:
        subprocess.run(["umount", target], check=False, capture_output=True)


@pytest.mark.kernel
def test_close_on_exec_and_close(tracefs: str) -> None:
    pipe = trace_pipe(tracefs=tracefs, timeout=0)
    with pipe:
        fd = pipe.fileno()
        assert os.get_inheritable(fd) is False
        assert os.readlink(f"/proc/self/fd/{fd}") == os.path.join(tracefs, "trace_pipe")
    assert pipe.closed
    with pytest.raises(ebpf.ClosedError):
        pipe.fileno()


@pytest.mark.kernel
def test_timeout_ends_iteration(tracefs: str) -> None:
    with trace_pipe(tracefs=tracefs) as pipe:
        pipe.drain()
        start = time.monotonic()
        with pytest.raises(ebpf.DeadlineExceededError):
            pipe.read(timeout=0.2)
        assert 0.15 < time.monotonic() - start < 2
    start = time.monotonic()
    with trace_pipe(tracefs=tracefs, timeout=0.3) as pipe:
        # other writers may add lines meanwhile; iteration still ends at the deadline
        for _ in pipe:
            pass
    assert 0.25 < time.monotonic() - start < 3


@pytest.mark.kernel
def test_trace_marker_line(tracefs: str) -> None:
    """A line written to trace_marker by this thread comes back with its pid and text."""
    marker = f"ebpf-marker-{random.getrandbits(48):x}"
    with trace_pipe(tracefs=tracefs, timeout=5) as pipe:
        pipe.drain()
        with open(os.path.join(tracefs, "trace_marker"), "w") as f:
            f.write(marker + "\n")
        rec = _first(pipe, marker)
    assert rec.pid == threading.get_native_id()
    assert rec.event == "tracing_mark_write"


# ---------------------------------------------------------------------------- bpf_printk

@requires("helper:RAW_TRACEPOINT:trace_printk", min_kernel="4.17")
def test_bpf_printk_record(tracefs: str) -> None:
    spec = ebpf.load_collection_spec(
        compile_bpf("tracing_printk", extra_flags=[f"-I{vmlinux_include_dir()}"]))
    tid = threading.get_native_id()
    marker = random.getrandbits(31) | 1
    spec.variables["target_pid"].set(tid)
    spec.variables["marker"].set(marker)
    want = f"ebpf-test 42 {marker}"
    with ebpf.Collection(spec) as coll, trace_pipe(tracefs=tracefs, timeout=10) as pipe:
        pipe.drain()
        with ebpf.link.raw_tracepoint(coll.programs["printk_getpid"], "sys_enter"):
            _libc.syscall(_NR_GETPID)
            cpu = int(coll.maps["last_cpu"][0])
            rec = _first(pipe, want)
    assert rec.event == "bpf_trace_printk"
    assert rec.pid == tid == os.getpid()
    assert rec.task == _comm()
    assert rec.cpu == cpu
    assert rec.timestamp > 0
    assert len(rec.flags) in (4, 5)
