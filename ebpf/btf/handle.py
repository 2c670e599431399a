"""`Handle`: a BTF blob loaded into the kernel (BPF_BTF_LOAD), as an fd.

Maps and programs refer to BTF by the fd of such an object (btf_fd), e.g. for
a map's key/value types or a program's func/line info.
"""

from __future__ import annotations

import errno as _errno

from .._sys.btf import btf_get_fd_by_id, btf_load_logged
from .._sys.fd import FD
from .._sys.syscall import from_errno
from ..errors import BTFError
from .spec import Spec

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    import ctypes
    from typing import NoReturn

    from .._sys.btfinfo import BtfObjectInfo

_LOG_TAIL_LINES = 8


class BTFLoadError(BTFError):
    """The kernel rejected a BTF blob; `log` is its BTF verifier log, `errno` the error."""

    def __init__(self, errno: int, log: str) -> None:
        self.errno = errno
        self.log = log
        tail = log_tail(log)
        msg = f"kernel rejected BTF ({_errno.errorcode.get(errno, str(errno))})"
        super().__init__(f"{msg}:\n{tail}" if tail else msg)


def log_tail(log: str, lines: int = _LOG_TAIL_LINES) -> str:
    """The last meaningful lines of a BTF verifier log."""
    body = [ln for ln in log.rstrip("\0").splitlines() if ln.strip()]
    return "\n".join(body[-lines:])


class Handle:
    """A BTF object in the kernel.

    `Handle(data)` loads a raw BTF blob (see `Builder.marshal`); a rejected
    blob raises `BTFLoadError` (a `BTFError`) carrying the tail of the kernel's
    log, and other failures the typed syscall error (`PermissionError`, ...).
    `log_level` > 0 always passes a log buffer (kept in `.log`).
    """

    __slots__ = ("_info", "_size", "fd", "log")

    def __init__(self, data: bytes, *, log_level: int = 0) -> None:
        data = bytes(data)
        self._load(data, log_level)

    @classmethod
    def _from_buffer(cls, buf: ctypes.Array[ctypes.c_char]) -> Handle:
        """`Handle(blob)` for the `blob_buffer(blob)` made once for many loads."""
        h = cls.__new__(cls)
        h._load(buf, 0)
        return h

    def _load(self, data: bytes | ctypes.Array[ctypes.c_char], log_level: int) -> None:
        fd, log = btf_load_logged(data, log_level)
        if fd < 0:
            err = -fd
            if err == _errno.EINVAL or (log and err not in (_errno.EPERM, _errno.ENOMEM)):
                raise BTFLoadError(err, log)
            exc = from_errno(err, "bpf(BPF_BTF_LOAD)")
            tail = log_tail(log)
            if tail:
                exc.strerror = f"{exc.strerror}:\n{tail}"
                exc.args = (err, exc.strerror)
            raise exc
        self.fd = FD(fd, "btf")
        self.log = log
        self._info: BtfObjectInfo | None = None
        self._size: int | None = len(data)

    @classmethod
    def _from_fd(cls, fd: int) -> Handle:
        h = cls.__new__(cls)
        h.fd = FD(fd, "btf")
        h.log = ""
        h._info = None
        h._size = None
        return h

    @classmethod
    def from_id(cls, btf_id: int) -> Handle:
        """Open the kernel's BTF object `btf_id` (BPF_BTF_GET_FD_BY_ID)."""
        return cls._from_fd(btf_get_fd_by_id(btf_id))

    @classmethod
    def from_spec(cls, spec: Spec, *, log_level: int = 0) -> Handle:
        """Marshal `spec` (keeping its type ids) and load it."""
        from .builder import Builder  # the BTF writer, only for from_spec

        return cls(Builder.from_spec(spec).marshal(), log_level=log_level)

    def info(self) -> BtfObjectInfo:
        """Id, name, blob size and kernel flag (BPF_OBJ_GET_INFO_BY_FD)."""
        if self._info is None:
            from .._sys.btfinfo import btf_info  # on first use (process start)

            with self.fd.hold() as fd:  # (a close() meanwhile leaves the number to us)
                self._info = btf_info(fd)
        return self._info

    def blob_size(self) -> int:
        """The size of the blob the kernel holds: the one given, for a blob this
        Handle loaded (no syscall), else from `info()`."""
        return self._size if self._size is not None else self.info().size

    @property
    def id(self) -> int:
        """The kernel's id of this BTF object."""
        return self.info().id

    def raw(self) -> bytes:
        """The BTF blob as the kernel holds it."""
        from .._sys.btfinfo import btf_raw  # on first use (process start)

        with self.fd.hold() as fd:
            return btf_raw(fd)

    def spec(self, base: Spec | None = None) -> Spec:
        """Parse the kernel's copy of the blob (`base` for a kernel module's split BTF)."""
        return Spec(self.raw(), base)

    def fileno(self) -> int:
        """The bare descriptor number of the loaded BTF object."""
        return self.fd.fileno()

    def close(self) -> None:
        """Release the fd (the kernel frees the BTF once nothing else uses it)."""
        self.fd.close()

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self.fd.closed

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        """Refused with `NotPicklableError` (also by `copy.deepcopy`): pickle the BTF
        (a `btf.Spec`) and load it in the other process."""
        from .._sys.nopickle import refuse  # on a refusal only (process start)

        refuse("BTF object",
               "pickle the BTF (a btf.Spec, or its blob) and load it in the other process "
               "(btf.Handle)")

    def __copy__(self) -> Handle:
        """A shallow copy sharing the descriptor (what `copy.copy` always made)."""
        from .._sys.nopickle import shallow_copy  # on a copy only (process start)

        return shallow_copy(self)

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.fd.closed:
            return "<btf.Handle closed>"
        return f"<btf.Handle fd={self.fd.fileno()}>"


__all__ = ["BTFLoadError", "Handle", "log_tail"]
