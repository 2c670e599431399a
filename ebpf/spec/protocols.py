"""The structural types the specs accept for kernel objects (`typing.Protocol`s):
`SupportsFileno`, `LoadedProgram`, `SupportsInfo`. A module of their own, imported on
first use by `ebpf.spec.programs` / `ebpf.spec.maps` (which re-export them) and by type
checkers: `Protocol` needs `typing`, which a load does not import (process start)."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["LoadedProgram", "SupportsFileno", "SupportsInfo"]


class SupportsFileno(Protocol):
    """Anything with a `fileno()` (an `ebpf.Map`, an `FD`)."""

    def fileno(self) -> int:
        """The descriptor number."""
        ...


class LoadedProgram(Protocol):
    """What a spec refers to when it names a loaded program (an `ebpf.Program`)."""

    @property
    def name(self) -> str:
        """The program's name."""
        ...

    def fileno(self) -> int:
        """The program's file descriptor (valid while the program is open)."""
        ...


class SupportsInfo(Protocol):
    """Anything that reports a map's kernel facts (an `ebpf.Map`)."""

    def info(self) -> Any: ...
