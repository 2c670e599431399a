"""mount(2) for the pseudo file systems the library may be asked to mount (tracefs).

The library never mounts anything on its own: callers reach this only when the user
asked for it (``trace_pipe(mount=True)``, ``ebpf trace --mount``).
"""

from __future__ import annotations

import ctypes
import errno
import os

from ..errors import PermissionError, SyscallError

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
        raise PermissionError(err, f"mounting {fstype} on {target} needs CAP_SYS_ADMIN "
                                   "in the initial mount namespace's user namespace")
    raise SyscallError(err, f"mount -t {fstype} {source} {target}: {os.strerror(err)}")


__all__ = ["mount"]
