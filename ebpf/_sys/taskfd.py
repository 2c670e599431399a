"""BPF_TASK_FD_QUERY: which program a process's perf event / raw tracepoint descriptor
runs, and what it is attached to."""

from __future__ import annotations

import ctypes
import errno
from dataclasses import dataclass

from ..errors import SyscallError
from .syscall import bpf_errno
from .types import BPF_TASK_FD_QUERY, TaskFdQueryAttr

__all__ = ["FD_TYPES", "TaskFdInfo", "task_fd_query"]

#: enum bpf_task_fd_type, by value
FD_TYPES = ("raw_tracepoint", "tracepoint", "kprobe", "kretprobe", "uprobe", "uretprobe")


# not a descriptor with a program (ENOENT, ENOTSUPP = 524 for other perf events, EINVAL
# for other files), or gone meanwhile (EBADF, ESRCH)
_NOT_BPF = frozenset({errno.ENOENT, errno.EBADF, errno.ESRCH, errno.EINVAL, errno.EOPNOTSUPP,
                      524})


@dataclass(frozen=True)
class TaskFdInfo:
    """What BPF_TASK_FD_QUERY reports: the program id, the kind of attachment
    (``FD_TYPES``), the tracepoint / function / file name, the probe offset and
    address."""

    prog_id: int
    fd_type: int
    name: str
    probe_offset: int
    probe_addr: int


def task_fd_query(pid: int, fd: int) -> TaskFdInfo | None:
    """The program behind descriptor `fd` of process `pid`, or None when that
    descriptor has no BPF program attached (or is gone)."""
    size = 256
    while True:
        buf = ctypes.create_string_buffer(size)
        attr = TaskFdQueryAttr(pid=pid, fd=fd, buf=ctypes.addressof(buf), buf_len=size)
        ret = bpf_errno(BPF_TASK_FD_QUERY, attr)
        if ret == -errno.ENOSPC and size < 1 << 16:
            size *= 4
            continue
        if -ret in _NOT_BPF:
            return None
        if ret < 0:
            raise SyscallError(-ret, f"bpf(BPF_TASK_FD_QUERY) of pid {pid} fd {fd}")
        return TaskFdInfo(int(attr.prog_id), int(attr.fd_type),
                          buf.value.decode("utf-8", "replace"), int(attr.probe_offset),
                          int(attr.probe_addr))
