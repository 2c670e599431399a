"""BPF maps: `MapSpec` (what to create) and `Map` (a dict-like kernel map).

```python
spec = MapSpec(type=MapType.HASH, key_size=4, value_size=8, max_entries=1 << 20,
               name="counts")
with Map(spec) as m:
    m[1] = 2                      # ints are packed native-endian to key/value size
    m[1]                          # -> b"\\x02\\0\\0\\0\\0\\0\\0\\0" (typed with BTF)
    m.update(1, 3, UpdateFlags.EXIST)
    keys, values = m.lookup_batch()
```

Keys and values accept `int` (native byte order, two's complement when
negative), bytes-like objects and ctypes instances of the exact size. With BTF
key/value types (`MapSpec.key`/`.value`, or read back from the kernel for maps
opened by pin/id) they also accept what `ebpf.btf.values.encode` does (dicts for
structs, sequences for arrays), and lookups return typed values: ints for
integer and enum types, `ebpf.btf.to_ctypes` instances for structs, unions and
arrays; `raw=True` (on `lookup`, `get`, `keys`, `values`, `items`) always gives
bytes. Per-CPU maps take and return a list with one value per possible CPU.

A missing key raises `KeyNotFoundError` (a `KeyError`); a wrong size raises
`InvalidArgumentError` (a `ValueError`) saying the expected size. Iteration
(`keys()`, `values()`, `items()`) tolerates concurrent deletes: nothing is
produced twice and deleted keys are skipped.

A `Map` may be used from several threads. The thread that created it gets a
preallocated fast path; other threads use buffers of their own.
"""

from __future__ import annotations

import ctypes
import dataclasses
import enum
import errno
import fcntl as _fcntl
import mmap as _mmap
import os
import stat as _stat
import sys
import threading
from _thread import get_ident as _get_ident
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from ._sys import ops as _ops
from ._sys import types as _t
from ._sys import validate as _validate
from ._sys.fd import FD
from ._sys.fd import hold as _hold
from ._sys.syscall import NR_BPF as _NR
from ._sys.syscall import bpf_errno as _bpf_errno
from ._sys.syscall import raw_syscall as _raw_syscall
from ._sys.types import MapType
from .errors import (
    Error,
    InvalidArgumentError,
    KeyNotFoundError,
    NotSupportedError,
    PermissionError,
    SyscallError,
    from_errno,
)
from .spec.maps import MapFlags, MapSpec, PinType
from .spec.names import kernel_name

if TYPE_CHECKING:
    from . import btf

__all__ = [
    "Batch",
    "IterationAbortedError",
    "KeyExistsError",
    "Map",
    "MapFlags",
    "MapInfo",
    "MapSpec",
    "MapType",
    "PinType",
    "UpdateFlags",
    "map_ids",
    "sanitize_name",
]

_syscall = _ops.fast_syscall
_get_errno = ctypes.get_errno
_ENOENT: Final = errno.ENOENT
_BYTEORDER: Final = sys.byteorder
_ELEM_ATTR_SIZE: Final = ctypes.sizeof(_t.MapElemAttr)
# MAP_DELETE_ELEM and MAP_GET_NEXT_KEY check that the attr is zero after their
# last field; passing a shorter size lets them share the lookup attr.
_DELETE_ATTR_SIZE: Final = _t.MapElemAttr.key.offset + 8
_NEXT_KEY_ATTR_SIZE: Final = _t.MapElemAttr.next_key.offset + 8

_LOOKUP: Final = int(_t.Cmd.MAP_LOOKUP_ELEM)
_UPDATE: Final = int(_t.Cmd.MAP_UPDATE_ELEM)
_DELETE: Final = int(_t.Cmd.MAP_DELETE_ELEM)
_NEXT_KEY: Final = int(_t.Cmd.MAP_GET_NEXT_KEY)
_LOOKUP_AND_DELETE: Final = int(_t.Cmd.MAP_LOOKUP_AND_DELETE_ELEM)


class UpdateFlags(enum.IntFlag):
    """Flags of `Map.update`: ANY (create or replace), NOEXIST (create only),
    EXIST (replace only), LOCK (update under the value's bpf_spin_lock)."""

    ANY = _t.BPF_ANY
    NOEXIST = _t.BPF_NOEXIST
    EXIST = _t.BPF_EXIST
    LOCK = _t.BPF_F_LOCK


class IterationAbortedError(Error, RuntimeError):
    """Iterating a map gave up: it kept changing under the iterator (keys deleted
    and re-added faster than the walk progressed)."""


class KeyExistsError(SyscallError):
    """`update(..., UpdateFlags.NOEXIST)` found the key already present."""


# Map types whose keys are the indices 0..max_entries-1 and whose elements
# cannot be deleted.
_ARRAY_TYPES: Final = frozenset({
    MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
    MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS, MapType.DEVMAP, MapType.CPUMAP,
    MapType.XSKMAP, MapType.SOCKMAP, MapType.REUSEPORT_SOCKARRAY,
})
_PERCPU_TYPES: Final = frozenset({
    MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
    MapType.PERCPU_CGROUP_STORAGE,
})
# Map types whose user-space values are file descriptors of other objects.
_FD_VALUE_TYPES: Final = frozenset({
    MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY,
    MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.SOCKMAP, MapType.SOCKHASH,
    MapType.XSKMAP, MapType.REUSEPORT_SOCKARRAY,
})
_KEYLESS_TYPES: Final = frozenset({MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER})
_BATCH_TYPES: Final = frozenset({
    MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH,
    MapType.ARRAY, MapType.PERCPU_ARRAY,
})
_NO_ELEMENT_TYPES: Final = frozenset({
    MapType.RINGBUF, MapType.USER_RINGBUF, MapType.ARENA, MapType.STRUCT_OPS,
})

# Map types the kernel takes no key/value BTF for (libbpf drops it for them too).
_NO_BTF_TYPES: Final = frozenset({
    MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.STACK_TRACE,
    MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.DEVMAP, MapType.DEVMAP_HASH,
    MapType.CPUMAP, MapType.XSKMAP, MapType.SOCKMAP, MapType.SOCKHASH, MapType.QUEUE,
    MapType.STACK, MapType.PROG_ARRAY, MapType.RINGBUF, MapType.USER_RINGBUF,
})

_INT_FORMATS: Final = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _type_name(t: int) -> str:
    try:
        return MapType(t).name.removesuffix("_DEPRECATED")
    except ValueError:
        return f"map type {t}"


sanitize_name = kernel_name
"""Alias of `ebpf.spec.kernel_name`."""


@dataclasses.dataclass(frozen=True)
class MapInfo:
    """What the kernel reports about a map (BPF_OBJ_GET_INFO_BY_FD)."""

    id: int
    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: MapFlags
    map_extra: int = 0
    btf_id: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    btf_vmlinux_value_type_id: int = 0
    ifindex: int = 0
    frozen: bool = False


class Batch(NamedTuple):
    """Result of a batch lookup: raw `keys` and `values` buffers.

    Each is a memoryview over fresh memory: 1-D with a native unsigned integer
    format when the element is 1, 2, 4 or 8 bytes (so `.tolist()` gives ints),
    else 2-D bytes of shape (count, element size). Per-CPU values are 2-D of shape
    (count, possible CPUs * round_up(value_size, 8)). With `numpy=True` both are
    numpy arrays instead.
    """

    keys: Any
    values: Any


