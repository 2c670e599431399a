"""asyncio reads of the event readers: waiting on the event loop (``add_reader`` on the
epoll descriptor), never in a thread or a busy loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import DeadlineExceededError, ReaderClosedError, ReaderForkedError
from .reads import ReaderReads
from .records import Batch

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["ReaderAsync"]

T = TypeVar("T")


class ReaderAsync(ReaderReads):
    """`read_async`, `read_batch_async`, `read_array_async` and ``async for``."""

    async def _async(self, attempt: Callable[[], T | None], timeout: float | None) -> T:
        loop = asyncio.get_running_loop()
        deadline = self._deadline_for(timeout)
        while True:
            if self._closed:
                raise self._closed_error()
            with self._lock:
                got = attempt()
                if got is not None:
                    return got
                poller = self._poller
                if poller is None:
                    raise self._closed_error()
                # counted under the lock close() reads the count with, before the epoll
                # descriptor is used: a close() from now on leaves closing the poller
                # (freeing its number) to the last waiter
                self._async_waiters += 1
            fd = poller.fileno()
            fut: asyncio.Future[None] = loop.create_future()

            def ready(fut: asyncio.Future[None] = fut) -> None:
                if not fut.done():
                    fut.set_result(None)

            try:
                loop.add_reader(fd, ready)
                if deadline is None:
                    await fut
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise DeadlineExceededError
                    try:
                        await asyncio.wait_for(fut, remaining)
                    except asyncio.TimeoutError:
                        raise DeadlineExceededError from None
            finally:
                loop.remove_reader(fd)
                with self._lock:
                    self._async_waiters -= 1
                    if self._closed and self._async_waiters == 0:
                        poller.close()
            if poller.woken:
                raise self._closed_error()

    async def read_async(self, timeout: float | None = None) -> Any:
        """`read` for asyncio: waits on the event loop (``add_reader`` on the
        epoll descriptor), never in a thread or a busy loop."""
        try:
            return self._popleft()
        except IndexError:
            return await self._async(self._attempt_record, timeout)

    async def read_batch_async(self, max_records: int = 4096,
                               timeout: float | None = None) -> Batch:
        """`read_batch` for asyncio."""
        return await self._async(lambda: self._attempt_batch(max_records), timeout)

    async def read_array_async(self, max_records: int = 65536, dtype: Any = None,
                               timeout: float | None = None) -> npt.NDArray[Any]:
        """`read_array` for asyncio."""
        return await self._array_async(max_records, dtype, timeout, "array")

    async def _array_async(self, max_records: int, dtype: Any, timeout: float | None,
                           take: str) -> npt.NDArray[Any]:
        """`read_array_async`'s loop on the event loop (`take` as in `_array_attempt`)."""
        result: npt.NDArray[Any] = await self._async(
            self._array_attempt(max_records, dtype, take), timeout)
        return result

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.read_async()
            except ReaderForkedError:
                raise
            except ReaderClosedError:
                return

