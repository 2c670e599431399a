"""mount(2) for the pseudo file systems the library may be asked to mount (tracefs),
and the new mount API (fsopen/fsconfig/fsmount) for a BPF file system with delegation
options, made without a mount point (`ebpf.token`).

The library never mounts anything on its own: callers reach this only when the user
asked for it (``trace_pipe(mount=True)``, ``ebpf trace --mount``, `ebpf.token.delegate`).
"""

from __future__ import annotations

import ctypes
import errno
import os

from ..errors import SyscallError

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.mount.restype = ctypes.c_int


def mount(source: str, target: str, fstype: str) -> None:
    """Mount `fstype` (from `source`) on the existing directory `target`.

    Raises `ebpf.PermissionError` without CAP_SYS_ADMIN, `SyscallError` otherwise."""
    rc = _libc.mount(os.fsencode(source), os.fsencode(target), os.fsencode(fstype), 0, None)
    if rc == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EPERM:
        from ..errors import PermissionError  # on an EPERM only (process start)
        raise PermissionError(err, f"mounting {fstype} on {target} needs CAP_SYS_ADMIN "
                                   "in the initial mount namespace's user namespace")
    raise SyscallError(err, f"mount -t {fstype} {source} {target}: {os.strerror(err)}")


# the new mount API's system calls have one number on every architecture
_NR_FSOPEN, _NR_FSCONFIG, _NR_FSMOUNT = 430, 431, 432
_FSOPEN_CLOEXEC = _FSMOUNT_CLOEXEC = 1
_FSCONFIG_SET_STRING, _FSCONFIG_CMD_CREATE = 1, 6
_libc.syscall.restype = ctypes.c_long


def _fs_error(err: int, what: str) -> SyscallError:
    if err == errno.EPERM:
        from ..errors import PermissionError  # on an EPERM only (process start)
        return PermissionError(err, f"{what}: operation not permitted (delegation options "
                                    "need CAP_SYS_ADMIN in the initial user namespace)")
    if err == errno.ENOSYS:
        return SyscallError(err, f"{what}: the kernel has no new mount API (5.2+)")
    return SyscallError(err, f"{what}: {os.strerror(err)}")


def fs_open(fstype: str) -> int:
    """fsopen(2): a new (close-on-exec) file system context for `fstype`; its user
    namespace is the caller's."""
    fd = int(_libc.syscall(_NR_FSOPEN, os.fsencode(fstype), _FSOPEN_CLOEXEC))
    if fd < 0:
        raise _fs_error(ctypes.get_errno(), f"fsopen({fstype})")
    return fd


def fs_set_string(fs_fd: int, key: str, value: str) -> None:
    """fsconfig(FSCONFIG_SET_STRING): set mount option `key` to `value`."""
    rc = _libc.syscall(_NR_FSCONFIG, fs_fd, _FSCONFIG_SET_STRING, key.encode(),
                       value.encode(), 0)
    if rc < 0:
        raise _fs_error(ctypes.get_errno(), f"fsconfig {key}={value}")


def fs_mount(fs_fd: int) -> int:
    """fsconfig(FSCONFIG_CMD_CREATE) then fsmount(2): the file system of context
    `fs_fd`, as a detached mount (a close-on-exec O_PATH descriptor of its root)."""
    rc = _libc.syscall(_NR_FSCONFIG, fs_fd, _FSCONFIG_CMD_CREATE, None, None, 0)
    if rc < 0:
        raise _fs_error(ctypes.get_errno(), "fsconfig(FSCONFIG_CMD_CREATE)")
    fd = int(_libc.syscall(_NR_FSMOUNT, fs_fd, _FSMOUNT_CLOEXEC, 0))
    if fd < 0:
        raise _fs_error(ctypes.get_errno(), "fsmount")
    return fd


__all__ = ["fs_mount", "fs_open", "fs_set_string", "mount"]
