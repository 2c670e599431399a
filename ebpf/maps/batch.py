"""Batch operations of maps (BPF_MAP_*_BATCH): what `Map.lookup_batch`,
`lookup_and_delete_batch`, `update_batch` and `delete_batch` do, and the resumable kernel
walk they share with iteration. `Map`'s methods import this module on first use
(process start: a load makes no batch call)."""

from __future__ import annotations

import ctypes
import errno
import mmap as _mmap
from typing import TYPE_CHECKING, Any, Final

import ebpf._lazyattr as _lazyattr

from .._sys import types as _t
from .._sys import validate as _validate
from .._sys.fd import hold as _hold
from .._sys.syscall import NR_BPF as _NR
from .._sys.syscall import bpf_errno as _bpf_errno
from .._sys.syscall import from_errno
from .._sys.syscall import raw_syscall as _raw_syscall
from ..errors import InvalidArgumentError, KeyNotFoundError, NotSupportedError
from .base import ARRAY_TYPES, BATCH_TYPES, INT_FORMATS, MapState, type_name
from .base import DELETE as _DELETE
from .base import UPDATE as _UPDATE
from .codec import pack_into
from .failures import KeyExistsError
from .flags import UpdateFlags
from .mapped import NONE as _NONE

if TYPE_CHECKING:
    from ._batch_type import Batch as Batch
    from .elements import MapElements

__all__ = ["Batch", "BatchWalk", "delete", "lookup", "update"]

_get_errno = ctypes.get_errno
_ENOENT: Final = errno.ENOENT


class BatchWalk:
    """One walk over a map with BPF_MAP_LOOKUP(_AND_DELETE)_BATCH, carrying the
    kernel's resume token from step to step."""

    __slots__ = ("attr", "cmd", "done", "fd", "first", "name", "ref", "tok_in", "tok_out",
                 "tok_size")

    def __init__(self, m: MapState, cmd: int) -> None:
        self.cmd = cmd
        self.fd = m._fd
        self.name = m._name
        self.tok_size = max(m._key_size, 8)
        self.tok_in = ctypes.create_string_buffer(self.tok_size)
        self.tok_out = ctypes.create_string_buffer(self.tok_size)
        self.attr = _t.MapBatchAttr(out_batch=ctypes.addressof(self.tok_out),
                                    map_fd=m._fd.fileno())
        self.ref = ctypes.byref(self.attr)
        self.first = True
        self.done = False

    def step(self, kaddr: int, vaddr: int, count: int) -> int:
        """Read up to `count` elements to kaddr/vaddr; returns how many (sets `done`
        after the last), or -1 when one hash bucket holds more than `count`."""
        attr = self.attr
        attr.keys, attr.values = kaddr, vaddr
        attr.in_batch = 0 if self.first else ctypes.addressof(self.tok_in)
        while True:
            attr.count = count
            # raw_syscall releases the GIL: a big batch must not stall other threads;
            # the descriptor is held so that a concurrent close() cannot free its number
            self.fd.acquire()
            try:
                ret = _raw_syscall(_NR, self.cmd, self.ref, ctypes.sizeof(attr))
                err = _get_errno() if ret < 0 else 0
            finally:
                self.fd.release()
            if ret >= 0:
                break
            if err == errno.EINTR:
                continue
            if err == _ENOENT:
                self.done = True
                break
            if err == errno.ENOSPC and int(attr.count) == 0:
                return -1
            what = "lookup_batch" if self.cmd == _t.BPF_MAP_LOOKUP_BATCH else \
                "lookup_and_delete_batch"
            raise from_errno(err, f"{what} on map {self.name!r}")
        self.first = False
        ctypes.memmove(self.tok_in, self.tok_out, self.tok_size)
        return int(attr.count)


def anon_buffer(size: int) -> Any:
    """Zeroed memory of `size` bytes, faulted in lazily (anonymous mmap) when large."""
    if size < (256 << 10):
        return bytearray(max(size, 1))
    try:
        return _mmap.mmap(-1, size)
    except (OSError, OverflowError):
        return bytearray(size)


def buffer_address(buf: Any) -> int:
    holder = ctypes.c_char.from_buffer(buf)
    addr = ctypes.addressof(holder)
    del holder  # release the export; the address stays valid while `buf` lives
    return addr


