"""`Map`: a BPF map in the kernel, created from a `MapSpec` or opened by pin path, id
or fd. The class is assembled from the parts in this package: element operations
(`elements.py`), the value codec (`codec.py`), pinning (`pinning.py`) and memory-mapped
arrays (`mapped.py`); iteration (`iteration.py`) and batches (`batch.py`) are methods
here that import their module on first use (process start: a load does neither). The
rest is here: creating (the checked BPF_MAP_CREATE attrs, the key/value BTF, a temporary
inner map, the error saying why the kernel refused), opening, the properties, closing,
freezing and memory-mapping."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from _thread import get_ident as _get_ident
from collections.abc import Iterator
from operator import attrgetter

import ebpf._lazyattr as _lazyattr

from .._objcache import Bounded
from .._sys import ops as _ops
from .._sys import types as _t
from .._sys import validate as _validate
from .._sys.fd import FD, fd_of
from .._sys.syscall import bpf_errno as _bpf_errno
from .._sys.types import MapType
from ..errors import Error, InvalidArgumentError, KeyNotFoundError, SyscallError
from ..spec import kernel_name
from ..spec.maps import MapSpec, PinType
from . import mapped as _mapped
from .base import (
    FD_VALUE_TYPES,
    KEYLESS_TYPES,
    NO_BTF_TYPES,
    NO_ELEMENT_TYPES,
    PERCPU_TYPES,
    type_name,
)
from .codec import element_codec, plain_elements
from .elements import _ANY, MapElements

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from _thread import _local
    from typing import Any, Final, NoReturn

    from .. import btf
    from ..spec.flags import MapFlags as MapFlags
    from ._batch_type import Batch
    from .info import MapInfo

__all__ = ["Map", "map_ids"]

_NO_FAST_TYPES: Final = KEYLESS_TYPES | NO_ELEMENT_TYPES  # (no owner fast path)
# (the map types creation tests, as constants: an enum class attribute costs ~1k
# instructions to look up)
_ARENA: Final = MapType.ARENA
_PERF_EVENT_ARRAY: Final = MapType.PERF_EVENT_ARRAY
_MAP_IN_MAP_TYPES: Final = frozenset({MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS})


# (importable from here before) its enum class on first use (process start)
__getattr__ = _lazyattr.lazy_attributes(globals(), {"MapFlags": "..spec.flags"})


class Map(MapElements):
    """A BPF map: create one from a `MapSpec`, or open one by pin path, id or fd.

    Dict-like: `m[k]`, `m[k] = v`, `del m[k]`, `k in m`, `get`, `pop`, `keys()`,
    `values()`, `items()`, iteration, and `len()` (O(1) for arrays, a walk for
    hash maps). Also `update(k, v, flags)`, batch operations, queue/stack
    `push`/`pop`/`peek`, `freeze`, `mmap`, `pin`/`unpin`, `info`, `dup`.

    `Map(spec, inner_map_fd=None, btf_handle=None, pin_path=None)`:
      inner_map_fd  template map for ARRAY_OF_MAPS/HASH_OF_MAPS (else one is created
                    from `spec.inner_map` for the duration of the call)
      btf_handle    an `ebpf.btf.Handle` loaded from the `btf.Spec` that `spec.key` and
                    `spec.value` come from (their ids are looked up there; held while
                    the map is made); without it a small BTF object is built for the
                    two types when possible
      pin_path      bpffs directory for `spec.pinning == PinType.BY_NAME`: an existing
                    compatible map pinned there is reused, else the new map is pinned

    Raises NotSupportedError when the kernel lacks the map type, and SyscallError
    (with what was asked) for any other refusal. Close with `close()` or use as a
    context manager; a map left to the garbage collector warns (ResourceWarning).
    """

    __slots__ = ("__weakref__",)

    def __init__(self, spec: MapSpec, *, inner_map_fd: int | None = None,
                 btf_handle: Any = None, pin_path: str | os.PathLike[str] | None = None) -> None:
        self._owner = 0
        self._mmaps: list[Any] = []
        self._pinned: str | None = None
        self._frozen = False
        # (refuses a malformed spec before touching the kernel)
        attr, type_ids, derived = prepare(spec)
        spec = spec.copy()
        pinning = spec.pinning
        if pinning.__class__ is not PinType and not (
                pinning.__class__ is int and 0 <= pinning <= 1):
            raise InvalidArgumentError(
                f"MapSpec.pinning must be PinType.NONE or PinType.BY_NAME, got {pinning!r}")
        pin_file: str | None = None
        if pin_path is not None and pinning == PinType.BY_NAME:
            if not spec.name:
                raise InvalidArgumentError("a map pinned by name needs a name")
            pin_dir = _validate.path(pin_path, "pin_path")
            pin_file = os.path.join(pin_dir, spec.name)
            from .pinning import check_pin_location, try_obj_get  # pinned maps only

            check_pin_location(pin_dir, pin_file)
            existing = try_obj_get(pin_file)
            if existing is not None:
                self._setup(FD(existing, f"map {spec.name!r}"), spec, derived)
                try:
                    spec.check_compatible(self)
                except BaseException:
                    self.close()
                    raise
                self._pinned = pin_file
                return
        # (the BTF object's number goes into the attrs: held until the map is made, as a
        # program's load holds what it refers to)
        held = fd_of(btf_handle)
        if held is not None:
            held.acquire()
        try:
            fd = create(spec, inner_map_fd, btf_handle, attr, type_ids)
        finally:
            if held is not None:
                held.release()
        self._setup(fd, spec, derived)
        # (the descriptor used unheld below: no other thread has the map before this returns)
        number = fd.fileno()
        try:
            if self._type == _ARENA:
                # mapped at once: programs using it load only once it has a user address
                from .arena import fill_arena  # arenas only (6.9+)

                fill_arena(self, spec.contents)
            else:
                for k, v in spec.contents:
                    if not self._put_initial(number, k, v):
                        # by system call: no mapping made (and dropped again) for a data
                        # section about to be frozen
                        state, self._mstate = self._mstate, _mapped.NONE
                        self.update(k, v)
                        self._mstate = state
                        if state != _mapped.NONE:
                            self._owner = 0  # (an mmapable array's first m[k] maps it)
            if spec.freeze:
                self._freeze(number)  # (not mapped: contents went by system call)
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
        from .opening import from_fd  # on first use (process start)

        return from_fd(cls, fd, spec)

    @classmethod
    def open_pinned(cls, path: str | os.PathLike[str], *, read_only: bool = False,
                    write_only: bool = False) -> Map:
        """Open the map pinned at `path` on a bpffs (BPF_OBJ_GET)."""
        from .opening import open_pinned  # on first use (process start)

        return open_pinned(cls, path, read_only, write_only)

    @classmethod
    def from_id(cls, map_id: int) -> Map:
        """Open the map with kernel id `map_id` (BPF_MAP_GET_FD_BY_ID)."""
        from .opening import from_id  # on first use (process start)

        return from_id(cls, map_id)

    def _setup(self, fd: FD, spec: MapSpec, derived: tuple[Any, ...] | None = None) -> None:
        """Take ownership of `fd`, the map `spec` describes; `derived`: `derive(spec)`
        when the caller has it."""
        (self._name, self._type, self._key_size, self._value_size, self._ktype, self._vtype,
         self._fd_values, self._ncpu, self._vstride, self._vbytes, self._kfmt, self._vfmt,
         self._kdec, self._vdec, self._vmode, self._int_vdecode, fast, self._mcount,
         mmapable) = derived or derive(spec)
        self._fixed = None
        self._spec = spec
        self._tls: _local | None = None
        self._bufs = self._kmv = self._vmv = self._vbuf = self._lref = self._uref = None
        # mmapable arrays read and write their memory instead (ebpf.maps.mapped)
        self._init_memory(_get_ident() if fast else 0, mmapable)
        self._owner = 0  # (until the owner's buffers exist)
        self._fd = fd  # (last: a map with a descriptor has the state close() reads)

    @property
    def fd(self) -> FD:
        """The `FD` owning the map's descriptor."""
        return self._fd

    def fileno(self) -> int:
        """The bare descriptor number; keep the map open while it is used."""
        return self._fd.fileno()

    @property
    def pinned(self) -> str | None:
        """The path this map was pinned at (or opened from) by this object, if any."""
        return self._pinned

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the map at `path` on a bpffs so it outlives this process."""
        from .pinning import pin  # on first use (process start)

        pin(self, path)

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
        from ..spec.flags import MapFlags  # its enum class on first use (process start)

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
    def id(self) -> int:
        """The kernel's id of the map (as `bpftool map list` shows it)."""
        return self.info().id

    def __repr__(self) -> str:
        state = "closed" if self._fd.closed else f"fd={self._fd.fileno()}"
        return (f"<Map {self._name!r} {type_name(self._type)} key={self._key_size} "
                f"value={self._value_size} max_entries={self._spec.max_entries} {state}>")

    def __bool__(self) -> bool:
        return True

    def close(self) -> None:
        """Close the descriptor (idempotent). Pinned maps stay pinned; memory mapped
        with `mmap()`, `memory()` or `array()` stays valid until its last view is
        released.

        Thread-safe: an operation already in its syscall in another thread finishes on
        this map (the descriptor is released after it), later ones raise `ClosedError`."""
        self._owner = 0
        self._fast_owner = 0  # before `_bufs` is read below (see `_owner_bufs`)
        self._mstate = _mapped.NONE
        self._kmv = None
        # The owner fast path (`m[k]`, `m[k] = v`) passes these attrs to a syscall that
        # holds the GIL: once they say -1, no call can reach the old descriptor number,
        # whatever reuses it (the call fails with EBADF, reported as ClosedError).
        b = self._bufs
        if b is not None:
            b.lattr.map_fd = b.uattr.map_fd = -1
        for mm in self._mmaps:
            try:
                mm.close()
            except BufferError:
                pass  # a view is still exported; the mapping goes away with it
        self._mmaps.clear()
        self._arena = None  # unmapped now, or when its last view is released
        self._fd.close()
        # after the descriptor: a mapping published later sees it closed and drops itself
        if self._mm is not None:
            self._unmap()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        """Refused with `NotPicklableError` (also by `copy.deepcopy`): pickle its spec
        (`spec`) and create the map from it in the other process, or pin the map and
        open the pin there (`Map.open_pinned`)."""
        from .._sys.nopickle import refuse  # on a refusal only (process start)

        refuse(f"map {self.name!r}",
               "pickle its MapSpec (Map.spec) and create the map from it in the other process, or "
               "pin it (Map.pin) and open the pin there (Map.open_pinned)")

    def __copy__(self) -> Map:
        """A shallow copy sharing the descriptor (what `copy.copy` always made)."""
        from .._sys.nopickle import shallow_copy  # on a copy only (process start)

        return shallow_copy(self)

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
        # an arena has one user address: the copy shares this map's mapping
        m._arena = getattr(self, "_arena", None)
        return m

    def freeze(self) -> None:
        """Make the map read-only for user space (BPF_MAP_FREEZE); programs can still
        write unless it was created with MapFlags.RDONLY_PROG. Irreversible.

        The map's own writable mapping (element operations of an mmapable array) is
        dropped first; views from `memory()`/`array()`/`mmap(writable=True)` must be
        released, or the kernel refuses (EBUSY)."""
        if self._mm is not None:
            self._unmap(_mapped.UNTRIED)  # mapped again, read-only, on next use
        fd = self._fd.acquire()  # (what hold() does, without its context object)
        try:
            self._freeze(fd)
        finally:
            self._fd.release()

    def _freeze(self, fd: int) -> None:
        """`freeze()` by `fd`, the map's descriptor held (or a new map's, not shared yet)."""
        try:
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
        from .mapping import mmap_view  # on first use (process start)

        return mmap_view(self, writable)

    @property
    def arena_address(self) -> int:
        """Where an ARENA map's pages are mapped in this process (mapped on first use:
        see `memory()`); a pointer a program stored in the arena is at offset
        ``pointer - arena_address`` of `memory()`."""
        if self._type != MapType.ARENA:
            raise InvalidArgumentError(f"map {self._name!r} is not an ARENA map")
        from .arena import arena_pages  # arenas only (6.9+)

        return int(arena_pages(self).address)

    def info(self) -> MapInfo:
        """Kernel-side facts about the map: id, name, type, sizes, flags, BTF ids."""
        from .info import query_info  # MapInfo's module on first use (see from_fd)

        with self._fd.hold() as fd:
            return query_info(fd)

    def _fixed_info(self) -> MapInfo:
        """`info()` without `frozen` (False), queried once: a map's type, sizes, flags,
        name, id and BTF ids never change (`MapSpec.check_compatible` asks for them at
        every load that reuses this map)."""
        fixed: MapInfo | None = self._fixed
        if fixed is None or self._fd.closed:  # (closed: ClosedError, as from info())
            from .info import query_info  # (as in info())

            with self._fd.hold() as fd:
                fixed = self._fixed = query_info(fd, frozen=False)
        return fixed

    # -- iteration and batches: their modules on first use (process start) ---------------

    def next_key(self, key: Any = None, *, raw: bool = False) -> Any:
        """The key after `key` in the kernel's iteration order (the first key for
        None), or None after the last one."""
        from . import iteration  # on first use (process start)

        return iteration.next_key(self, key, raw)

    def keys(self, *, raw: bool = False) -> Iterator[Any]:
        """Iterate over keys (bytes, or typed with a BTF key type unless raw=True)."""
        from . import iteration  # on first use (process start)

        return iteration.keys(self, raw)

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def values(self, *, raw: bool = False) -> Iterator[Any]:
        """Iterate over values (decoded like `lookup`)."""
        from . import iteration  # on first use (process start)

        return iteration.values(self, raw)

    def items(self, *, raw: bool = False) -> Iterator[tuple[Any, Any]]:
        """Iterate over (key, value) pairs. Concurrent deletes are tolerated: deleted
        keys are skipped and no key is produced twice."""
        from . import iteration  # on first use (process start)

        return iteration.items(self, raw)

    def __len__(self) -> int:
        """Number of elements: max_entries for arrays, a full walk for hash-like maps."""
        from . import iteration  # on first use (process start)

        return iteration.length(self)

    def clear(self) -> None:
        """Delete every element (hash-like maps)."""
        from . import iteration  # on first use (process start)

        iteration.clear(self)

    def lookup_batch(self, *, chunk_size: int | None = None, numpy: bool = False) -> Batch:
        """Read the whole map with BPF_MAP_LOOKUP_BATCH: `keys, values = m.lookup_batch()`.

        Returns raw buffers (see `Batch`), or numpy arrays with `numpy=True`;
        `dict(zip(keys.tolist(), values.tolist()))` makes a dict of ints for 1/2/4/8
        byte keys and values. `chunk_size` limits the elements per syscall (default:
        all at once). Concurrent updates are tolerated: hash maps are read bucket by
        bucket, so no key is returned twice. HASH, LRU_HASH, ARRAY and their per-CPU
        variants support batches (else NotSupportedError).
        """
        from . import batch  # on first use (process start)

        return batch.lookup(self, _t.BPF_MAP_LOOKUP_BATCH, chunk_size, numpy)

    def lookup_and_delete_batch(self, *, chunk_size: int | None = None,
                                numpy: bool = False) -> Batch:
        """Like `lookup_batch`, deleting what was read (hash maps)."""
        from . import batch  # on first use (process start)

        return batch.lookup(self, _t.BPF_MAP_LOOKUP_AND_DELETE_BATCH, chunk_size, numpy)

    def update_batch(self, keys: Any, values: Any, flags: int = _ANY) -> int:
        """Write many elements with one BPF_MAP_UPDATE_BATCH; returns the count.

        `keys`/`values` are sequences of keys/values (anything `update` accepts), or
        contiguous buffers (bytes, memoryview, numpy arrays) holding count elements.
        `flags` is UpdateFlags.ANY or LOCK (the kernel has no NOEXIST/EXIST here).
        `Map`/`Program` values (map-in-map, program arrays) stay held for the call:
        one closed meanwhile raises `ClosedError`.
        """
        from . import batch  # on first use (process start)

        return batch.update(self, keys, values, flags)

    def delete_batch(self, keys: Any) -> int:
        """Delete many keys with one BPF_MAP_DELETE_BATCH; returns the count deleted.
        A missing key stops the batch with KeyNotFoundError."""
        from . import batch  # on first use (process start)

        return batch.delete(self, keys)


