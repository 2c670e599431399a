"""Pinning maps on bpffs, and the policy for reusing pinned maps: a pin is reused or
made only where no other user could have placed or could swap the object."""

from __future__ import annotations

import errno
import os
import stat as _stat

from .._sys import ops as _ops
from .._sys import validate as _validate
from ..errors import InvalidArgumentError, PermissionError, SyscallError
from .base import MapState

__all__ = ["MapPinning", "check_pin_location", "not_bpffs", "on_bpffs", "try_obj_get"]


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


class MapPinning(MapState):
    """`pin`, `unpin` and the path a map was pinned at or opened from."""

    __slots__ = ()

    @property
    def pinned(self) -> str | None:
        """The path this map was pinned at (or opened from) by this object, if any."""
        return self._pinned

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the map at `path` on a bpffs so it outlives this process."""
        p = _validate.path(path, "pin path")
        try:
            with self._fd.hold() as fd:
                _ops.obj_pin(fd, p)
        except SyscallError as e:
            if e.errno == errno.EEXIST:
                raise SyscallError(e.errno, f"pin map {self._name!r}: {p} already exists") \
                    from None
            if e.errno == errno.EPERM and not on_bpffs(os.path.dirname(p) or "."):
                raise not_bpffs(p) from None
            if e.errno == errno.ENOENT:
                raise SyscallError(e.errno, f"pin map {self._name!r}: directory of {p} does "
                                            "not exist") from None
            raise
        self._pinned = p

    def unpin(self) -> None:
        """Remove the pin made by `pin()` (or the one `open_pinned` used). The map
        itself lives on while descriptors or programs use it."""
        if self._pinned is None:
            return
        try:
            os.unlink(self._pinned)
        except FileNotFoundError:
            pass
        self._pinned = None
