"""What the parts of `Map` share: what each map type supports (keys, per-CPU values, fd
values, batches, BTF), the element commands and attr sizes, and `MapState`, the slots
they work on."""

from __future__ import annotations

import ctypes

from .._sys import types as _t
from .._sys.types import MapType

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from _thread import _local
    from typing import Any, Final

    from .. import btf
    from .._sys.fd import FD
    from ..spec.maps import MapSpec
    from .codec import Buffers


LOOKUP: Final = _t.BPF_MAP_LOOKUP_ELEM
UPDATE: Final = _t.BPF_MAP_UPDATE_ELEM
DELETE: Final = _t.BPF_MAP_DELETE_ELEM
NEXT_KEY: Final = _t.BPF_MAP_GET_NEXT_KEY
LOOKUP_AND_DELETE: Final = _t.BPF_MAP_LOOKUP_AND_DELETE_ELEM
ELEM_ATTR_SIZE: Final = ctypes.sizeof(_t.MapElemAttr)
# MAP_DELETE_ELEM and MAP_GET_NEXT_KEY check that the attr is zero after their
# last field; passing a shorter size lets them share the lookup attr.
DELETE_ATTR_SIZE: Final = _t.MapElemAttr.key.offset + 8
NEXT_KEY_ATTR_SIZE: Final = _t.MapElemAttr.next_key.offset + 8

# Map types whose keys are the indices 0..max_entries-1 and whose elements
# cannot be deleted.
ARRAY_TYPES: Final = frozenset({
    MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
    MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS, MapType.DEVMAP, MapType.CPUMAP,
    MapType.XSKMAP, MapType.SOCKMAP, MapType.REUSEPORT_SOCKARRAY,
})

PERCPU_TYPES: Final = frozenset({
    MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH,
    MapType.PERCPU_CGROUP_STORAGE,
})

# Map types whose user-space values are file descriptors of other objects.
FD_VALUE_TYPES: Final = frozenset({
    MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY,
    MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.SOCKMAP, MapType.SOCKHASH,
    MapType.XSKMAP, MapType.REUSEPORT_SOCKARRAY,
})

KEYLESS_TYPES: Final = frozenset({MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER})

BATCH_TYPES: Final = frozenset({
    MapType.HASH, MapType.PERCPU_HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH,
    MapType.ARRAY, MapType.PERCPU_ARRAY,
})

NO_ELEMENT_TYPES: Final = frozenset({
    MapType.RINGBUF, MapType.USER_RINGBUF, MapType.ARENA, MapType.STRUCT_OPS,
})

# Map types the kernel takes no key/value BTF for (libbpf drops it for them too).
NO_BTF_TYPES: Final = frozenset({
    MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.STACK_TRACE,
    MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS, MapType.DEVMAP, MapType.DEVMAP_HASH,
    MapType.CPUMAP, MapType.XSKMAP, MapType.SOCKMAP, MapType.SOCKHASH, MapType.QUEUE,
    MapType.STACK, MapType.PROG_ARRAY, MapType.RINGBUF, MapType.USER_RINGBUF,
})

INT_FORMATS: Final = {1: "B", 2: "H", 4: "I", 8: "Q"}


def type_name(t: int) -> str:
    try:
        return MapType(t).name.removesuffix("_DEPRECATED")
    except ValueError:
        return f"map type {t}"


class MapState:
    """The state of a `Map`: the slots the parts it is made of (`MapCodec`,
    `MapElements`, and the functions of `pinning.py`, `iteration.py` and `batch.py`)
    work on."""

    __slots__ = (
        "_arena",
        "_bufs",
        "_fast_owner",
        "_fd",
        "_fd_values",
        "_fixed",
        "_frozen",
        "_int_vdecode",
        "_kdec",
        "_key_size",
        "_kfmt",
        "_kmv",
        "_ktype",
        "_lref",
        "_mcount",
        "_mints",
        "_mm",
        "_mmaps",
        "_mraw",
        "_mstate",
        "_mstride",
        "_mvals",
        "_mwritable",
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

    _fd: FD
    _spec: MapSpec
    _name: str
    _arena: Any  # an ARENA map's mapping (ebpf._sys.mman.SharedPages), once made
    _type: int
    _key_size: int
    _value_size: int
    _ktype: btf.Type | None
    _vtype: btf.Type | None
    _fd_values: bool
    _ncpu: int
    _vstride: int
    _vbytes: int
    _kfmt: str | None
    _vfmt: str | None
    _kdec: Any
    _vdec: Any
    _vmode: int
    _tls: _local | None
    _bufs: Buffers | None  # the fast path thread's (None for maps without one)
    _kmv: memoryview | None
    _vmv: memoryview | None
    _vbuf: Any
    _lref: Any
    _uref: Any
    _int_vdecode: bool
    _owner: int
    _mmaps: list[Any]
    _pinned: str | None
    _frozen: bool
    _fixed: Any  # maps.info.MapInfo without `frozen`, once asked (Map._fixed_info)
    # the memory mapping of an mmapable array (ebpf.maps.mapped)
    _mm: Any
    _mraw: memoryview | None
    _mints: memoryview | None
    _mvals: memoryview | None
    _mwritable: bool
    _mstate: int
    _mstride: int
    _mcount: int
    _fast_owner: int
