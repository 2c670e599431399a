"""The library's logger, ``logging.getLogger("ebpf")``, without importing `logging` at
process start (it and what it imports cost milliseconds of every `ebpf` command).

`log` forwards to the real logger, imported on first use. A DEBUG or INFO record while
`logging` has never been imported goes nowhere, as it would through the real logger:
nothing can have configured a handler or a level yet, and an unconfigured logging
package shows WARNING and above only (those always go through the real logger).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import logging

__all__ = ["log"]


class _Logger:
    """The ``ebpf`` logger, looked up on first use."""

    __slots__ = ("_logger",)

    def __init__(self) -> None:
        self._logger: logging.Logger | None = None

    def _real(self) -> logging.Logger:
        logger = self._logger
        if logger is None:
            import logging  # on the first record: see the module docstring

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
