"""Read perf event buffers (BPF_MAP_TYPE_PERF_EVENT_ARRAY, bpf_perf_event_output).

>>> events = ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.PERF_EVENT_ARRAY,
...                                key_size=4, value_size=4))      # doctest: +SKIP
>>> with ebpf.perf.Reader(events, per_cpu_buffer=1 << 20) as rd:   # doctest: +SKIP
...     rec = rd.read(timeout=1.0)     # Record(cpu=0, sample=b'...', lost=0, remaining=...)
...     if rec.lost:
...         print("lost", rec.lost, "samples on CPU", rec.cpu)

The reader opens one PERF_COUNT_SW_BPF_OUTPUT event per online CPU (up to the
map's size), maps its ring (one metadata page plus a power-of-two number of
data pages) and stores the event fds in the map, so that
``bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, ...)`` lands in the
ring of the CPU the program runs on. Records carry that CPU; lost-sample
notices from the kernel (the ring was full) come out as records with an empty
`sample` and `lost` set, and add up in `Reader.lost_samples`.

As in libbpf and cilium/ebpf, raw samples are padded by the kernel so that
they end 8-byte aligned: a 16-byte sample reads back as 20 bytes. Decoding
(`decode`, `read_array` with a dtype) ignores the trailing padding.

Wakeups: by default every sample wakes a blocked reader; `watermark` (bytes)
or `wakeup_events` trade latency for fewer wakeups. `overwritable=True`
makes the rings keep the newest samples (write_backward): nothing is lost,
old samples are overwritten, and each read returns what was written since the
previous one (at most a ring's worth), oldest first.

Shares its plumbing (deadlines, close from another thread, batches, numpy,
asyncio, decoding) with `ebpf.ringbuf` (`ebpf.readers`); see ``ebpf/_sys/perf.py`` for the
memory-ordering assumptions.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import mmap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ._sys import perf as _perf
from ._sys import validate as _validate
from ._sys.fd import FD
from ._sys.fd import hold as _hold
from ._sys.types import MapType
from .errors import DeadlineExceededError, InvalidArgumentError, ReaderClosedError
from .readers import (
    Batch,
    ReaderBase,
    cast_records,
    map_fd,
    match_run,
    np_copy_run,
    np_match_run,
    slice_samples,
    type_name,
)

if TYPE_CHECKING:
    import numpy.typing as npt

    from .btf import Spec as BTFSpec

_T = TypeVar("_T")

__all__ = [
    "Batch",
    "DeadlineExceededError",
    "Reader",
    "ReaderClosedError",
    "Record",
]

_PAGE = _perf.PAGE_SIZE
_SAMPLE = _perf.PERF_RECORD_SAMPLE
_LOST = _perf.PERF_RECORD_LOST
_HEAD = _perf.DATA_HEAD_OFFSET // 8
_TAIL = _perf.DATA_TAIL_OFFSET // 8
_U64 = (1 << 64) - 1
_SAMPLE_HDR = 12           # perf_event_header (8) + u32 raw size
_tuple_new = tuple.__new__


class Record(NamedTuple):
    """One perf buffer record.

    `cpu` is the CPU whose ring it came from, `sample` the raw sample (padded
    to end 8-byte aligned, see the module docs), `lost` the number of samples
    the kernel dropped (then `sample` is empty), `remaining` the bytes left in
    that CPU's ring after this record when it was read.
    """

    cpu: int
    sample: bytes
    lost: int = 0
    remaining: int = 0


# A run of items found in a ring: (mm offset of the first sample, count,
# sample length, stride, stitched bytes of a single wrapped sample or None).
# Lost-sample notices are (-1, lost count, 0, size, None), other records the
# reader skips (-2, 0, 0, size, None).
_Run = tuple[int, int, int, int, "bytes | None"]


class _PerfRing:
    """One CPU's perf event and its mapped ring."""

    def __init__(self, cpu: int, pages: int, watermark: int, wakeup_events: int,
                 overwritable: bool) -> None:
        self.cpu = cpu
        self.overwritable = overwritable
        self.fd: FD = _perf.open_bpf_output(cpu, watermark=watermark,
                                            wakeup_events=wakeup_events,
                                            overwritable=overwritable)
        self.mm: mmap.mmap | None = None
        self._views: list[memoryview] = []
        try:
            # A read-only mapping puts the ring in overwrite mode (no data_tail).
            self.mm = _perf.mmap_fd(self.fd.fileno(), _PAGE * (1 + pages),
                                    writable=not overwritable, populate=True)
        except BaseException:
            self.fd.close()
            raise
        view = memoryview(self.mm)
        self.q = view.cast("Q")
        self.u32 = view.cast("I")
        self._views = [self.q, self.u32, view]
        self.base: int = self.q[_perf.DATA_OFFSET_OFFSET // 8] or _PAGE
        self.size: int = self.q[_perf.DATA_SIZE_OFFSET // 8] or _PAGE * pages
        self.mask = self.size - 1
        self.prev_head = 0         # overwritable rings: where the last read started
        self.lost_total = 0
        self.held = -1             # data_tail to commit once a zero-copy view is given up

    def close(self) -> None:
        for v in self._views:
            v.release()
        self._views = []
        if self.mm is not None:
            try:
                self.mm.close()
            except BufferError:
                gc.collect()
                try:
                    self.mm.close()
                except BufferError:  # a read_array(copy=False) view is still alive: the
                    pass             # mapping goes away with the last view
            self.mm = None
        self.fd.close()

    # ---- raw access

    def _bytes(self, off: int, n: int) -> bytes:
        """`n` bytes at ring offset `off`, stitched across the end of the ring."""
        return ring_bytes(self.mm, self.base, self.size, off, n)

    def _header(self, off: int) -> tuple[int, int]:
        """(type, size) of the record header at ring offset `off` (never split:
        records are 8-byte aligned)."""
        w = (self.base + off) >> 2
        word1 = self.u32[w + 1]
        return self.u32[w], word1 >> 16

    def commit(self, tail: int) -> None:
        self.q[_TAIL] = tail        # release: see ebpf/_sys/perf.py

    def _settle(self, tail: int, lost: int) -> None:
        """Count `lost` samples and release the ring up to `tail` (when it moved)."""
        self.lost_total += lost
        if tail != self.q[_TAIL]:
            self.commit(tail)

    # ---- forward rings

    def scan(self, max_records: int, same_size: bool) -> tuple[list[_Run], int, int, int]:
        """Records from data_tail: ``(runs, tail, head, lost)``. A run is a
        stretch of samples whose 8-byte headers (type, misc, size) are equal,
        checked in C with one strided comparison."""
        head: int = self.q[_HEAD]        # acquire
        tail: int = self.q[_TAIL]
        runs: list[_Run] = []
        lost = 0
        if tail >= head:
            return runs, tail, head, lost
        size = self.size
        mask = self.mask
        base = self.base
        q = self.q
        n = 0
        first = -1
        while n < max_records and tail < head:
            off = tail & mask
            word = q[(base + off) >> 3]
            typ = word & 0xFFFF_FFFF
            rsize = word >> 48
            if rsize < 8:               # corrupt: drop the rest of the ring
                tail = head
                break
            if typ == _SAMPLE:
                length = rsize - _SAMPLE_HDR
                if same_size:
                    if first < 0:
                        first = length
                    elif length != first:
                        break
                if off + rsize <= size:
                    k = min(max_records - n, (head - tail) // rsize, (size - off) // rsize)
                    m = match_run(q, (base + off) >> 3, rsize >> 3, k, word) if k > 1 else 1
                    runs.append((base + off + _SAMPLE_HDR, m, length, rsize, None))
                    n += m
                    tail += m * rsize
                else:
                    blob = self._bytes(off, rsize)
                    runs.append((0, 1, length, rsize, blob[_SAMPLE_HDR:]))
                    n += 1
                    tail += rsize
            else:
                if typ == _LOST:
                    count = int.from_bytes(self._bytes((off + 16) & mask, 8), "little")
                    lost += count
                    self.lost_total += count
                    runs.append((-1, count, 0, rsize, None))
                else:
                    runs.append((-2, 0, 0, rsize, None))
                tail += rsize
        return runs, tail, head, lost

    # ---- overwritable rings

    def snapshot(self) -> list[tuple[bytes, int]]:
        """Everything written since the previous snapshot (at most a ring's
        worth), oldest first, as (sample, lost) pairs. Output is paused while
        reading so that the kernel does not overwrite what is being read."""
        _perf.pause_output(self.fd.fileno(), True)
        try:
            head: int = self.q[_HEAD]
            avail = (self.prev_head - head) & _U64
            if avail > self.size:
                avail = self.size
            out: list[tuple[bytes, int]] = []
            pos = 0
            mask = self.mask
            while pos + 8 <= avail:
                off = (head + pos) & mask
                typ, rsize = self._header(off)
                if rsize < 8 or pos + rsize > avail:
                    break
                if typ == _SAMPLE:
                    blob = self._bytes(off, rsize)
                    length = int.from_bytes(blob[8:12], "little")
                    out.append((blob[_SAMPLE_HDR:_SAMPLE_HDR + length], 0))
                elif typ == _LOST:
                    count = int.from_bytes(self._bytes((off + 16) & mask, 8), "little")
                    self.lost_total += count
                    out.append((b"", count))
                pos += rsize
            self.prev_head = head
        finally:
            _perf.pause_output(self.fd.fileno(), False)
        out.reverse()
        return out

    # ---- materializers

    def records(self, max_records: int) -> list[Record] | None:
        cpu = self.cpu
        if self.overwritable:
            snap = self.snapshot()
            return [Record(cpu, s, lost, 0) for s, lost in snap] or None
        runs, tail, head, _ = self.scan(max_records, False)
        if not runs:
            if tail != self.q[_TAIL]:
                self.commit(tail)
            return None
        out: list[Record] = []
        mm = self.mm
        pos = self.q[_TAIL]
        for off, count, length, stride, blob in runs:
            if off < 0:
                pos += stride
                if off == -1:
                    out.append(Record(cpu, b"", count, head - pos))
                continue
            if blob is not None:
                pos += stride
                out.append(Record(cpu, blob, 0, head - pos))
                continue
            samples = slice_samples(mm, off, count, length, stride)
            end = head - pos
            out.extend(map(_tuple_new, itertools.repeat(Record, count),
                           zip(itertools.repeat(cpu), samples, itertools.repeat(0),
                               range(end - stride, end - stride * (count + 1), -stride))))
            pos += count * stride
        self.commit(tail)
        return out

    def batch(self, max_records: int) -> Batch | None:
        if self.overwritable:
            snap = self.snapshot()
            if not snap:
                return None
            return Batch([s for s, lost in snap if not lost], self.cpu, 0,
                         sum(lost for _, lost in snap))
        runs, tail, head, lost = self.scan(max_records, False)
        if not runs:
            if tail != self.q[_TAIL]:
                self.commit(tail)
            return None
        out = Batch((), self.cpu, head - tail, lost)
        mm = self.mm
        for off, count, length, stride, blob in runs:
            if off < 0:
                continue
            if blob is not None:
                out.append(blob)
            else:
                out.extend(slice_samples(mm, off, count, length, stride))
        self.commit(tail)
        return out

    def array(self, np: Any, max_records: int, dt: Any,
              alloc: Callable[[Any, int, int], Any]) -> Any:
        if self.overwritable:
            snap = [s for s, lost in self.snapshot() if not lost]
            if not snap:
                return None
            length = len(snap[0])
            keep = list(itertools.takewhile(lambda s: len(s) == length, snap))
            return _to_array(np, b"".join(keep), len(keep), length, dt)
        head: int = self.q[_HEAD]        # acquire
        tail: int = self.q[_TAIL]
        assert self.mm is not None
        out, n, new_tail, lost = walk_array(np, self.mm, self.q, self.base, self.size, tail,
                                            head, max_records, dt, alloc, self._settle)
        self._settle(new_tail, lost)
        if out is None:
            return None
        out = out[:n]
        return out if dt is None else out.view(dt)

    def release(self) -> None:
        """Hand the records under the last zero-copy view back to the kernel."""
        if self.held >= 0:
            self.commit(self.held)
            self.held = -1

    def view(self, np: Any, max_records: int, dt: Any,
             alloc: Callable[[Any, int, int], Any]) -> Any:
        """`array` without the copy: a read-only view of the samples in the ring,
        whose space is committed by `release` (see `Reader.read_array`)."""
        if self.overwritable:
            return self.array(np, max_records, dt, alloc)
        head: int = self.q[_HEAD]        # acquire
        tail: int = self.q[_TAIL]
        assert self.mm is not None
        out, new_tail, lost, owned = view_run(np, self.mm, self.q, self.base, self.size,
                                              tail, head, max_records, dt, self._settle)
        if out is None or owned:
            self._settle(new_tail, lost)
        else:
            self.lost_total += lost
            self.held = new_tail
        if out is None:
            return None
        return out if dt is None else out.view(dt)


def view_run(np: Any, mm: Any, q: memoryview, base: int, size: int, tail: int, head: int,
             max_records: int, dt: Any, settle: Callable[[int, int], None]
             ) -> tuple[Any, int, int, bool]:
    """The first run of equal samples from `tail` (ring as in `walk_array`), without
    copying: ``(out, tail, lost, owned)``. Lost-sample notices and other records before
    the first sample are skipped (counted in `lost`); then `out` is a read-only strided
    view into `mm` of the samples (of ``dt.itemsize`` bytes, or the sample length) of the
    records, up to `max_records`, whose 8-byte headers equal the first one's and that lie
    before the end of the ring, and `tail` is just after them. A first sample that wraps
    around the end is stitched into a one-item array of its own (`owned` is True); `out`
    is None when there was no sample. A sample shorter than `dt` raises
    InvalidArgumentError after `settle(tail, lost)`."""
    tail, word, lost = next_sample(mm, q, base, size, tail, head)
    if tail >= head:
        return None, tail, lost, True
    off = tail & (size - 1)
    rsize = word >> 48
    length = rsize - _SAMPLE_HDR
    if dt is not None and dt.itemsize > length:
        settle(tail, lost)
        raise InvalidArgumentError(f"samples of {length} bytes are shorter than "
                                   f"dtype {dt} ({dt.itemsize} bytes)")
    item = length if dt is None else dt.itemsize
    if off + rsize > size:             # the one sample that wraps around
        blob = ring_bytes(mm, base, size, off, rsize)[_SAMPLE_HDR:_SAMPLE_HDR + item]
        one = np.frombuffer(blob, dtype=f"V{item}")     # read-only, like a view
        return one, tail + rsize, lost, True
    k = min(max_records, (head - tail) // rsize, (size - off) // rsize)
    m = np_match_run(np, mm, base + off, rsize, k, np.uint64, word) if k > 1 else 1
    # Through a ctypes array over `mm`: numpy keeps no buffer export of what it is
    # given (a memoryview it even unwraps), the ctypes array does, so the mapping
    # lives as long as the view (the reader's close() leaves the unmapping to it).
    holder = (ctypes.c_char * len(mm)).from_buffer(mm)
    out = np.ndarray((m,), f"V{item}", holder, base + off + _SAMPLE_HDR, (rsize,))
    out.flags.writeable = False
    return out, tail + m * rsize, lost, False


def next_sample(mm: Any, q: memoryview, base: int, size: int, tail: int, head: int
                ) -> tuple[int, int, int]:
    """Skip the records that are not samples from `tail` (ring as in `walk_array`):
    ``(tail, word, lost)``, `tail` where the next sample starts and `word` its 8-byte
    header, or `tail` == `head` (`word` 0) when there is none before `head`; a corrupt
    header (size < 8) ends the walk there too. `lost` adds up the lost-sample notices
    skipped."""
    mask = size - 1
    lost = 0
    while tail < head:
        off = tail & mask
        word: int = q[(base + off) >> 3]
        rsize = word >> 48
        if rsize < 8:                  # corrupt: drop the rest of the ring
            return head, 0, lost
        typ = word & 0xFFFF_FFFF
        if typ == _SAMPLE:
            return tail, word, lost
        if typ == _LOST:
            lost += int.from_bytes(ring_bytes(mm, base, size, (off + 16) & mask, 8), "little")
        tail += rsize
    return tail, 0, lost


def ring_bytes(mm: Any, base: int, size: int, off: int, n: int) -> bytes:
    """`n` bytes at offset `off` of the ring at `mm[base:base + size]`, stitched across
    its end."""
    a = base + off
    end = off + n
    if end <= size:
        return bytes(mm[a:a + n])
    return bytes(mm[a:base + size]) + bytes(mm[base:base + end - size])


def walk_array(np: Any, mm: Any, q: memoryview, base: int, size: int, tail: int, head: int,
               max_records: int, dt: Any, alloc: Callable[[Any, int, int], Any],
               settle: Callable[[int, int], None]) -> tuple[Any, int, int, int]:
    """The numpy walk of a forward ring's records from `tail` to `head` (positions that
    grow without bound; the ring is `size` bytes at `mm[base:]`, a power of two):
    ``(out, n, tail, lost)``; `q` is `mm` cast to ``Q``. `out` (None when no sample was
    found) holds the samples in its first `n` items (of ``dt.itemsize``, or the first
    sample's length when `dt` is None); the walk stops after `max_records` samples or
    before the first sample of another length; lost-sample notices on the way add up
    in `lost`; `tail` is where the walk stopped.

    Runs of records whose 8-byte headers are all equal are checked and copied by numpy
    (`np_copy_run`), a run ending at the end of the ring; only the first record of each
    run (and the one sample that wraps around the end) is read in Python. A sample
    shorter than `dt` raises InvalidArgumentError after `settle(tail, lost)` of what was
    skipped before it."""
    mask = size - 1
    out = None
    n = 0
    first = -1
    item = 0
    lost = 0
    while n < max_records:
        tail, word, skipped = next_sample(mm, q, base, size, tail, head)
        lost += skipped
        if tail >= head:
            break
        off = tail & mask
        rsize = word >> 48
        length = rsize - _SAMPLE_HDR
        if out is None:
            first = length
            if dt is not None and dt.itemsize > length:
                settle(tail, lost)
                raise InvalidArgumentError(f"samples of {length} bytes are shorter than "
                                           f"dtype {dt} ({dt.itemsize} bytes)")
            item = length if dt is None else dt.itemsize
            out = alloc(np, min(max_records, (head - tail) // rsize), item)
        elif length != first:
            break
        if off + rsize <= size:
            k = min(max_records - n, (head - tail) // rsize, (size - off) // rsize)
            m = np_copy_run(np, mm, base + off, rsize, k, np.uint64, word, _SAMPLE_HDR,
                            out, n) if k > 1 else _copy_one(np, mm, base + off, item, out, n)
        else:                          # the one sample that wraps around
            blob = ring_bytes(mm, base, size, off, rsize)[_SAMPLE_HDR:_SAMPLE_HDR + item]
            out[n] = np.frombuffer(blob, dtype=out.dtype)[0]
            m = 1
        n += m
        tail += m * rsize
    return out, n, tail, lost


def _copy_one(np: Any, mm: Any, a: int, item: int, out: Any, n: int) -> int:
    """Copy the sample of the record at `mm[a:]` into out[n]."""
    out[n] = np.ndarray((), out.dtype, mm, a + _SAMPLE_HDR)
    return 1


def _to_array(np: Any, blob: bytes, count: int, length: int, dt: Any) -> Any:
    raw = np.frombuffer(blob, dtype=f"V{length}", count=count).copy()
    return cast_records(np, raw, length, dt)


class Reader(ReaderBase):
    """Reads a PERF_EVENT_ARRAY map's per-CPU rings.

    `per_cpu_buffer` is each ring's size in bytes (rounded up to a power-of-two
    number of pages). `watermark` (bytes) or `wakeup_events` (samples) set when
    a blocked reader wakes; the default wakes on every sample.
    `overwritable` keeps the newest samples instead of dropping new ones.
    `btf`/`record_type` serve `decode` and `read_array` as in `ebpf.ringbuf`.

    `read` returns `Record` (``cpu``, ``sample``, ``lost``, ``remaining``);
    `read_batch` a `Batch` of samples from one CPU (``cpu``, ``lost``);
    `read_array` a numpy array. `pause()` stops the kernel from writing (the
    program's bpf_perf_event_output then fails with -ENOENT), `resume()`
    restarts it. `close()` removes the rings from the map and wakes a read
    blocked in another thread. In a child process made by fork(), an inherited
    reader raises `ReaderForkedError` (see `ebpf.ringbuf`); the child's copy never
    touches the map's slots, which stay the parent's.
    """

    _what = "perf reader"

    def __init__(self, map: Any, per_cpu_buffer: int = 64 * _PAGE, *,
                 watermark: int = 0, wakeup_events: int = 1, overwritable: bool = False,
                 btf: BTFSpec | None = None, record_type: Any = None) -> None:
        self._poller = None
        self._rings: list[_PerfRing] = []
        self._map_fd: FD | None = None
        self._init_base(btf, record_type)
        pages = _perf.ring_pages(per_cpu_buffer)
        _validate.unsigned(wakeup_events, "wakeup_events", 32)
        # bytes of the per-CPU ring
        _validate.integer(watermark, "watermark", 0, pages * _PAGE - 1)
        self.overwritable = overwritable
        self.per_cpu_buffer = pages * _PAGE
        """The data size of each CPU's ring in bytes."""
        self._paused = False
        self._poller = _perf.Poller()
        try:
            with _hold(map):  # a Map closed meanwhile: ClosedError, never a reused number
                self._map_fd = _perf.dup_fd(map_fd(map))
            info = _perf.map_info(self._map_fd.fileno())
            if info.type != MapType.PERF_EVENT_ARRAY:
                raise InvalidArgumentError(
                    f"perf.Reader needs a PERF_EVENT_ARRAY map, not {type_name(info.type)}")
            cpus = [c for c in _perf.online_cpus() if c < info.max_entries]
            if not cpus:
                raise InvalidArgumentError("the map has no slot for any online CPU")
            for cpu in cpus:
                ring = _PerfRing(cpu, pages, watermark, wakeup_events, overwritable)
                self._rings.append(ring)
                self._poller.register(ring.fd.fileno(), cpu)
            self._install()
        except BaseException:
            self.close()
            raise

    def _install(self) -> None:
        assert self._map_fd is not None
        for ring in self._rings:
            _perf.map_update_u32(self._map_fd.fileno(), ring.cpu, ring.fd.fileno())

    def _uninstall(self) -> None:
        if self._map_fd is None or self._map_fd.closed:
            return
        for ring in self._rings:
            _perf.map_delete_u32(self._map_fd.fileno(), ring.cpu)

    @property
    def cpus(self) -> list[int]:
        """The CPUs the reader has a ring for."""
        return [r.cpu for r in self._rings]

    @property
    def lost_samples(self) -> int:
        """Samples the kernel reported lost so far (all CPUs)."""
        return sum(r.lost_total for r in self._rings)

    def pause(self) -> None:
        """Stop the kernel from writing samples: the map's slots are emptied,
        so the program's bpf_perf_event_output returns -ENOENT. Samples already
        in the rings can still be read."""
        with self._lock:
            if self._closed:
                raise self._closed_error()
            if not self._paused:
                self._uninstall()
                self._paused = True

    def resume(self) -> None:
        """Undo `pause`."""
        with self._lock:
            if self._closed:
                raise self._closed_error()
            if self._paused:
                self._install()
                self._paused = False

    @property
    def paused(self) -> bool:
        """True between `pause()` and `resume()`."""
        return self._paused

    def _release_inherited(self) -> None:
        super()._release_inherited()
        if self._map_fd is not None:
            self._map_fd.close()  # the child's copy; the map keeps the parent's rings

    def _close_rings(self) -> None:
        try:
            self._uninstall()
        finally:
            for r in self._rings:
                if self._poller is not None:
                    self._poller.unregister(r.fd.fileno())
                r.close()
            self._rings = []
            if self._map_fd is not None:
                self._map_fd.close()

    def close(self) -> None:
        """Remove the rings from the map, unmap and close them (idempotent,
        thread-safe); wakes a read blocked in another thread."""
        if self._poller is None:
            if self._map_fd is not None:
                self._map_fd.close()
            for r in self._rings:
                r.close()
            self._rings = []
            return
        super().close()

    # ---- record accessors for the shared plumbing

    @staticmethod
    def _sample_of(rec: Any) -> bytes:
        return rec[1]  # type: ignore[no-any-return]

    @staticmethod
    def _ring_of(rec: Any) -> int:
        return rec[0]  # type: ignore[no-any-return]

    @staticmethod
    def _lost_of(rec: Any) -> int:
        return rec[2]  # type: ignore[no-any-return]

    @staticmethod
    def _remaining_of(rec: Any) -> int:
        return rec[3]  # type: ignore[no-any-return]

    def _requeue(self, sample: bytes, ring: int) -> Any:
        return Record(ring, sample, 0, 0)

    # ---- zero-copy arrays

    def read_array(self, max_records: int = 65536, dtype: Any = None,
                   timeout: float | None = None, *, copy: bool = True) -> npt.NDArray[Any]:
        """Up to `max_records` fixed-size samples from one CPU's ring as a numpy array;
        see `ebpf.ringbuf.Reader.read_array`. Raw items (`dtype` None) include the
        kernel's padding (a 16-byte sample is a 20-byte item); with the samples' own
        dtype the copy is also faster (numpy copies items of 1, 2, 4, 8 or 16 bytes
        fastest).

        With ``copy=False`` the array is a read-only strided view into the ring itself
        (nothing copied: the samples of one run of equal records up to the end of the
        ring; lost-sample notices before it count in `lost_samples`). It is valid until
        the next read from this reader (any read method, async too) or `close`: the next
        read gives the ring's space back to the kernel, which then overwrites it. Keep
        what you need with ``arr.copy()`` before reading again. A sample split by the end
        of the ring, samples waiting from `read`, and overwritable rings come as copies."""
        return self._array_from_rings(max_records, dtype, timeout,
                                      "array" if copy else "view")

    async def read_array_async(self, max_records: int = 65536, dtype: Any = None,
                               timeout: float | None = None, *,
                               copy: bool = True) -> npt.NDArray[Any]:
        """`read_array` for asyncio (waits on the event loop like `read_async`), with the
        same `copy`: ``copy=False`` returns a read-only view into the ring, valid until
        the next read from this reader (sync or async) or `close`."""
        return await self._array_async(max_records, dtype, timeout,
                                       "array" if copy else "view")

    def _round_robin(self, fn: Callable[[Any], _T | None]) -> _T | None:
        for r in self._rings:       # every read ends the previous zero-copy view
            r.release()
        return super()._round_robin(fn)
