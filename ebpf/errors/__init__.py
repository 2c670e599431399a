"""The exception hierarchy: everything the library raises derives from `Error`.

Each class also derives from the built-in exception a Python user would expect
(`OSError`, `ValueError`, `KeyError`, `PermissionError`), so generic handlers
keep working.

Every class is `ebpf.errors.X`: this module defines the ones that loading an object
uses (the bases and the errors the load path raises or names), `ebpf/errors/_lazy.py`
the others (`PermissionError`, `KernelPolicyError`, `VerifierError`, the readers' and the
linker's), made on first use (process start: ~0.1 M instructions a class).
"""

from __future__ import annotations

import errno as _errno

import ebpf._lazyattr as _lazyattr

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from ._lazy import (
        DeadlineExceededError,
        KernelPolicyError,
        LinkError,
        PermissionError,
        ReaderClosedError,
        ReaderForkedError,
        VerifierError,
        summarize_verifier_log,
    )

__all__ = [
    "AsmError", "BTFError", "ClosedError", "DeadlineExceededError", "ELFError", "Error",
    "InvalidArgumentError", "KernelPolicyError", "KeyNotFoundError", "LinkError",
    "NotSupportedError", "PermissionError", "ReaderClosedError", "ReaderForkedError",
    "SyscallError", "VerifierError", "prefixed", "summarize_verifier_log",
]

# The names defined in _lazy.py (the classes no load uses), made when one is first asked
# for (process start).
_LAZY = frozenset({"DeadlineExceededError", "KernelPolicyError", "LinkError",
                   "PermissionError", "ReaderClosedError", "ReaderForkedError",
                   "VerifierError", "summarize_verifier_log"})


__getattr__ = _lazyattr.lazy_attributes(globals(), dict.fromkeys(_LAZY, "._lazy"))


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)


class Error(Exception):
    """Base class of every exception raised by `ebpf`."""

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle and copy the state the instance has rather than call `__init__` again
        (whose arguments are not `args`): `cls.__new__(cls, *args)`, then `__dict__`,
        `args` and the built-in `OSError` fields set back (`BaseException.__setstate__`)."""
        import copyreg  # on a pickle or copy only (process start; site loads it anyway)

        state = dict(vars(self))
        state["args"] = self.args
        if isinstance(self, OSError):  # set ones only: OSError's str() tells None from unset
            for name in ("errno", "strerror", "filename", "filename2"):
                if getattr(self, name) is not None:
                    state[name] = getattr(self, name)
        # what pickle writes as NEWOBJ (protocol 2+); typeshed does not list it
        return copyreg.__newobj__, (type(self), *self.args), state  # type: ignore[attr-defined]


class SyscallError(Error, OSError):
    """A system call failed; `errno` and `strerror` say how."""

    errno: int
    strerror: str

    def __init__(self, errno: int, message: str) -> None:
        super().__init__(errno, message)
        self.errno = errno
        self.strerror = message

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        return f"{self.strerror} ({name})"


class NotSupportedError(SyscallError):
    """The running kernel lacks a feature; `feature` names it."""

    def __init__(self, feature: str, detail: str = "", errno: int = _errno.EOPNOTSUPP) -> None:
        msg = f"{feature} is not supported by this kernel"
        if detail:
            msg += f": {detail}"
        super().__init__(errno, msg)
        self.feature = feature

    def __str__(self) -> str:
        return self.strerror


class ELFError(Error, ValueError):
    """A malformed or unsupported ELF object; names the section and offset."""

    def __init__(self, message: str, section: str | None = None, offset: int | None = None):
        where = []
        if section is not None:
            where.append(f"section {section}")
        if offset is not None:
            where.append(f"offset {offset:#x}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.section = section
        self.offset = offset


class BTFError(Error, ValueError):
    """Malformed BTF, or a BTF lookup that cannot be satisfied."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        where = f" (at BTF offset {offset:#x})" if offset is not None else ""
        super().__init__(message + where)
        self.offset = offset


class InvalidArgumentError(Error, ValueError):
    """A value of the wrong shape or size was passed; the message says what was expected."""


class AsmError(InvalidArgumentError):
    """An instruction cannot be built, encoded, decoded or linked (`ebpf.asm`).

    Raised for malformed bytecode (truncated input, a 64-bit immediate load
    missing its second half), out-of-range fields (register, offset,
    immediate), and unknown or duplicate labels; the message names the
    instruction, label or byte offset at fault.
    """


class KeyNotFoundError(Error, KeyError):
    """A map key, or a named program/map/variable, does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "key not found"


class ClosedError(Error, ValueError):
    """An operation on a map, program, link or reader that was closed (possibly by
    another thread while the operation was starting); the message names the object,
    e.g. ``map 'counts' is closed``."""


def prefixed(what: str, exc: BaseException) -> BaseException:
    """Prefix the message of a library exception with the object that failed,
    keeping its type (a VerifierError stays a VerifierError)."""
    if isinstance(exc, SyscallError):
        if not exc.strerror.startswith(what):
            exc.strerror = f"{what}: {exc.strerror}"
    elif isinstance(exc, Error) and exc.args and isinstance(exc.args[0], str):
        if not exc.args[0].startswith(what):
            exc.args = (f"{what}: {exc.args[0]}", *exc.args[1:])
    return exc
