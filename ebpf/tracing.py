"""Reading the kernel's trace buffer: what ``bpf_printk`` writes, as parsed records.

    import ebpf.tracing

    with ebpf.tracing.trace_pipe(timeout=5) as pipe:
        for rec in pipe:
            print(rec.task, rec.pid, rec.cpu, rec.timestamp, rec.message)

`trace_pipe()` opens ``trace_pipe`` of tracefs (``/sys/kernel/tracing``, or
``/sys/kernel/debug/tracing`` when debugfs is mounted). Reading it *consumes* the
lines: the buffer is global to the system, so two readers share its lines and
whatever else writes to it (other BPF programs, ``trace_marker``, enabled events)
shows up too — filter on a marker of your own. tracefs is not mounted on every
system; the library mounts it only when asked (``mount=True``).

Each line of the default trace format looks like::

    <task>-<pid> [(<tgid>)] [<cpu>] <flags> <timestamp>: <event>: <message>

for example ``python3-1234 [001] d..31 1785.378156: bpf_trace_printk: hello``.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import logging
import os
import re
import select
import time
from collections.abc import Iterator

from ._sys.fd import FD
from ._sys.mount import mount as _mount
from .errors import DeadlineExceededError, InvalidArgumentError, NotSupportedError, SyscallError

_log = logging.getLogger("ebpf")

TRACEFS_PATHS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
"""Where tracefs is looked for, in order; the first is where ``mount=True`` mounts it."""

MOUNT_HINT = "mount it with `mount -t tracefs tracefs /sys/kernel/tracing` (or pass mount=True)"

_READ_SIZE = 1 << 16


@dataclasses.dataclass(frozen=True, slots=True)
class TraceRecord:
    """One line of the trace buffer.

    `task` is the command name the kernel remembers for `pid` (``<...>`` when it
    has none), `cpu` the CPU the line was written on, `flags` the context column
    (irqs-off, need-resched, hardirq/softirq, preempt depth, migrate-disable; empty
    when the ``irq-info`` option is off), `timestamp` the trace clock in seconds,
    `event` the writer (``bpf_trace_printk`` for ``bpf_printk``, the event or
    function name otherwise; empty when the line has none) and `message` the text
    after it. `tgid` is set when the ``record-tgid`` option is on. `raw` is the
    whole line.

    A line that is not in this format (the continuation of a message that
    contained a newline) has ``pid == -1`` and the whole line as `message`.
    """

    task: str
    pid: int
    cpu: int
    flags: str
    timestamp: float
    message: str
    event: str = ""
    tgid: int | None = None
    raw: str = ""


# Everything after "<task>-": the kernel prints the task right-aligned in 16 columns
# ("%16s-%-7d"), so with a command name of up to 15 characters the dash is column 16.
_TAIL = (
    r"(?P<pid>\d+)\s+"
    r"(?:\(\s*(?P<tgid>\d+|-+)\)\s+)?"
    r"\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s\[\]]{4,5})\s+)?"
    r"(?P<ts>\d+(?:\.\d+)?):(?: (?P<rest>.*))?"
)
_AFTER_TASK = re.compile(_TAIL, re.DOTALL)
_LINE = re.compile(r"\s*(?P<task>.+?)-" + _TAIL, re.DOTALL)
_TASK_WIDTH = 16
_EVENT = re.compile(r"(?P<event>[^\s:]+):(?: |$)")
_LOST = re.compile(r"CPU:(?P<cpu>\d+) \[LOST (?P<count>\d+) EVENTS\]")


def parse_line(line: str) -> TraceRecord | None:
    """Parse one line of ``trace``/``trace_pipe`` (without its newline); None when the
    line is not in the trace format."""
    line = line.rstrip("\n")
    task: str | None = None
    m = None
    if line[_TASK_WIDTH:_TASK_WIDTH + 1] == "-":  # the usual layout: exact columns
        m = _AFTER_TASK.fullmatch(line, _TASK_WIDTH + 1)
        if m is not None:
            task = line[:_TASK_WIDTH].lstrip(" ")
    if m is None:  # a longer name, or another layout: the first "-<pid> [<cpu>]" ends it
        m = _LINE.fullmatch(line)
        if m is None:
            return None
        task = m.group("task")
    assert task is not None
    rest = m.group("rest") or ""
    event = ""
    e = _EVENT.match(rest)
    if e is not None:
        event = e.group("event")
        rest = rest[e.end():]
    tgid = m.group("tgid")
    return TraceRecord(
        task=task,
        pid=int(m.group("pid")),
        cpu=int(m.group("cpu")),
        flags=m.group("flags") or "",
        timestamp=float(m.group("ts")),
        message=rest,
        event=event,
        tgid=int(tgid) if tgid is not None and tgid[0] != "-" else None,
        raw=line,
    )


def lost_events(line: str) -> tuple[int, int] | None:
    """``(cpu, count)`` for the kernel's ``CPU:N [LOST M EVENTS]`` line, else None."""
    m = _LOST.fullmatch(line.rstrip("\n"))
    if m is None:
        return None
    return int(m.group("cpu")), int(m.group("count"))


