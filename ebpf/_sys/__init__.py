"""The kernel boundary: system calls, the uapi types, descriptors (see the modules).

`kernel_version` lives here, not in a module of its own, for `caps` (privileges),
`rlimit` (whether the kernel charges RLIMIT_MEMLOCK) and `syscall` (which asks on the
first map or program creation whether `rlimit` is needed at all: before 5.11): the load
path need not import `caps` unless an EPERM comes back, nor `rlimit` on newer kernels.

`log` is the library's logger, ``logging.getLogger("ebpf")``, without importing `logging`
at process start (it and what it imports cost milliseconds of every `ebpf` command):
it forwards to the real logger, imported on first use. A DEBUG or INFO record while
`logging` has never been imported goes nowhere, as it would through the real logger:
nothing can have configured a handler or a level yet, and an unconfigured logging
package shows WARNING and above only (those always go through the real logger). It
lives here, not in a module of its own, as `kernel_version` does (process start).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    import logging
    from typing import Any

__all__ = ["kernel_version", "log"]


def _leading_digits(text: str) -> str:
    """The ASCII digits `text` starts with ("" when none)."""
    end = 0
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    return text[:end]


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of the running kernel's release ("6.18.0-..."), (0, 0) if unknown.
    String methods, no regular expression: compiling one costs ~0.2 ms (process start)."""
    major, dot, rest = (os.uname().release if release is None else release).partition(".")
    minor = _leading_digits(rest)
    if not dot or not minor or _leading_digits(major) != major or not major:
        return (0, 0)
    return (int(major), int(minor))


class _Logger:
    """The ``ebpf`` logger, looked up on first use."""

    __slots__ = ("_logger",)

    def __init__(self) -> None:
        self._logger: logging.Logger | None = None

    def _real(self) -> logging.Logger:
        logger = self._logger
        if logger is None:
            import logging  # on the first record (process start): see the module docstring

            logger = self._logger = logging.getLogger("ebpf")
        return logger

    def _silent(self) -> bool:
        """True while a DEBUG/INFO record could not be shown by anyone."""
        return self._logger is None and "logging" not in sys.modules

    def debug(self, msg: str, *args: object, **kwargs: Any) -> None:
        """`logging.Logger.debug` of the ``ebpf`` logger."""
        if not self._silent():
            self._real().debug(msg, *args, stacklevel=2, **kwargs)

    def info(self, msg: str, *args: object, **kwargs: Any) -> None:
        """`logging.Logger.info` of the ``ebpf`` logger."""
        if not self._silent():
            self._real().info(msg, *args, stacklevel=2, **kwargs)

    def warning(self, msg: str, *args: object, **kwargs: Any) -> None:
        """`logging.Logger.warning` of the ``ebpf`` logger."""
        self._real().warning(msg, *args, stacklevel=2, **kwargs)

    def exception(self, msg: str, *args: object, **kwargs: Any) -> None:
        """`logging.Logger.exception` of the ``ebpf`` logger (in an except block)."""
        self._real().exception(msg, *args, stacklevel=2, **kwargs)


log = _Logger()
"""The ``ebpf`` logger (`logging.getLogger("ebpf")`), imported on first use."""
