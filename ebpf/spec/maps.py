"""`MapSpec`: what a map is made of, before it exists (plain data, no fds)."""

from __future__ import annotations

from operator import attrgetter

import ebpf._lazyattr as _lazyattr

from .._sys.fastclass import Record
from .._sys.types import MapType
from ..errors import InvalidArgumentError

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from enum import IntEnum
    from typing import Any

    from .. import btf
    from .flags import MapFlags as MapFlags
    from .protocols import SupportsInfo
else:  # the stdlib class without enum's per-member cost (process start)
    from .._sys.fastclass import IntEnum

__all__ = ["MapFlags", "MapSpec", "MapType", "PinType"]


# `SupportsInfo` (a typing.Protocol) from `ebpf.spec.protocols` and `MapFlags` from
# `ebpf.spec.flags` on first use (process start: a load imports no `typing` and makes
# no flag enum: `MapSpec.flags` is an int).
__getattr__ = _lazyattr.lazy_attributes(globals(), {
    "SupportsInfo": ".protocols", "MapFlags": ".flags"})


class PinType(IntEnum):
    """`MapSpec.pinning`: NONE, or BY_NAME (libbpf's LIBBPF_PIN_BY_NAME: the map is
    pinned as <pin_path>/<name> and reused from there when compatible)."""

    NONE = 0
    BY_NAME = 1


# the attributes `MapSpec.check_compatible` compares, in its order
_COMPARED = ("type", "key_size", "value_size", "max_entries", "flags", "map_extra")
_compared = attrgetter(*_COMPARED)


class MapSpec(Record):
    """Everything needed to create a map; plain editable data, no kernel objects.

    `inner_map` is the template of the maps an ARRAY_OF_MAPS / HASH_OF_MAPS holds.
    `numa_node` (when not None) places the map's memory on that node.
    `map_extra` is BLOOM_FILTER's number of hash functions (or ARENA's address).
    `key`/`value` are BTF types describing key and value (they make lookups
    return typed values); `contents` is a list of (key, value) written after
    creation; `freeze` freezes the map after that (read-only for user space).
    """

    # a Record, not a dataclass: `dataclasses` costs process start ~8 ms. No __slots__:
    # the ELF reader keeps a `.values` offset on the spec.
    _FIELDS = ("name", "type", "key_size", "value_size", "max_entries", "flags",
               "inner_map", "numa_node", "map_extra", "pinning", "key", "value", "contents",
               "freeze")

    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    inner_map: MapSpec | None
    numa_node: int | None
    map_extra: int
    pinning: PinType
    key: btf.Type | None
    value: btf.Type | None
    contents: list[tuple[Any, Any]]
    freeze: bool

    def __init__(
        self,
        name: str = "",
        type: MapType = MapType.UNSPEC,
        key_size: int = 0,
        value_size: int = 0,
        max_entries: int = 0,
        flags: int = 0,
        inner_map: MapSpec | None = None,
        numa_node: int | None = None,
        map_extra: int = 0,
        pinning: PinType = PinType.NONE,
        key: btf.Type | None = None,
        value: btf.Type | None = None,
        contents: list[tuple[Any, Any]] | None = None,  # None: a new empty list
        freeze: bool = False,
    ) -> None:
        self.name = name
        self.type = type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.inner_map = inner_map
        self.numa_node = numa_node
        self.map_extra = map_extra
        self.pinning = pinning
        self.key = key
        self.value = value
        self.contents = [] if contents is None else contents
        self.freeze = freeze

    def copy(self) -> MapSpec:
        """A copy that can be edited without affecting this spec (contents and the
        inner map spec are copied; BTF types are shared)."""
        # what copy.copy does for an instance with a __dict__, without importing copy
        # (process start: every load copies its map specs)
        new = self.__class__.__new__(self.__class__)
        state = self.__dict__.copy()  # (cheaper than updating the new object's own dict)
        contents = []  # (a loop: a comprehension's function costs more for a few items)
        for k, v in self.contents:
            contents.append((k, bytearray(v) if isinstance(v, bytearray) else v))
        state["contents"] = contents
        new.__dict__ = state
        if self.inner_map is not None:
            new.inner_map = self.inner_map.copy()
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> MapSpec:
        """A deep copy sharing the parsed BTF types of `key` and `value`, as `copy()`
        does."""
        from ._copies import btf_of, deep_copy  # on the first deep copy (process start)

        new: MapSpec = deep_copy(self, memo, btf_of(self.key, self.value))
        return new

    def __repr__(self) -> str:
        from .reprs import map_repr  # the repr helpers on first repr

        return map_repr(self)

    def check_compatible(self, m: SupportsInfo) -> None:
        """Raise InvalidArgumentError naming the first attribute in which the existing
        map `m` (e.g. one found pinned) differs from this spec."""
        fixed = getattr(m, "_fixed_info", None)  # an ebpf.Map: asks the kernel once
        info = fixed() if fixed is not None else m.info()
        if _compared(self) == _compared(info):  # (the usual case: one C call a side)
            return
        want = (int(self.type), self.key_size, self.value_size, self.max_entries,
                int(self.flags), self.map_extra)
        have = (int(info.type), info.key_size, info.value_size, info.max_entries,
                int(info.flags), info.map_extra)
        if want == have:
            return
        for what, want_one, have_one in zip(_COMPARED, want, have, strict=True):
            if what == "max_entries" and self.type == MapType.PERF_EVENT_ARRAY and want_one == 0:
                continue  # created with one slot per possible CPU
            if want_one != have_one:
                raise InvalidArgumentError(f"map {self.name!r}: existing map has {what} "
                                           f"{have_one}, spec wants {want_one}")
