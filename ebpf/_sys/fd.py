"""`FD`: sole owner of one kernel file descriptor.

Thread-safe close: a descriptor number is only an index into the process's
table, and the kernel hands a closed number to the next object opened. An
operation that read the number before another thread closed it would reach
whatever object reused it (a map created right after the close, say). So
every operation *holds* the descriptor for the duration of its system call
(`acquire`/`release`, `hold()`); `close()` marks the FD closed at once (new
operations raise `ClosedError`) and the real ``close(2)`` happens when the
last operation in flight releases it, so the number cannot be reused while
any system call with it may still run. Holding costs two list operations
(atomic under the GIL), no lock: an entry per operation in flight, naming the
thread that began it.

After fork() the child has only the forking thread: the operations other parent
threads had in flight are dropped from the use counts, those of the forking
thread (it forked inside a `hold()`) stay until it releases them (see
`ebpf._sys.forking`).
"""

from __future__ import annotations

import functools
import os
import warnings
from _thread import get_ident as _get_ident  # (threading's, without importing it: start)

from ..errors import ClosedError
from . import forking

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:  # holds_first's type: no TypeVar at run time (import cost)
    from collections.abc import Callable, Sequence
    from typing import Any, TypeVar

    _F = TypeVar("_F", bound=Callable[..., Any])


class FD:
    """Owns one file descriptor: `close()` is idempotent and thread-safe, the object
    is a context manager, and a forgotten close warns (ResourceWarning) and closes at
    garbage collection. Descriptors passed in must already be close-on-exec.

    `kind` names the object in errors ("map 'counts'" -> "map 'counts' is closed").
    """

    __slots__ = ("__weakref__", "_fd", "_held", "_users", "kind")

    def __init__(self, fd: int, kind: str = "fd") -> None:
        if fd < 0:
            raise ValueError(f"invalid file descriptor {fd}")
        self._fd = fd
        # The number while open or until the last user releases it: popped (atomically)
        # by whoever really closes it, so it is closed exactly once.
        self._held = [fd]
        # One entry per operation in flight (list append/remove are atomic under the GIL):
        # the ident of the thread that began it, kept for that thread after fork(); or
        # None for an operation that cannot span a fork (maps.elements' inlined one,
        # which removes a None).
        self._users: list[int | None] = []
        self.kind = kind
        forking.track(self)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def closed_error(self) -> ClosedError:
        """The error an operation on this closed descriptor raises."""
        return ClosedError(f"{self.kind} is closed")

    def fileno(self) -> int:
        """The raw descriptor; raises `ClosedError` once closed.

        The number is only safe to use while the FD is held (`hold`, `acquire`):
        another thread may close it, and the kernel reuse the number, at any time."""
        fd = self._fd
        if fd < 0:
            raise self.closed_error()
        return fd

    def __int__(self) -> int:
        return self.fileno()

    # -- holding ----------------------------------------------------------------------

    def acquire(self) -> int:
        """Mark one operation in flight and return the descriptor; `ClosedError` once
        closed. Every `acquire` that returns must be paired with one `release`."""
        self._users.append(_get_ident())
        fd = self._fd
        if fd < 0:
            self.release()
            raise self.closed_error()
        return fd

    def release(self) -> None:
        """End an operation started with `acquire` (closes the descriptor if `close()`
        was called meanwhile and this was the last operation in flight)."""
        users = self._users
        try:
            users.remove(_get_ident())
        except ValueError:  # acquired in another thread: any entry pairs up as well
            users.pop()
        if self._fd < 0 and not users:
            self._reap()

    def hold(self) -> _Hold:
        """``with fd.hold() as n:`` -- the descriptor number `n` stays valid (and is not
        reused) for the block, even if another thread closes the FD meanwhile."""
        return _Hold(self)

    def _reap(self) -> None:
        try:
            fd = self._held.pop()
        except IndexError:
            return  # someone else closed it
        os.close(fd)

    # -- ownership ----------------------------------------------------------------------

    def dup(self) -> FD:
        """A new, independent close-on-exec descriptor for the same kernel object."""
        with self.hold() as fd:
            import fcntl  # on a dup only (process start)

            return FD(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3), self.kind)

    def detach(self) -> int:
        """Give up ownership: returns the raw fd, which the caller must close."""
        fd, self._fd = self._fd, -1
        self._held.clear()
        return fd

    def close(self) -> None:
        """Close the descriptor (idempotent). Operations already in flight in other
        threads finish first: the number is released by the last of them."""
        self._fd = -1
        if not self._users:
            self._reap()

    def _after_fork_in_child(self) -> None:
        # Operations other parent threads had in flight do not exist in the child; the
        # forking thread's own (it forked inside a hold) end with its release.
        users = self._users
        if users:
            me = _get_ident()
            users[:] = [u for u in users if u == me]
        if self._fd < 0 and not users:
            self._reap()

    def __enter__(self) -> FD:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            held = self._held
        except AttributeError:  # (refused by __init__)
            return
        if not held:
            return
        if getattr(self, "_fd", -1) >= 0:
            warnings.warn(f"unclosed {self.kind} (fd {self._fd})", ResourceWarning, stacklevel=2)
        self._fd = -1
        self._reap()

    def __repr__(self) -> str:
        return f"FD({self._fd}, {self.kind!r})"

    def __reduce__(self) -> Any:
        from .nopickle import refuse  # on a refusal only (process start)

        refuse(self.kind, "pass what it was made from (its spec) or a pin path instead")


