"""Iterating over maps: what `Map.keys()`, `values()`, `items()`, `len()`, `next_key`
and `clear()` do, robust against concurrent deletes (batch walks where the kernel has
them, else BPF_MAP_GET_NEXT_KEY plus lookups). `Map`'s methods import this module on
first use (process start: a load never iterates)."""

from __future__ import annotations

import ctypes
import errno
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from .._sys import ops as _ops
from .._sys import types as _t
from .._sys.syscall import NR_BPF as _NR
from .._sys.syscall import bpf_errno as _bpf_errno
from ..errors import (
    ClosedError,
    Error,
    InvalidArgumentError,
    KeyNotFoundError,
    NotSupportedError,
    SyscallError,
)
from .base import ARRAY_TYPES, BATCH_TYPES, KEYLESS_TYPES, NO_ELEMENT_TYPES, type_name
from .base import ELEM_ATTR_SIZE as _ELEM_ATTR_SIZE
from .base import LOOKUP as _LOOKUP
from .base import NEXT_KEY as _NEXT_KEY
from .base import NEXT_KEY_ATTR_SIZE as _NEXT_KEY_ATTR_SIZE
from .batch import BatchWalk
from .mapped import _BYTEORDER
from .mapped import NONE as _NONE

if TYPE_CHECKING:
    from .elements import MapElements

__all__ = ["IterationAbortedError", "clear", "items", "keys", "length", "next_key", "raw_keys",
           "values"]

_syscall = _ops.fast_syscall
_get_errno = ctypes.get_errno
_ENOENT: Final = errno.ENOENT


class IterationAbortedError(Error, RuntimeError):
    """Iterating a map gave up: it kept changing under the iterator (keys deleted
    and re-added faster than the walk progressed)."""


def next_key(m: MapElements, key: Any, raw: bool) -> Any:
    """The key after `key` in the kernel's iteration order (the first key for
    None), or None after the last one."""
    b = m._thread_bufs()
    fd = b.lattr.map_fd
    nbuf = ctypes.create_string_buffer(max(m._key_size, 1))
    attr = _t.MapElemAttr(map_fd=fd, next_key=ctypes.addressof(nbuf))
    if key is not None:
        m._put_key(b, key)
        attr.key = ctypes.addressof(b.kbuf)
    if not m._elem_op(_NEXT_KEY, attr, _NEXT_KEY_ATTR_SIZE, key, missing_ok=True):
        return None
    return m._decode_key(nbuf.raw[: m._key_size], not raw)


def raw_keys(m: MapElements) -> Iterator[bytes]:
    """Keys as bytes via BPF_MAP_GET_NEXT_KEY, robust against concurrent deletes.

    When the current key is deleted between steps, the kernel restarts hash-like
    maps from their first key (or, should it answer ENOENT, the walk restarts
    itself, like cilium/ebpf); keys already produced are skipped, and the walk
    gives up (IterationAbortedError) if it makes no progress for too long.
    """
    m._check_iterable()
    fd = m._fd
    ks = m._key_size
    cur = ctypes.create_string_buffer(max(ks, 1))
    nxt = ctypes.create_string_buffer(max(ks, 1))
    attr = _t.MapElemAttr(map_fd=fd.fileno(), key=0, next_key=ctypes.addressof(nxt))
    ref = ctypes.byref(attr)
    array_like = m._type in ARRAY_TYPES
    seen: set[bytes] | None = None if array_like else set()
    limit = 4 * max(m._spec.max_entries, 1) + 64
    steps = 0
    while True:
        fd.acquire()  # held per step, not across yields: close() is never delayed
        try:
            ret = _syscall(_NR, _NEXT_KEY, ref, _NEXT_KEY_ATTR_SIZE)
            err = _get_errno() if ret < 0 else 0
        finally:
            fd.release()
        if ret < 0:
            if err == errno.EINTR:
                continue
            if err == _ENOENT:
                if seen is None or not attr.key or _has_raw_key(m, cur.raw[:ks]):
                    return  # the real end of the map
                attr.key = 0  # the cursor key was deleted: start over
                steps += 1
                continue
            raise m._elem_error(_NEXT_KEY, err, None, 0)
        steps += 1
        if steps > limit:
            raise IterationAbortedError(
                f"iteration of map {m._name!r} aborted after {steps} steps: the "
                "map kept changing (concurrent deletes restart the walk)")
        k = nxt.raw[:ks]
        ctypes.memmove(cur, nxt, ks)
        attr.key = ctypes.addressof(cur)
        if seen is not None:
            if k in seen:
                continue  # restarted after a concurrent delete: skip known keys
            seen.add(k)
        yield k


def _has_raw_key(m: MapElements, key: bytes) -> bool:
    """Whether `key` exists; True when the map cannot tell (reads unsupported)."""
    vbuf = ctypes.create_string_buffer(max(m._vbytes, 8))
    kbuf = ctypes.create_string_buffer(key, max(len(key), 1))
    with m._fd.hold() as fd:
        attr = _t.MapElemAttr(map_fd=fd, key=ctypes.addressof(kbuf),
                              value=ctypes.addressof(vbuf))
        ret = _bpf_errno(_LOOKUP, attr)
    return ret >= 0 or ret != -_ENOENT


