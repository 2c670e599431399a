"""`FD`: sole owner of one kernel file descriptor."""

from __future__ import annotations

import fcntl
import os
import warnings
from typing import Any


class FD:
    """Owns one file descriptor: `close()` is idempotent, the object is a context
    manager, and a forgotten close warns (ResourceWarning) and closes at garbage
    collection. Descriptors passed in must already be close-on-exec."""

    __slots__ = ("__weakref__", "_fd", "kind")

    def __init__(self, fd: int, kind: str = "fd") -> None:
        if fd < 0:
            raise ValueError(f"invalid file descriptor {fd}")
        self._fd = fd
        self.kind = kind

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def fileno(self) -> int:
        """The raw descriptor; raises ValueError once closed."""
        if self._fd < 0:
            raise ValueError(f"{self.kind} is closed")
        return self._fd

    def __int__(self) -> int:
        return self.fileno()

    def dup(self) -> FD:
        """A new, independent close-on-exec descriptor for the same kernel object."""
        return FD(fcntl.fcntl(self.fileno(), fcntl.F_DUPFD_CLOEXEC, 3), self.kind)

    def detach(self) -> int:
        """Give up ownership: returns the raw fd, which the caller must close."""
        fd, self._fd = self._fd, -1
        return fd

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> FD:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(f"unclosed {self.kind} (fd {self._fd})", ResourceWarning, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        return f"FD({self._fd}, {self.kind!r})"

    def __reduce__(self) -> Any:
        raise TypeError("kernel object descriptors cannot be pickled")