def map_ids() -> Iterator[int]:
    """Ids of every map in the system (BPF_MAP_GET_NEXT_ID); open one with `Map.from_id`."""
    cur = 0
    while True:
        nxt = _ops.get_next_id(_t.BPF_MAP_GET_NEXT_ID, cur)
        if nxt is None:
            return
        yield nxt
        cur = nxt


# -- creation -----------------------------------------------------------------------------


_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF
_CREATE_ATTR_SIZE: Final = ctypes.sizeof(_t.MapCreateAttr)
_NAME_OFFSET: Final = _t.MapCreateAttr.map_name.offset
_put_name = struct.Struct(f"{_t.MapCreateAttr.map_name.size}s").pack_into  # (NUL-padded)


# What creating a map takes that only the fields of its spec decide (see `prepare`): by
# those fields, here or, for a data section's map, on the BTF spec of its value type (the
# entry holds the type: kept here, it would keep the spec alive).
_PREPARED_MAX: Final = 64
_prepared: dict[tuple[Any, ...], tuple[Any, ...]] = Bounded(_PREPARED_MAX)
# (the fields `prepare` depends on, read in one call)
_prepared_fields = attrgetter("name", "type", "key_size", "value_size", "max_entries", "flags",
                              "map_extra", "numa_node", "value")