class _Buffers:
    """Preallocated key/value buffers and attrs for one thread's element operations."""

    __slots__ = ("kbuf", "kmv", "kraw", "lattr", "lref", "nbuf", "uattr", "uref", "vbuf",
                 "vmv", "vraw")

    def __init__(self, fd: int, key_size: int, value_bytes: int, kfmt: str | None,
                 vfmt: str | None) -> None:
        self.kbuf = ctypes.create_string_buffer(max(key_size, 1))
        self.kraw = memoryview(self.kbuf).cast("B")[:key_size]
        self.kmv = _typed_view(self.kbuf, kfmt)
        self.vbuf = ctypes.create_string_buffer(max(value_bytes, 1))
        self.vraw = memoryview(self.vbuf).cast("B")[:value_bytes]
        self.vmv = _typed_view(self.vbuf, vfmt)
        self.nbuf = ctypes.create_string_buffer(max(key_size, 1))
        kaddr = ctypes.addressof(self.kbuf) if key_size else 0
        self.lattr = _t.MapElemAttr(map_fd=fd, key=kaddr, value=ctypes.addressof(self.vbuf))
        self.lref = ctypes.byref(self.lattr)
        self.uattr = _t.MapElemAttr(map_fd=fd, key=kaddr, value=ctypes.addressof(self.vbuf))
        self.uref = ctypes.byref(self.uattr)


_MISSING: Any = object()