def find_tracefs(tracefs: str | None = None, *, mount: bool = False) -> str:
    """The tracefs directory holding ``trace_pipe``: `tracefs` if given, else the first
    of `TRACEFS_PATHS` where it is mounted.

    When it is not mounted, raises `NotSupportedError` saying how to mount it, or,
    with ``mount=True``, mounts tracefs there (on `tracefs`, or
    ``/sys/kernel/tracing``) and leaves it mounted."""
    candidates = (tracefs,) if tracefs is not None else TRACEFS_PATHS
    for path in candidates:
        if os.path.exists(os.path.join(path, "trace_pipe")):
            return path
    target = tracefs if tracefs is not None else TRACEFS_PATHS[0]
    if not mount:
        where = f"at {tracefs}" if tracefs is not None else "at " + " or ".join(TRACEFS_PATHS)
        raise NotSupportedError("tracefs", f"not mounted {where}; {MOUNT_HINT}", errno.ENOENT)
    if not os.path.isdir(target):
        raise InvalidArgumentError(f"cannot mount tracefs on {target}: not a directory")
    _mount("tracefs", target, "tracefs")
    _log.info("mounted tracefs on %s (asked for with mount=True)", target)
    if not os.path.exists(os.path.join(target, "trace_pipe")):
        raise NotSupportedError("tracefs", f"mounted on {target} but it has no trace_pipe",
                                errno.ENOENT)
    return target


class TracePipe:
    """An open ``trace_pipe``: iterate it for `TraceRecord`s, or `read` one at a time.

    Non-blocking underneath (the descriptor is polled), close-on-exec, a context
    manager. Iteration ends at the deadline given by ``timeout`` when the pipe was
    opened (never when it was None). Not meant for use from several threads at once.
    """

    def __init__(self, path: str, timeout: float | None = None) -> None:
        """Open `path` (a ``trace_pipe`` file); see `trace_pipe()`."""
        if timeout is not None and timeout < 0:
            raise InvalidArgumentError(f"timeout must be >= 0 or None, got {timeout!r}")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise SyscallError(e.errno or errno.EIO, f"cannot open {path}: {e.strerror}") from None
        self._fd = FD(fd, "trace_pipe")
        self.path = path
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._partial = b""
        self._lines: collections.deque[str] = collections.deque()
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._fd.closed

    def fileno(self) -> int:
        """The descriptor of ``trace_pipe`` (for a selector of your own)."""
        return self._fd.fileno()

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if not self._fd.closed:
            self._poll = select.poll()
            self._fd.close()

    def __enter__(self) -> TracePipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd.fileno()}"
        return f"TracePipe({self.path!r}, {state})"

    # -- reading ----------------------------------------------------------------------

    def _fill(self, wait: float | None) -> bool:
        """Read what is there, waiting up to `wait` seconds (None: forever) for
        something; True if at least one whole line arrived."""
        with self._fd.hold() as fd:
            while True:
                try:
                    chunk = os.read(fd, _READ_SIZE)
                except BlockingIOError:
                    chunk = None
                except InterruptedError:
                    continue
                if chunk:
                    data = self._partial + chunk
                    *whole, self._partial = data.split(b"\n")
                    self._lines.extend(w.decode("utf-8", "replace") for w in whole)
                    if whole:
                        return True
                    continue
                if wait is not None and wait <= 0:
                    return False
                start = time.monotonic()
                ms = -1 if wait is None else max(1, int(wait * 1000 + 0.999))
                ready = self._poll.poll(ms)
                if wait is not None:
                    wait -= time.monotonic() - start
                    if not ready and wait <= 0:
                        return False

    def _next_line(self, deadline: float | None) -> str | None:
        while not self._lines:
            if self._fd.closed:
                raise self._fd.closed_error()
            wait = None if deadline is None else deadline - time.monotonic()
            if not self._fill(wait):
                return None
        return self._lines.popleft()

    def _record(self, deadline: float | None) -> TraceRecord | None:
        while True:
            line = self._next_line(deadline)
            if line is None:
                return None
            if not line:
                continue
            rec = parse_line(line)
            if rec is not None:
                return rec
            lost = lost_events(line)
            if lost is not None:
                _log.warning("trace buffer of CPU %d lost %d events", *lost)
                continue
            return TraceRecord(task="", pid=-1, cpu=-1, flags="", timestamp=0.0,
                               message=line, raw=line)

    def read(self, timeout: float | None = None) -> TraceRecord:
        """The next record, waiting up to `timeout` seconds (None: until the pipe's own
        deadline, or forever); raises `DeadlineExceededError` when none came."""
        deadline = self._deadline
        if timeout is not None:
            mine = time.monotonic() + timeout
            deadline = mine if deadline is None else min(deadline, mine)
        rec = self._record(deadline)
        if rec is None:
            raise DeadlineExceededError("no trace_pipe line before the deadline")
        return rec

    def __iter__(self) -> Iterator[TraceRecord]:
        """Records until the deadline (forever without one)."""
        while True:
            rec = self._record(self._deadline)
            if rec is None:
                return
            yield rec

    def drain(self) -> int:
        """Consume and drop every line already in the buffer; returns how many."""
        dropped = len(self._lines)
        self._lines.clear()
        while self._fill(0):
            dropped += len(self._lines)
            self._lines.clear()
        return dropped


def trace_pipe(*, tracefs: str | None = None, mount: bool = False,
               timeout: float | None = None) -> TracePipe:
    """Open the kernel's ``trace_pipe`` (what ``bpf_printk`` writes) for reading.

    `tracefs` is the directory tracefs is mounted on (default: ``/sys/kernel/tracing``,
    then ``/sys/kernel/debug/tracing``). When it is not mounted this raises
    `NotSupportedError` saying how to mount it, unless ``mount=True``, which mounts it
    (and leaves it mounted). Iterating the result yields `TraceRecord`s until `timeout`
    seconds have passed (None: forever); close it, or use it as a context manager.
    """
    root = find_tracefs(tracefs, mount=mount)
    return TracePipe(os.path.join(root, "trace_pipe"), timeout)


__all__ = [
    "MOUNT_HINT",
    "TRACEFS_PATHS",
    "TracePipe",
    "TraceRecord",
    "find_tracefs",
    "lost_events",
    "parse_line",
    "trace_pipe",
]
