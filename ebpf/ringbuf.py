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

import asyncio
import collections
import ctypes
import gc
import itertools
import mmap
import operator
import os
import select
import struct
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ._sys import forking as _forking
from ._sys import perf as _perf
from ._sys.fd import FD
from ._sys.fd import hold as _hold
from ._sys.types import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ, MapType
from .errors import (
    DeadlineExceededError,
    InvalidArgumentError,
    KeyNotFoundError,
    ReaderClosedError,
    ReaderForkedError,
)

if TYPE_CHECKING:
    import numpy.typing as npt

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

T = TypeVar("T")

_PAGE = _perf.PAGE_SIZE
_BUSY = BPF_RINGBUF_BUSY_BIT
_DISCARD = BPF_RINGBUF_DISCARD_BIT
_LEN_MASK = ~(_BUSY | _DISCARD) & 0xFFFF_FFFF
_HDR = BPF_RINGBUF_HDR_SZ

# Records a single fill of the per-record queue takes out of a ring (bounded so
# that a huge backlog does not turn into a huge Python list).
_FILL = 4096
# read_array reuses result memory up to this size (see _ReaderBase._alloc).
_RECYCLE_MAX = 256 << 20
# numpy batches check headers and copy samples this many records at a time.
_NP_CHUNK = 65536
# Header runs are validated in chunks of this many records.
_CHUNK = 4096
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


class Batch(list[bytes]):
    """Samples (bytes) read in one call, from one ring, in order.

    `ring` is the ring's index in the reader (for a perf reader: the CPU),
    `remaining` the bytes left in that ring after the batch, `lost` the
    samples the kernel reported lost in the span read (perf buffers only).
    """

    __slots__ = ("lost", "remaining", "ring")

    def __init__(self, samples: Any = (), ring: int = 0, remaining: int = 0,
                 lost: int = 0) -> None:
        super().__init__(samples)
        self.ring = ring
        self.remaining = remaining
        self.lost = lost

    @property
    def cpu(self) -> int:
        """The CPU a perf buffer batch came from (same as `ring`)."""
        return self.ring

    def __repr__(self) -> str:
        return (f"Batch({len(self)} samples, ring={self.ring}, remaining={self.remaining}"
                + (f", lost={self.lost})" if self.lost else ")"))


# --------------------------------------------------------------------------- helpers


def _map_fd(m: Any) -> int:
    """The raw descriptor of a Map-like object (`.fd` FD or int, `fileno()`) or an int."""
    if isinstance(m, int):
        return m
    fd = getattr(m, "fd", None)
    if isinstance(fd, FD):
        return fd.fileno()
    if isinstance(fd, int):
        return fd
    fileno = getattr(m, "fileno", None)
    if fileno is not None:
        return int(fileno())
    raise InvalidArgumentError(f"expected a Map or a file descriptor, not {type(m).__name__}")


_getters: dict[tuple[int, int], Callable[[bytes], tuple[bytes, ...]]] = {}


def _getter(length: int, stride: int) -> Callable[[bytes], tuple[bytes, ...]]:
    """An itemgetter that cuts `_CHUNK` samples of `length` bytes every `stride`
    bytes out of a blob in one C call (faster than a comprehension)."""
    key = (length, stride)
    g = _getters.get(key)
    if g is None:
        if len(_getters) >= 16:
            _getters.clear()
        g = operator.itemgetter(*[slice(o, o + length)
                                  for o in range(0, _CHUNK * stride, stride)])
        _getters[key] = g
    return g


def slice_samples(buf: Any, offset: int, count: int, length: int, stride: int) -> list[bytes]:
    """Copy `count` samples of `length` bytes laid out every `stride` bytes
    from `offset` in `buf` (an mmap or bytes)."""
    out: list[bytes] = []
    if count >= _CHUNK:
        g = _getter(length, stride)
        span = _CHUNK * stride
        while count >= _CHUNK:
            out.extend(g(buf[offset:offset + span]))
            offset += span
            count -= _CHUNK
    if count:
        out.extend([buf[o:o + length] for o in range(offset, offset + count * stride, stride)])
    return out


_expected: dict[tuple[int, str], bytes] = {}


