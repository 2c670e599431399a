"""Waiting for test threads to be inside the library (not merely started)."""

from __future__ import annotations

import os
import sys
import threading
import time

_PACKAGE = os.sep + "ebpf" + os.sep


def wait_inside_library(threads: list[threading.Thread], timeout: float = 30.0) -> None:
    """Until every thread runs code of the `ebpf` package (e.g. blocked in a read).

    A fixed sleep is not enough on a busy machine: a thread may not have run yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frames = sys._current_frames()
        if all(_in_library(frames.get(t.ident or -1)) for t in threads):
            return
        time.sleep(0.01)
    raise AssertionError(f"threads not inside the library after {timeout} s")


def _in_library(frame: object) -> bool:
    while frame is not None:
        if _PACKAGE in frame.f_code.co_filename:  # type: ignore[attr-defined]
            return True
        frame = frame.f_back  # type: ignore[attr-defined]
    return False