def prepare(spec: MapSpec) -> tuple[_t.MapCreateAttr, tuple[int, int] | None, tuple[Any, ...]]:
    """(`create_attr(spec)`, the ids of its key and value types in their BTF spec or None
    when unknown, `derive(spec)`): what `create` and `Map._setup` take from the spec.

    Kept for the next spec whose fields are the very same objects, when nothing else
    decides the three: no inner map, no BTF type whose content could change in place
    (`plain_elements`). Global data is so: a template reload remakes its .rodata."""
    if spec.__class__ is not MapSpec or spec.key is not None or spec.inner_map is not None:
        return create_attr(spec), None, derive(spec)
    fields = _prepared_fields(spec)
    value = fields[-1]
    owner = None if value is None else value.spec
    kept: dict[tuple[Any, ...], tuple[Any, ...]] | None
    if owner is None:
        kept = _prepared
    else:
        kept = vars(owner).get("_maps_prepared")
        if kept is None:  # (threads racing here keep the same dict)
            kept = vars(owner).setdefault("_maps_prepared", Bounded(_PREPARED_MAX))
    try:
        hit = kept.get(fields)
    except TypeError:  # an unhashable field: create_attr says which
        hit = kept = None
    if hit is not None:
        # served for the very same objects only (equal values are not enough: 1.0 ==
        # True == 1, and create_attr takes only the int), compared unrolled: ~2k
        # instructions less than all(map(operator.is_, ...))
        name, t, ks, vs, n, fl, x, numa, value = fields
        name0, t0, ks0, vs0, n0, fl0, x0, numa0, value0 = hit[0]
        if (name is name0 and t is t0 and ks is ks0 and vs is vs0 and n is n0 and fl is fl0
                and x is x0 and numa is numa0 and value is value0):
            return _t.MapCreateAttr.from_buffer_copy(hit[1]), hit[2], hit[3]
    attr = create_attr(spec)
    derived = derive(spec)
    if kept is None or not plain_elements(None, value):
        return attr, None, derived
    try:
        type_ids: tuple[int, int] | None = (0, spec_type_id(value))
    except (InvalidArgumentError, KeyNotFoundError):
        type_ids = None  # a type made by hand (see map_btf)
    kept[fields] = (fields, bytes(attr), type_ids, derived)
    return attr, type_ids, derived