class Map:
    """A BPF map: create one from a `MapSpec`, or open one by pin path, id or fd.

    Dict-like: `m[k]`, `m[k] = v`, `del m[k]`, `k in m`, `get`, `pop`, `keys()`,
    `values()`, `items()`, iteration, and `len()` (O(1) for arrays, a walk for
    hash maps). Also `update(k, v, flags)`, batch operations, queue/stack
    `push`/`pop`/`peek`, `freeze`, `mmap`, `pin`/`unpin`, `info`, `dup`.

    `Map(spec, inner_map_fd=None, btf_handle=None, pin_path=None)`:
      inner_map_fd  template map for ARRAY_OF_MAPS/HASH_OF_MAPS (else one is created
                    from `spec.inner_map` for the duration of the call)
      btf_handle    an `ebpf.btf.Handle` loaded from the `btf.Spec` that `spec.key` and
                    `spec.value` come from (their ids are looked up there); without it
                    a small BTF object is built for the two types when possible
      pin_path      bpffs directory for `spec.pinning == PinType.BY_NAME`: an existing
                    compatible map pinned there is reused, else the new map is pinned

    Raises NotSupportedError when the kernel lacks the map type, and SyscallError
    (with what was asked) for any other refusal. Close with `close()` or use as a
    context manager; a map left to the garbage collector warns (ResourceWarning).
    """

    __slots__ = (
        "__weakref__",
        "_bufs",
        "_fd",
        "_fd_values",
        "_frozen",
        "_int_vdecode",
        "_kdec",
        "_key_size",
        "_kfmt",
        "_kmv",
        "_ktype",
        "_lref",
        "_mmaps",
        "_name",
        "_ncpu",
        "_owner",
        "_pinned",
        "_spec",
        "_tls",
        "_type",
        "_uref",
        "_value_size",
        "_vbuf",
        "_vbytes",
        "_vdec",
        "_vfmt",
        "_vmode",
        "_vmv",
        "_vstride",
        "_vtype",
    )

    # -- creation ---------------------------------------------------------------------

    def __init__(self, spec: MapSpec, *, inner_map_fd: int | None = None,
                 btf_handle: Any = None, pin_path: str | os.PathLike[str] | None = None) -> None:
        self._owner = 0
        self._mmaps: list[Any] = []
        self._pinned: str | None = None
        self._frozen = False
        _create_attr(spec)  # refuse a malformed spec before touching the kernel
        spec = spec.copy()
        pin_file: str | None = None
        if spec.pinning == PinType.BY_NAME and pin_path is not None:
            if not spec.name:
                raise InvalidArgumentError("a map pinned by name needs a name")
            pin_dir = _validate.path(pin_path, "pin_path")
            pin_file = os.path.join(pin_dir, spec.name)
            _check_pin_location(pin_dir, pin_file)
            existing = _try_obj_get(pin_file)
            if existing is not None:
                self._setup(FD(existing, f"map {spec.name!r}"), spec)
                try:
                    spec.check_compatible(self)
                except BaseException:
                    self.close()
                    raise
                self._pinned = pin_file
                return
        fd = _create(spec, inner_map_fd, btf_handle)
        self._setup(fd, spec)
        try:
            for k, v in spec.contents:
                self.update(k, v)
            if spec.freeze:
                self.freeze()
            if pin_file is not None:
                self.pin(pin_file)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_fd(cls, fd: int | FD, *, spec: MapSpec | None = None) -> Map:
        """Wrap a map file descriptor; the Map takes ownership and closes it.

        Type, sizes and flags are read from the kernel; `spec` (if given) supplies
        BTF key/value types and the name.
        """
        owned = fd if isinstance(fd, FD) else FD(_validate.integer(fd, "fd", 0, 2**31 - 1), "map")
        kind = _anon_kind(owned.fileno())
        if kind not in ("", "bpf-map"):
            owned.close()
            raise InvalidArgumentError(f"fd is a {kind}, not a map")
        m = cls.__new__(cls)
        m._owner = 0
        m._mmaps = []
        m._pinned = None
        m._frozen = False
        try:
            info = _query_info(owned.fileno())
        except BaseException:
            owned.close()
            raise
        base = MapSpec(name=info.name, type=info.type, key_size=info.key_size,
                       value_size=info.value_size, max_entries=info.max_entries,
                       flags=int(info.flags), map_extra=info.map_extra)
        if spec is not None:
            base.key, base.value = spec.key, spec.value
            base.name = spec.name or base.name
            base.inner_map = spec.inner_map
        elif info.btf_id and (info.btf_key_type_id or info.btf_value_type_id):
            base.key, base.value = _kernel_btf_types(info)
        owned.kind = f"map {base.name!r}"
        m._setup(owned, base)
        m._frozen = info.frozen
        return m

    @classmethod
    def open_pinned(cls, path: str | os.PathLike[str], *, read_only: bool = False,
                    write_only: bool = False) -> Map:
        """Open the map pinned at `path` on a bpffs (BPF_OBJ_GET)."""
        flags = (_t.BPF_F_RDONLY if read_only else 0) | (_t.BPF_F_WRONLY if write_only else 0)
        p = _validate.path(path, "pin path")
        try:
            fd = _ops.obj_get(p, flags)
        except SyscallError as e:
            if e.errno == errno.ENOENT:
                raise SyscallError(errno.ENOENT, f"no pinned object at {p}") from None
            if e.errno == errno.EPERM and not _on_bpffs(p):
                raise _not_bpffs(p) from None
            raise
        kind = _anon_kind(fd)
        if kind and kind != "bpf-map":
            os.close(fd)
            raise InvalidArgumentError(f"{p} is a {kind}, not a map")
        m = cls.from_fd(fd)
        m._pinned = p
        return m

    @classmethod
    def from_id(cls, map_id: int) -> Map:
        """Open the map with kernel id `map_id` (BPF_MAP_GET_FD_BY_ID)."""
        try:
            fd = _ops.get_fd_by_id(_t.Cmd.MAP_GET_FD_BY_ID, map_id)
        except SyscallError as e:
            if e.errno == errno.ENOENT:
                raise KeyNotFoundError(f"no map with id {map_id}") from None
            raise
        return cls.from_fd(fd)

    def _setup(self, fd: FD, spec: MapSpec) -> None:
        self._fd = fd
        self._spec = spec
        self._name = spec.name
        self._type = int(spec.type)
        self._key_size = ks = spec.key_size
        self._value_size = vs = spec.value_size
        self._ktype = spec.key
        self._vtype = spec.value
        self._fd_values = spec.type in _FD_VALUE_TYPES
        percpu = spec.type in _PERCPU_TYPES
        self._ncpu = _ops.possible_cpus() if percpu else 0
        self._vstride = (vs + 7) & ~7 if percpu else vs
        self._vbytes = self._vstride * self._ncpu if percpu else vs
        self._kfmt = _int_format(ks, spec.key)
        self._vfmt = None if percpu else _int_format(vs, spec.value)
        self._kdec = _decoder(spec.key, ks)[0]
        self._vdec, self._vmode = _decoder(spec.value, vs)
        self._tls: threading.local | None = None
        b = self._bufs = _Buffers(fd.fileno(), ks, self._vbytes, self._kfmt, self._vfmt)
        self._kmv = b.kmv
        self._vmv = b.vmv
        self._vbuf = b.vbuf
        self._lref = b.lref
        self._uref = b.uref
        self._int_vdecode = self._vmode == 1 and b.vmv is not None
        # The fast path (owner thread, int keys) needs a plain, non-per-CPU element map.
        fast = not percpu and spec.type not in _KEYLESS_TYPES | _NO_ELEMENT_TYPES and ks > 0
        self._owner = _get_ident() if fast else 0

    # -- properties ---------------------------------------------------------------------

    @property
    def fd(self) -> FD:
        """The `FD` owning the map's descriptor."""
        return self._fd

    def fileno(self) -> int:
        """The bare descriptor number; keep the map open while it is used."""
        return self._fd.fileno()

    @property
    def closed(self) -> bool:
        """True once `close()` was called (operations then raise `ClosedError`)."""
        return self._fd.closed

    @property
    def name(self) -> str:
        """The map's name (as given to the kernel, at most 15 bytes)."""
        return self._name

    @property
    def type(self) -> MapType:
        """The map type (a plain int for types newer than this library)."""
        try:
            return MapType(self._type)
        except ValueError:
            return self._type  # type: ignore[return-value]

    @property
    def key_size(self) -> int:
        """Size of a key in bytes."""
        return self._key_size

    @property
    def value_size(self) -> int:
        """Size of a value in bytes (of one CPU's value for per-CPU maps)."""
        return self._value_size

    @property
    def max_entries(self) -> int:
        """The maximum number of entries (for ring buffers: the size in bytes)."""
        return self._spec.max_entries

    @property
    def flags(self) -> MapFlags:
        """The map's creation flags (`MapFlags`)."""
        return MapFlags(self._spec.flags)

    @property
    def key_type(self) -> btf.Type | None:
        """BTF type of the keys, if known."""
        return self._ktype

    @property
    def value_type(self) -> btf.Type | None:
        """BTF type of the values, if known."""
        return self._vtype

    @property
    def spec(self) -> MapSpec:
        """A copy of the spec this map was created from (or reconstructed from the kernel)."""
        return self._spec.copy()

    @property
    def is_per_cpu(self) -> bool:
        """Whether each key holds one value per possible CPU (PERCPU_* maps)."""
        return self._ncpu > 0

    @property
    def pinned(self) -> str | None:
        """The path this map was pinned at (or opened from) by this object, if any."""
        return self._pinned

    @property
    def id(self) -> int:
        """The kernel's id of the map (as `bpftool map list` shows it)."""
        return self.info().id

    def __repr__(self) -> str:
        state = "closed" if self._fd.closed else f"fd={self._fd.fileno()}"
        return (f"<Map {self._name!r} {_type_name(self._type)} key={self._key_size} "
                f"value={self._value_size} max_entries={self._spec.max_entries} {state}>")

    def __bool__(self) -> bool:
        return True

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the descriptor (idempotent). Pinned maps stay pinned; memory mapped
        with `mmap()` stays valid until its last view is released.

        Thread-safe: an operation already in its syscall in another thread finishes on
        this map (the descriptor is released after it), later ones raise `ClosedError`."""
        self._owner = 0
        self._kmv = None
        # The owner fast path (`m[k]`, `m[k] = v`) passes these attrs to a syscall that
        # holds the GIL: once they say -1, no call can reach the old descriptor number,
        # whatever reuses it (the call fails with EBADF, reported as ClosedError).
        b = getattr(self, "_bufs", None)
        if b is not None:
            b.lattr.map_fd = b.uattr.map_fd = -1
        for mm in self._mmaps:
            try:
                mm.close()
            except BufferError:
                pass  # a view is still exported; the mapping goes away with it
        self._mmaps.clear()
        self._fd.close()

    def __enter__(self) -> Map:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def dup(self) -> Map:
        """An independent Map object on a duplicated (close-on-exec) descriptor."""
        fd = self._fd.dup()
        m = Map.__new__(Map)
        m._owner = 0
        m._mmaps = []
        m._pinned = None
        m._frozen = self._frozen
        m._setup(fd, self._spec.copy())
        return m

    # -- buffers ---------------------------------------------------------------------------

    def _thread_bufs(self) -> _Buffers:
        """Buffers for the calling thread (the owner's preallocated ones, or per-thread)."""
        if self._owner == _get_ident():
            return self._bufs
        fd = self._fd.fileno()  # raises once closed
        tls = self._tls
        if tls is None:
            tls = self._tls = threading.local()
        b: _Buffers | None = getattr(tls, "b", None)
        if b is None:
            b = _Buffers(fd, self._key_size, self._vbytes, self._kfmt, self._vfmt)
            tls.b = b
        return b

    # -- packing ----------------------------------------------------------------------------

    def _put_key(self, b: _Buffers, key: Any) -> None:
        ks = self._key_size
        if key.__class__ is int and b.kmv is not None:
            try:
                b.kmv[0] = key
                return
            except ValueError:
                pass
        _pack_into(b.kraw, key, ks, "key", self._ktype, False)

    def _put_value(self, b: _Buffers, value: Any) -> None:
        if self._ncpu:
            self._put_percpu(b.vraw, value)
            return
        if value.__class__ is int and b.vmv is not None:
            try:
                b.vmv[0] = value
                return
            except ValueError:
                pass
        _pack_into(b.vraw, value, self._value_size, "value", self._vtype, self._fd_values)

    def _put_percpu(self, dest: memoryview, value: Any) -> None:
        n = self._ncpu
        if isinstance(value, (str, bytes, bytearray, memoryview)) or not isinstance(
                value, Sequence):
            raise InvalidArgumentError(
                f"a per-CPU map value must be a sequence of {n} values (one per possible "
                f"CPU), got {type(value).__name__}")
        if len(value) != n:
            raise InvalidArgumentError(
                f"a per-CPU map value must have {n} elements (one per possible CPU), "
                f"got {len(value)}")
        stride, vs = self._vstride, self._value_size
        for i, v in enumerate(value):
            slot = dest[i * stride: i * stride + stride]
            if stride != vs:
                slot[vs:] = bytes(stride - vs)
            _pack_into(slot[:vs], v, vs, f"value[{i}]", self._vtype, False)

    def _decode_value(self, raw: bytes, typed: bool) -> Any:
        if self._ncpu:
            stride, vs = self._vstride, self._value_size
            out = [raw[i * stride: i * stride + vs] for i in range(self._ncpu)]
            if typed and self._vdec is not None:
                dec = self._vdec
                return [dec(v) for v in out]
            return out
        if typed and self._vdec is not None:
            return self._vdec(raw)
        return raw

    def _decode_key(self, raw: bytes, typed: bool) -> Any:
        if typed and self._kdec is not None:
            return self._kdec(raw)
        return raw

    # -- element operations ------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        if key.__class__ is int and self._owner == _get_ident():
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
        b = self._thread_bufs()
        if not self._load(b, key, flags):
            raise KeyNotFoundError(self._missing(key))
        return self._decode_value(b.vbuf.raw[: self._vbytes], not raw)

    def get(self, key: Any, default: Any = None, *, raw: bool = False) -> Any:
        """Like `lookup`, returning `default` when the key is missing."""
        b = self._thread_bufs()
        if not self._load(b, key, 0):
            return default
        return self._decode_value(b.vbuf.raw[: self._vbytes], not raw)

    def __contains__(self, key: Any) -> bool:
        if self._type == MapType.BLOOM_FILTER:
            return self._bloom_contains(key)
        return self._load(self._thread_bufs(), key, 0)

    def _load(self, b: _Buffers, key: Any, flags: int) -> bool:
        """Look `key` up into b.vbuf; False when missing."""
        if self._type in _KEYLESS_TYPES:
            if key is not None:
                raise InvalidArgumentError(
                    f"{_type_name(self._type)} maps have no keys; use peek()/pop()")
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
            # owner fast path): the number stays ours until the pop, ClosedError once closed
            users.append(None)
            try:
                if fd._fd < 0:
                    raise fd.closed_error()
                if _syscall(_NR, cmd, ref, size) >= 0:
                    return True
                err = _get_errno()
            finally:
                users.pop()
                if fd._fd < 0 and not users:
                    fd._reap()
            if err == errno.EINTR:
                continue
            if err == _ENOENT and missing_ok:
                return False
            raise self._elem_error(cmd, err, key, int(attr.flags))

    def _missing(self, key: Any) -> str:
        if key is None and self._type in _KEYLESS_TYPES:
            return f"{_type_name(self._type)} map {self._name!r} is empty"
        return f"key {key!r} not found in map {self._name!r}"

    def _elem_error(self, cmd: int, err: int, key: Any, flags: int) -> Exception:
        op = {_LOOKUP: "lookup", _UPDATE: "update", _DELETE: "delete",
              _LOOKUP_AND_DELETE: "lookup_and_delete", _NEXT_KEY: "next_key"}.get(cmd, str(cmd))
        where = f"{op} in {_type_name(self._type)} map {self._name!r}"
        if err == errno.EBADF and self._fd.closed:
            return self._fd.closed_error()  # closed by another thread during the call
        if err == _ENOENT:
            return KeyNotFoundError(self._missing(key))
        if err == errno.EEXIST and cmd == _UPDATE:
            return KeyExistsError(err, f"{where}: key {key!r} already exists (NOEXIST)")
        if err == errno.E2BIG and cmd == _UPDATE:
            return SyscallError(err, f"{where}: map is full "
                                     f"(max_entries {self._spec.max_entries})")
        if err == errno.EPERM:
            return self._access_error(cmd, err, where)
        if err in (errno.EINVAL, errno.EOPNOTSUPP, 524) and cmd in (
                _DELETE, _LOOKUP_AND_DELETE) and self._type in _ARRAY_TYPES and \
                self._type not in _FD_VALUE_TYPES:
            return InvalidArgumentError(
                f"{where}: elements of {_type_name(self._type)} maps cannot be deleted")
        if err == errno.EINVAL and flags & UpdateFlags.LOCK:
            return InvalidArgumentError(
                f"{where}: UpdateFlags.LOCK needs a value with a struct bpf_spin_lock (BTF)")
        if err in (errno.EOPNOTSUPP, 524):
            return NotSupportedError(f"{op} on {_type_name(self._type)} maps")
        return from_errno(err, where)

    def _access_error(self, cmd: int, err: int, where: str) -> Exception:
        """EPERM from an element operation: the map's or the descriptor's access mode
        (what the kernel checks there), else `ebpf._sys.caps.eperm_error`."""
        write = cmd in (_UPDATE, _DELETE, _LOOKUP_AND_DELETE)
        info: dict[str, str] = {}
        mode = -1
        try:
            with self._fd.hold() as fd:
                info = _fdinfo(fd)
                mode = _fcntl.fcntl(fd, _fcntl.F_GETFL) & os.O_ACCMODE
        except (OSError, ValueError):
            pass
        # BPF_F_RDONLY/WRONLY at creation only set the mode of the creator's descriptor
        flags = int(getattr(self._spec, "flags", 0) or 0)
        why = ""
        if write and (self._frozen or info.get("frozen") == "1"):
            why = "the map is frozen"
        elif write and mode == os.O_RDONLY:
            why = ("the map was created read-only for user space (BPF_F_RDONLY)"
                   if flags & _t.BPF_F_RDONLY else
                   "this descriptor of the map is read-only (opened read_only)")
        elif not write and mode == os.O_WRONLY:
            why = ("the map was created write-only for user space (BPF_F_WRONLY)"
                   if flags & _t.BPF_F_WRONLY else
                   "this descriptor of the map is write-only (opened write_only)")
        if why:
            return PermissionError(err, f"{where}: {why}")
        from ._sys.caps import eperm_error

        return eperm_error(where, err=err, cmd=cmd, map_type=int(self._type),
                           obj=where)

    def _is_frozen(self) -> bool:
        try:
            with self._fd.hold() as fd:
                return _fdinfo(fd).get("frozen", "0") == "1"
        except (OSError, ValueError):
            return False

    def __setitem__(self, key: Any, value: Any) -> None:
        if key.__class__ is int and value.__class__ is int and self._owner == _get_ident():
            try:
                self._kmv[0] = key  # type: ignore[index]
                self._vmv[0] = value  # type: ignore[index]
            except (ValueError, TypeError):
                pass
            else:
                if _syscall(_NR, 2, self._uref, 32) >= 0:
                    return
        self.update(key, value)

    def update(self, key: Any, value: Any, flags: int = UpdateFlags.ANY) -> None:
        """Store `value` under `key`.

        flags: UpdateFlags.ANY (default), NOEXIST (KeyExistsError if present),
        EXIST (KeyNotFoundError if absent), LOCK (under the value's spin lock).
        Map-in-map and program array values may be `Map`/`Program` objects (or
        anything with `fileno()`).
        """
        if self._type in _KEYLESS_TYPES:
            if key is not None:
                raise InvalidArgumentError(
                    f"{_type_name(self._type)} maps have no keys; use push(value)")
            self.push(value, flags)
            return
        if self._fd_values and not isinstance(value, int):
            with _hold(value):  # a Map/Program value closed meanwhile: ClosedError
                self._update(key, value, flags)
            return
        self._update(key, value, flags)

    def _update(self, key: Any, value: Any, flags: int) -> None:
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
        if self._type in _KEYLESS_TYPES:
            raise InvalidArgumentError(
                f"{_type_name(self._type)} maps have no keys; use pop()")
        b = self._thread_bufs()
        self._put_key(b, key)
        self._elem_op(_DELETE, b.lattr, _DELETE_ATTR_SIZE, key)

    def lookup_and_delete(self, key: Any = None, *, raw: bool = False) -> Any:
        """Atomically read and remove `key` (queue/stack: the next element, key None)."""
        b = self._thread_bufs()
        if self._type in _KEYLESS_TYPES:
            if key is not None:
                raise InvalidArgumentError(f"{_type_name(self._type)} maps have no keys")
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

    def push(self, value: Any, flags: int = UpdateFlags.ANY) -> None:
        """Add `value` to a queue, stack or bloom filter. flags=UpdateFlags.EXIST
        makes a full queue/stack drop its oldest element instead of failing."""
        if self._type not in _KEYLESS_TYPES:
            raise InvalidArgumentError(
                f"push() is for QUEUE, STACK and BLOOM_FILTER maps, not "
                f"{_type_name(self._type)}")
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
                raise SyscallError(err, f"push to {_type_name(self._type)} map "
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

    # -- iteration ----------------------------------------------------------------------------

    def next_key(self, key: Any = None, *, raw: bool = False) -> Any:
        """The key after `key` in the kernel's iteration order (the first key for
        None), or None after the last one."""
        b = self._thread_bufs()
        fd = b.lattr.map_fd
        nbuf = ctypes.create_string_buffer(max(self._key_size, 1))
        attr = _t.MapElemAttr(map_fd=fd, next_key=ctypes.addressof(nbuf))
        if key is not None:
            self._put_key(b, key)
            attr.key = ctypes.addressof(b.kbuf)
        if not self._elem_op(_NEXT_KEY, attr, _NEXT_KEY_ATTR_SIZE, key, missing_ok=True):
            return None
        return self._decode_key(nbuf.raw[: self._key_size], not raw)

    def _check_iterable(self) -> None:
        if self._type in _KEYLESS_TYPES or self._type in _NO_ELEMENT_TYPES:
            raise InvalidArgumentError(
                f"{_type_name(self._type)} maps cannot be iterated by key")

    def _raw_keys(self) -> Iterator[bytes]:
        """Keys as bytes via BPF_MAP_GET_NEXT_KEY, robust against concurrent deletes.

        When the current key is deleted between steps, the kernel restarts hash-like
        maps from their first key (or, should it answer ENOENT, the walk restarts
        itself, like cilium/ebpf); keys already produced are skipped, and the walk
        gives up (IterationAbortedError) if it makes no progress for too long.
        """
        self._check_iterable()
        fd = self._fd
        ks = self._key_size
        cur = ctypes.create_string_buffer(max(ks, 1))
        nxt = ctypes.create_string_buffer(max(ks, 1))
        attr = _t.MapElemAttr(map_fd=fd.fileno(), key=0, next_key=ctypes.addressof(nxt))
        ref = ctypes.byref(attr)
        array_like = self._type in _ARRAY_TYPES
        seen: set[bytes] | None = None if array_like else set()
        limit = 4 * max(self._spec.max_entries, 1) + 64
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
                    if seen is None or not attr.key or self._has_raw_key(cur.raw[:ks]):
                        return  # the real end of the map
                    attr.key = 0  # the cursor key was deleted: start over
                    steps += 1
                    continue
                raise self._elem_error(_NEXT_KEY, err, None, 0)
            steps += 1
            if steps > limit:
                raise IterationAbortedError(
                    f"iteration of map {self._name!r} aborted after {steps} steps: the "
                    "map kept changing (concurrent deletes restart the walk)")
            k = nxt.raw[:ks]
            ctypes.memmove(cur, nxt, ks)
            attr.key = ctypes.addressof(cur)
            if seen is not None:
                if k in seen:
                    continue  # restarted after a concurrent delete: skip known keys
                seen.add(k)
            yield k

    def _has_raw_key(self, key: bytes) -> bool:
        """Whether `key` exists; True when the map cannot tell (reads unsupported)."""
        vbuf = ctypes.create_string_buffer(max(self._vbytes, 8))
        kbuf = ctypes.create_string_buffer(key, max(len(key), 1))
        with self._fd.hold() as fd:
            attr = _t.MapElemAttr(map_fd=fd, key=ctypes.addressof(kbuf),
                                  value=ctypes.addressof(vbuf))
            ret = _bpf_errno(_LOOKUP, attr)
        return ret >= 0 or ret != -_ENOENT

    def _raw_chunks(self) -> Iterator[tuple[list[bytes], list[bytes]]]:
        """(keys, values) raw lists, chunk by chunk: batch lookups where the map type
        supports them (a bucket-wise walk that never repeats or loses keys under
        concurrent updates), else BPF_MAP_GET_NEXT_KEY plus lookups."""
        self._check_iterable()
        if self._type in _BATCH_TYPES:
            walk = _BatchWalk(self, _t.Cmd.MAP_LOOKUP_BATCH)
            chunk = 4096
            ks, vb = self._key_size, self._vbytes
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
        yield from self._raw_chunks_slow()

    def _raw_chunks_slow(self) -> Iterator[tuple[list[bytes], list[bytes]]]:
        b_val = ctypes.create_string_buffer(max(self._vbytes, 1))
        kbuf = ctypes.create_string_buffer(max(self._key_size, 1))
        attr = _t.MapElemAttr(map_fd=self._fd.fileno(), key=ctypes.addressof(kbuf),
                              value=ctypes.addressof(b_val))
        for k in self._raw_keys():
            ctypes.memmove(kbuf, k, self._key_size)
            try:
                found = self._elem_op(_LOOKUP, attr, _ELEM_ATTR_SIZE, k, missing_ok=True)
            except NotSupportedError:
                found = False  # e.g. slots of fd arrays that cannot be read back
            if found:  # else deleted concurrently (or an empty fd slot): skip it
                yield [k], [b_val.raw[: self._vbytes]]

    def keys(self, *, raw: bool = False) -> Iterator[Any]:
        """Iterate over keys (bytes, or typed with a BTF key type unless raw=True)."""
        if self._type in _BATCH_TYPES:
            return self._keys_batched(not raw)
        dec = self._kdec if not raw else None
        return (dec(k) for k in self._raw_keys()) if dec else self._raw_keys()

    def _keys_batched(self, typed: bool) -> Iterator[Any]:
        dec = self._kdec if typed else None
        for keys, _ in self._raw_chunks():
            yield from (map(dec, keys) if dec else keys)

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def values(self, *, raw: bool = False) -> Iterator[Any]:
        """Iterate over values (decoded like `lookup`)."""
        for _, vals in self._raw_chunks():
            yield from self._decode_values(vals, not raw)

    def items(self, *, raw: bool = False) -> Iterator[tuple[Any, Any]]:
        """Iterate over (key, value) pairs. Concurrent deletes are tolerated: deleted
        keys are skipped and no key is produced twice."""
        typed = not raw
        kdec = self._kdec if typed else None
        for keys, vals in self._raw_chunks():
            yield from zip(map(kdec, keys) if kdec else keys, self._decode_values(vals, typed),
                           strict=True)

    def _decode_values(self, vals: list[bytes], typed: bool) -> Iterable[Any]:
        if self._ncpu:
            return [self._decode_value(v, typed) for v in vals]
        if typed and self._vdec is not None:
            return map(self._vdec, vals)
        return vals

    def __len__(self) -> int:
        """Number of elements: max_entries for arrays, a full walk for hash-like maps."""
        if self._type in _ARRAY_TYPES:
            return self._spec.max_entries
        if self._type in _KEYLESS_TYPES or self._type in _NO_ELEMENT_TYPES:
            raise TypeError(f"len() is not defined for {_type_name(self._type)} maps")
        if self._type in _BATCH_TYPES:
            return sum(len(k) for k, _ in self._raw_chunks())
        return sum(1 for _ in self._raw_keys())

    def clear(self) -> None:
        """Delete every element (hash-like maps)."""
        if self._type in _ARRAY_TYPES:
            raise InvalidArgumentError(
                f"elements of {_type_name(self._type)} maps cannot be deleted")
        if self._type in _KEYLESS_TYPES:
            while True:
                try:
                    self.lookup_and_delete(None, raw=True)
                except KeyNotFoundError:
                    return
        for k in list(self._raw_keys()):
            try:
                self.delete(k)
            except KeyNotFoundError:
                pass

    # -- batch operations ----------------------------------------------------------------------

    def lookup_batch(self, *, chunk_size: int | None = None, numpy: bool = False) -> Batch:
        """Read the whole map with BPF_MAP_LOOKUP_BATCH: `keys, values = m.lookup_batch()`.

        Returns raw buffers (see `Batch`), or numpy arrays with `numpy=True`;
        `dict(zip(keys.tolist(), values.tolist()))` makes a dict of ints for 1/2/4/8
        byte keys and values. `chunk_size` limits the elements per syscall (default:
        all at once). Concurrent updates are tolerated: hash maps are read bucket by
        bucket, so no key is returned twice. HASH, LRU_HASH, ARRAY and their per-CPU
        variants support batches (else NotSupportedError).
        """
        return self._batch_result(_t.Cmd.MAP_LOOKUP_BATCH, chunk_size, numpy)

    def lookup_and_delete_batch(self, *, chunk_size: int | None = None,
                                numpy: bool = False) -> Batch:
        """Like `lookup_batch`, deleting what was read (hash maps)."""
        return self._batch_result(_t.Cmd.MAP_LOOKUP_AND_DELETE_BATCH, chunk_size, numpy)

    def _batch_result(self, cmd: int, chunk_size: int | None, numpy: bool) -> Batch:
        if chunk_size is not None:
            _validate.integer(chunk_size, "chunk_size", 0, 0xFFFF_FFFF)
        self._check_iterable()
        what = "lookup_batch" if cmd == _t.Cmd.MAP_LOOKUP_BATCH else "lookup_and_delete_batch"
        if self._type not in _BATCH_TYPES or (
                cmd != _t.Cmd.MAP_LOOKUP_BATCH and self._type in _ARRAY_TYPES):
            raise NotSupportedError(f"{what} on {_type_name(self._type)} maps")
        ks, vb = self._key_size, self._vbytes
        cap = max(self._spec.max_entries, 1)
        walk = _BatchWalk(self, cmd)
        # The kernel writes straight into lazily mapped anonymous memory sized for a
        # full map: no copies, and only the pages actually filled are touched.
        kmem, vmem = _anon_buffer(cap * ks), _anon_buffer(cap * vb)
        kaddr, vaddr = _buffer_address(kmem), _buffer_address(vmem)
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
        return Batch(_shape(kout, total, ks, numpy, per_cpu=False),
                     _shape(vout, total, vb, numpy, per_cpu=self._ncpu > 0))

    def update_batch(self, keys: Any, values: Any, flags: int = UpdateFlags.ANY) -> int:
        """Write many elements with one BPF_MAP_UPDATE_BATCH; returns the count.

        `keys`/`values` are sequences of keys/values (anything `update` accepts), or
        contiguous buffers (bytes, memoryview, numpy arrays) holding count elements.
        `flags` is UpdateFlags.ANY or LOCK (the kernel has no NOEXIST/EXIST here).
        """
        if _validate.unsigned(flags, "flags", 64) & ~UpdateFlags.LOCK:
            raise InvalidArgumentError(
                "update_batch takes UpdateFlags.ANY or LOCK only (the kernel has no "
                "NOEXIST/EXIST for batches)")
        held = values if self._fd_values and isinstance(values, (list, tuple)) else ()
        with _hold(*held):  # Map/Program values stay open while their numbers are in flight
            kbuf, n = self._pack_many(keys, "keys", value=False)
            vbuf, nv = self._pack_many(values, "values", value=True)
            if n != nv:
                raise InvalidArgumentError(f"update_batch got {n} keys but {nv} values")
            return self._batch_write(_t.Cmd.MAP_UPDATE_BATCH, kbuf, vbuf, n, flags)

    def delete_batch(self, keys: Any) -> int:
        """Delete many keys with one BPF_MAP_DELETE_BATCH; returns the count deleted.
        A missing key stops the batch with KeyNotFoundError."""
        kbuf, n = self._pack_many(keys, "keys", value=False)
        return self._batch_write(_t.Cmd.MAP_DELETE_BATCH, kbuf, None, n, 0)

    def _pack_many(self, items: Any, what: str, value: bool) -> tuple[Any, int]:
        size = self._vbytes if value else self._key_size
        if isinstance(items, (bytes, bytearray, memoryview)) or hasattr(
                items, "__array_interface__"):
            mv = memoryview(items)
            if mv.ndim != 1 or mv.format != "B":
                mv = mv.cast("B")
            if size == 0 or mv.nbytes % size:
                raise InvalidArgumentError(
                    f"{what} buffer must hold a multiple of {size} bytes, got {mv.nbytes}")
            buf = ctypes.create_string_buffer(bytes(mv), max(mv.nbytes, 1))
            return buf, mv.nbytes // size
        seq = list(items)
        buf = ctypes.create_string_buffer(max(len(seq) * size, 1))
        raw = memoryview(buf).cast("B")
        for i, item in enumerate(seq):
            dest = raw[i * size:(i + 1) * size]
            if value and self._ncpu:
                self._put_percpu(dest, item)
            elif value:
                _pack_into(dest, item, size, f"values[{i}]", self._vtype, self._fd_values)
            else:
                _pack_into(dest, item, size, f"keys[{i}]", self._ktype, False)
        return buf, len(seq)

    def _batch_write(self, cmd: int, kbuf: Any, vbuf: Any, n: int, flags: int) -> int:
        if n == 0:
            return 0
        with self._fd.hold() as fd:
            attr = _t.MapBatchAttr(keys=ctypes.addressof(kbuf),
                                   values=ctypes.addressof(vbuf) if vbuf is not None else 0,
                                   count=n, map_fd=fd, elem_flags=flags)
            ret = _bpf_errno(cmd, attr)
        done = int(attr.count)
        if ret < 0:
            what = "update_batch" if cmd == _t.Cmd.MAP_UPDATE_BATCH else "delete_batch"
            err = -ret
            if err == _ENOENT:
                raise KeyNotFoundError(
                    f"{what} on map {self._name!r}: key #{done} not found ({done} of {n} "
                    "done)")
            if err == errno.EEXIST:
                raise KeyExistsError(err, f"{what} on map {self._name!r}: key #{done} exists "
                                          f"(NOEXIST; {done} of {n} done)")
            if err in (errno.EINVAL, errno.EOPNOTSUPP, 524) and self._type not in _BATCH_TYPES:
                raise NotSupportedError(f"{what} on {_type_name(self._type)} maps")
            raise self._elem_error(_UPDATE if cmd == _t.Cmd.MAP_UPDATE_BATCH else _DELETE,
                                   err, None, flags)
        return done

    # -- whole-map operations --------------------------------------------------------------------

    def freeze(self) -> None:
        """Make the map read-only for user space (BPF_MAP_FREEZE); programs can still
        write unless it was created with MapFlags.RDONLY_PROG. Irreversible."""
        try:
            with self._fd.hold() as fd:
                _ops.map_freeze(fd)
        except SyscallError as e:
            if e.errno == errno.EBUSY:
                raise SyscallError(e.errno, f"freeze map {self._name!r}: it is "
                                            "memory-mapped writable or already frozen") from None
            raise
        self._frozen = True

    @property
    def frozen(self) -> bool:
        """Whether the map is frozen (read-only for user space)."""
        return self._frozen or self._is_frozen()

    def mmap(self, *, writable: bool = True) -> memoryview:
        """Map an array created with MapFlags.MMAPABLE into memory: a memoryview of
        max_entries elements of round_up(value_size, 8) bytes each. Writes through
        it are visible to lookups and programs. Frozen maps need writable=False."""
        if self._type != MapType.ARRAY or not self._spec.flags & _t.BPF_F_MMAPABLE:
            raise InvalidArgumentError(
                f"map {self._name!r} is not an ARRAY created with MapFlags.MMAPABLE")
        stride = (self._value_size + 7) & ~7
        length = stride * self._spec.max_entries
        page = os.sysconf("SC_PAGE_SIZE")
        with self._fd.hold() as fd:
            mm = _ops.mmap_fd(fd, (length + page - 1) // page * page, writable)
        self._mmaps.append(mm)
        view = memoryview(mm)[:length]
        return view if writable else view.toreadonly()

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the map at `path` on a bpffs so it outlives this process."""
        p = _validate.path(path, "pin path")
        try:
            with self._fd.hold() as fd:
                _ops.obj_pin(fd, p)
        except SyscallError as e:
            if e.errno == errno.EEXIST:
                raise SyscallError(e.errno, f"pin map {self._name!r}: {p} already exists") \
                    from None
            if e.errno == errno.EPERM and not _on_bpffs(os.path.dirname(p) or "."):
                raise _not_bpffs(p) from None
            if e.errno == errno.ENOENT:
                raise SyscallError(e.errno, f"pin map {self._name!r}: directory of {p} does "
                                            "not exist") from None
            raise
        self._pinned = p

    def unpin(self) -> None:
        """Remove the pin made by `pin()` (or the one `open_pinned` used). The map
        itself lives on while descriptors or programs use it."""
        if self._pinned is None:
            return
        try:
            os.unlink(self._pinned)
        except FileNotFoundError:
            pass
        self._pinned = None

    def info(self) -> MapInfo:
        """Kernel-side facts about the map: id, name, type, sizes, flags, BTF ids."""
        with self._fd.hold() as fd:
            return _query_info(fd)


def map_ids() -> Iterator[int]:
    """Ids of every map in the system (BPF_MAP_GET_NEXT_ID); open one with `Map.from_id`."""
    cur = 0
    while True:
        nxt = _ops.get_next_id(_t.Cmd.MAP_GET_NEXT_ID, cur)
        if nxt is None:
            return
        yield nxt
        cur = nxt


# -- helpers ----------------------------------------------------------------------------------


def _typed_view(buf: ctypes.Array[ctypes.c_char], fmt: str | None) -> memoryview | None:
    """A one-element integer view of `buf` (for fast int packing), if `fmt` is set."""
    if fmt is None:
        return None
    return memoryview(buf).cast("B").cast(fmt)  # type: ignore[call-overload, no-any-return]


def _int_format(size: int, t: btf.Type | None) -> str | None:
    fmt = _INT_FORMATS.get(size)
    if fmt is None:
        return None
    if t is not None:
        from .btf import Enum, Int, skip_typedefs

        inner = skip_typedefs(t)
        if isinstance(inner, (Int, Enum)) and inner.signed:
            return fmt.lower()
    return fmt


def _decoder(t: btf.Type | None, size: int) -> tuple[Any, int]:
    """(decode(bytes) -> value, mode): mode 0 raw bytes, 1 plain int, 2 other."""
    if t is None:
        return None, 0
    from .btf import Datasec, Enum, Int, IntEncoding, skip_typedefs

    inner = skip_typedefs(t)
    if isinstance(inner, Datasec):
        return None, 0
    if isinstance(inner, (Int, Enum)) and inner.size == size:
        signed = inner.signed
        if isinstance(inner, Int) and inner.encoding & IntEncoding.BOOL:
            return (lambda raw: raw != bytes(len(raw))), 2

        def dec_int(raw: bytes) -> int:
            return int.from_bytes(raw, _BYTEORDER, signed=signed)
        return dec_int, (1 if size in _INT_FORMATS else 2)
    ctype = _to_ctypes(t)
    if ctype is not None and ctypes.sizeof(ctype) == size:
        return ctype.from_buffer_copy, 2
    from .btf import values as _values

    return (lambda raw: _values.decode(t, raw)), 2


def _to_ctypes(t: btf.Type) -> Any:
    from .btf import to_ctypes

    try:
        return to_ctypes(t)
    except (Error, ValueError, TypeError):
        return None


_CTYPES_BASES: Final = (ctypes._SimpleCData, ctypes.Structure, ctypes.Union, ctypes.Array)


def _pack_into(dest: memoryview, obj: Any, size: int, what: str, t: btf.Type | None,
               fd_values: bool) -> None:
    """Write `obj` as exactly `size` bytes into `dest` or raise InvalidArgumentError."""
    if isinstance(obj, int):  # packed raw, native byte order, two's complement if < 0
        try:
            dest[:] = int(obj).to_bytes(size, _BYTEORDER, signed=obj < 0)
        except OverflowError:
            raise InvalidArgumentError(f"{what} {obj} does not fit in {size} bytes") from None
        return
    if isinstance(obj, (bytes, bytearray, memoryview)):
        n = obj.nbytes if isinstance(obj, memoryview) else len(obj)
        if n != size:
            raise InvalidArgumentError(f"{what} must be {size} bytes, got {n}")
        dest[:] = obj if not isinstance(obj, memoryview) else obj.cast("B")
        return
    if isinstance(obj, _CTYPES_BASES):
        n = ctypes.sizeof(obj)
        if n != size:
            raise InvalidArgumentError(
                f"{what} must be {size} bytes, got {n} ({type(obj).__name__})")
        dest[:] = memoryview(obj).cast("B")
        return
    if fd_values and hasattr(obj, "fileno"):
        _pack_into(dest, int(obj.fileno()), size, what, None, False)
        return
    if t is not None:
        dest[:] = _btf_encode(t, obj, what)
        return
    raise InvalidArgumentError(
        f"{what} must be an int, bytes or a ctypes object of {size} bytes, got "
        f"{type(obj).__name__}")


def _btf_encode(t: btf.Type, obj: Any, what: str) -> bytes:
    from .btf import values as _values

    return _values.encode(t, obj, what)


class _BatchWalk:
    """One walk over a map with BPF_MAP_LOOKUP(_AND_DELETE)_BATCH, carrying the
    kernel's resume token from step to step."""

    __slots__ = ("attr", "cmd", "done", "fd", "first", "name", "ref", "tok_in", "tok_out",
                 "tok_size")

    def __init__(self, m: Map, cmd: int) -> None:
        self.cmd = cmd
        self.fd = m.fd
        self.name = m.name
        self.tok_size = max(m.key_size, 8)
        self.tok_in = ctypes.create_string_buffer(self.tok_size)
        self.tok_out = ctypes.create_string_buffer(self.tok_size)
        self.attr = _t.MapBatchAttr(out_batch=ctypes.addressof(self.tok_out),
                                    map_fd=m.fileno())
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
            what = "lookup_batch" if self.cmd == _t.Cmd.MAP_LOOKUP_BATCH else \
                "lookup_and_delete_batch"
            raise from_errno(err, f"{what} on map {self.name!r}")
        self.first = False
        ctypes.memmove(self.tok_in, self.tok_out, self.tok_size)
        return int(attr.count)


def _anon_buffer(size: int) -> Any:
    """Zeroed memory of `size` bytes, faulted in lazily (anonymous mmap) when large."""
    if size < (256 << 10):
        return bytearray(max(size, 1))
    try:
        return _mmap.mmap(-1, size)
    except (OSError, OverflowError):
        return bytearray(size)


def _buffer_address(buf: Any) -> int:
    holder = ctypes.c_char.from_buffer(buf)
    addr = ctypes.addressof(holder)
    del holder  # release the export; the address stays valid while `buf` lives
    return addr


def _shape(buf: Any, n: int, size: int, numpy: bool, per_cpu: bool) -> Any:
    fmt = None if per_cpu else _INT_FORMATS.get(size)
    if numpy:
        try:
            import numpy as np
        except ImportError:
            raise NotSupportedError("numpy output", "numpy is not installed") from None
        if fmt is not None:
            return np.frombuffer(buf, dtype=np.dtype(f"=u{size}"))
        return np.frombuffer(buf, dtype=np.uint8).reshape(n, size)
    mv = memoryview(buf)
    if fmt is not None:
        return mv.cast(fmt)  # type: ignore[call-overload]
    return mv.cast("B", (n, size)) if size and n else mv[:0]


def _create_attr(spec: MapSpec) -> _t.MapCreateAttr:
    """BPF_MAP_CREATE attrs for `spec`, every field checked for type and range
    (InvalidArgumentError naming the MapSpec field), the name and pointers not yet set."""
    if not isinstance(spec, MapSpec):
        raise InvalidArgumentError(f"expected a MapSpec, got {type(spec).__name__}")
    if not isinstance(spec.name, str):
        raise InvalidArgumentError(f"MapSpec.name must be a str, got {type(spec.name).__name__}")
    attr = _t.MapCreateAttr()
    _validate.put(attr, "map_type", spec.type, "MapSpec.type")
    if spec.type == MapType.UNSPEC:
        raise InvalidArgumentError(f"map {spec.name!r}: MapSpec.type is not set")
    _validate.put(attr, "key_size", spec.key_size, "MapSpec.key_size")
    _validate.put(attr, "value_size", spec.value_size, "MapSpec.value_size")
    _validate.put(attr, "max_entries", spec.max_entries, "MapSpec.max_entries")
    _validate.put(attr, "map_flags", spec.flags, "MapSpec.flags")
    _validate.put(attr, "map_extra", spec.map_extra, "MapSpec.map_extra")
    if spec.numa_node is not None:
        _validate.put(attr, "numa_node", spec.numa_node, "MapSpec.numa_node")
    if spec.inner_map is not None and not isinstance(spec.inner_map, MapSpec):
        raise InvalidArgumentError(
            f"MapSpec.inner_map must be a MapSpec or None, got {type(spec.inner_map).__name__}")
    return attr


def _create(spec: MapSpec, inner_map_fd: int | None, btf_handle: Any) -> FD:
    attr = _create_attr(spec)
    if spec.type == MapType.PERF_EVENT_ARRAY and spec.max_entries == 0:
        spec.max_entries = attr.max_entries = _ops.possible_cpus()  # like libbpf
    name = sanitize_name(spec.name).encode()
    ctypes.memmove(ctypes.addressof(attr) + _t.MapCreateAttr.map_name.offset, name, len(name))
    if spec.numa_node is not None:
        attr.map_flags |= _t.BPF_F_NUMA_NODE
    temp_inner: Map | None = None
    handle: Any = None
    own_handle = False
    try:
        if spec.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
            if inner_map_fd is None:
                if spec.inner_map is None:
                    raise InvalidArgumentError(
                        f"map {spec.name!r}: {_type_name(spec.type)} needs an inner map "
                        "(MapSpec.inner_map or inner_map_fd)")
                inner = spec.inner_map.copy()
                inner.pinning, inner.contents, inner.freeze = PinType.NONE, [], False
                temp_inner = Map(inner)
                inner_map_fd = temp_inner.fileno()
            _validate.put(attr, "inner_map_fd", inner_map_fd, "inner_map_fd")
        if (spec.key is not None or spec.value is not None) and spec.type not in _NO_BTF_TYPES:
            handle, own_handle, kid, vid = _map_btf(spec, btf_handle)
            if handle is not None:
                attr.btf_fd = handle.fileno()
                attr.btf_key_type_id, attr.btf_value_type_id = kid, vid
        ret = _bpf_errno(_t.Cmd.MAP_CREATE, attr)
        if ret < 0 and handle is not None and -ret in (errno.EINVAL, errno.ENOTSUP, 524):
            # BTF the kernel does not accept for this map: retry without it, like libbpf
            # (values are still decoded with the spec's types)
            attr.btf_fd = attr.btf_key_type_id = attr.btf_value_type_id = 0
            ret = _bpf_errno(_t.Cmd.MAP_CREATE, attr)
        if ret < 0:
            raise _create_error(spec, -ret)
        return FD(ret, f"map {spec.name!r}")
    finally:
        if temp_inner is not None:
            temp_inner.close()
        if handle is not None and own_handle:
            handle.close()


def _map_btf(spec: MapSpec, btf_handle: Any) -> tuple[Any, bool, int, int]:
    """(handle, owned, key type id, value type id) for the map's BTF, or (None, ...)
    when no BTF object can be made."""
    if btf_handle is not None:
        # ids of the types in the Spec they were decoded from (which the handle holds)
        try:
            kid = _spec_type_id(spec.key)
            vid = _spec_type_id(spec.value)
            return btf_handle, False, kid, vid
        except (InvalidArgumentError, KeyNotFoundError):
            pass  # types built by hand (or of another spec): make a BTF object of our own
    from .btf import Builder, Handle

    try:
        b = Builder()
        kid = b.add(spec.key) if spec.key is not None else 0
        vid = b.add(spec.value) if spec.value is not None else 0
        return Handle(b.marshal()), True, kid, vid
    except (Error, ValueError, TypeError):
        return None, False, 0, 0  # BTF the kernel refuses: create the map without it


def _spec_type_id(t: btf.Type | None) -> int:
    if t is None:
        return 0
    owner = getattr(t, "_spec", None)
    if owner is None:
        raise InvalidArgumentError(f"{t!r} does not come from a BTF spec")
    return int(owner.type_id(t))


def _create_error(spec: MapSpec, err: int) -> Exception:
    tname = _type_name(spec.type)
    desc = (f"create {tname} map {spec.name!r} (key_size {spec.key_size}, value_size "
            f"{spec.value_size}, max_entries {spec.max_entries}, flags {int(spec.flags):#x})")
    if err in (errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP, 524):
        try:
            known = MapType(spec.type)
        except ValueError:
            return NotSupportedError(f"map type {int(spec.type)}", "unknown to this kernel")
        from . import features

        if not features.have_map_type(known):
            return NotSupportedError(f"map type {tname}")
    if err == errno.EPERM:  # a missing capability, or the kernel's policy
        from ._sys.caps import eperm_error

        return eperm_error(f"bpf(BPF_MAP_CREATE): {desc}", cmd=_t.Cmd.MAP_CREATE,
                           map_type=int(spec.type), obj=f"map {spec.name!r} ({tname.lower()})",
                           feature=f"map type {tname}")
    return from_errno(err, desc)


def _query_info(fd: int) -> MapInfo:
    raw = _t.MapInfo()
    _ops.obj_get_info(fd, raw)
    name = bytes(raw.name).split(b"\0", 1)[0].decode(errors="replace")
    try:
        mtype = MapType(raw.type)
    except ValueError:
        mtype = raw.type
    frozen = False
    try:
        frozen = _fdinfo(fd).get("frozen", "0") == "1"
    except (OSError, ValueError):
        pass
    return MapInfo(id=raw.id, name=name, type=mtype, key_size=raw.key_size,
                   value_size=raw.value_size, max_entries=raw.max_entries,
                   flags=MapFlags(raw.map_flags), map_extra=raw.map_extra, btf_id=raw.btf_id,
                   btf_key_type_id=raw.btf_key_type_id,
                   btf_value_type_id=raw.btf_value_type_id,
                   btf_vmlinux_value_type_id=raw.btf_vmlinux_value_type_id,
                   ifindex=raw.ifindex, frozen=frozen)


def _fdinfo(fd: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


def _kernel_btf_types(info: MapInfo) -> tuple[Any, Any]:
    """Key and value BTF types of a map created elsewhere (read back from the kernel)."""
    try:
        from .btf import Spec

        spec = Spec(_ops.btf_get_data(info.btf_id))
        k = spec.type_by_id(info.btf_key_type_id) if info.btf_key_type_id else None
        v = spec.type_by_id(info.btf_value_type_id) if info.btf_value_type_id else None
        return k, v
    except (Error, OSError):
        # BTFError (BTF this library cannot parse), SyscallError (the BTF object is gone
        # or not readable): the map still works, its values are bytes
        return None, None


def _check_pin_location(directory: str, pin_file: str) -> None:
    """Refuse to reuse or pin where another user could have put or could swap the object:
    the directory must belong to root or us and be writable only by its owner (or be
    sticky, like /sys/fs/bpf), and an existing pin must be ours, not a symlink."""
    trusted = (0, os.geteuid())
    try:
        d = os.stat(directory)
    except FileNotFoundError:
        return                              # pinning fails later, naming the path
    if d.st_uid not in trusted or (d.st_mode & 0o022 and not d.st_mode & _stat.S_ISVTX):
        raise PermissionError(errno.EPERM, (
            f"pin directory {directory} belongs to uid {d.st_uid} or is writable by other "
            "users, who could substitute pinned maps; use a directory only root (or this "
            "user) can write"))
    try:
        f = os.lstat(pin_file)
    except FileNotFoundError:
        return
    if _stat.S_ISLNK(f.st_mode) or f.st_uid not in trusted:
        what = "a symlink" if _stat.S_ISLNK(f.st_mode) else f"owned by uid {f.st_uid}"
        raise PermissionError(errno.EPERM, (
            f"{pin_file} is {what}; refusing to reuse a pinned map another user could "
            "have placed there"))


def _try_obj_get(path: str) -> int | None:
    try:
        return _ops.obj_get(path)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            return None
        if e.errno == errno.EPERM and not _on_bpffs(os.path.dirname(path) or "."):
            raise _not_bpffs(path) from None
        raise


def _on_bpffs(path: str) -> bool:
    from ._sys.prog import is_bpffs

    try:
        return is_bpffs(path)
    except OSError:
        return False


def _not_bpffs(path: str) -> Exception:
    return InvalidArgumentError(
        f"{path} is not on a bpf filesystem (mount one: mount -t bpf bpf /sys/fs/bpf)")


def _anon_kind(fd: int) -> str:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""
    return target.removeprefix("anon_inode:") if target.startswith("anon_inode:") else ""

