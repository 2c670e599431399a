"""The one entry point into bpf(2) (and the other syscalls the library makes).

Nothing outside `ebpf._sys` calls into the kernel. Hot paths (map operations)
call `raw_syscall(NR_BPF, cmd, buf, size)` themselves with a preallocated
attr buffer and check `ctypes.get_errno()` on a negative result.
"""

from __future__ import annotations

import ctypes
import errno
import os
from _thread import _local  # threading.local, without importing threading (process start)

from ..errors import NotSupportedError, SyscallError
from . import kernel_version
from .types import BPF_BTF_LOAD, BPF_F_TOKEN_FD, BPF_MAP_CREATE, BPF_PROG_LOAD

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

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


# Commands whose EAGAIN means "a signal arrived": the verifier stops when one is pending.
_EAGAIN_IS_SIGNAL = frozenset({BPF_PROG_LOAD})
INTERRUPT_RETRIES = 8
"""How often an interrupted bpf() command is retried (with `_deferred()` signals blocked)."""
# Signals a retried command blocks while it runs (they are delivered right after, or to
# another thread): all but those that ask the process to stop, and the synchronous faults.
# Worked out on the first retry (`_deferred`): `signal` costs ~1 ms at process start.
_KEEP = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGKILL", "SIGSTOP", "SIGSEGV", "SIGBUS",
         "SIGFPE", "SIGILL", "SIGTRAP", "SIGABRT", "SIGSYS")
_deferred_signals: frozenset[int] | None = None


def _deferred() -> frozenset[int]:
    """The signals `_retry` blocks (all valid ones but `_KEEP`)."""
    global _deferred_signals
    if _deferred_signals is None:
        import signal  # on the first retry: see _KEEP

        keep = {getattr(signal, name) for name in _KEEP}
        _deferred_signals = frozenset(signal.valid_signals()) - keep
    return _deferred_signals
# Commands that create objects the kernel may charge to RLIMIT_MEMLOCK (before 5.11);
# they are also the ones a BPF token delegates.
_CHARGED = frozenset({BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_BTF_LOAD})
_memlock_pending = True


class _TokenState(_local):
    fd = -1  # the BPF token the creating commands of this thread carry (-1: none)


token_state = _TokenState()
"""This thread's BPF token (`ebpf._sys.token.using`): MAP_CREATE, PROG_LOAD and
BTF_LOAD attrs get its fd and BPF_F_TOKEN_FD."""
# (the attr field and the flags field each command's token goes in)
_TOKEN_FIELDS = {BPF_MAP_CREATE: ("map_token_fd", "map_flags"),
                 BPF_PROG_LOAD: ("prog_token_fd", "prog_flags"),
                 BPF_BTF_LOAD: ("btf_token_fd", "btf_flags")}


def _with_token(cmd: int, attr: Any, token_fd: int) -> None:
    fields = _TOKEN_FIELDS[cmd]
    if hasattr(attr, fields[0]):  # a typed attr (raw buffers are left alone)
        setattr(attr, fields[0], token_fd)
        setattr(attr, fields[1], getattr(attr, fields[1]) | BPF_F_TOKEN_FD)


def from_errno(err: int, what: str) -> SyscallError:
    """Turn an errno from `what` into the matching typed exception."""
    msg = f"{what}: {os.strerror(err)}"
    if err == errno.EPERM:  # which capability is missing, or the kernel's policy
        from . import caps as _caps  # on an EPERM only (process start)

        return _caps.eperm_error(what)
    if err == errno.ENOMEM:  # before 5.11, RLIMIT_MEMLOCK may be what ran out
        from . import rlimit as _rlimit  # on an ENOMEM only (process start)

        note = _rlimit.memlock_note()
        if note:
            msg += f"; {note}"
    if err in (errno.EOPNOTSUPP, 524):  # 524 is the kernel-internal ENOTSUPP
        return NotSupportedError(what, os.strerror(err) if err != 524 else "ENOTSUPP", err)
    return SyscallError(err, msg)


def _before_create() -> None:
    global _memlock_pending
    _memlock_pending = False
    if kernel_version() >= (5, 11):  # memory cgroup accounting: no RLIMIT_MEMLOCK to raise
        return
    from . import rlimit as _rlimit  # only on kernels that charge it (process start)

    _rlimit.ensure_memlock()


def _interrupted(cmd: int, err: int) -> bool:
    return err == errno.EINTR or (err == errno.EAGAIN and cmd in _EAGAIN_IS_SIGNAL)