def shape(buf: Any, n: int, size: int, numpy: bool, per_cpu: bool) -> Any:
    fmt = None if per_cpu else INT_FORMATS.get(size)
    if numpy:
        try:
            import numpy as np  # optional dependency, only for numpy=True
        except ImportError:
            raise NotSupportedError("numpy output", "numpy is not installed") from None
        if fmt is not None:
            return np.frombuffer(buf, dtype=np.dtype(f"=u{size}"))
        return np.frombuffer(buf, dtype=np.uint8).reshape(n, size)
    mv = memoryview(buf)
    if fmt is not None:
        return mv.cast(fmt)  # type: ignore[call-overload]
    return mv.cast("B", (n, size)) if size and n else mv[:0]


def lookup(m: MapElements, cmd: int, chunk_size: int | None, numpy: bool) -> Batch:
    """BPF_MAP_LOOKUP(_AND_DELETE)_BATCH over the whole map (`Map.lookup_batch`)."""
    from ._batch_type import Batch  # its class on first use (process start)

    if chunk_size is not None:
        _validate.integer(chunk_size, "chunk_size", 0, 0xFFFF_FFFF)
    m._check_iterable()
    what = "lookup_batch" if cmd == _t.BPF_MAP_LOOKUP_BATCH else "lookup_and_delete_batch"
    if m._type not in BATCH_TYPES or (
            cmd != _t.BPF_MAP_LOOKUP_BATCH and m._type in ARRAY_TYPES):
        raise NotSupportedError(f"{what} on {type_name(m._type)} maps")
    if m._mstate != _NONE and cmd == _t.BPF_MAP_LOOKUP_BATCH:
        got = _mapped_batch(m, numpy)  # a memory-mapped array: one copy, no system call
        if got is not None:
            keys, vals, n = got
            return Batch(shape(keys, n, 4, numpy, per_cpu=False),
                         shape(vals, n, m._value_size, numpy, per_cpu=False))
    ks, vb = m._key_size, m._vbytes
    cap = max(m._spec.max_entries, 1)
    walk = BatchWalk(m, cmd)
    # The kernel writes straight into lazily mapped anonymous memory sized for a
    # full map: no copies, and only the pages actually filled are touched.
    kmem, vmem = anon_buffer(cap * ks), anon_buffer(cap * vb)
    kaddr, vaddr = buffer_address(kmem), buffer_address(vmem)
    step = chunk_size or cap
    total = 0
    more: list[tuple[bytes, bytes]] = []
    while not walk.done:
        room = min(step, cap - total)
        if room <= 0:  # the map changed under the walk: collect the rest in chunks
            kb = ctypes.create_string_buffer(max(step, 64) * ks)
            vbuf = ctypes.create_string_buffer(max(step, 64) * vb)
            n = walk.step(ctypes.addressof(kb), ctypes.addressof(vbuf), max(step, 64))
            if n > 0:
                more.append((ctypes.string_at(kb, n * ks), ctypes.string_at(vbuf, n * vb)))
                total += n
            continue
        n = walk.step(kaddr + total * ks, vaddr + total * vb, room)
        if n < 0:  # a bucket larger than the chunk: take the rest in one go
            step = cap
            continue
        total += n
    if more:
        filled = total - sum(len(k) // ks for k, _ in more)
        kout: Any = bytearray(kmem[: filled * ks]) + b"".join(k for k, _ in more)
        vout: Any = bytearray(vmem[: filled * vb]) + b"".join(v for _, v in more)
    else:
        kout, vout = memoryview(kmem)[: total * ks], memoryview(vmem)[: total * vb]
    return Batch(shape(kout, total, ks, numpy, per_cpu=False),
                 shape(vout, total, vb, numpy, per_cpu=m._ncpu > 0))


def update(m: MapElements, keys: Any, values: Any, flags: int) -> int:
    """BPF_MAP_UPDATE_BATCH (`Map.update_batch`)."""
    if _validate.unsigned(flags, "flags", 64) & ~UpdateFlags.LOCK:
        raise InvalidArgumentError(
            "update_batch takes UpdateFlags.ANY or LOCK only (the kernel has no "
            "NOEXIST/EXIST for batches)")
    held: Any = ()
    if m._fd_values and not _is_buffer(values):
        # Map/Program values (from any iterable) stay open while their numbers are in
        # flight: a value another thread closes meanwhile raises ClosedError, and no
        # object opened after it (taking its number) gets into the map
        values = held = _as_list(values, "values")
    with _hold(*held):
        kbuf, n = _pack_many(m, keys, "keys", value=False)
        vbuf, nv = _pack_many(m, values, "values", value=True)
        if n != nv:
            raise InvalidArgumentError(f"update_batch got {n} keys but {nv} values")
        return _batch_write(m, _t.BPF_MAP_UPDATE_BATCH, kbuf, vbuf, n, flags)


def delete(m: MapElements, keys: Any) -> int:
    """BPF_MAP_DELETE_BATCH (`Map.delete_batch`)."""
    kbuf, n = _pack_many(m, keys, "keys", value=False)
    return _batch_write(m, _t.BPF_MAP_DELETE_BATCH, kbuf, None, n, 0)


def _is_buffer(items: Any) -> bool:
    """Whether `items` are packed elements (bytes, a buffer, a numpy array)."""
    return isinstance(items, (bytes, bytearray, memoryview)) or hasattr(
        items, "__array_interface__")


def _as_list(items: Any, what: str) -> list[Any]:
    try:
        return list(items)
    except TypeError:
        raise InvalidArgumentError(
            f"{what} must be a sequence of {what} or a buffer of packed ones, got "
            f"{type(items).__name__} {items!r}") from None


def _pack_many(m: MapElements, items: Any, what: str, value: bool) -> tuple[Any, int]:
    size = m._vbytes if value else m._key_size
    if _is_buffer(items):
        mv = memoryview(items)
        if mv.ndim != 1 or mv.format != "B":
            mv = mv.cast("B")
        if size == 0 or mv.nbytes % size:
            raise InvalidArgumentError(
                f"{what} buffer must hold a multiple of {size} bytes, got {mv.nbytes}")
        buf = ctypes.create_string_buffer(bytes(mv), max(mv.nbytes, 1))
        return buf, mv.nbytes // size
    seq = _as_list(items, what)
    buf = ctypes.create_string_buffer(max(len(seq) * size, 1))
    raw = memoryview(buf).cast("B")
    for i, item in enumerate(seq):
        dest = raw[i * size:(i + 1) * size]
        if value and m._ncpu:
            m._put_percpu(dest, item)
        elif value:
            pack_into(dest, item, size, f"values[{i}]", m._vtype, m._fd_values)
        else:
            pack_into(dest, item, size, f"keys[{i}]", m._ktype, False)
    return buf, len(seq)


def _batch_write(m: MapElements, cmd: int, kbuf: Any, vbuf: Any, n: int, flags: int) -> int:
    if n == 0:
        return 0
    with m._fd.hold() as fd:
        attr = _t.MapBatchAttr(keys=ctypes.addressof(kbuf),
                               values=ctypes.addressof(vbuf) if vbuf is not None else 0,
                               count=n, map_fd=fd, elem_flags=flags)
        ret = _bpf_errno(cmd, attr)
    done = int(attr.count)
    if ret < 0:
        what = "update_batch" if cmd == _t.BPF_MAP_UPDATE_BATCH else "delete_batch"
        err = -ret
        if err == _ENOENT:
            raise KeyNotFoundError(
                f"{what} on map {m._name!r}: key #{done} not found ({done} of {n} "
                "done)")
        if err == errno.EEXIST:
            raise KeyExistsError(err, f"{what} on map {m._name!r}: key #{done} exists "
                                      f"(NOEXIST; {done} of {n} done)")
        if err in (errno.EINVAL, errno.EOPNOTSUPP, 524) and m._type not in BATCH_TYPES:
            raise NotSupportedError(f"{what} on {type_name(m._type)} maps")
        raise m._elem_error(_UPDATE if cmd == _t.BPF_MAP_UPDATE_BATCH else _DELETE,
                            err, None, flags)
    return done


# its class on first use (process start): see _batch_type.py
__getattr__ = _lazyattr.lazy_attributes(globals(), {"Batch": "._batch_type"})


def _mapped_batch(m: MapElements, numpy: bool) -> tuple[Any, Any, int] | None:
    """(keys, values, count) of the whole array copied from the mapping, as
    `lookup_batch` returns them; None when the map is not mapped."""
    mm = m._memory()
    if mm is None:
        return None
    n, stride, vs = m._mcount, m._mstride, m._value_size
    try:
        block = mm[: n * stride]
    except ValueError:
        return None
    if stride != vs:
        block = b"".join(block[o: o + vs] for o in range(0, len(block), stride))
    import array  # a whole-array lookup_batch only (process start)

    keys = memoryview(array.array("I", range(n))).cast("B")
    return keys, bytearray(block), n