def derive(spec: MapSpec) -> tuple[Any, ...]:
    """What a `Map` of `spec` takes from it and derives from its type, sizes and BTF types
    (see `Map._setup`)."""
    t, ks, vs, key, value = spec.type, spec.key_size, spec.value_size, spec.key, spec.value
    percpu = t in PERCPU_TYPES
    ncpu = _ops.possible_cpus() if percpu else 0
    vstride = (vs + 7) & ~7 if percpu else vs
    kfmt, vfmt, kdec, vdec, vmode = element_codec(ks, vs, key, value)
    if percpu:
        vfmt = None
    # The fast path (owner thread, int keys) needs a plain, non-per-CPU element map;
    # its thread's buffers are made on its first element operation, which turns the
    # fast path on (`_owner_bufs`); other threads' on first use too (_thread_bufs)
    fast = not percpu and t not in _NO_FAST_TYPES and ks > 0
    n = spec.max_entries  # (_mcount: used by mmapable arrays only, which create() leaves as is)
    return (spec.name, int(t), ks, vs, key, value, t in FD_VALUE_TYPES, ncpu, vstride,
            vstride * ncpu if percpu else vs, kfmt, vfmt, kdec, vdec, vmode,
            vmode == 1 and vfmt is not None, fast, n, _mapped.mmapable(t, vs, spec.flags, n))