def _pattern(value: int, fmt: str) -> bytes:
    key = (value, fmt)
    p = _expected.get(key)
    if p is None:
        if len(_expected) >= 32:
            _expected.clear()
        p = _expected[key] = struct.pack("=" + fmt, value) * _CHUNK
    return p


def match_run(words: memoryview, first: int, step: int, count: int, value: int) -> int:
    """How many of `count` items of `words` (a memoryview cast to ``I`` or
    ``H``) at `first`, `first+step`, ... equal `value`, counting from the first
    until one differs. One strided copy and one memcmp per chunk: C speed."""
    fmt = words.format
    pat = _pattern(value, fmt)
    bits = words.itemsize * 8
    done = 0
    while done < count:
        n = min(_CHUNK, count - done)
        got = words[first:first + n * step:step].tobytes()
        if pat.startswith(got):
            done += n
            first += n * step
            continue
        diff = int.from_bytes(got, "little") ^ int.from_bytes(pat[:len(got)], "little")
        return done + ((diff & -diff).bit_length() - 1) // bits
    return done


def np_copy_run(np: Any, buf: Any, first: int, stride: int, count: int, hdr_dtype: Any,
                hdr: int, skip: int, out: Any, at: int) -> int:
    """Copy the samples of up to `count` records laid out every `stride` bytes
    from offset `first` of `buf`, as long as their header (of `hdr_dtype`, at
    the record's start) equals `hdr`; the sample starts `skip` bytes in. Goes
    chunk by chunk so that the copy reads what the header check just brought
    into the cache (one pass over memory instead of two). Returns the count."""
    dt = out.dtype
    done = 0
    while done < count:
        c = min(_NP_CHUNK, count - done)
        off = first + done * stride
        bad = np.ndarray((c,), hdr_dtype, buf, off, (stride,)) != hdr
        i = int(bad.argmax())
        m = i if bad[i] else c
        del bad
        if m:
            out[at + done:at + done + m] = np.ndarray((m,), dt, buf, off + skip, (stride,))
        done += m
        if m < c:
            break
    return done


def require_numpy() -> Any:
    """Import numpy, or explain that the array readers need it."""
    try:
        import numpy
    except ImportError:
        raise ImportError("read_array needs numpy, which is not installed "
                          "(pip install numpy); read_batch works without it") from None
    return numpy


# ---- BTF -> ctypes / numpy


def _btf_to_ctypes(t: BTFType) -> Any:
    """Fallback BTF -> ctypes conversion (used when `ebpf.btf.to_ctypes` is absent)."""
    from . import btf

    inner = btf.skip_typedefs(btf.strip_qualifiers(t))
    inner = btf.strip_qualifiers(btf.skip_typedefs(inner))
    if isinstance(inner, btf.Int):
        if inner.size == 1 and inner.name in ("char", "signed char", "unsigned char"):
            return ctypes.c_char if inner.name == "char" else (
                ctypes.c_int8 if inner.signed else ctypes.c_uint8)
        if inner.name == "_Bool":
            return ctypes.c_bool
        return {(1, True): ctypes.c_int8, (1, False): ctypes.c_uint8,
                (2, True): ctypes.c_int16, (2, False): ctypes.c_uint16,
                (4, True): ctypes.c_int32, (4, False): ctypes.c_uint32,
                (8, True): ctypes.c_int64, (8, False): ctypes.c_uint64,
                }.get((inner.size, inner.signed), ctypes.c_uint8 * inner.size)
    if isinstance(inner, btf.Float):
        return {4: ctypes.c_float, 8: ctypes.c_double}.get(inner.size,
                                                           ctypes.c_uint8 * inner.size)
    if isinstance(inner, btf.Enum):
        return {(1, True): ctypes.c_int8, (1, False): ctypes.c_uint8,
                (2, True): ctypes.c_int16, (2, False): ctypes.c_uint16,
                (4, True): ctypes.c_int32, (4, False): ctypes.c_uint32,
                (8, True): ctypes.c_int64, (8, False): ctypes.c_uint64,
                }[(inner.size, inner.signed)]
    if isinstance(inner, btf.Pointer):
        return ctypes.c_uint64
    if isinstance(inner, btf.Array):
        return _btf_to_ctypes(inner.type) * inner.nelems
    if isinstance(inner, btf.Composite):
        fields: list[tuple[Any, ...]] = []
        pos = 0
        pad = 0
        for m in inner.members:
            if m.bitfield_size:
                raise InvalidArgumentError(
                    f"{inner.type_name}: bitfield member {m.name!r} cannot be decoded "
                    "to ctypes by this fallback")
            off = m.offset_bits // 8
            if isinstance(inner, btf.Struct) and off > pos:
                fields.append((f"_pad{pad}", ctypes.c_uint8 * (off - pos)))
                pad += 1
            ct = _btf_to_ctypes(m.type)
            fields.append((m.name or f"_anon{pad}", ct))
            pad += 1 if not m.name else 0
            pos = off + ctypes.sizeof(ct)
        base: Any = ctypes.Structure if isinstance(inner, btf.Struct) else ctypes.Union
        tail = inner.size - (pos if isinstance(inner, btf.Struct)
                             else max([ctypes.sizeof(f[1]) for f in fields], default=0))
        if tail > 0 and isinstance(inner, btf.Struct):
            fields.append((f"_pad{pad}", ctypes.c_uint8 * tail))
        cls = type(inner.name or "anon", (base,), {"_pack_": 1, "_fields_": fields})
        return cls
    raise InvalidArgumentError(f"cannot decode BTF type {t.type_name} to a Python value")


