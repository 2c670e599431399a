"""bpf(2) wrappers for programs: load, test run, ids, stats, attach, and fs helpers.

`prog_load` and `prog_test_run` return ``-errno`` instead of raising because
their callers turn specific errnos (a verifier log, ENOSPC) into richer
errors. The rest raise the typed exceptions of `ebpf.errors`.

The generic object commands (pin, get, info, BTF read-back) are in
`ebpf._sys.ops`.
"""

from __future__ import annotations

import ctypes
import functools
import os

from . import types as _t
from . import validate
from .ops import get_fd_by_id, get_next_id
from .syscall import bpf, bpf_errno
from .types import (
    BPF_ENABLE_STATS,
    BPF_PROG_ATTACH,
    BPF_PROG_DETACH,
    BPF_PROG_GET_FD_BY_ID,
    BPF_PROG_GET_NEXT_ID,
    BPF_PROG_LOAD,
    BPF_PROG_TEST_RUN,
    ProgLoadAttr,
)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from .types import ProgTestRunAttr

__all__ = [
    "BPF_FS_MAGIC",
    "anon_inode_kind",
    "bpf_privileged",
    "effective_capabilities",
    "enable_stats",
    "is_bpffs",
    "prog_attach",
    "prog_detach",
    "prog_get_fd_by_id",
    "prog_get_next_id",
    "prog_load",
    "prog_test_run",
]

BPF_FS_MAGIC = 0xCAFE4A11

def prog_load(attr: ProgLoadAttr) -> int:
    """BPF_PROG_LOAD: the new program fd (close-on-exec), or ``-errno``.

    A load interrupted by a signal (the verifier returns EAGAIN when one is pending) is
    retried by `bpf_errno` with the deferrable signals blocked; ``-EAGAIN`` after that
    means it kept being interrupted (`ebpf._sys.syscall.interrupted_error`).
    """
    return bpf_errno(BPF_PROG_LOAD, attr)


def prog_test_run(attr: ProgTestRunAttr) -> int:
    """BPF_PROG_TEST_RUN: 0 or ``-errno``; results are written back into `attr`."""
    return bpf_errno(BPF_PROG_TEST_RUN, attr)


def prog_get_fd_by_id(prog_id: int) -> int:
    """BPF_PROG_GET_FD_BY_ID: a new close-on-exec fd (SyscallError ENOENT when missing)."""
    return get_fd_by_id(BPF_PROG_GET_FD_BY_ID, prog_id)


def prog_get_next_id(start_id: int) -> int | None:
    """BPF_PROG_GET_NEXT_ID: the smallest program id above `start_id`, None at the end."""
    return get_next_id(BPF_PROG_GET_NEXT_ID, start_id)


def enable_stats(stats_type: int) -> int:
    """BPF_ENABLE_STATS: an fd (close-on-exec) that keeps the statistics on while open."""
    return bpf(BPF_ENABLE_STATS, _t.EnableStatsAttr(type=stats_type))  # types_misc.py on use


def prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    """BPF_PROG_ATTACH `prog_fd` to `target_fd` (a cgroup directory, a socket, ...)."""
    attr = _t.ProgAttachAttr()  # types_misc.py on use
    for field, value in (("attach_bpf_fd", prog_fd), ("attach_type", attach_type),
                         ("attach_flags", flags), ("target_fd", target_fd)):
        validate.put(attr, field, value)
    bpf(BPF_PROG_ATTACH, attr)


def prog_detach(target_fd: int, prog_fd: int, attach_type: int) -> None:
    """BPF_PROG_DETACH `prog_fd` from `target_fd`."""
    attr = _t.ProgAttachAttr()  # types_misc.py on use
    for field, value in (("attach_bpf_fd", prog_fd), ("attach_type", attach_type),
                         ("target_fd", target_fd)):
        validate.put(attr, field, value)
    bpf(BPF_PROG_DETACH, attr)


@functools.cache
def _statfs() -> tuple[Any, type[ctypes.Structure]]:
    """statfs(2) through libc and its struct, made on first use (process start)."""

    class Statfs(ctypes.Structure):
        # struct statfs on 64-bit Linux: f_type comes first and is a long everywhere
        _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 120)]

    fn = ctypes.CDLL(None, use_errno=True).statfs
    fn.argtypes = [ctypes.c_char_p, ctypes.POINTER(Statfs)]
    fn.restype = ctypes.c_int
    return fn, Statfs


def is_bpffs(path: str | os.PathLike[str]) -> bool:
    """Whether `path` (a file or directory that exists) is on a bpf filesystem."""
    statfs, struct = _statfs()
    buf: Any = struct()
    if statfs(os.fsencode(os.fspath(path)), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fspath(path))
    return (int(buf.f_type) & 0xFFFFFFFF) == BPF_FS_MAGIC


def anon_inode_kind(fd: int) -> str:
    """The anon inode name behind `fd` ("bpf-prog", "bpf-map", "bpf_link", ...), or ""."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""
    prefix = "anon_inode:"
    return target[len(prefix):] if target.startswith(prefix) else ""


def effective_capabilities() -> int:
    """The process's effective capability mask (CapEff of /proc/self/status), 0 if unknown."""
    from .caps import read_privileges  # on use: loading needs no caps (process start)

    return read_privileges().effective


def bpf_privileged() -> bool:
    """Whether the process may load any program type: CAP_SYS_ADMIN, or CAP_BPF + CAP_PERFMON."""
    from .caps import CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN, read_privileges  # (see above)

    priv = read_privileges()
    return priv.has(CAP_SYS_ADMIN) or (priv.has(CAP_BPF) and priv.has(CAP_PERFMON))
