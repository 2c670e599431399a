"""Reading records: one at a time (`read`, `read_into`, iteration, `poll` with
callbacks), as batches of samples from one ring (`read_batch`), or as numpy arrays
(`read_array`), in ring order across calls."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    ReaderClosedError,
    ReaderForkedError,
)
from .decoding import ReaderDecoding
from .records import Batch, cast_records, require_numpy

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["ReaderReads"]

# Records a single fill of the per-record queue takes out of a ring (bounded so
# that a huge backlog does not turn into a huge Python list).
_FILL = 4096
# read_array reuses result memory up to this size (see ReaderReads._alloc).
_RECYCLE_MAX = 256 << 20


class ReaderReads(ReaderDecoding):
    """The synchronous reads of a reader. The per-record queue `_pending` is filled a
    bounded batch at a time, so `read()` costs one deque pop in the common case."""

    def _fill(self) -> bool:
        if self._closed:
            raise self._closed_error()
        # Thousands of small tuples in one go would trigger several collections
        # of the cyclic GC for nothing (records hold only bytes and ints).
        enabled = gc.isenabled()
        gc.disable()
        try:
            recs = self._round_robin(lambda r: r.records(_FILL) or None)
            if recs is None:
                return False
            self._pending.extend(recs)
        finally:
            if enabled:
                gc.enable()
        return True

    def _attempt_record(self) -> Any:
        if self._pending or self._fill():
            return self._popleft()
        return None

    def read(self, timeout: float | None = None) -> Any:
        """The next record, blocking up to `timeout` seconds (None: until the
        deadline set with `set_deadline`, or forever; 0: do not block).

        Raises `DeadlineExceededError` when nothing arrives in time and
        `ReaderClosedError` when the reader is (or gets) closed."""
        try:
            return self._popleft()
        except IndexError:
            return self._blocking(self._attempt_record, timeout)

    def read_into(self, buf: Any, timeout: float | None = None) -> int:
        """Copy the next sample into the writable buffer `buf`; returns its length.

        Raises `InvalidArgumentError` (leaving the record queued) when `buf` is
        too small."""
        def attempt() -> Any:
            while self._pending or self._fill():
                rec = self._pending[0]
                if not self._lost_of(rec):
                    return rec
                self._pending.popleft()   # lost-sample notices have no bytes to copy
            return None

        pend = self._pending
        rec = pend[0] if pend and not self._lost_of(pend[0]) else self._blocking(attempt, timeout)
        sample = self._sample_of(rec)
        n = len(sample)
        with memoryview(buf) as mv:
            dst = mv.cast("B")
            if n > dst.nbytes:
                raise InvalidArgumentError(f"buffer of {dst.nbytes} bytes is too small for a "
                                           f"{n}-byte sample")
            dst[:n] = sample
        self._pending.popleft()
        return n

    def __iter__(self) -> Iterator[Any]:
        """Records until the reader is closed (deadlines still raise)."""
        while True:
            try:
                yield self.read()
            except ReaderForkedError:
                raise
            except ReaderClosedError:
                return

    def poll(self, callback: Callable[[Any], object], timeout: float | None = None, *,
             lost_callback: Callable[[int, int], object] | None = None,
             max_records: int | None = None) -> int:
        """Wait up to `timeout` seconds (None: until the `set_deadline` deadline, or
        forever; 0: not at all) for records, then hand every available one to
        `callback` (the record `read` would return), like libbpf's
        ``ring_buffer__poll``/``perf_buffer__poll``. Returns how many records were
        handed over: 0 when none came in time (no error), at most `max_records`.

        Samples the kernel dropped (perf buffers) go to `lost_callback(cpu, count)`
        and are not counted. An exception from a callback propagates; the records
        after the one that raised stay queued for the next call."""
        if max_records is not None and max_records < 1:
            raise InvalidArgumentError(f"max_records must be at least 1, not {max_records}")
        deadline = self._deadline_for(timeout)
        handed = 0
        with self._lock:
            while not self._pending and not self._fill():
                try:
                    self._wait(deadline)
                except DeadlineExceededError:
                    return 0
            pend = self._pending
            while True:
                while pend:
                    if self._closed or (max_records is not None and handed >= max_records):
                        return handed
                    rec = pend.popleft()
                    lost = self._lost_of(rec)
                    if lost:
                        if lost_callback is not None:
                            lost_callback(self._ring_of(rec), lost)
                        if not self._sample_of(rec):
                            continue
                    callback(rec)
                    handed += 1
                if self._closed or not self._fill():
                    return handed

    def _pending_batch(self, max_records: int) -> Batch:
        """Queued records (from earlier `read` calls) as a batch, so that order holds."""
        first = self._pending[0]
        ring = self._ring_of(first)
        out = Batch(ring=ring)
        pend = self._pending
        while pend and len(out) < max_records and self._ring_of(pend[0]) == ring:
            rec = pend.popleft()
            out.lost += self._lost_of(rec)
            sample = self._sample_of(rec)
            if sample or not self._lost_of(rec):
                out.append(sample)
            out.remaining = self._remaining_of(rec)
        return out

    @staticmethod
    def _ring_of(rec: Any) -> int:
        return rec.ring  # type: ignore[no-any-return]

    @staticmethod
    def _lost_of(rec: Any) -> int:
        return 0

    @staticmethod
    def _remaining_of(rec: Any) -> int:
        return rec.remaining  # type: ignore[no-any-return]

    def _attempt_batch(self, max_records: int) -> Batch | None:
        if self._closed:
            raise self._closed_error()
        if self._pending:
            return self._pending_batch(max_records)
        return self._round_robin(lambda r: r.batch(max_records))

    def read_batch(self, max_records: int = 4096, timeout: float | None = None) -> Batch:
        """Up to `max_records` samples from one ring in a single call (blocking
        like `read` until at least one is available). The result is a `Batch`,
        a list of bytes with `ring`/`cpu`, `remaining` and `lost` attributes."""
        if max_records < 1:
            raise InvalidArgumentError(f"max_records must be at least 1, not {max_records}")
        return self._blocking(lambda: self._attempt_batch(max_records), timeout)

    def read_array(self, max_records: int = 65536, dtype: Any = None,
                   timeout: float | None = None) -> npt.NDArray[Any]:
        """Up to `max_records` fixed-size records from one ring as a numpy array
        (needs numpy), blocking like `read` until at least one is available.

        `dtype` is a numpy dtype, a ctypes type, a BTF type (or its name, e.g.
        ``"struct event"``, resolved in the reader's `btf`), or None for raw
        records (``V<size>``). The batch ends before the first record whose
        size differs from the first record's; records longer than the dtype
        (e.g. perf's padding) are truncated to it."""
        return self._array_from_rings(max_records, dtype, timeout, "array")

    def _array_attempt(self, max_records: int, dtype: Any, take: str) -> Callable[[], Any]:
        """One non-blocking try of `read_array` (None: nothing yet), for the blocking and
        the asyncio loops; `take` names the ring method that makes the array (``"array"``
        copies, a perf ring's ``"view"`` does not)."""
        np = require_numpy()
        if max_records < 1:
            raise InvalidArgumentError(f"max_records must be at least 1, not {max_records}")
        dt = None if dtype is None else self.dtype(dtype)

        def attempt() -> Any:
            if self._closed:
                raise self._closed_error()
            if self._pending:
                return self._pending_array(np, max_records, dt)
            return self._round_robin(
                lambda r: getattr(r, take)(np, max_records, dt, self._alloc))

        return attempt

    def _array_from_rings(self, max_records: int, dtype: Any, timeout: float | None,
                          take: str) -> npt.NDArray[Any]:
        """`read_array`'s blocking loop over the rings (`take` as in `_array_attempt`)."""
        return self._blocking(self._array_attempt(max_records, dtype, take), timeout)

    def _alloc(self, np: Any, count: int, item: int) -> Any:
        """An uninitialized array of `count` ``V<item>`` records.

        Fresh memory costs a page fault per 4 KiB on first touch, which at
        these speeds is most of the work; so the memory of the previous result
        is reused when nothing refers to it any more (the usual ``for arr in
        ...: use(arr)`` loop). Any live reference or view keeps it untouched."""
        nbytes = count * item
        spare = self._spare
        # References: the attribute, `spare`, and getrefcount's argument.
        if spare is not None and spare.nbytes >= nbytes and sys.getrefcount(spare) <= 3:
            buf = spare
        else:
            buf = np.empty(nbytes, np.uint8)
            self._spare = buf if nbytes <= _RECYCLE_MAX else None
        del spare
        return buf[:nbytes].view(f"V{item}")

    def _pending_array(self, np: Any, max_records: int, dt: Any) -> Any:
        batch = self._pending_batch(max_records)
        size = len(batch[0]) if batch else 0
        keep = [s for s in batch if len(s) == size]
        if len(keep) != len(batch):  # put back what does not fit, in order
            cut = next(i for i, s in enumerate(batch) if len(s) != size)
            rest = batch[cut:]
            self._pending.extendleft(reversed([self._requeue(s, batch.ring) for s in rest]))
            keep = batch[:cut]
        raw = np.frombuffer(b"".join(keep), dtype=f"V{size}") if size else np.empty(
            0, dtype="V1")
        return cast_records(np, raw, size, dt)

    def _requeue(self, sample: bytes, ring: int) -> Any:
        """A record of this reader's kind for `sample` put back into the queue."""
        raise NotImplementedError

