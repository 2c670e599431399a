"""Memory-mapped arrays: element operations of ARRAY maps created with
`MapFlags.MMAPABLE` (the global-data maps `.data`, `.bss`, `.rodata` among them) served
from a shared mapping of the map's memory instead of system calls, and zero-copy views
of it (`Map.memory()`, `Map.array()`).

The mapping is made on the first element operation (read-only when the map is frozen,
created `RDONLY_PROG`, or opened read-only; then writes keep using the syscall, which
reports the refusal as before). Only what succeeds is served from it: `m[k]`, `lookup`,
`get`, `in`, `m[k] = v`, `update` with `UpdateFlags.ANY`/`EXIST`, iteration and
`lookup_batch` for keys in 0..max_entries-1. Everything that fails (a key out of range,
`UpdateFlags.NOEXIST`, which always fails on arrays, `LOCK`, a write to a read-only map,
`delete`) goes to the kernel, so the errors are exactly the syscall path's.

Memory safety: a mapping is only ever read or written through Python buffer objects
(the `mmap` object and memoryviews of it), never through a raw address, so no access
can outlive it: `close()` drops the map's own views and unmaps only when no view is
exported any more (Python's `mmap.close()` refuses while buffers are exported);
otherwise the memory is unmapped when the last exported view is released. A thread
that reads while another closes gets the value or, once the views are released, falls
back to the syscall path, which raises `ClosedError`.
"""

from __future__ import annotations

import errno
import mmap as _mmap
import sys
from collections.abc import Iterator

from .._sys import ops as _ops
from .._sys import types as _t
from .._sys.types import MapType
from ..errors import ClosedError, InvalidArgumentError, NotSupportedError, SyscallError
from .codec import MapCodec, ctypes_or_none

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["MapMemory"]

_BYTEORDER: Final = sys.byteorder
# _mstate: whether element operations may use a mapping
NONE: Final = 0       # not an mmapable array (or mapping failed): system calls
UNTRIED: Final = 1    # mmapable: mapped on first use
MAPPED: Final = 2     # _mm and its views are set
_CHUNK: Final = 4096


