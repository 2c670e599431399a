"""Read BPF ring buffers (BPF_MAP_TYPE_RINGBUF) and write user ring buffers.

>>> rb = ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.RINGBUF, key_size=0, value_size=0,
...                            max_entries=1 << 20))               # doctest: +SKIP
>>> with ebpf.ringbuf.Reader(rb) as rd:                            # doctest: +SKIP
...     rec = rd.read(timeout=1.0)          # Record(sample=b'...', remaining=..., ring=0)
...     batch = rd.read_batch(4096)         # list of samples, one Python call per batch
...     arr = rd.read_array(1 << 16, dtype="struct event")   # numpy, C speed

The reader maps the ring's consumer page (read-write) and its producer page
plus data pages (read-only; the kernel maps the data twice in a row, so a
record that wraps is still contiguous). Records are handed out in ring order;
busy records (reserved, not yet committed) stop a read, discarded ones are
skipped. The consumer position advances once per batch of copied records,
never per record, which is what makes the reader fast: runs of equally sized
records are validated with one strided comparison of their headers instead of
a Python loop. Several ring buffers can share one reader (`Reader(a, b)` or
`add`), like libbpf's ``ring_buffer__add``.

`close()` from another thread wakes a blocked `read` at once (an eventfd in
the reader's epoll set) and makes it raise `ReaderClosedError`; iteration
(`for rec in reader`, `async for rec in reader`) simply ends.

After ``fork()``, a reader (or `Writer`) inherited by the child is closed in
the child and refuses every use with `ReaderForkedError` (iteration raises it
too): its consumer position lives in memory shared with the parent, and its
epoll set and wakeup eventfd are the parent's, so using them would steal the
parent's records or wake (and end) the parent's blocked reads. Right after the
fork the child unmaps the rings and closes its copies of the descriptors,
without touching anything the parent uses. A child that wants records opens a
new `Reader` on the map (it then shares the ring with the parent's reader:
each record goes to whichever consumes it first). Maps and programs, by
contrast, are simply shared: the child's `Map` reads and writes the parent's
map.

See ``ebpf/_sys/perf.py`` for the memory-ordering assumptions.
"""

from __future__ import annotations

import gc
import itertools
import mmap
import os
import select
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

from ._sys import forking as _forking
from ._sys import perf as _perf
from ._sys.fd import FD
from ._sys.fd import hold as _hold
from ._sys.types import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ, MapType
from .errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    ReaderClosedError,
    ReaderForkedError,
)
from .readers import Batch, ReaderBase, map_fd, type_name
from .readers import cast_records as cast_records
from .readers import lookup_btf_type as lookup_btf_type
from .readers import match_run as match_run
from .readers import np_copy_run as np_copy_run
from .readers import require_numpy as require_numpy
from .readers import slice_samples as slice_samples

if TYPE_CHECKING:
    from .btf import Spec as BTFSpec
    from .btf import Type as BTFType

__all__ = [
    "Batch",
    "DeadlineExceededError",
    "Reader",
    "ReaderClosedError",
    "ReaderForkedError",
    "Record",
    "UserSample",
    "Writer",
]


_PAGE = _perf.PAGE_SIZE
_BUSY = BPF_RINGBUF_BUSY_BIT
_DISCARD = BPF_RINGBUF_DISCARD_BIT
_LEN_MASK = ~(_BUSY | _DISCARD) & 0xFFFF_FFFF
_HDR = BPF_RINGBUF_HDR_SZ
_tuple_new = tuple.__new__


class Record(NamedTuple):
    """One ring buffer sample.

    `sample` is a copy of the record's bytes (exactly the size the program
    submitted), `remaining` the number of bytes still in the ring after it
    when it was read, `ring` the index of the ring buffer within the reader
    (the order maps were given or added).
    """

    sample: bytes
    remaining: int = 0
    ring: int = 0



def btf_to_ctypes(t: BTFType) -> Any:
    """A ctypes type with the layout of BTF type `t`: `ebpf.btf.to_ctypes` (kept here
    for compatibility)."""
    from .btf import to_ctypes  # ebpf.btf on first use: `import ebpf.ringbuf` loads none

    return to_ctypes(t)


def btf_to_dtype(t: BTFType) -> Any:
    """A numpy dtype with the layout of BTF type `t`: `ebpf.btf.to_dtype` (kept here
    for compatibility)."""
    from .btf import to_dtype  # ebpf.btf on first use: `import ebpf.ringbuf` loads none

    return to_dtype(t)


