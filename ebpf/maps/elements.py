"""Element operations of maps: `m[k]`, `lookup`, `get`, `in`, `m[k] = v`, `update`,
`del m[k]`, `delete`, `lookup_and_delete`, `pop`, and queue/stack/bloom filter `push`
and `peek`; the owner thread's fast path, and the errors they raise."""

from __future__ import annotations

import ctypes
import errno
import struct
import sys
from _thread import _local  # threading.local, without importing threading (process start)
from _thread import get_ident as _get_ident

import ebpf._lazyattr as _lazyattr

from .._sys import ops as _ops
from .._sys import types as _t
from .._sys import validate as _validate
from .._sys.fd import hold as _hold
from .._sys.syscall import NR_BPF as _NR
from .._sys.types import MapType
from ..errors import (
    InvalidArgumentError,
    KeyNotFoundError,
    SyscallError,
)
from .base import DELETE as _DELETE
from .base import DELETE_ATTR_SIZE as _DELETE_ATTR_SIZE
from .base import ELEM_ATTR_SIZE as _ELEM_ATTR_SIZE
from .base import KEYLESS_TYPES, NO_ELEMENT_TYPES, type_name
from .base import LOOKUP as _LOOKUP
from .base import LOOKUP_AND_DELETE as _LOOKUP_AND_DELETE
from .base import UPDATE as _UPDATE
from .codec import Buffers
from .mapped import NONE as _NONE
from .mapped import MapMemory

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any, Final

    from .failures import KeyExistsError
    from .flags import UpdateFlags

__all__ = ["KeyExistsError", "MapElements", "UpdateFlags"]

_syscall = _ops.fast_syscall
_get_errno = ctypes.get_errno
_ENOENT: Final = errno.ENOENT
_MISSING: Any = object()
_ANY: Final = _t.BPF_ANY  # UpdateFlags.ANY, the default of update and push
_BYTEORDER: Final = sys.byteorder
# MapElemAttr's bytes: map_fd, key, value, flags
_ELEM_ATTR: Final = struct.Struct("=I4xQQQ").pack


# From their modules on first use (process start: loading maps makes neither class).
__getattr__ = _lazyattr.lazy_attributes(globals(), {
    "UpdateFlags": ".flags", "KeyExistsError": ".failures"})