def btf_to_ctypes(t: BTFType) -> Any:
    """A ctypes type with the layout of BTF type `t` (via `ebpf.btf.to_ctypes`
    when available)."""
    from . import btf

    conv = getattr(btf, "to_ctypes", None)
    if conv is not None:
        return conv(t)
    return _btf_to_ctypes(t)


def btf_to_dtype(t: BTFType) -> Any:
    """A numpy dtype with the layout of BTF type `t` (char arrays become ``S<n>``,
    pointers u8 integers; bitfields are left out)."""
    from . import btf

    np = require_numpy()
    inner = btf.strip_qualifiers(btf.skip_typedefs(t))
    inner = btf.skip_typedefs(btf.strip_qualifiers(inner))
    if isinstance(inner, btf.Int):
        if inner.name == "_Bool":
            return np.dtype(np.bool_)
        if inner.size in (1, 2, 4, 8):
            return np.dtype(f"{'i' if inner.signed else 'u'}{inner.size}")
        return np.dtype(f"V{inner.size}")
    if isinstance(inner, btf.Enum):
        return np.dtype(f"{'i' if inner.signed else 'u'}{inner.size}")
    if isinstance(inner, btf.Float):
        return np.dtype(f"f{inner.size}")
    if isinstance(inner, btf.Pointer):
        return np.dtype("u8")
    if isinstance(inner, btf.Array):
        elem = btf.strip_qualifiers(btf.skip_typedefs(inner.type))
        if isinstance(elem, btf.Int) and elem.size == 1 and "char" in elem.name:
            return np.dtype(f"S{inner.nelems}")
        return np.dtype((btf_to_dtype(inner.type), (inner.nelems,)))
    if isinstance(inner, btf.Composite):
        names: list[str] = []
        formats: list[Any] = []
        offsets: list[int] = []
        for i, m in enumerate(inner.members):
            if m.bitfield_size:
                continue
            names.append(m.name or f"_anon{i}")
            formats.append(btf_to_dtype(m.type))
            offsets.append(m.offset_bits // 8)
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "itemsize": inner.size})
    raise InvalidArgumentError(f"cannot make a numpy dtype for BTF type {t.type_name}")


def lookup_btf_type(spec: BTFSpec | None, name: str) -> BTFType:
    """Find ``"struct event"`` / ``"union u"`` / ``"enum e"`` / a typedef name in `spec`."""
    from . import btf

    if spec is None:
        raise InvalidArgumentError(
            f"cannot resolve type {name!r}: the reader has no BTF (pass btf=spec)")
    kinds: dict[str, type[btf.Type]] = {"struct": btf.Struct, "union": btf.Union,
                                        "enum": btf.Enum}
    word, _, rest = name.strip().partition(" ")
    if word in kinds and rest:
        want: type[btf.Type] | None = kinds[word]
        name = rest.strip()
    else:
        want = None
    for t in spec.types_by_name(name):
        if want is None or isinstance(t, want):
            return t
    raise KeyNotFoundError(f"BTF has no type {name!r}")