def create_attr(spec: MapSpec) -> _t.MapCreateAttr:
    """BPF_MAP_CREATE attrs for `spec` with its kernel name, every field checked for type
    and range (InvalidArgumentError naming the MapSpec field), descriptors not yet set."""
    # The usual spec (plain ints in range, a known type, no NUMA node, no inner map
    # or a MapSpec one): the same attrs without the field-by-field checks, which run
    # for anything else and raise what they always raised.
    attr = _plain_create_attr(spec) if spec.__class__ is MapSpec else None
    if attr is None:
        attr = _checked_create_attr(spec)
    _put_name(attr, _NAME_OFFSET, kernel_name(spec.name).encode())
    return attr


def _plain_create_attr(spec: MapSpec) -> _t.MapCreateAttr | None:
    t, ks, vs, n, fl, x = (spec.type, spec.key_size, spec.value_size, spec.max_entries,
                           spec.flags, spec.map_extra)
    if (spec.name.__class__ is str and t.__class__ is MapType and t and ks.__class__ is int
            and vs.__class__ is int and n.__class__ is int and fl.__class__ is int
            and x.__class__ is int and spec.numa_node is None
            and 0 <= ks <= _U32 and 0 <= vs <= _U32 and 0 <= n <= _U32
            and 0 <= fl <= _U32 and 0 <= x <= _U64
            and (spec.inner_map is None or spec.inner_map.__class__ is MapSpec)):
        # (field by field: cheaper than the constructor's arguments)
        attr = _t.MapCreateAttr()
        attr.map_type = t
        attr.key_size = ks
        attr.value_size = vs
        attr.max_entries = n
        attr.map_flags = fl
        attr.map_extra = x
        return attr
    return None