class MapElements(MapMemory):
    """Reading, writing and deleting single elements (see `Map`)."""

    __slots__ = ()

    def _thread_bufs(self) -> Buffers:
        """Buffers for the calling thread (the owner's preallocated ones, or per-thread)."""
        ident = _get_ident()
        if self._owner == ident:
            return self._bufs  # type: ignore[return-value]
        fd = self._fd.fileno()  # raises once closed
        if self._fast_owner == ident:  # the owner before its fast path (mmapable arrays)
            own = self._bufs
            return own if own is not None else self._owner_bufs(fd, ident)
        tls = self._tls
        if tls is None:
            tls = self._tls = _local()
        b: Buffers | None = getattr(tls, "b", None)
        if b is None:
            b = Buffers(fd, self._key_size, self._vbytes, self._kfmt, self._vfmt)
            tls.b = b
        return b

    def _owner_bufs(self, fd: int, ident: int) -> Buffers:
        """The owner thread's buffers, made on its first element operation; they turn its
        fast path on (not an mmapable array's while it may be mapped)."""
        b = Buffers(fd, self._key_size, self._vbytes, self._kfmt, self._vfmt)
        self._kmv, self._vmv, self._vbuf = b.kmv, b.vmv, b.vbuf
        self._lref, self._uref = b.lref, b.uref
        self._bufs = b
        # Published before this test, while close() clears _fast_owner before it reads
        # _bufs: either close() points these attrs at -1 before it closes the
        # descriptor, or this sees the close and does so (the call fails as closed)
        if self._fast_owner != ident:
            b.lattr.map_fd = b.uattr.map_fd = -1
        elif self._mstate == _NONE:
            self._owner = ident
        return b

    def _put_initial(self, fd: int, key: Any, value: Any) -> bool:
        """`update(key, value)` of a map being created (`fd`: its descriptor), for an int
        key and bytes of the value's size, by a system call of its own (no per-thread
        buffers made for a map that may see no element operation); False (nothing done)
        when `update` must (other keys or values, a key that does not fit, a refusal to
        report)."""
        ks, vs = self._key_size, self._value_size
        if (key.__class__ is not int or value.__class__ not in (bytes, bytearray)
                or len(value) != vs or ks <= 0 or self._ncpu or self._fd_values
                or self._type in KEYLESS_TYPES
                or not 0 <= key < 1 << (8 * ks - 1)):  # (signed or not, the same bytes)
            return False
        data = key.to_bytes(ks, _BYTEORDER) + value  # (the bytes _put_key packs it into)
        buf = (ctypes.c_char * (ks + vs)).from_buffer_copy(data)
        addr = ctypes.addressof(buf)
        # the attr as bytes, which ctypes passes as a pointer to their data (only read)
        attr = _ELEM_ATTR(fd, addr, addr + ks, _ANY)
        return bool(_syscall(_NR, _UPDATE, attr, _ELEM_ATTR_SIZE) >= 0)

    def __getitem__(self, key: Any) -> Any:
        if key.__class__ is not int:
            return self.lookup(key)
        mm = self._mm
        if mm is not None:  # a memory-mapped array (ebpf.maps.mapped): no system call
            if key >= 0:
                mv = self._mvals
                if mv is not None:
                    try:
                        return mv[key]
                    except (IndexError, ValueError):  # out of range / unmapped meanwhile
                        pass
                elif key < self._mcount:
                    o = key * self._mstride
                    try:
                        raw = mm[o: o + self._value_size]
                    except ValueError:  # unmapped by close() meanwhile
                        return self.lookup(key)
                    dec = self._vdec
                    return raw if dec is None else dec(raw)
            return self.lookup(key)  # the kernel's answer (and error) for the rest
        if self._owner == _get_ident():
            try:
                self._kmv[0] = key  # type: ignore[index]
            except (ValueError, TypeError):
                return self.lookup(key)
            if _syscall(_NR, 1, self._lref, 32) >= 0:
                if self._vmode == 0:
                    return self._vbuf.raw
                if self._int_vdecode:
                    return self._vmv[0]  # type: ignore[index]
                return self._vdec(self._vbuf.raw)
            if _get_errno() == _ENOENT:
                raise KeyNotFoundError(f"key {key!r} not found in map {self._name!r}")
        return self.lookup(key)

    def lookup(self, key: Any = None, *, raw: bool = False, flags: int = 0) -> Any:
        """The value stored under `key`; KeyNotFoundError if there is none.

        `raw=True` returns bytes (a list of bytes per CPU for per-CPU maps) even when
        the map has a BTF value type. `flags` may be UpdateFlags.LOCK (read under the
        value's spin lock). Queue/stack maps: `lookup()` is `peek()`.
        """
        if flags.__class__ is not int:  # 0.0, None, False: not "no flags"
            flags = _validate.unsigned(flags, "flags", 64)
        if self._mstate != _NONE and not flags:
            i = self._mindex(key)
            if i >= 0:
                data = self._mread(i)
                if data is not None:
                    return self._decode_value(data, not raw)
        b = self._thread_bufs()
        if not self._load(b, key, flags):
            raise KeyNotFoundError(self._missing(key))
        return self._decode_value(b.vbuf.raw[: self._vbytes], not raw)

    def get(self, key: Any, default: Any = None, *, raw: bool = False) -> Any:
        """Like `lookup`, returning `default` when the key is missing."""
        if self._mstate != _NONE:
            i = self._mindex(key)
            if i >= 0:
                data = self._mread(i)
                if data is not None:
                    return self._decode_value(data, not raw)
        b = self._thread_bufs()
        if not self._load(b, key, 0):
            return default
        return self._decode_value(b.vbuf.raw[: self._vbytes], not raw)

    def __contains__(self, key: Any) -> bool:
        if self._type == MapType.BLOOM_FILTER:
            return self._bloom_contains(key)
        if self._mstate != _NONE and self._mindex(key) >= 0 and self._mm is not None:
            return True  # every index of an array exists
        return self._load(self._thread_bufs(), key, 0)

    def _load(self, b: Buffers, key: Any, flags: int) -> bool:
        """Look `key` up into b.vbuf; False when missing."""
        if self._type in KEYLESS_TYPES:
            if key is not None:
                raise InvalidArgumentError(
                    f"{type_name(self._type)} maps have no keys; use peek()/pop()")
            attr = _t.MapElemAttr(map_fd=b.lattr.map_fd, value=ctypes.addressof(b.vbuf))
            _validate.put(attr, "flags", flags)
            return self._elem_op(_LOOKUP, attr, _ELEM_ATTR_SIZE, key, missing_ok=True)
        self._put_key(b, key)
        attr = b.lattr
        if flags:
            _validate.put(attr, "flags", flags)
            try:
                return self._elem_op(_LOOKUP, attr, _ELEM_ATTR_SIZE, key, missing_ok=True)
            finally:
                attr.flags = 0
        return self._elem_op(_LOOKUP, attr, _ELEM_ATTR_SIZE, key, missing_ok=True)

    def _elem_op(self, cmd: int, attr: _t.MapElemAttr, size: int, key: Any,
                 missing_ok: bool = False) -> bool:
        ref = ctypes.byref(attr)
        fd = self._fd
        users = fd._users
        while True:
            # FD.acquire/release inlined (the funnel of every element operation but the
            # owner fast path): the number stays ours until the remove, ClosedError once
            # closed; a None entry (no fork can happen in between: see FD._users)
            users.append(None)
            try:
                if fd._fd < 0:
                    raise fd.closed_error()
                if _syscall(_NR, cmd, ref, size) >= 0:
                    return True
                err = _get_errno()
            finally:
                users.remove(None)
                if fd._fd < 0 and not users:
                    fd._reap()
            if err == errno.EINTR:
                continue
            if err == _ENOENT and missing_ok:
                return False
            if err == errno.EBADF and (fd._fd < 0 or attr.map_fd == 0xFFFF_FFFF):
                # the owner thread's attrs, which `close()` points at -1 (a u32 field)
                # before it closes the descriptor: a close raced this operation
                raise fd.closed_error()
            raise self._elem_error(cmd, err, key, int(attr.flags))

    def _missing(self, key: Any) -> str:
        if key is None and self._type in KEYLESS_TYPES:
            return f"{type_name(self._type)} map {self._name!r} is empty"
        return f"key {key!r} not found in map {self._name!r}"

    def _elem_error(self, cmd: int, err: int, key: Any, flags: int) -> Exception:
        """The typed error of element command `cmd` that failed with `err`."""
        from .failures import elem_error  # on a failure only (process start)

        return elem_error(self, cmd, err, key, flags)

    def _is_frozen(self) -> bool:
        try:
            with self._fd.hold() as fd:
                return _fdinfo(fd).get("frozen", "0") == "1"
        except (OSError, ValueError):
            return False

    def __setitem__(self, key: Any, value: Any) -> None:
        if key.__class__ is int and value.__class__ is int:
            mv = self._mints
            if mv is not None:  # a memory-mapped array (ebpf.maps.mapped)
                if key >= 0:
                    try:
                        mv[key] = value
                        return
                    except (IndexError, ValueError, TypeError):
                        pass  # out of range, not packable as is, read-only, unmapped
            elif self._owner == _get_ident():
                try:
                    self._kmv[0] = key  # type: ignore[index]
                    self._vmv[0] = value  # type: ignore[index]
                except (ValueError, TypeError):
                    pass
                else:
                    if _syscall(_NR, 2, self._uref, 32) >= 0:
                        return
        self.update(key, value)

    def update(self, key: Any, value: Any, flags: int = _ANY) -> None:
        """Store `value` under `key`.

        flags: UpdateFlags.ANY (default), NOEXIST (KeyExistsError if present),
        EXIST (KeyNotFoundError if absent), LOCK (under the value's spin lock).
        Map-in-map and program array values may be `Map`/`Program` objects (or
        anything with `fileno()`).
        """
        if flags.__class__ is not int:  # 0.0, None, False: not the default ANY (0)
            flags = _validate.unsigned(flags, "flags", 64)
        if self._type in KEYLESS_TYPES:
            if key is not None:
                raise InvalidArgumentError(
                    f"{type_name(self._type)} maps have no keys; use push(value)")
            self.push(value, flags)
            return
        if self._fd_values and not isinstance(value, int):
            with _hold(value):  # a Map/Program value closed meanwhile: ClosedError
                self._update(key, value, flags)
            return
        self._update(key, value, flags)

    def _update(self, key: Any, value: Any, flags: int) -> None:
        if self._mstate != _NONE and flags in (0, _t.BPF_EXIST):
            # NOEXIST (always EEXIST on arrays), LOCK, out-of-range keys: the kernel says
            i = self._mindex(key)
            if i >= 0 and self._mwritable:
                b = self._thread_bufs()
                self._put_value(b, value)
                if self._mwrite(i, b.vraw):
                    return
        b = self._thread_bufs()
        self._put_key(b, key)
        self._put_value(b, value)
        attr = b.uattr
        if flags:
            _validate.put(attr, "flags", flags)
            try:
                self._elem_op(_UPDATE, attr, _ELEM_ATTR_SIZE, key)
            finally:
                attr.flags = 0
        else:
            self._elem_op(_UPDATE, attr, _ELEM_ATTR_SIZE, key)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def delete(self, key: Any) -> None:
        """Remove `key`; KeyNotFoundError if absent."""
        if self._type in KEYLESS_TYPES:
            raise InvalidArgumentError(
                f"{type_name(self._type)} maps have no keys; use pop()")
        b = self._thread_bufs()
        self._put_key(b, key)
        self._elem_op(_DELETE, b.lattr, _DELETE_ATTR_SIZE, key)

    def lookup_and_delete(self, key: Any = None, *, raw: bool = False) -> Any:
        """Atomically read and remove `key` (queue/stack: the next element, key None)."""
        b = self._thread_bufs()
        if self._type in KEYLESS_TYPES:
            if key is not None:
                raise InvalidArgumentError(f"{type_name(self._type)} maps have no keys")
            attr = _t.MapElemAttr(map_fd=b.lattr.map_fd, value=ctypes.addressof(b.vbuf))
        else:
            self._put_key(b, key)
            attr = b.lattr
        if not self._elem_op(_LOOKUP_AND_DELETE, attr, _ELEM_ATTR_SIZE, key, missing_ok=True):
            raise KeyNotFoundError(self._missing(key))
        return self._decode_value(b.vbuf.raw[: self._vbytes], not raw)

    def pop(self, key: Any = _MISSING, default: Any = _MISSING, *, raw: bool = False) -> Any:
        """Remove and return: `m.pop()` on a queue/stack takes the next element;
        `m.pop(key[, default])` on other maps removes `key` (like dict.pop).
        KeyNotFoundError when there is nothing and no default."""
        k = None if key is _MISSING else key
        try:
            return self.lookup_and_delete(k, raw=raw)
        except KeyNotFoundError:
            if default is _MISSING:
                raise
            return default

    def push(self, value: Any, flags: int = _ANY) -> None:
        """Add `value` to a queue, stack or bloom filter. flags=UpdateFlags.EXIST
        makes a full queue/stack drop its oldest element instead of failing."""
        if self._type not in KEYLESS_TYPES:
            raise InvalidArgumentError(
                f"push() is for QUEUE, STACK and BLOOM_FILTER maps, not "
                f"{type_name(self._type)}")
        b = self._thread_bufs()
        self._put_value(b, value)
        attr = _t.MapElemAttr(map_fd=b.lattr.map_fd, value=ctypes.addressof(b.vbuf))
        _validate.put(attr, "flags", flags)
        ref = ctypes.byref(attr)
        fd = self._fd
        while True:
            fd.acquire()
            try:
                if _syscall(_NR, _UPDATE, ref, _ELEM_ATTR_SIZE) >= 0:
                    return
                err = _get_errno()
            finally:
                fd.release()
            if err == errno.EINTR:
                continue
            if err == errno.EBADF and fd.closed:
                raise fd.closed_error()
            if err == errno.E2BIG:
                raise SyscallError(err, f"push to {type_name(self._type)} map "
                                        f"{self._name!r}: full (max_entries "
                                        f"{self._spec.max_entries}; UpdateFlags.EXIST "
                                        f"overwrites the oldest)")
            raise self._elem_error(_UPDATE, err, None, flags)

    def peek(self, *, raw: bool = False) -> Any:
        """The next element of a queue/stack without removing it; KeyNotFoundError
        when empty."""
        return self.lookup(None, raw=raw)

    def _bloom_contains(self, value: Any) -> bool:
        b = self._thread_bufs()
        self._put_value(b, value)
        attr = _t.MapElemAttr(map_fd=b.lattr.map_fd, value=ctypes.addressof(b.vbuf))
        return self._elem_op(_LOOKUP, attr, _ELEM_ATTR_SIZE, value, missing_ok=True)

    def _check_iterable(self) -> None:
        if self._type in KEYLESS_TYPES or self._type in NO_ELEMENT_TYPES:
            raise InvalidArgumentError(
                f"{type_name(self._type)} maps cannot be iterated by key")


def _fdinfo(fd: int) -> dict[str, str]:
    from .info import fdinfo  # MapInfo's module on first use: ~1 ms less `import ebpf.maps`

    return fdinfo(fd)