# --------------------------------------------------------------------------- reader base


class _ReaderBase:
    """Blocking/deadline/async plumbing shared by the ring and perf readers.

    Subclasses provide `_rings` (objects with `records`, `batch`, `array`), and
    `_poller`. The per-record queue `_pending` is filled a bounded batch at a
    time, so `read()` costs one deque pop in the common case.
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

    # ---- lifetime

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

    # ---- deadlines

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

    # ---- per record

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

    @staticmethod
    def _sample_of(rec: Any) -> bytes:
        return rec[0]  # type: ignore[no-any-return]

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

    # ---- batches

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
        np = require_numpy()
        if max_records < 1:
            raise InvalidArgumentError(f"max_records must be at least 1, not {max_records}")
        dt = None if dtype is None else self.dtype(dtype)

        def attempt() -> Any:
            if self._closed:
                raise self._closed_error()
            if self._pending:
                return self._pending_array(np, max_records, dt)
            return self._round_robin(lambda r: r.array(np, max_records, dt, self._alloc))

        return self._blocking(attempt, timeout)

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
        return Record(sample, 0, ring)

    # ---- asyncio

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
            fd = poller.fileno()
            fut: asyncio.Future[None] = loop.create_future()

            def ready(fut: asyncio.Future[None] = fut) -> None:
                if not fut.done():
                    fut.set_result(None)

            loop.add_reader(fd, ready)
            self._async_waiters += 1
            try:
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
                self._async_waiters -= 1
                if self._closed and self._async_waiters == 0:
                    with self._lock:
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
        np = require_numpy()
        dt = None if dtype is None else self.dtype(dtype)

        def attempt() -> Any:
            if self._closed:
                raise self._closed_error()
            if self._pending:
                return self._pending_array(np, max_records, dt)
            return self._round_robin(lambda r: r.array(np, max_records, dt, self._alloc))

        return await self._async(attempt, timeout)

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

    # ---- decoding

    def _resolve_btf(self, type: Any) -> Any:
        from . import btf as _btf

        if isinstance(type, str):
            return lookup_btf_type(self.btf, type)
        if isinstance(type, _btf.Type):
            return type
        return None

    def ctype(self, type: Any = None) -> Any:
        """The ctypes type for `type` (a BTF type or its name, or a ctypes
        type); None means the reader's `record_type`."""
        if type is None:
            type = self._record_type
            if type is None:
                raise InvalidArgumentError("no type given and the reader has no record_type")
        key = type if isinstance(type, str) else id(type)
        ct = self._ctypes_cache.get(key)
        if ct is None:
            t = self._resolve_btf(type)
            ct = btf_to_ctypes(t) if t is not None else type
            if not hasattr(ct, "from_buffer_copy"):
                raise InvalidArgumentError(f"cannot decode to {type!r}: not a ctypes or BTF type")
            self._ctypes_cache[key] = ct
        return ct

    def dtype(self, type: Any = None) -> Any:
        """The numpy dtype for `type`: a numpy dtype (or anything ``numpy.dtype``
        accepts), a ctypes type, a BTF type or a BTF type name (``"struct event"``);
        None means the reader's `record_type`."""
        np = require_numpy()
        if type is None:
            type = self._record_type
            if type is None:
                raise InvalidArgumentError("no type given and the reader has no record_type")
        key = type if isinstance(type, (str, np.dtype)) else id(type)
        dt = self._dtype_cache.get(key)
        if dt is None:
            t = None
            if isinstance(type, str):
                if type.split(" ", 1)[0] in ("struct", "union", "enum") or (
                        self.btf is not None and self.btf.types_by_name(type)):
                    t = lookup_btf_type(self.btf, type)
            else:
                t = self._resolve_btf(type)
            dt = btf_to_dtype(t) if t is not None else np.dtype(type)
            self._dtype_cache[key] = dt
        return dt

    def decode(self, record: Any, type: Any = None) -> Any:
        """The sample of `record` (a record, a batch entry, or bytes) as an
        instance of the ctypes type for `type` (see `ctype`). Samples longer
        than the type (padding) are accepted; shorter ones are an error."""
        ct = self.ctype(type)
        sample = record if isinstance(record, (bytes, bytearray, memoryview)) else \
            self._sample_of(record)
        size = ctypes.sizeof(ct)
        if len(sample) < size:
            raise InvalidArgumentError(f"a {len(sample)}-byte sample is too short for "
                                       f"{getattr(ct, '__name__', ct)} ({size} bytes)")
        return ct.from_buffer_copy(sample)

    def decode_batch(self, batch: Any, type: Any = None) -> list[Any]:
        """`decode` for every sample of a batch."""
        ct = self.ctype(type)
        size = ctypes.sizeof(ct)
        conv = ct.from_buffer_copy
        out = []
        for s in batch:
            if len(s) < size:
                raise InvalidArgumentError(f"a {len(s)}-byte sample is too short for "
                                           f"{size}-byte {getattr(ct, '__name__', ct)}")
            out.append(conv(s))
        return out


