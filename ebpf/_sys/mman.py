"""Shared memory mappings of a map at an address of the caller's choosing (BPF arena
maps: the kernel dictates where their user-space view lives), which Python's `mmap`
module cannot make.

The mapping is handed out as a writable ctypes byte array (`SharedPages`) and unmapped
when that object is garbage: every buffer made from it (``memoryview(pages)``, a numpy
array on that view) keeps it alive, so no view can outlive the memory it shows.
"""

from __future__ import annotations

import ctypes
import errno
import mmap as _mmap
import os
import weakref
from typing import Any

from ..errors import SyscallError

__all__ = ["SharedPages", "map_shared"]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.mmap.restype = ctypes.c_void_p
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.munmap.restype = ctypes.c_int

MAP_FIXED_NOREPLACE = 0x100000  # the same value on every Linux architecture
_MAP_FAILED = ctypes.c_void_p(-1).value


class SharedPages(ctypes.Array):  # type: ignore[type-arg]
    """Base of the byte arrays `map_shared` returns (for isinstance checks); each
    instance is an ``ctypes.c_ubyte`` array over the mapping, with `address`."""

    _type_ = ctypes.c_ubyte
    _length_ = 0
    address: int


def _unmap(address: int, length: int) -> None:
    _libc.munmap(address, length)


def map_shared(fd: int, length: int, address: int = 0) -> Any:
    """mmap(2) `length` bytes of the map `fd`, shared and writable, at `address` (or
    where the kernel likes when 0). A fixed address never replaces an existing mapping
    (MAP_FIXED_NOREPLACE): if something is mapped there, SyscallError (EEXIST) says
    so. Returns a `SharedPages` byte array (a ctypes c_ubyte array over the mapping,
    `.address` its start), unmapped when it is garbage."""
    flags = _mmap.MAP_SHARED | (MAP_FIXED_NOREPLACE if address else 0)
    prot = _mmap.PROT_READ | _mmap.PROT_WRITE
    got = _libc.mmap(address or None, length, prot, flags, fd, 0)
    if got is None or got == _MAP_FAILED:
        err = ctypes.get_errno() or errno.EINVAL
        where = f" at {address:#x}" if address else ""
        hint = (": something else is mapped there" if err == errno.EEXIST else
                f": {os.strerror(err)}")
        raise SyscallError(err, f"mmap of {length} bytes of map fd {fd}{where}{hint}")
    if address and got != address:  # a kernel without MAP_FIXED_NOREPLACE (< 4.17)
        _libc.munmap(got, length)
        raise SyscallError(errno.EEXIST, f"mmap of map fd {fd} at {address:#x}: the "
                                         f"kernel placed it at {got:#x} instead")
    cls: Any = type("SharedPages", (SharedPages,),
                    {"_type_": ctypes.c_ubyte, "_length_": length})
    pages = cls.from_address(got)
    pages.address = got
    weakref.finalize(pages, _unmap, got, length)
    return pages
