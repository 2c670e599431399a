"""Lifetime and blocking of the event readers: closing (from any thread, waking a
blocked read), fork() safety, deadlines, waiting on the epoll descriptor, and taking
turns between rings."""

from __future__ import annotations

import collections
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from .._sys import forking as _forking
from .._sys import perf as _perf
from ..errors import DeadlineExceededError, ReaderClosedError, ReaderForkedError

if TYPE_CHECKING:
    from ..btf import Spec as BTFSpec

__all__ = ["ReaderLifetime"]

T = TypeVar("T")


class ReaderLifetime:
    """The state every reader has, closing, fork() and blocking with deadlines.

    Subclasses provide `_rings` (objects with `records`, `batch`, `array`, `close`)
    and `_poller`, and call `_init_base` first.
    """

    _rings: list[Any]
    _poller: _perf.Poller | None
    _what = "reader"
    _forked_from = 0

    def _init_base(self, btf: BTFSpec | None, record_type: Any) -> None:
        self._lock = threading.RLock()
        _forking.track(self)
        self._pending: collections.deque[Any] = collections.deque()
        self._popleft = self._pending.popleft
        self._deadline: float | None = None
        self._closed = False
        self._next = 0
        self.btf = btf
        """The BTF used to resolve type names for `decode` and `read_array`."""
        self._record_type = record_type
        self._ctypes_cache: dict[Any, Any] = {}
        self._dtype_cache: dict[Any, Any] = {}
        self._async_waiters = 0
        self._spare: Any = None

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    def close(self) -> None:
        """Release the reader's descriptors and mappings (idempotent, thread-safe).

        A read blocked in another thread wakes up and raises `ReaderClosedError`."""
        poller = self._poller
        if poller is None:
            return
        self._closed = True
        poller.wake()              # blocked readers return before we take the lock
        with self._lock:
            if self._poller is None:
                return
            self._pending.clear()
            self._close_rings()
            # An event loop may still watch the epoll fd: closing it now could
            # lose the wakeup, so the last async waiter closes it instead.
            if self._async_waiters == 0:
                poller.close()
            self._poller = None

    def _close_rings(self) -> None:
        raise NotImplementedError

    def _closed_error(self) -> ReaderClosedError:
        if self._forked_from:
            return ReaderForkedError(
                f"{self._what} was inherited through fork() from process "
                f"{self._forked_from}: its rings and wakeup descriptor belong to that "
                "process; open a new reader in this one")
        return ReaderClosedError(f"{self._what} is closed")

    def _release_inherited(self) -> None:
        """Unmap and close this process's copies of the rings' descriptors without
        touching what they share with the parent (consumer positions, map slots)."""
        for r in self._rings:
            r.close()
        self._rings = []

    def _after_fork_in_child(self) -> None:
        # Only the forking thread survives: locks may be held by threads that are gone.
        self._lock = threading.RLock()
        self._async_waiters = 0
        self._pending.clear()
        if self._poller is None:
            return
        self._forked_from = os.getppid()
        self._closed = True
        poller, self._poller = self._poller, None
        try:
            self._release_inherited()
        finally:
            poller.close()  # closes the child's copies only; never signals the eventfd

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        """Refused with `NotPicklableError` (also by `copy.deepcopy`): pin its map and
        open a reader on the pin in the other process."""
        from .._sys.nopickle import refuse  # on a refusal only (process start)

        refuse(self._what,
               "pin its map (Map.pin) and open a reader of the pinned map (Map.open_pinned) in the"
               " other process")

    def __copy__(self: T) -> T:
        """A shallow copy sharing the descriptor (what `copy.copy` always made)."""
        from .._sys.nopickle import shallow_copy  # on a copy only (process start)

        return shallow_copy(self)

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_poller", None) is not None:
            warnings.warn(f"unclosed {type(self).__name__}", ResourceWarning, stacklevel=2)
            try:
                self.close()
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    def fileno(self) -> int:
        """The epoll descriptor: readable when a ring has data (for select/asyncio)."""
        if self._poller is None:
            raise self._closed_error()
        return self._poller.fileno()

    def set_deadline(self, deadline: float | None) -> None:
        """Make reads without an explicit timeout give up at `deadline`
        (a `time.monotonic()` value) with `DeadlineExceededError`; None blocks
        forever again. A deadline in the past makes reads non-blocking."""
        self._deadline = deadline

    def _deadline_for(self, timeout: float | None) -> float | None:
        if timeout is None:
            return self._deadline
        return time.monotonic() + timeout

    def _wait(self, deadline: float | None) -> None:
        poller = self._poller
        if poller is None or self._closed:
            raise self._closed_error()
        if deadline is None:
            remaining = None
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceededError
        try:
            poller.wait(remaining)
        except _perf.ReaderClosed:
            raise self._closed_error() from None

    def _blocking(self, attempt: Callable[[], T | None], timeout: float | None) -> T:
        deadline = self._deadline_for(timeout)
        with self._lock:
            while True:
                if self._closed:
                    raise self._closed_error()
                got = attempt()
                if got is not None:
                    return got
                self._wait(deadline)

    def _round_robin(self, fn: Callable[[Any], T | None]) -> T | None:
        rings = self._rings
        n = len(rings)
        start = self._next
        for i in range(n):
            idx = (start + i) % n
            got = fn(rings[idx])
            if got is not None:
                self._next = (idx + 1) % n
                return got
        return None

