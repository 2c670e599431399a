"""The one entry point into bpf(2) (and the other syscalls the library makes).

Nothing outside `ebpf._sys` calls into the kernel. Hot paths (map operations)
call `raw_syscall(NR_BPF, cmd, buf, size)` themselves with a preallocated
attr buffer and check `ctypes.get_errno()` on a negative result.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

from ..errors import SyscallError, from_errno
from .types import Cmd

_NR_BPF = {"x86_64": 321, "aarch64": 280, "arm64": 280, "riscv64": 280, "s390x": 351,
           "ppc64le": 361, "armv7l": 386, "i686": 357, "loongarch64": 280}
_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "arm64": 241, "riscv64": 241,
                       "s390x": 331, "ppc64le": 319, "armv7l": 364, "i686": 336,
                       "loongarch64": 241}

_machine = os.uname().machine
try:
    NR_BPF = _NR_BPF[_machine]
    NR_PERF_EVENT_OPEN = _NR_PERF_EVENT_OPEN[_machine]
except KeyError:  # pragma: no cover - exotic architecture
    NR_BPF = NR_PERF_EVENT_OPEN = -1

_libc = ctypes.CDLL(None, use_errno=True)
raw_syscall = _libc.syscall
get_errno = ctypes.get_errno
byref = ctypes.byref


def bpf(cmd: int, attr: Any, size: int | None = None, retry_eagain: int = 0) -> int:
    """Run bpf(cmd, &attr, size); return the non-negative result or raise.

    Errors become typed exceptions (`ebpf.errors.from_errno`). EINTR is always
    retried; EAGAIN up to `retry_eagain` times (BPF_PROG_LOAD can return it
    spuriously, libbpf retries it too).
    """
    if size is None:
        size = ctypes.sizeof(attr)
    ref = byref(attr)
    while True:
        ret: int = raw_syscall(NR_BPF, cmd, ref, size)
        if ret >= 0:
            return ret
        err = get_errno()
        if err == errno.EINTR:
            continue
        if err == errno.EAGAIN and retry_eagain > 0:
            retry_eagain -= 1
            continue
        raise from_errno(err, f"bpf({_cmd_name(cmd)})")


def bpf_errno(cmd: int, attr: Any, size: int | None = None) -> int:
    """Like `bpf` but returns -errno instead of raising (for probes and callers
    that map specific errnos themselves)."""
    if size is None:
        size = ctypes.sizeof(attr)
    ref = byref(attr)
    while True:
        ret: int = raw_syscall(NR_BPF, cmd, ref, size)
        if ret >= 0:
            return ret
        err = get_errno()
        if err != errno.EINTR:
            return -err


def perf_event_open(attr: Any, pid: int, cpu: int, group_fd: int, flags: int) -> int:
    """perf_event_open(2); the caller must pass PERF_FLAG_FD_CLOEXEC in flags."""
    while True:
        ret: int = raw_syscall(NR_PERF_EVENT_OPEN, byref(attr), pid, cpu, group_fd,
                               ctypes.c_ulong(flags))
        if ret >= 0:
            return ret
        err = get_errno()
        if err != errno.EINTR:
            raise from_errno(err, "perf_event_open")


def _cmd_name(cmd: int) -> str:
    try:
        return "BPF_" + Cmd(cmd).name
    except ValueError:
        return str(cmd)


__all__ = ["NR_BPF", "SyscallError", "bpf", "bpf_errno", "perf_event_open", "raw_syscall"]