# --------------------------------------------------------------------------- ring buffer


class _Ring:
    """One mapped BPF ring buffer."""

    def __init__(self, fd: FD, index: int) -> None:
        self.fd = fd
        self.index = index
        info = _perf.map_info(fd.fileno())
        if info.type != MapType.RINGBUF:
            raise InvalidArgumentError(
                f"ringbuf.Reader needs a RINGBUF map, not {type_name(info.type)}")
        size = info.max_entries
        self.size: int = size
        self.mask = size - 1
        self.cons_mm: mmap.mmap | None = None
        self.data_mm: mmap.mmap | None = None
        try:
            self.cons_mm = _perf.mmap_fd(fd.fileno(), _PAGE, writable=True)
            self.data_mm = _perf.mmap_fd(fd.fileno(), _PAGE + 2 * size, offset=_PAGE,
                                         populate=True)
        except BaseException:
            self._unmap()
            raise
        self._views: list[memoryview] = []
        cons_view = memoryview(self.cons_mm)
        data_view = memoryview(self.data_mm)
        self.cons64 = cons_view.cast("Q")
        self.prod64 = data_view.cast("Q")
        self.u32 = data_view.cast("I")
        self._views = [self.cons64, self.prod64, self.u32, cons_view, data_view]
        self._addr = 0

    def _unmap(self) -> None:
        for v in getattr(self, "_views", ()):
            v.release()
        self._views = []
        for mm in (self.cons_mm, self.data_mm):
            if mm is not None:
                try:
                    mm.close()
                except BufferError:  # a view escaped; collect it and retry
                    gc.collect()
                    mm.close()
        self.cons_mm = self.data_mm = None

    def close(self) -> None:
        self._unmap()
        self.fd.close()

    # ---- scanning

    def scan(self, max_records: int, same_size: bool
             ) -> tuple[list[tuple[int, int, int, int]], int, int]:
        """Committed records from the consumer position: ``(runs, cons, prod)``
        where each run is ``(pos, count, length, stride)``: `count` records of
        `length` bytes, `stride` apart, the first one's header at ring position
        `pos`. Discarded records are skipped, a busy one ends the scan, and
        with `same_size` so does a record whose length differs from the first.
        Runs of identical headers are checked in C (`match_run`)."""
        prod: int = self.prod64[0]     # acquire: see ebpf/_sys/perf.py
        cons: int = self.cons64[0]
        runs: list[tuple[int, int, int, int]] = []
        if cons >= prod:
            return runs, cons, prod
        u32 = self.u32
        mask = self.mask
        n = 0
        first = -1
        while n < max_records and cons < prod:
            a = _PAGE + (cons & mask)
            hdr = u32[a >> 2]
            if hdr & _BUSY:
                break
            length = hdr & _LEN_MASK
            stride = (length + _HDR + 7) & ~7
            if hdr & _DISCARD:
                cons += stride
                continue
            if same_size:
                if first < 0:
                    first = length
                elif length != first:
                    break
            k = min(max_records - n, (prod - cons) // stride)
            m = match_run(u32, a >> 2, stride >> 2, k, hdr) if k > 1 else 1
            runs.append((cons, m, length, stride))
            n += m
            cons += m * stride
        return runs, cons, prod

    def commit(self, cons: int) -> None:
        self.cons64[0] = cons          # release: see ebpf/_sys/perf.py

    # ---- materializers

    def records(self, max_records: int) -> list[Record] | None:
        runs, cons, prod = self.scan(max_records, False)
        if not runs:
            if cons != self.cons64[0]:
                self.commit(cons)      # only discarded records
            return None
        mm = self.data_mm
        out: list[Record] = []
        ring = self.index
        mask = self.mask
        for pos, count, length, stride in runs:
            samples = slice_samples(mm, _PAGE + (pos & mask) + _HDR, count, length, stride)
            end = prod - pos
            out.extend(map(_tuple_new, itertools.repeat(Record, count),
                           zip(samples, range(end - stride, end - stride * (count + 1), -stride),
                               itertools.repeat(ring))))
        self.commit(cons)
        return out

    def batch(self, max_records: int) -> Batch | None:
        runs, cons, prod = self.scan(max_records, False)
        if not runs:
            if cons != self.cons64[0]:
                self.commit(cons)
            return None
        mm = self.data_mm
        mask = self.mask
        if len(runs) == 1:
            pos, count, length, stride = runs[0]
            out = Batch(slice_samples(mm, _PAGE + (pos & mask) + _HDR, count, length, stride),
                        self.index, prod - cons)
        else:
            out = Batch((), self.index, prod - cons)
            for pos, count, length, stride in runs:
                out.extend(slice_samples(mm, _PAGE + (pos & mask) + _HDR, count, length, stride))
        self.commit(cons)
        return out

    def array(self, np: Any, max_records: int, dt: Any,
              alloc: Callable[[Any, int, int], Any]) -> Any:
        prod: int = self.prod64[0]     # acquire: see ebpf/_sys/perf.py
        cons: int = self.cons64[0]
        start = cons
        u32 = self.u32
        mask = self.mask
        out = None
        n = 0
        first = -1
        while n < max_records and cons < prod:
            a = _PAGE + (cons & mask)
            hdr = u32[a >> 2]
            if hdr & _BUSY:
                break
            length = hdr & _LEN_MASK
            stride = (length + _HDR + 7) & ~7
            if hdr & _DISCARD:
                cons += stride
                continue
            if out is None:
                first = length
                if dt is not None and dt.itemsize > length:
                    if cons != start:
                        self.commit(cons)
                    raise InvalidArgumentError(f"records of {length} bytes are shorter than "
                                               f"dtype {dt} ({dt.itemsize} bytes)")
                item = length if dt is None else dt.itemsize
                out = alloc(np, min(max_records, (prod - cons) // stride), item)
            elif length != first:
                break
            k = min(max_records - n, (prod - cons) // stride)
            m = np_copy_run(np, self.data_mm, a, stride, k, np.uint32, hdr, _HDR, out, n)
            n += m
            cons += m * stride
        if cons != start:
            self.commit(cons)
        if out is None:
            return None
        out = out[:n]
        return out if dt is None else out.view(dt)


class Reader(ReaderBase):
    """Reads one or more BPF ring buffers.

    `maps` are RINGBUF maps (`ebpf.Map`, or anything with an ``fd``/``fileno()``,
    or raw descriptors; each is dup'ed, so the reader does not depend on the
    map staying open). `btf` resolves type names for `decode`/`read_array`;
    `record_type` is the default type for both.

    Records come out as `Record` (``sample``, ``remaining``, ``ring``).
    `read`/`read_into`/iteration hand out one at a time, `read_batch` a list
    per call, `read_array` a numpy array per call; the async variants
    (`read_async`, ``async for``) wait on the running event loop.
    Not meant to be read from several threads at once (reads are serialized).
    In a child process made by fork(), an inherited reader raises `ReaderForkedError`.
    """

    _what = "ring buffer reader"

    def __init__(self, *maps: Any, btf: BTFSpec | None = None, record_type: Any = None) -> None:
        self._poller = None
        self._rings = []
        self._init_base(btf, record_type)
        self._poller = _perf.Poller()
        try:
            for m in maps:
                self.add(m)
        except BaseException:
            self.close()
            raise

    def add(self, map: Any) -> int:
        """Read ring buffer `map` too; returns its ring index (`Record.ring`)."""
        with self._lock:
            if self._poller is None:
                raise self._closed_error()
            with _hold(map):  # a Map closed meanwhile: ClosedError, never a reused number
                fd = _perf.dup_fd(map_fd(map))
            try:
                ring = _Ring(fd, len(self._rings))
            except BaseException:
                fd.close()
                raise
            self._rings.append(ring)
            self._poller.register(fd.fileno(), ring.index)
            return ring.index

    @property
    def rings(self) -> int:
        """How many ring buffers the reader reads."""
        return len(self._rings)

    def _ring(self, ring: int) -> _Ring:
        """Ring `ring` of the open reader: `ReaderClosedError` once closed,
        `InvalidArgumentError` for an index the reader has no ring for."""
        rings = self._rings
        if self._closed:
            raise self._closed_error()
        if not 0 <= ring < len(rings):
            raise InvalidArgumentError(
                f"the reader has no ring {ring}: it reads {len(rings)} ring buffer(s), "
                "numbered from 0 in the order given (the index `add` returns)")
        r: _Ring = rings[ring]
        return r

    def size(self, ring: int = 0) -> int:
        """The data size in bytes of ring `ring` (its index, as in `Record.ring`).
        Raises `ReaderClosedError` once the reader is closed."""
        return self._ring(ring).size

    def available(self, ring: int = 0) -> int:
        """Bytes written to ring `ring` (its index, as in `Record.ring`) and not yet
        consumed (including queued-up busy and discarded records). Raises
        `ReaderClosedError` once the reader is closed (also by another thread
        meanwhile)."""
        r = self._ring(ring)
        try:
            return int(r.prod64[0] - r.cons64[0])
        except ValueError:  # unmapped by a close() in another thread meanwhile
            if not self._closed:
                raise
            raise self._closed_error() from None

    def _requeue(self, sample: bytes, ring: int) -> Any:
        return Record(sample, 0, ring)

    def _close_rings(self) -> None:
        for r in self._rings:
            if self._poller is not None:
                self._poller.unregister(r.fd.fileno())
            r.close()
        self._rings = []


# --------------------------------------------------------------------------- user ring buffer


class UserSample:
    """Space reserved in a user ring buffer: write the sample through `data`
    (a writable memoryview of exactly the reserved size), then `submit()` or
    `discard()`. Usable as a context manager: submits on success, discards on
    an exception."""

    __slots__ = ("_done", "_hdr", "_writer", "data")

    def __init__(self, writer: Writer, hdr: int, data: memoryview) -> None:
        self._writer = writer
        self._hdr = hdr
        self.data = data
        self._done = False

    def submit(self) -> None:
        """Hand the sample to the kernel (bpf_user_ringbuf_drain sees it)."""
        self._writer._commit(self, False)

    def discard(self) -> None:
        """Give the space back; the kernel skips the sample."""
        self._writer._commit(self, True)

    def __enter__(self) -> UserSample:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if not self._done:
            self._commit_or_discard(exc_type is not None)

    def _commit_or_discard(self, discard: bool) -> None:
        self._writer._commit(self, discard)

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        """Refused with `NotPicklableError` (also by `copy.deepcopy` and `copy.copy`):
        space in this process's mapping of the ring; send `bytes(sample.data)` instead."""
        from ._sys.nopickle import refuse  # on a refusal only (process start)

        refuse("reserved user ring buffer sample",
               "send its bytes (bytes(sample.data)) and write them in the other process")


class Writer:
    """Writes samples into a BPF_MAP_TYPE_USER_RINGBUF for a program that
    drains them with ``bpf_user_ringbuf_drain``.

    Same protocol as libbpf's user_ring_buffer: `reserve` marks a header busy
    and publishes the new producer position; `UserSample.submit`/`discard`
    clear the busy bit (setting the discard bit for a discard). Reserving is
    serialized by a lock, so several threads may write.
    """

    _forked_from = 0

    def __init__(self, map: Any) -> None:
        self._lock = threading.Lock()
        self._closed = False
        _forking.track(self)
        self._mm_cons: mmap.mmap | None = None
        self._mm: mmap.mmap | None = None
        self._views: list[memoryview] = []
        self._ep: select.epoll | None = None
        with _hold(map):
            fd = _perf.dup_fd(map_fd(map))
        self.fd = fd
        try:
            info = _perf.map_info(fd.fileno())
            if info.type != MapType.USER_RINGBUF:
                raise InvalidArgumentError(
                    f"ringbuf.Writer needs a USER_RINGBUF map, not {type_name(info.type)}")
            self.size = info.max_entries
            self._mask = self.size - 1
            self._mm_cons = _perf.mmap_fd(fd.fileno(), _PAGE)
            self._mm = _perf.mmap_fd(fd.fileno(), _PAGE + 2 * self.size, offset=_PAGE,
                                     writable=True, populate=True)
            cons_view = memoryview(self._mm_cons)
            view = memoryview(self._mm)
            self._cons64 = cons_view.cast("Q")
            self._prod64 = view.cast("Q")
            self._u32 = view.cast("I")
            self._data = view
            self._views = [self._cons64, self._prod64, self._u32, cons_view]
            self._outstanding: dict[int, UserSample] = {}
            self._ep = select.epoll(flags=select.EPOLL_CLOEXEC)
            self._ep.register(fd.fileno(), select.EPOLLOUT | select.EPOLLET)
        except BaseException:
            self.close()
            raise

    def _closed_error(self) -> ReaderClosedError:
        if self._forked_from:
            return ReaderForkedError(
                "user ring buffer writer was inherited through fork() from process "
                f"{self._forked_from}: its producer position is shared with that process; "
                "open a new Writer in this one")
        return ReaderClosedError("user ring buffer writer is closed")

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        if not self._closed:
            self._forked_from = os.getppid()
            self.close()  # unmaps and closes the child's copies; the ring is untouched

    def available(self) -> int:
        """Free bytes in the ring (headers and padding included). Raises
        `ReaderClosedError` once the writer is closed."""
        with self._lock:
            if self._closed:
                raise self._closed_error()
            return int(self.size - (self._prod64[0] - self._cons64[0]))

    def reserve(self, size: int, timeout: float | None = 0) -> UserSample:
        """Reserve `size` bytes. With `timeout` 0 (the default) raise
        `BufferError` at once when the ring is full; otherwise wait up to
        `timeout` seconds (None: forever) for the program to drain space,
        then raise `DeadlineExceededError`. A `close()` from another thread
        ends the wait with `ReaderClosedError`."""
        if size <= 0:
            raise InvalidArgumentError(f"sample size must be positive, not {size}")
        total = (size + _HDR + 7) & ~7
        if total > self.size:
            raise InvalidArgumentError(f"a {size}-byte sample cannot fit a "
                                       f"{self.size}-byte user ring buffer")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._closed:
                    raise self._closed_error()
                cons: int = self._cons64[0]   # acquire
                prod: int = self._prod64[0]
                if self.size - (prod - cons) >= total:
                    off = _PAGE + (prod & self._mask)
                    self._u32[off >> 2] = size | _BUSY
                    self._u32[(off >> 2) + 1] = 0
                    self._prod64[0] = prod + total   # release
                    sample = UserSample(self, off, self._data[off + _HDR:off + _HDR + size])
                    self._outstanding[off] = sample
                    return sample
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if timeout == 0:
                        raise BufferError(f"user ring buffer full ({self.available()} bytes "
                                          f"free, {total} needed)")
                    raise DeadlineExceededError("user ring buffer still full")
            else:
                remaining = 0.05
            ep = self._ep
            if ep is None:
                raise self._closed_error()
            # Edge-triggered EPOLLOUT fires when the kernel drains; the bounded
            # wait covers a drain that happened before we started waiting.
            try:
                ep.poll(min(remaining, 0.05))
            except (ValueError, OSError):
                if not self._closed:
                    raise
                # closed by another thread meanwhile: the next round raises that

    def write(self, data: bytes | bytearray | memoryview, timeout: float | None = 0) -> None:
        """Reserve, copy `data` in and submit, in one call."""
        with memoryview(data) as mv:
            src = mv.cast("B")
            s = self.reserve(src.nbytes, timeout)
            s.data[:] = src
            s.submit()

    def _commit(self, sample: UserSample, discard: bool) -> None:
        with self._lock:
            if sample._done:
                raise InvalidArgumentError("sample already submitted or discarded")
            sample._done = True
            try:
                sample.data.release()
            except BufferError:
                pass
            if self._closed:
                return
            w = sample._hdr >> 2
            length = self._u32[w] & _LEN_MASK
            # One aligned 4-byte store (x86-64: a release store); see _sys/perf.py.
            self._u32[w] = length | (_DISCARD if discard else 0)
            self._outstanding.pop(sample._hdr, None)

    @property
    def closed(self) -> bool:
        """True once `close()` was called (every other method then raises
        `ReaderClosedError`)."""
        return self._closed

    def close(self) -> None:
        """Unmap the ring and close the writer's descriptors (idempotent).
        Samples reserved and not submitted stay busy for the kernel."""
        with self._lock:
            self._closed = True
            for pending in getattr(self, "_outstanding", {}).values():
                pending._done = True
                try:
                    pending.data.release()
                except BufferError:
                    pass
            self._outstanding = {}
            for v in self._views:
                v.release()
            self._views = []
            if hasattr(self, "_data"):
                try:
                    self._data.release()
                except BufferError:
                    pass
            for mm in (self._mm_cons, self._mm):
                if mm is not None:
                    try:
                        mm.close()
                    except BufferError:
                        gc.collect()
                        mm.close()
            self._mm_cons = self._mm = None
            if self._ep is not None:
                self._ep.close()
                self._ep = None
            fd = getattr(self, "fd", None)
            if fd is not None:
                fd.close()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        """Refused with `NotPicklableError` (also by `copy.deepcopy`): pin its map and
        open a writer on the pin in the other process."""
        from ._sys.nopickle import refuse  # on a refusal only (process start)

        refuse("user ring buffer writer",
               "pin its map (Map.pin) and open a writer of the pinned map (Map.open_pinned) in the"
               " other process")

    def __copy__(self) -> Writer:
        """A shallow copy sharing the descriptor (what `copy.copy` always made)."""
        from ._sys.nopickle import shallow_copy  # on a copy only (process start)

        return shallow_copy(self)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn("unclosed ringbuf.Writer", ResourceWarning, stacklevel=2)
            self.close()