def _checked_create_attr(spec: MapSpec) -> _t.MapCreateAttr:
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


def create(spec: MapSpec, inner_map_fd: int | None, btf_handle: Any,
           attr: _t.MapCreateAttr | None = None, type_ids: tuple[int, int] | None = None) -> FD:
    """Create the map `spec` describes (its name sanitized, its BTF attached when the
    kernel takes it); `inner_map_fd` is the template of a map-in-map (else one is made
    from `spec.inner_map` for the duration of the call). `attr` and `type_ids`: what
    `prepare(spec)` made, when the caller has it (the attr is used up)."""
    if attr is None:
        attr = create_attr(spec)
    t = spec.type
    if t == _PERF_EVENT_ARRAY and spec.max_entries == 0:
        spec.max_entries = attr.max_entries = _ops.possible_cpus()  # like libbpf
    if spec.numa_node is not None:
        attr.map_flags |= _t.BPF_F_NUMA_NODE
    temp_inner: FD | None = None
    handle: Any = None
    own_handle = False
    try:
        if t in _MAP_IN_MAP_TYPES:
            if inner_map_fd is None:
                if spec.inner_map is None:
                    raise InvalidArgumentError(
                        f"map {spec.name!r}: {type_name(t)} needs an inner map "
                        "(MapSpec.inner_map or inner_map_fd)")
                inner = spec.inner_map.copy()
                inner.pinning, inner.contents, inner.freeze = PinType.NONE, [], False
                # the template with the outer map's BTF object: the kernel compares the
                # inner maps' special fields (bpf_list_head, kptrs...) with their BTF
                # object, so an inner map created with the collection's BTF fits only a
                # template made with the same one
                temp_inner = create(inner, None, btf_handle)
                inner_map_fd = temp_inner.fileno()
            _validate.put(attr, "inner_map_fd", inner_map_fd, "inner_map_fd")
        if (spec.key is not None or spec.value is not None) and t not in NO_BTF_TYPES:
            handle, own_handle, kid, vid = map_btf(spec, btf_handle, type_ids)
            if handle is not None:
                attr.btf_fd = handle.fileno()
                attr.btf_key_type_id, attr.btf_value_type_id = kid, vid
        ret = _bpf_errno(_t.BPF_MAP_CREATE, attr, _CREATE_ATTR_SIZE)
        if ret < 0 and handle is not None and -ret in (errno.EINVAL, errno.ENOTSUP, 524):
            # BTF the kernel does not accept for this map: retry without it, like libbpf
            # (values are still decoded with the spec's types)
            attr.btf_fd = attr.btf_key_type_id = attr.btf_value_type_id = 0
            ret = _bpf_errno(_t.BPF_MAP_CREATE, attr, _CREATE_ATTR_SIZE)
        if ret < 0:
            from .failures import create_error  # on a refusal only (process start)

            raise create_error(spec, -ret)
        return FD(ret, f"map {spec.name!r}")
    finally:
        if temp_inner is not None:
            temp_inner.close()
        if handle is not None and own_handle:
            handle.close()


