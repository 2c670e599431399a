"""Pinning maps on bpffs (`Map.pin`), and the policy for reusing pinned maps: a pin is
reused or made only where no other user could have placed or could swap the object.
Imported on first use: creating a map that is not pinned does not load it (process
start, issue 15)."""

from __future__ import annotations

import errno
import os
import stat as _stat

from .._sys import ops as _ops
from .._sys import validate as _validate
from ..errors import InvalidArgumentError, SyscallError

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from .base import MapState

__all__ = ["check_pin_location", "not_bpffs", "on_bpffs", "pin", "try_obj_get"]


def check_pin_location(directory: str, pin_file: str) -> None:
    """Refuse to reuse or pin where another user could have put or could swap the object:
    the directory must belong to root or us and be writable only by its owner (or be
    sticky, like /sys/fs/bpf), and an existing pin must be ours, not a symlink."""
    trusted = (0, os.geteuid())
    try:
        d = os.stat(directory)
    except FileNotFoundError:
        return                              # pinning fails later, naming the path
    if d.st_uid not in trusted or (d.st_mode & 0o022 and not d.st_mode & _stat.S_ISVTX):
        from ..errors import PermissionError  # refusing only (process start)
        raise PermissionError(errno.EPERM, (
            f"pin directory {directory} belongs to uid {d.st_uid} or is writable by other "
            "users, who could substitute pinned maps; use a directory only root (or this "
            "user) can write"))
    try:
        f = os.lstat(pin_file)
    except FileNotFoundError:
        return
    if _stat.S_ISLNK(f.st_mode) or f.st_uid not in trusted:
        what = "a symlink" if _stat.S_ISLNK(f.st_mode) else f"owned by uid {f.st_uid}"
        from ..errors import PermissionError  # refusing only (process start)
        raise PermissionError(errno.EPERM, (
            f"{pin_file} is {what}; refusing to reuse a pinned map another user could "
            "have placed there"))


def try_obj_get(path: str) -> int | None:
    """The descriptor of the object pinned at `path`, or None when nothing is."""
    try:
        return _ops.obj_get(path)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            return None
        if e.errno == errno.EPERM and not on_bpffs(os.path.dirname(path) or "."):
            raise not_bpffs(path) from None
        raise


def on_bpffs(path: str) -> bool:
    """Whether `path` is on a bpf filesystem (False when that cannot be told)."""
    from .._sys.prog import is_bpffs  # only to explain a failed pin: not on import

    try:
        return is_bpffs(path)
    except OSError:
        return False


def not_bpffs(path: str) -> Exception:
    """The error for a pin path outside any bpffs."""
    return InvalidArgumentError(
        f"{path} is not on a bpf filesystem (mount one: mount -t bpf bpf /sys/fs/bpf)")


def pin(m: MapState, path: str | os.PathLike[str]) -> None:
    """`m.pin(path)`: see `Map.pin`."""
    p = _validate.path(path, "pin path")
    try:
        with m._fd.hold() as fd:
            _ops.obj_pin(fd, p)
    except SyscallError as e:
        if e.errno == errno.EEXIST:
            raise SyscallError(e.errno, f"pin map {m._name!r}: {p} already exists") \
                from None
        if e.errno == errno.EPERM and not on_bpffs(os.path.dirname(p) or "."):
            raise not_bpffs(p) from None
        if e.errno == errno.ENOENT:
            raise SyscallError(e.errno, f"pin map {m._name!r}: directory of {p} does "
                                        "not exist") from None
        raise
    m._pinned = p
