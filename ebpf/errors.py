"""The exception hierarchy: everything the library raises derives from `Error`.

Each class also derives from the built-in exception a Python user would expect
(`OSError`, `ValueError`, `KeyError`, `PermissionError`), so generic handlers
keep working.
"""

from __future__ import annotations

import builtins
import errno as _errno


class Error(Exception):
    """Base class of every exception raised by `ebpf`."""


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


class PermissionError(SyscallError, builtins.PermissionError):
    """The kernel refused for lack of privilege; the message names the capability."""


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


class KernelPolicyError(NotSupportedError):
    """The kernel refused (EPERM) although the process holds every capability the
    operation needs: a policy of the running kernel (its build, lockdown, an LSM,
    seccomp) forbids this program type, attach target or map type.

    Still an `OSError` with `errno` EPERM; the message names the object, `feature` what
    was refused. A missing capability is `PermissionError` instead.
    """

    def __init__(self, feature: str, message: str, errno: int = _errno.EPERM) -> None:
        super().__init__(feature, errno=errno)
        self.strerror = message
        self.args = (errno, message)


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


class LinkError(Error, ValueError):
    """Objects that cannot be linked together; the message names the file(s) and symbol."""


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


class ReaderClosedError(ClosedError):
    """The reader was closed (possibly by another thread while blocked)."""

    def __init__(self, message: str = "reader is closed") -> None:
        super().__init__(message)


class ReaderForkedError(ReaderClosedError):
    """A ring buffer or perf reader (or user ring buffer writer) used in a child
    process it was inherited by through fork(): its rings, consumer positions and
    wakeup descriptor are shared with the parent, so the child must open its own."""


class DeadlineExceededError(Error, TimeoutError):
    """No record arrived before the timeout or the deadline (`set_deadline`)."""

    def __init__(self, message: str = "no record before the deadline") -> None:
        super().__init__(message)


class VerifierError(SyscallError):
    """The verifier rejected a program.

    `log` is the whole verifier log, `summary` its last meaningful lines (the
    failing instruction and the reason), `source_line` the C source line of the
    failure when the program carries BTF line info.
    """

    def __init__(self, errno: int, program: str, log: str, source_line: str | None = None):
        self.program = program
        self.log = log
        self.summary = summarize_verifier_log(log)
        self.source_line = source_line
        msg = f"program {program!r} rejected by the verifier"
        if self.summary:
            msg += ":\n" + self.summary
        super().__init__(errno, msg)

    def __str__(self) -> str:
        return self.strerror


def summarize_verifier_log(log: str, lines: int = 4) -> str:
    """The last lines of a verifier log that say why it failed, without the stats trailer."""
    body = [ln for ln in log.rstrip("\0").splitlines() if ln.strip()]
    while body and (
        body[-1].startswith("processed ")
        or body[-1].startswith("verification time")
        or body[-1].startswith("stack depth")
    ):
        body.pop()
    return "\n".join(body[-lines:])


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
