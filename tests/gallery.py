"""Helpers for the examples gallery's tests (tests/test_examples_gallery*.py); no tests
here. An example runs as a user runs it: a subprocess with a `--duration`/`--count`
bound, its stdout read line by line while it runs."""

from __future__ import annotations

import pathlib
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import IO

REPO = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


class Running:
    """An example started in the background; `wait_for` a line, then `finish`.

    Two threads read its stdout (line by line, into a queue) and its stderr, so that
    `wait_for` keeps to its timeout and `finish` gets every line, also those already
    read from the pipe but not yet looked at."""

    def __init__(self, argv: Sequence[str], netns: str | None = None) -> None:
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen([*prefix, sys.executable, *argv], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []                       # stdout looked at so far
        self._pending: queue.Queue[str | None] = queue.Queue()   # None: end of stdout
        self._stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read_lines, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self._stderr.extend, args=(self.proc.stderr,),
                             daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read_lines(self, stream: IO[str]) -> None:
        for line in stream:
            self._pending.put(line)
        self._pending.put(None)

    @property
    def pid(self) -> int:
        """The example's process id (`ip netns exec` execs it: the same)."""
        return self.proc.pid

    def _fail(self, why: str) -> AssertionError:
        """Kill the example; an AssertionError with `why` and all it printed."""
        self.kill()
        return AssertionError(f"{why}:\n{''.join(self.lines)}{''.join(self._stderr)}")

    def wait_for(self, pattern: str, timeout: float = 30.0) -> str:
        """Read stdout until a line matches `pattern` (the example is ready); fails when
        the example ends or `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._pending.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._pending.put(None)                  # stays at the end for `finish`
                raise self._fail(f"the example ended before a line matching {pattern!r}")
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        raise self._fail(f"no line matching {pattern!r} within {timeout} s")

    def finish(self, timeout: float = 30.0) -> str:
        """Wait for the exit (status 0) and return all of stdout."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(f"the example still ran after {timeout} s") from None
        self._join()
        while (line := self._pending.get()) is not None:
            self.lines.append(line)
        self._pending.put(None)
        text = "".join(self.lines)
        assert self.proc.returncode == 0, text + "".join(self._stderr)
        return text

    def kill(self) -> None:
        """Kill the example if it still runs, and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._join()

    def _join(self) -> None:
        """Let the readers reach the end of the pipes, then close them."""
        for t in self._readers:
            t.join()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def run(*argv: str, netns: str | None = None, timeout: float = 60.0) -> str:
    """Run an example to its end (status 0); its stdout."""
    return Running(argv, netns).finish(timeout)


def started() -> Iterator[list[Running]]:
    """The body of a `running` fixture: a list the test adds its examples to (`start`);
    those still running afterwards (the test failed first) are killed."""
    examples: list[Running] = []
    yield examples
    for r in examples:
        r.kill()


def start(examples: list[Running], *argv: str, netns: str | None = None) -> Running:
    """Start an example in the background, killed at the end of the test."""
    r = Running(argv, netns)
    examples.append(r)
    return r
