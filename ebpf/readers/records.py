"""The record-walking core of the event readers (`ebpf.ringbuf`, `ebpf.perf`): cutting
runs of equally sized samples out of a ring in one C call, checking runs of identical
headers with one strided comparison, copying them into numpy arrays chunk by chunk,
and the `Batch` both readers return."""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable
from typing import Any

from .._sys.fd import FD
from .._sys.types import MapType
from ..errors import InvalidArgumentError

__all__ = ["Batch", "cast_records", "map_fd", "match_run", "np_copy_run", "np_match_run",
           "require_numpy",
           "slice_samples", "type_name"]

# numpy batches check headers and copy samples this many records at a time.
_NP_CHUNK = 65536
# Header runs are validated in chunks of this many records.
_CHUNK = 4096


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


def map_fd(m: Any) -> int:
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


def np_match_run(np: Any, buf: Any, first: int, stride: int, count: int, hdr_dtype: Any,
                 hdr: int) -> int:
    """How many of up to `count` records laid out every `stride` bytes from offset
    `first` of `buf` have a header (of `hdr_dtype`, at the record's start) equal to
    `hdr`, counting from the first until one differs: one strided numpy comparison
    per chunk and nothing copied."""
    done = 0
    while done < count:
        c = min(_NP_CHUNK, count - done)
        bad = np.ndarray((c,), hdr_dtype, buf, first + done * stride, (stride,)) != hdr
        i = int(bad.argmax())
        if bad[i]:
            return done + i
        done += c
    return done


def require_numpy() -> Any:
    """Import numpy, or explain that the array readers need it."""
    try:
        import numpy  # optional dependency, only for numpy output
    except ImportError:
        raise ImportError("read_array needs numpy, which is not installed "
                          "(pip install numpy); read_batch works without it") from None
    return numpy


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


def type_name(t: int) -> str:
    """The name of map type `t` for messages."""
    try:
        return MapType(t).name
    except ValueError:
        return f"map type {t}"