def cast_records(np: Any, raw: Any, length: int, dt: Any) -> Any:
    """View raw ``V<length>`` records as `dt` (truncating each to its itemsize)."""
    if dt is None:
        return raw
    if dt.itemsize > length:
        raise InvalidArgumentError(
            f"records of {length} bytes are shorter than dtype {dt} ({dt.itemsize} bytes)")
    if dt.itemsize == length:
        return raw.view(dt)
    out = np.empty(len(raw), dtype=f"V{dt.itemsize}")
    out[:] = np.ndarray(len(raw), f"V{dt.itemsize}", raw, 0, (length,))
    return out.view(dt)


# --------------------------------------------------------------------------- ring buffer


class _Ring:
    """One mapped BPF ring buffer."""

    def __init__(self, fd: FD, index: int) -> None:
        self.fd = fd
        self.index = index
        info = _perf.map_info(fd.fileno())
        if info.type != MapType.RINGBUF:
            raise InvalidArgumentError(
                f"ringbuf.Reader needs a RINGBUF map, not {_type_name(info.type)}")
        size = info.max_entries
        self.size = size
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
                    import gc

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


def _type_name(t: int) -> str:
    try:
        return MapType(t).name
    except ValueError:
        return f"map type {t}"


class Reader(_ReaderBase):
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
                fd = _perf.dup_fd(_map_fd(map))
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

    def size(self, ring: int = 0) -> int:
        """The data size in bytes of ring `ring`."""
        return self._rings[ring].size  # type: ignore[no-any-return]

    def available(self, ring: int = 0) -> int:
        """Bytes written to ring `ring` and not yet consumed (including queued-up
        busy and discarded records)."""
        r = self._rings[ring]
        return int(r.prod64[0] - r.cons64[0])

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
            fd = _perf.dup_fd(_map_fd(map))
        self.fd = fd
        try:
            info = _perf.map_info(fd.fileno())
            if info.type != MapType.USER_RINGBUF:
                raise InvalidArgumentError(
                    f"ringbuf.Writer needs a USER_RINGBUF map, not {_type_name(info.type)}")
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
        """Free bytes in the ring (headers and padding included)."""
        return int(self.size - (self._prod64[0] - self._cons64[0]))

    def reserve(self, size: int, timeout: float | None = 0) -> UserSample:
        """Reserve `size` bytes. With `timeout` 0 (the default) raise
        `BufferError` at once when the ring is full; otherwise wait up to
        `timeout` seconds (None: forever) for the program to drain space,
        then raise `DeadlineExceededError`."""
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
            ep.poll(min(remaining, 0.05))

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
                        import gc

                        gc.collect()
                        mm.close()
            self._mm_cons = self._mm = None
            if self._ep is not None:
                self._ep.close()
                self._ep = None
            fd = getattr(self, "fd", None)
            if fd is not None:
                fd.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn("unclosed ringbuf.Writer", ResourceWarning, stacklevel=2)
            self.close()