def raw_chunks(m: MapElements) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """(keys, values) raw lists, chunk by chunk: batch lookups where the map type
    supports them (a bucket-wise walk that never repeats or loses keys under
    concurrent updates), else BPF_MAP_GET_NEXT_KEY plus lookups."""
    m._check_iterable()
    if m._mstate != _NONE and m._memory() is not None:
        yield from _mapped_chunks(m)  # a memory-mapped array: no system call
        return
    if m._type in BATCH_TYPES:
        walk = BatchWalk(m, _t.BPF_MAP_LOOKUP_BATCH)
        chunk = 4096
        ks, vb = m._key_size, m._vbytes
        kbuf = ctypes.create_string_buffer(max(chunk * ks, 1))
        vbuf = ctypes.create_string_buffer(max(chunk * vb, 1))
        first = True
        while not walk.done:
            try:
                n = walk.step(ctypes.addressof(kbuf), ctypes.addressof(vbuf), chunk)
            except (NotSupportedError, SyscallError) as e:
                if first and (isinstance(e, NotSupportedError) or e.errno == errno.EINVAL):
                    break  # no batch support in this kernel: walk the keys instead
                raise
            first = False
            if n < 0:  # a hash bucket holds more than `chunk` elements
                chunk *= 2
                kbuf = ctypes.create_string_buffer(chunk * ks)
                vbuf = ctypes.create_string_buffer(chunk * vb)
                continue
            if n:
                kb = ctypes.string_at(kbuf, n * ks)
                vbs = ctypes.string_at(vbuf, n * vb)
                yield ([kb[i:i + ks] for i in range(0, n * ks, ks)],
                       [vbs[i:i + vb] for i in range(0, n * vb, vb)])
        else:
            return
    yield from _raw_chunks_slow(m)


def _raw_chunks_slow(m: MapElements) -> Iterator[tuple[list[bytes], list[bytes]]]:
    b_val = ctypes.create_string_buffer(max(m._vbytes, 1))
    kbuf = ctypes.create_string_buffer(max(m._key_size, 1))
    attr = _t.MapElemAttr(map_fd=m._fd.fileno(), key=ctypes.addressof(kbuf),
                          value=ctypes.addressof(b_val))
    for k in raw_keys(m):
        ctypes.memmove(kbuf, k, m._key_size)
        try:
            found = m._elem_op(_LOOKUP, attr, _ELEM_ATTR_SIZE, k, missing_ok=True)
        except NotSupportedError:
            found = False  # e.g. slots of fd arrays that cannot be read back
        if found:  # else deleted concurrently (or an empty fd slot): skip it
            yield [k], [b_val.raw[: m._vbytes]]


def keys(m: MapElements, raw: bool) -> Iterator[Any]:
    """Iterate over keys (bytes, or typed with a BTF key type unless raw=True)."""
    if m._type in BATCH_TYPES:
        return _keys_batched(m, not raw)
    dec = m._kdec if not raw else None
    return (dec(k) for k in raw_keys(m)) if dec else raw_keys(m)


def _keys_batched(m: MapElements, typed: bool) -> Iterator[Any]:
    dec = m._kdec if typed else None
    for chunk, _ in raw_chunks(m):
        yield from (map(dec, chunk) if dec else chunk)


def values(m: MapElements, raw: bool) -> Iterator[Any]:
    """Iterate over values (decoded like `lookup`)."""
    for _, vals in raw_chunks(m):
        yield from m._decode_values(vals, not raw)


def items(m: MapElements, raw: bool) -> Iterator[tuple[Any, Any]]:
    """Iterate over (key, value) pairs. Concurrent deletes are tolerated: deleted
    keys are skipped and no key is produced twice."""
    typed = not raw
    kdec = m._kdec if typed else None
    for chunk, vals in raw_chunks(m):
        yield from zip(map(kdec, chunk) if kdec else chunk, m._decode_values(vals, typed),
                       strict=True)


def length(m: MapElements) -> int:
    """Number of elements: max_entries for arrays, a full walk for hash-like maps."""
    if m._type in ARRAY_TYPES:
        return m._spec.max_entries
    if m._type in KEYLESS_TYPES or m._type in NO_ELEMENT_TYPES:
        raise TypeError(f"len() is not defined for {type_name(m._type)} maps")
    if m._type in BATCH_TYPES:
        return sum(len(k) for k, _ in raw_chunks(m))
    return sum(1 for _ in raw_keys(m))


def clear(m: MapElements) -> None:
    """Delete every element (hash-like maps)."""
    if m._type in ARRAY_TYPES:
        raise InvalidArgumentError(
            f"elements of {type_name(m._type)} maps cannot be deleted")
    if m._type in KEYLESS_TYPES:
        while True:
            try:
                m.lookup_and_delete(None, raw=True)
            except KeyNotFoundError:
                return
    for k in list(raw_keys(m)):
        try:
            m.delete(k)
        except KeyNotFoundError:
            pass


_CHUNK: Final = 4096  # elements per chunk read from a mapped array


def _mapped_chunks(m: MapElements) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """(keys, values) raw lists of every element, read from the mapping."""
    n, stride, vs = m._mcount, m._mstride, m._value_size
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        mm = m._mm
        try:
            if mm is None:
                raise ValueError
            block = mm[start * stride: stop * stride]
        except ValueError:
            raise m._fd.closed_error() if m._fd.closed else \
                ClosedError(f"map {m._name!r} was unmapped") from None
        yield ([i.to_bytes(4, _BYTEORDER) for i in range(start, stop)],
               [block[o: o + vs] for o in range(0, len(block), stride)])
