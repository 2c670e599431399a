"""What each map type supports (keys, per-CPU values, fd values, batches, BTF), and the
element commands and attr sizes shared by the parts of `Map`."""

from __future__ import annotations

import ctypes
from typing import Final

from .._sys import types as _t
from .._sys.types import MapType

LOOKUP: Final = int(_t.Cmd.MAP_LOOKUP_ELEM)
UPDATE: Final = int(_t.Cmd.MAP_UPDATE_ELEM)
DELETE: Final = int(_t.Cmd.MAP_DELETE_ELEM)
NEXT_KEY: Final = int(_t.Cmd.MAP_GET_NEXT_KEY)
LOOKUP_AND_DELETE: Final = int(_t.Cmd.MAP_LOOKUP_AND_DELETE_ELEM)
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
