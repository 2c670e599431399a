"""The kernel boundary: system calls, the uapi types, descriptors (see the modules).

`kernel_version` lives here, not in a module of its own, for `caps` (privileges),
`rlimit` (whether the kernel charges RLIMIT_MEMLOCK) and `syscall` (which asks on the
first map or program creation whether `rlimit` is needed at all: before 5.11): the load
path need not import `caps` unless an EPERM comes back, nor `rlimit` on newer kernels.
"""

from __future__ import annotations

import os

__all__ = ["kernel_version"]


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
