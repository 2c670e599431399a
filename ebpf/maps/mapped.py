"""Memory-mapped arrays: element operations of ARRAY maps created with
`MapFlags.MMAPABLE` (the global-data maps `.data`, `.bss`, `.rodata` among them) served
from a shared mapping of the map's memory instead of system calls, and zero-copy views
of it (`Map.memory()`, `Map.array()`).

Making the mapping and the views live in `mapping.py`, imported on first use (process
start). The mapping is made on the first element operation (read-only when the map is frozen,
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

import sys

from .._sys import types as _t
from .._sys.types import MapType
from .codec import MapCodec

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["MapMemory", "mmapable"]

_BYTEORDER: Final = sys.byteorder
# _mstate: whether element operations may use a mapping
NONE: Final = 0       # not an mmapable array (or mapping failed): system calls
UNTRIED: Final = 1    # mmapable: mapped on first use
MAPPED: Final = 2     # _mm and its views are set
_ARRAY: Final = MapType.ARRAY  # (a constant: an enum class attribute costs ~1k instructions)
_MMAPABLE: Final = _t.BPF_F_MMAPABLE


def mmapable(map_type: int, value_size: int, flags: int, max_entries: int) -> bool:
    """Whether element operations of a map of these can use a mapping of its memory:
    a non-empty ARRAY created with `MapFlags.MMAPABLE`."""
    return map_type == _ARRAY and value_size > 0 and bool(flags & _MMAPABLE) and max_entries > 0


class MapMemory(MapCodec):
    """The memory mapping of an mmapable ARRAY map and what is read through it."""

    __slots__ = ()

    def _init_memory(self, owner: int, mmapable: bool) -> None:
        """Set the mapping state (from `Map._setup`, `_value_size` and `_mcount` set):
        `owner` is the thread that gets the syscall fast path when the map cannot be
        mapped; `mmapable`: what `mmapable()` says of the map."""
        self._mm = None
        self._mvals = None
        self._mints = None
        self._mraw = None
        self._mwritable = False
        self._mstride = (self._value_size + 7) & ~7
        self._fast_owner = owner
        self._mstate = UNTRIED if mmapable else NONE
        # the general path of the first m[k] maps the memory; after that m[k] reads it
        self._owner = 0 if mmapable else owner

    def _memory(self) -> Any:
        """The map's mapping, made on first use; None when the map cannot be mapped
        (element operations then use system calls)."""
        mm = self._mm
        if mm is not None or self._mstate != UNTRIED:
            return mm
        from .mapping import map_memory  # the first use of a mapping (process start)

        return map_memory(self)

    def _unmap(self, state: int = NONE) -> None:
        """Drop the map's own mapping (close(), freeze()): new operations use system
        calls (or map again, `state` UNTRIED). Unmapped now unless views are exported."""
        mm = self._mm
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

    # -- zero-copy views ---------------------------------------------------------------

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
        from .mapping import memory  # on first use (process start)

        return memory(self)

    def array(self, dtype: Any = None) -> Any:
        """The array's memory as a numpy array, zero-copy (needs numpy): shape
        (max_entries,) with one element per map element, of `dtype` (whose itemsize must
        be value_size) or by default the value's type: unsigned (signed with a signed BTF
        type) integers of 1/2/4/8-byte values, the ctypes structure of a BTF struct,
        else shape (max_entries, value_size) of uint8. Same lifetime rules as `memory()`:
        the array (and every view of it) keeps the mapping alive after `close()`. An
        ARENA map's array is all its pages as one flat array of `dtype` (uint8)."""
        from .mapping import array  # on first use (process start)

        return array(self, dtype)