class _Hold:
    """Context manager of `FD.hold`."""

    __slots__ = ("_fd",)

    def __init__(self, fd: FD) -> None:
        self._fd = fd

    def __enter__(self) -> int:
        return self._fd.acquire()

    def __exit__(self, *exc: object) -> None:
        self._fd.release()


def fd_of(obj: Any) -> FD | None:
    """The `FD` of a kernel object (`Map`, `Program`, `Link`, an `FD`), or None for
    anything else (raw ints, foreign objects with only `fileno()`). Raises the
    object's `ClosedError` when it is closed."""
    if isinstance(obj, FD):
        return obj
    if obj is None:
        return None  # (without paying for an AttributeError)
    try:
        fd = obj.fd  # Program.fd raises ClosedError once closed
    except ClosedError:
        raise
    except Exception:  # no descriptor (a Link that is not a bpf_link, a foreign object)
        return None
    return fd if isinstance(fd, FD) else None


def hold(*objs: Any) -> _Holds:
    """Hold the descriptors of several objects (see `fd_of`) for a block: ``with
    hold(program, target): ...``. Objects without an `FD` are ignored."""
    return _Holds(objs)


class _Holds:
    __slots__ = ("_held", "_objs")

    def __init__(self, objs: tuple[Any, ...]) -> None:
        self._objs = objs
        self._held: list[FD] = []

    def __enter__(self) -> None:
        fds = [fd for fd in map(fd_of, self._objs) if fd is not None]
        acquire_all(fds)
        self._held = fds

    def __exit__(self, *exc: object) -> None:
        held, self._held = self._held, []
        release_all(held)


def acquire_all(fds: Sequence[FD]) -> list[int]:
    """`FD.acquire` each of `fds` (their numbers, in order); when one raises
    (`ClosedError`), those acquired are released first. Pair with `release_all(fds)`:
    what `hold` does for a block, for callers that want the numbers or no block object."""
    nums: list[int] = []
    try:
        for fd in fds:
            nums.append(fd.acquire())
    except BaseException:
        release_all(fds[:len(nums)])
        raise
    return nums


def release_all(fds: Sequence[FD]) -> None:
    """`FD.release` each of `fds` acquired by `acquire_all`, the last first."""
    for fd in reversed(fds):
        fd.release()


def holds_first(fn: _F) -> _F:
    """Decorator: hold the descriptor of the function's first argument (a program,
    a map) for the whole call, so that an attach racing `close()` raises `ClosedError`
    instead of attaching whatever reused the number."""

    @functools.wraps(fn)
    def wrapper(obj: Any, *args: Any, **kwargs: Any) -> Any:
        with hold(obj):
            return fn(obj, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


__all__ = ["FD", "acquire_all", "fd_of", "hold", "holds_first", "release_all"]
