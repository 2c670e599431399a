"""The memory mapping of an mmapable ARRAY map, made on the first element operation that
can use it (`map_memory`), its zero-copy views (`Map.memory()`, `Map.array()`), and the
mappings of their own that `Map.mmap()` makes. A module of its own that `ebpf.maps`
imports on first use, so that creating maps does not unmarshal it (process start,
issue 15)."""

from __future__ import annotations

import errno
import mmap as _mmap
import os

from .._sys import ops as _ops
from .._sys import types as _t
from .._sys.types import MapType
from ..errors import ClosedError, InvalidArgumentError, NotSupportedError, SyscallError
from .codec import ctypes_or_none
from .mapped import MAPPED, NONE

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from .core import Map
    from .mapped import MapMemory

__all__ = ["array", "map_memory", "memory", "mmap_view"]


def map_memory(m: MapMemory) -> Any:
    """Map the memory of `m`, an mmapable ARRAY not mapped yet (`MapMemory._memory`);
    None when the map cannot be mapped (element operations then use system calls)."""
    length = m._mstride * m._mcount
    size = -(-length // _mmap.PAGESIZE) * _mmap.PAGESIZE
    try:
        with m._fd.hold() as fd:
            try:
                mm, writable = _ops.mmap_fd(fd, size, True), True
            except SyscallError as e:
                # frozen (EPERM), RDONLY_PROG or a read-only descriptor (EACCES)
                if e.errno not in (errno.EPERM, errno.EACCES):
                    raise
                mm, writable = _ops.mmap_fd(fd, size, False), False
    except (ClosedError, SyscallError):
        # closed, a write-only descriptor, memory the kernel will not map: syscalls
        m._mstate = NONE
        if m._bufs is not None:  # (else made, and the fast path turned on, on first use)
            m._owner = m._fast_owner
        return None
    raw = memoryview(mm)[:length]  # read-only for an ACCESS_READ mapping
    ints = None
    if m._vfmt is not None:
        ints = raw.cast(m._vfmt)  # type: ignore[call-overload]
        if m._mstride != m._value_size:
            ints = ints[:: m._mstride // m._value_size]
    if m._mm is not None:  # another thread mapped it meanwhile: use that one
        raw.release()
        mm.close()
        return m._mm
    m._mraw = raw
    m._mints = ints
    m._mvals = ints if m._int_vdecode else None
    m._mwritable = writable
    m._mm = mm  # last: the fast paths test this one
    m._mstate = MAPPED
    if m._fd.closed:  # closed while this thread was mapping: undo
        m._unmap()
        return None
    return mm


def _check_mappable(m: MapMemory) -> Any:
    if m._fd.closed:
        raise m._fd.closed_error()
    if m._type != MapType.ARRAY or not m._spec.flags & _t.BPF_F_MMAPABLE:
        raise InvalidArgumentError(
            f"map {m._name!r} is not an ARRAY created with MapFlags.MMAPABLE")
    mm = m._memory()
    if mm is None:
        if m._fd.closed:
            raise m._fd.closed_error()
        raise NotSupportedError(f"memory mapping of map {m._name!r}",
                                "the kernel refused to map it")
    return mm


def memory(m: MapMemory) -> memoryview:
    """`m.memory()`: see `Map.memory`."""
    if m._type == MapType.ARENA and not m._fd.closed:
        from .arena import arena_pages  # arenas only (6.9+)

        return memoryview(arena_pages(m)).cast("B")
    mm = _check_mappable(m)
    view = memoryview(mm)[: m._mstride * m._mcount]
    return view if m._mwritable else view.toreadonly()


def array(m: MapMemory, dtype: Any = None) -> Any:
    """`m.array(dtype)`: see `Map.array`."""
    try:
        import numpy as np  # optional dependency, only for array()
    except ImportError:
        raise NotSupportedError("Map.array()", "numpy is not installed") from None
    view = memory(m)
    if m._type == MapType.ARENA:  # pages, not elements: a flat array of `dtype`
        return np.frombuffer(view, dtype=np.uint8 if dtype is None else dtype)
    # The strided arrays are views of a frombuffer() array: that one holds the
    # memoryview (an export of the mapping), which keeps the mapping alive as long as
    # any array does. np.ndarray(buffer=memoryview) would hold the mmap object alone,
    # without an export, and close() could unmap memory the array still points at.
    flat = np.frombuffer(view, dtype=np.uint8)
    n, stride, vs = m._mcount, m._mstride, m._value_size
    if dtype is None:
        if m._vfmt is not None:
            dtype = np.dtype(f"={'i' if m._vfmt.islower() else 'u'}{vs}")
        elif m._vtype is not None:
            ctype = ctypes_or_none(m._vtype)
            if ctype is not None:
                try:
                    dtype = np.dtype(ctype)
                except (TypeError, ValueError):
                    dtype = None
        if dtype is None:
            return np.ndarray((n, vs), dtype=np.uint8, buffer=flat, strides=(stride, 1))
    dt = np.dtype(dtype)
    if dt.itemsize != vs:
        raise InvalidArgumentError(
            f"dtype {dt} is {dt.itemsize} bytes, the values of map {m._name!r} "
            f"are {vs}")
    return np.ndarray((n,), dtype=dt, buffer=flat, strides=(stride,))


def mmap_view(m: Map, writable: bool) -> memoryview:
    """`m.mmap(writable=writable)`: see `Map.mmap`."""
    if m._type != MapType.ARRAY or not m._spec.flags & _t.BPF_F_MMAPABLE:
        raise InvalidArgumentError(
            f"map {m._name!r} is not an ARRAY created with MapFlags.MMAPABLE")
    stride = (m._value_size + 7) & ~7
    length = stride * m._spec.max_entries
    page = os.sysconf("SC_PAGE_SIZE")
    with m._fd.hold() as fd:
        mm = _ops.mmap_fd(fd, (length + page - 1) // page * page, writable)
    m._mmaps.append(mm)
    view = memoryview(mm)[:length]
    return view if writable else view.toreadonly()
