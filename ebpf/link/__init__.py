"""Attach programs to hooks. Every function returns a `Link` (a context manager)."""

from __future__ import annotations

from .auto import attach_program
from .base import Link, from_id, open_pinned
from .iter import IterLink, iter
from .kprobe import kprobe, kprobe_multi, kretprobe, kretsyscall, ksyscall
from .perf_event import MultiLink, PerfEventLink, attach_perf_event, perf_event
from .socket import SocketFilterLink, reuseport, socket_filter
from .tracing import lsm, raw_tracepoint, tracepoint, tracing
from .uprobe import uprobe, uprobe_multi, uretprobe
from .usdt import USDTLink, usdt, usdt_probes

__all__ = ["Link", "SocketFilterLink", "from_id", "open_pinned", "reuseport", "socket_filter"]
__all__ += [
    "IterLink",
    "MultiLink",
    "PerfEventLink",
    "USDTLink",
    "attach_perf_event",
    "attach_program",
    "iter",
    "kprobe",
    "kprobe_multi",
    "kretprobe",
    "kretsyscall",
    "ksyscall",
    "lsm",
    "perf_event",
    "raw_tracepoint",
    "tracepoint",
    "tracing",
    "uprobe",
    "uprobe_multi",
    "uretprobe",
    "usdt",
    "usdt_probes",
]
