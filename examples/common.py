"""What the gallery's examples share: building their BPF C with `ebpf build`, mounting
tracefs for tracepoints, a run-for-N-seconds loop and the usual command-line options.

Every example is a BPF C file in examples/bpf/ plus a Python program; run one as root:

    sudo python3 examples/minimal.py --duration 5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))  # run from a checkout without installing

import ebpf  # noqa: E402
import ebpf.tracing  # noqa: E402

TRACEFS = "/sys/kernel/tracing"


def source(name: str) -> str:
    """The path of examples/bpf/<name>.bpf.c."""
    return os.path.join(HERE, "bpf", f"{name}.bpf.c")


def load_spec(name: str) -> ebpf.CollectionSpec:
    """Compile examples/bpf/<name>.bpf.c (`ebpf build`: clang, vmlinux.h for the running
    kernel, CO-RE flags; cached by content in ~/.cache/ebpf) and parse the object."""
    from ebpf.gen.build import build

    return ebpf.load_collection_spec(str(build(source(name))))


@contextlib.contextmanager
def tracefs() -> Iterator[str]:
    """tracefs mounted at /sys/kernel/tracing for the duration (tracepoints and
    trace_pipe need it); unmounted afterwards if we mounted it."""
    with open("/proc/self/mounts") as f:
        mounted = any(line.split()[1] == TRACEFS for line in f if line.strip())
    if not mounted:
        subprocess.run(["mount", "-t", "tracefs", "tracefs", TRACEFS], check=True)
    try:
        yield TRACEFS
    finally:
        if not mounted:
            subprocess.run(["umount", TRACEFS], check=False)


def parser(doc: str | None, *, count: bool = False) -> argparse.ArgumentParser:
    """An argument parser whose description is the first paragraph of `doc`, with
    ``--duration SECONDS`` (0: until Ctrl-C) and, if asked, ``--count N``."""
    text = (doc or "").strip().split("\n\n")
    p = argparse.ArgumentParser(description=text[0],
                                epilog="\n\n".join(text[1:]) or None,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--duration", type=float, default=0.0, metavar="SECONDS",
                   help="stop after this many seconds (default: run until Ctrl-C)")
    if count:
        p.add_argument("-c", "--count", type=int, default=0, metavar="N",
                       help="stop after N events (default: no limit)")
    return p


class Clock:
    """Time left of a ``--duration`` run (forever when it is 0)."""

    def __init__(self, duration: float) -> None:
        self.start = time.monotonic()
        self.end = self.start + duration if duration > 0 else None

    def left(self, cap: float = 0.5) -> float:
        """Seconds to wait for the next event: at most `cap`, 0 when time is up."""
        if self.end is None:
            return cap
        return max(0.0, min(cap, self.end - time.monotonic()))

    @property
    def running(self) -> bool:
        """Whether there is time left."""
        return self.end is None or time.monotonic() < self.end

    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.start


def address(family: int, words: Sequence[int]) -> str:
    """An address from an event's ``__u32 addr[4]`` (bytes in network order; IPv4 in the
    first word when `family` is AF_INET), as text."""
    raw = struct.pack("=4I", *words)
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    return socket.inet_ntop(socket.AF_INET6, raw)


def comm(raw: bytes | bytearray) -> str:
    """A NUL-padded ``char comm[16]`` as text."""
    return bytes(raw).split(b"\0", 1)[0].decode(errors="replace")


def follow_trace(pipe: ebpf.tracing.TracePipe, wanted: Callable[[ebpf.tracing.TraceRecord], bool],
                 duration: float, count: int = 0) -> int:
    """Print the trace_pipe lines `wanted` keeps (the buffer is system-wide: other
    programs write to it too) for `duration` seconds (0: until Ctrl-C) or until `count`
    lines were shown (0: no limit); how many were shown."""
    shown = 0
    clock = Clock(duration)
    try:
        while clock.running and not (count and shown >= count):
            try:
                rec = pipe.read(timeout=clock.left())
            except ebpf.DeadlineExceededError:
                continue
            if wanted(rec):
                print(rec.raw, flush=True)
                shown += 1
    except KeyboardInterrupt:
        pass
    return shown