def _retry(cmd: int, ref: Any, size: int, err: int) -> tuple[int, int]:
    """Run a command interrupted with `err` again, up to INTERRUPT_RETRIES times, with
    the deferrable signals blocked in this thread: (result, errno of the last attempt)."""
    import signal  # loaded by _deferred() already; the name is needed here too

    deferred = _deferred()
    for _ in range(INTERRUPT_RETRIES):
        old = signal.pthread_sigmask(signal.SIG_BLOCK, deferred)
        try:
            ret: int = raw_syscall(NR_BPF, cmd, ref, size)
            err = get_errno() if ret < 0 else 0
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        # pending Python signal handlers run here; one that raises ends the retries
        if ret >= 0 or not _interrupted(cmd, err):
            return ret, err
    return -1, err


def interrupted_error(err: int, what: str) -> SyscallError:
    """The error of a command still interrupted after `INTERRUPT_RETRIES` retries."""
    n = INTERRUPT_RETRIES + 1
    return SyscallError(err, (
        f"{what}: interrupted by a signal {n} time{'s' if n != 1 else ''} in a row "
        f"(the kernel gives up when one is pending); retries block all signals but "
        "SIGINT, SIGTERM, SIGHUP and SIGQUIT, which kept arriving"))


def bpf(cmd: int, attr: Any, size: int | None = None, retry_eagain: int = 0) -> int:
    """Run bpf(cmd, &attr, size); return the non-negative result or raise.

    Errors become typed exceptions (`from_errno`; EPERM through
    `ebpf._sys.caps.eperm_error`). A command interrupted by a signal (EINTR, or EAGAIN
    from BPF_PROG_LOAD) is retried up to `INTERRUPT_RETRIES` times with the deferrable
    signals blocked, then raises a `SyscallError` saying it was interrupted.
    `retry_eagain` is accepted for compatibility and ignored.
    """
    if size is None:
        size = ctypes.sizeof(attr)
    if cmd in _CHARGED:
        if _memlock_pending:
            _before_create()
        if token_state.fd >= 0:
            _with_token(cmd, attr, token_state.fd)
    ref = byref(attr)
    ret: int = raw_syscall(NR_BPF, cmd, ref, size)
    if ret >= 0:
        return ret
    err = get_errno()
    if _interrupted(cmd, err):
        ret, err = _retry(cmd, ref, size, err)
        if ret >= 0:
            return ret
        if _interrupted(cmd, err):
            raise interrupted_error(err, f"bpf({_cmd_name(cmd)})")
    if err == errno.EPERM:
        from . import caps as _caps  # on an EPERM only (process start)

        raise _caps.eperm_error(f"bpf({_cmd_name(cmd)})", cmd=cmd)
    raise from_errno(err, f"bpf({_cmd_name(cmd)})")


def bpf_errno(cmd: int, attr: Any, size: int | None = None) -> int:
    """Like `bpf` but returns -errno instead of raising (for probes and callers
    that map specific errnos themselves). Interrupted commands are retried as by
    `bpf`; -EINTR/-EAGAIN after that means "still interrupted" (`interrupted_error`)."""
    if size is None:
        size = ctypes.sizeof(attr)
    if cmd in _CHARGED:
        if _memlock_pending:
            _before_create()
        if token_state.fd >= 0:
            _with_token(cmd, attr, token_state.fd)
    ref = byref(attr)
    ret: int = raw_syscall(NR_BPF, cmd, ref, size)
    if ret >= 0:
        return ret
    err = get_errno()
    if _interrupted(cmd, err):
        ret, err = _retry(cmd, ref, size, err)
        if ret >= 0:
            return ret
    return -err


def perf_event_open(attr: Any, pid: int, cpu: int, group_fd: int, flags: int) -> int:
    """perf_event_open(2); the caller must pass PERF_FLAG_FD_CLOEXEC in flags."""
    for _ in range(INTERRUPT_RETRIES + 1):
        ret: int = raw_syscall(NR_PERF_EVENT_OPEN, byref(attr), pid, cpu, group_fd,
                               ctypes.c_ulong(flags))
        if ret >= 0:
            return ret
        err = get_errno()
        if err != errno.EINTR:
            break
    else:
        raise interrupted_error(err, "perf_event_open")
    if err in (errno.EPERM, errno.EACCES):
        from . import caps as _caps  # on an EPERM only (process start)

        raise _caps.eperm_error("perf_event_open", err=err, cmd=_caps.PERF_EVENT_OPEN)
    raise from_errno(err, "perf_event_open")


def _cmd_name(cmd: int) -> str:
    from .types import Cmd  # its enum class on an error only (process start)

    try:
        return "BPF_" + Cmd(cmd).name
    except ValueError:
        return str(cmd)


__all__ = ["INTERRUPT_RETRIES", "NR_BPF", "SyscallError", "bpf", "bpf_errno", "interrupted_error",
           "perf_event_open", "raw_syscall"]
