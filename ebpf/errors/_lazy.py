"""The classes of `ebpf.errors` that loading an object does not use: made when one is
first asked for (`ebpf.errors`' `__getattr__`), so that `import ebpf` and `ebpf load`
do not make them (process start: ~0.1 M instructions a class). They are `ebpf.errors`'
names (`__module__` too: reprs, pickles, docs); import them from there."""

from __future__ import annotations

import builtins
import errno as _errno

from . import ClosedError, Error, NotSupportedError, SyscallError

__all__ = ["DeadlineExceededError", "KernelPolicyError", "LinkError", "PermissionError",
           "ReaderClosedError", "ReaderForkedError", "VerifierError", "summarize_verifier_log"]


class PermissionError(SyscallError, builtins.PermissionError):
    """The kernel refused for lack of privilege; the message names the capability."""


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


class LinkError(Error, ValueError):
    """Objects that cannot be linked together; the message names the file(s) and symbol."""


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


for _cls in (PermissionError, KernelPolicyError, LinkError, ReaderClosedError,
             ReaderForkedError, DeadlineExceededError, VerifierError):
    _cls.__module__ = "ebpf.errors"  # where they are public (reprs, pickles, docs)
summarize_verifier_log.__module__ = "ebpf.errors"
del _cls