def map_btf(spec: MapSpec, btf_handle: Any,
            type_ids: tuple[int, int] | None = None) -> tuple[Any, bool, int, int]:
    """(handle, owned, key type id, value type id) for the map's BTF, or (None, ...)
    when no BTF object can be made. `type_ids`: the ids of the key and value types in
    their BTF spec, when known."""
    if btf_handle is not None:
        # ids of the types in the Spec they were decoded from (which the handle holds)
        if type_ids is not None:
            return btf_handle, False, *type_ids
        try:
            kid = spec_type_id(spec.key)
            vid = spec_type_id(spec.value)
            return btf_handle, False, kid, vid
        except (InvalidArgumentError, KeyNotFoundError):
            pass  # types built by hand (or of another spec): make a BTF object of our own
    from ..btf import Builder, Handle  # maps with BTF only: `import ebpf.maps` loads no BTF code

    try:
        b = Builder()
        kid = b.add(spec.key) if spec.key is not None else 0
        vid = b.add(spec.value) if spec.value is not None else 0
        return Handle(b.marshal()), True, kid, vid
    except (Error, ValueError, TypeError):
        return None, False, 0, 0  # BTF the kernel refuses: create the map without it


def spec_type_id(t: btf.Type | None) -> int:
    """The id of `t` in the BTF spec it was parsed from (0 for None)."""
    if t is None:
        return 0
    owner = t.spec
    if owner is None:
        raise InvalidArgumentError(f"{t!r} does not come from a BTF spec")
    return int(owner.type_id(t))