class MapMemory(MapCodec):
    """The memory mapping of an mmapable ARRAY map and what is read through it."""

    __slots__ = ()

    def _init_memory(self, owner: int) -> None:
        """Set the mapping state (from `Map._setup`): `owner` is the thread that gets
        the syscall fast path when the map cannot be mapped."""
        self._mm = None
        self._mvals = None
        self._mints = None
        self._mraw = None
        self._mwritable = False
        self._mstride = (self._value_size + 7) & ~7
        self._mcount = self._spec.max_entries
        self._fast_owner = owner
        mmapable = (self._type == MapType.ARRAY and self._value_size > 0
                    and bool(self._spec.flags & _t.BPF_F_MMAPABLE) and self._mcount > 0)
        self._mstate = UNTRIED if mmapable else NONE
        # the general path of the first m[k] maps the memory; after that m[k] reads it
        self._owner = 0 if mmapable else owner

    def _memory(self) -> Any:
        """The map's mapping, made on first use; None when the map cannot be mapped
        (element operations then use system calls)."""
        mm = self._mm
        if mm is not None or self._mstate != UNTRIED:
            return mm
        length = self._mstride * self._mcount
        size = -(-length // _mmap.PAGESIZE) * _mmap.PAGESIZE
        try:
            with self._fd.hold() as fd:
                try:
                    mm, writable = _ops.mmap_fd(fd, size, True), True
                except SyscallError as e:
                    # frozen (EPERM), RDONLY_PROG or a read-only descriptor (EACCES)
                    if e.errno not in (errno.EPERM, errno.EACCES):
                        raise
                    mm, writable = _ops.mmap_fd(fd, size, False), False
        except (ClosedError, SyscallError):
            # closed, a write-only descriptor, memory the kernel will not map: syscalls
            self._mstate = NONE
            self._owner = self._fast_owner
            return None
        raw = memoryview(mm)[:length]  # read-only for an ACCESS_READ mapping
        ints = None
        if self._vfmt is not None:
            ints = raw.cast(self._vfmt)  # type: ignore[call-overload]
            if self._mstride != self._value_size:
                ints = ints[:: self._mstride // self._value_size]
        if self._mm is not None:  # another thread mapped it meanwhile: use that one
            raw.release()
            mm.close()
            return self._mm
        self._mraw = raw
        self._mints = ints
        self._mvals = ints if self._int_vdecode else None
        self._mwritable = writable
        self._mm = mm  # last: the fast paths test this one
        self._mstate = MAPPED
        if self._fd.closed:  # closed while this thread was mapping: undo
            self._unmap()
            return None
        return mm

    def _unmap(self, state: int = NONE) -> None:
        """Drop the map's own mapping (close(), freeze()): new operations use system
        calls (or map again, `state` UNTRIED). Unmapped now unless views are exported."""
        try:
            mm = self._mm
        except AttributeError:  # closed before _setup
            return
        views = (self._mvals, self._mints, self._mraw)
        self._mm = self._mvals = self._mints = self._mraw = None
        self._mwritable = False
        self._mstate = state
        for v in views:
            if v is not None:
                try:
                    v.release()
                except (BufferError, ValueError):
                    pass
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # views from memory()/array() remain: unmapped when they go

    def _mindex(self, key: Any) -> int:
        """The element index of `key` when the mapping can serve it, else -1 (the
        system call decides, and reports any error)."""
        if self._memory() is None:
            return -1
        if key.__class__ is int:
            return key if 0 <= key < self._mcount else -1
        if key is None:
            return -1
        b = self._thread_bufs()  # type: ignore[attr-defined]
        self._put_key(b, key)  # a malformed key raises as on the syscall path
        i = int.from_bytes(b.kraw, _BYTEORDER)
        return i if i < self._mcount else -1

    def _mread(self, i: int) -> bytes | None:
        """The raw value of element i from the mapping (None once unmapped)."""
        mm = self._mm
        if mm is None:
            return None
        o = i * self._mstride
        try:
            data: bytes = mm[o: o + self._value_size]
        except ValueError:  # unmapped by close() meanwhile
            return None
        return data

    def _mwrite(self, i: int, data: memoryview) -> bool:
        """Store the raw value `data` in element i; False when the mapping cannot."""
        raw = self._mraw
        if raw is None or not self._mwritable:
            return False
        o = i * self._mstride
        try:
            raw[o: o + self._value_size] = data
        except (ValueError, TypeError):  # released meanwhile
            return False
        return True

    def _mchunks(self) -> Iterator[tuple[list[bytes], list[bytes]]]:
        """(keys, values) raw lists of every element, read from the mapping."""
        n, stride, vs = self._mcount, self._mstride, self._value_size
        for start in range(0, n, _CHUNK):
            stop = min(start + _CHUNK, n)
            mm = self._mm
            try:
                if mm is None:
                    raise ValueError
                block = mm[start * stride: stop * stride]
            except ValueError:
                raise self._fd.closed_error() if self._fd.closed else \
                    ClosedError(f"map {self._name!r} was unmapped") from None
            yield ([i.to_bytes(4, _BYTEORDER) for i in range(start, stop)],
                   [block[o: o + vs] for o in range(0, len(block), stride)])

    def _mbatch(self, numpy: bool) -> tuple[Any, Any, int] | None:
        """(keys, values, count) of the whole array copied from the mapping, as
        `lookup_batch` returns them; None when the map is not mapped."""
        mm = self._memory()
        if mm is None:
            return None
        n, stride, vs = self._mcount, self._mstride, self._value_size
        try:
            block = mm[: n * stride]
        except ValueError:
            return None
        if stride != vs:
            block = b"".join(block[o: o + vs] for o in range(0, len(block), stride))
        import array  # a whole-array lookup_batch only (process start)

        keys = memoryview(array.array("I", range(n))).cast("B")
        return keys, bytearray(block), n

    # -- zero-copy views ---------------------------------------------------------------

    def _check_mappable(self) -> Any:
        if self._fd.closed:
            raise self._fd.closed_error()
        if self._type != MapType.ARRAY or not self._spec.flags & _t.BPF_F_MMAPABLE:
            raise InvalidArgumentError(
                f"map {self._name!r} is not an ARRAY created with MapFlags.MMAPABLE")
        mm = self._memory()
        if mm is None:
            if self._fd.closed:
                raise self._fd.closed_error()
            raise NotSupportedError(f"memory mapping of map {self._name!r}",
                                    "the kernel refused to map it")
        return mm

    def memory(self) -> memoryview:
        """The array's memory, zero-copy: a 1-D byte memoryview of max_entries
        elements of round_up(value_size, 8) bytes each, element i at i * that stride.

        Writable unless the map is read-only for user space (frozen, `.rodata`,
        created RDONLY_PROG, opened read-only). Programs and `m[k]` see writes at once.
        Lifetime: the view stays valid (on the map's memory, which the kernel keeps
        while it is mapped) after `close()`; the memory is unmapped once the view is
        released (`view.release()` or no reference left). A writable view keeps the
        map from being frozen (`freeze()` raises EBUSY) until it is released.

        An ARENA map's memory is all its pages (max_entries of them), writable, at
        `arena_address`; it is mapped when the map is created (or on first use) and
        has the same lifetime (see `ebpf.maps.arena`).
        """
        if self._type == MapType.ARENA and not self._fd.closed:
            from .arena import arena_pages  # arenas only (6.9+)

            return memoryview(arena_pages(self)).cast("B")
        mm = self._check_mappable()
        view = memoryview(mm)[: self._mstride * self._mcount]
        return view if self._mwritable else view.toreadonly()

    def array(self, dtype: Any = None) -> Any:
        """The array's memory as a numpy array, zero-copy (needs numpy): shape
        (max_entries,) with one element per map element, of `dtype` (whose itemsize must
        be value_size) or by default the value's type: unsigned (signed with a signed BTF
        type) integers of 1/2/4/8-byte values, the ctypes structure of a BTF struct,
        else shape (max_entries, value_size) of uint8. Same lifetime rules as `memory()`:
        the array (and every view of it) keeps the mapping alive after `close()`. An
        ARENA map's array is all its pages as one flat array of `dtype` (uint8)."""
        try:
            import numpy as np  # optional dependency, only for array()
        except ImportError:
            raise NotSupportedError("Map.array()", "numpy is not installed") from None
        view = self.memory()
        if self._type == MapType.ARENA:  # pages, not elements: a flat array of `dtype`
            return np.frombuffer(view, dtype=np.uint8 if dtype is None else dtype)
        # The strided arrays are views of a frombuffer() array: that one holds the
        # memoryview (an export of the mapping), which keeps the mapping alive as long as
        # any array does. np.ndarray(buffer=memoryview) would hold the mmap object alone,
        # without an export, and close() could unmap memory the array still points at.
        flat = np.frombuffer(view, dtype=np.uint8)
        n, stride, vs = self._mcount, self._mstride, self._value_size
        if dtype is None:
            if self._vfmt is not None:
                dtype = np.dtype(f"={'i' if self._vfmt.islower() else 'u'}{vs}")
            elif self._vtype is not None:
                ctype = ctypes_or_none(self._vtype)
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
                f"dtype {dt} is {dt.itemsize} bytes, the values of map {self._name!r} "
                f"are {vs}")
        return np.ndarray((n,), dtype=dt, buffer=flat, strides=(stride,))
