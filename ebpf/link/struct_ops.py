"""Registering struct_ops maps: `struct_ops(map)` makes a kernel struct implemented in BPF
(e.g. a TCP congestion control) live.

``.struct_ops.link`` maps get a bpf_link (closing it unregisters, `update(new_map)`
swaps implementations atomically); plain ``.struct_ops`` maps are registered by the
map update itself (closing the returned link deletes the element, which unregisters
it). Making the maps (`StructOpsMap`, `load_struct_ops`, ...) is `ebpf.struct_ops`,
re-exported here.
"""

from __future__ import annotations

import ctypes
import errno as _errno

from .._sys import link as _syslink
from .._sys.consts import BPF_F_REPLACE
from .._sys.fd import FD, hold
from .._sys.syscall import bpf
from .._sys.types import (
    BPF_F_LINK,
    BPF_MAP_DELETE_ELEM,
    BPF_MAP_UPDATE_ELEM,
    AttachType,
    LinkCreateAttr,
    MapElemAttr,
    MapType,
)
from ..elf.struct_ops import read_struct_ops
from ..errors import ClosedError, InvalidArgumentError, NotSupportedError, SyscallError
from ..features import require_struct_ops
from ..maps import Map
from ..struct_ops import (
    StructOpsMap,
    StructOpsSpec,
    load_struct_ops,
    resolve_struct_ops_programs,
    struct_ops_error,
    struct_ops_maps,
)
from .base import Link

__all__ = ["StructOpsLink", "StructOpsMap", "StructOpsSpec", "load_struct_ops",
           "read_struct_ops", "require_struct_ops", "resolve_struct_ops_programs",
           "struct_ops", "struct_ops_maps"]


class StructOpsLink(Link):
    """A registered struct_ops map. `close()` unregisters it (unless the bpf_link is
    pinned). With a bpf_link (``.struct_ops.link`` maps), `update(new_map)` replaces
    the implementation atomically; `info()`/`pin()` work as for other links."""

    def __init__(self, fd: FD | None, map: Map) -> None:
        super().__init__(fd, None)
        self.map: Map | None = map
        self._registered = True

    def update(self, map: Map, *, old: Map | None = None) -> None:  # type: ignore[override]
        """Swap in another struct_ops map of the same type (bpf_link maps only)."""
        if self._fd is None:
            raise NotSupportedError("updating a struct_ops map registered without a link",
                                    "declare it in SEC(\".struct_ops.link\")")
        # none of the numbers handed to the kernel can be reused mid-call
        with hold(self._fd, map, old):
            _write_value(map, allow_busy=True)
            _syslink.link_update(self._fd.fileno(), map.fileno(),
                                 old.fileno() if old is not None else 0,
                                 BPF_F_REPLACE if old is not None else 0)
        self.map = map

    def detach(self) -> None:
        if self._fd is not None:
            super().detach()
        else:
            self.close()

    def close(self) -> None:
        if not self._registered:
            return
        self._registered = False
        if self._fd is not None:
            self._fd.close()
            return
        m = self.map
        if m is not None and not m.closed:
            key = ctypes.c_uint32(0)
            try:
                with hold(m):
                    attr = MapElemAttr(map_fd=m.fileno())
                    attr.key = ctypes.addressof(key)
                    bpf(BPF_MAP_DELETE_ELEM, attr)
            except ClosedError:
                pass  # the map was closed meanwhile: as above, nothing to delete it through
            except SyscallError as e:
                if e.errno != _errno.ENOENT:
                    raise

    @property
    def closed(self) -> bool:
        return not self._registered

    def __repr__(self) -> str:
        name = self.map.name if self.map is not None else "?"
        state = "closed" if self.closed else "registered"
        return f"<StructOpsLink {name!r} {state}>"


def _write_value(map: Map, value: bytes | None = None, allow_busy: bool = False) -> None:
    if value is None:
        value = getattr(map, "_kern_value", None)
    if value is None:
        raise InvalidArgumentError(f"struct_ops: map {map.name!r} has no prepared value; "
                                   "create it with StructOpsMap.create or pass value=")
    buf = ctypes.create_string_buffer(value, len(value))
    key = ctypes.c_uint32(0)
    try:
        with hold(map):  # the map's number stays its own for the call
            attr = MapElemAttr(map_fd=map.fileno())
            attr.key = ctypes.addressof(key)
            attr.value = ctypes.addressof(buf)
            bpf(BPF_MAP_UPDATE_ELEM, attr)
    except SyscallError as e:
        if allow_busy and e.errno == _errno.EBUSY:
            return  # already prepared (a link map is written once)
        raise struct_ops_error(e, f"register struct_ops map {map.name!r}") from None


def struct_ops(map: Map, *, value: bytes | None = None) -> StructOpsLink:
    """Register the struct_ops `map` (a `StructOpsMap`, or any STRUCT_OPS map with
    its kernel `value`). ``.struct_ops.link`` maps get a bpf_link; plain ones are
    registered by the map update and unregistered when the returned link closes.

    Raises NotSupportedError when the kernel refuses struct_ops.
    """
    if map.type != MapType.STRUCT_OPS:
        raise InvalidArgumentError(f"struct_ops: map {map.name!r} is {map.type.name}, not "
                                   "STRUCT_OPS")
    is_link = bool(int(map.flags) & BPF_F_LINK)
    _write_value(map, value, allow_busy=is_link)
    if not is_link:
        return StructOpsLink(None, map)
    attr = LinkCreateAttr(attach_type=int(AttachType.STRUCT_OPS))
    try:
        with hold(map):  # the map's number stays its own until the link exists
            attr.map_fd = map.fileno()
            fd = FD(_syslink.link_create(attr), "link")
    except SyscallError as e:
        raise struct_ops_error(e, f"register struct_ops map {map.name!r}") from None
    return StructOpsLink(fd, map)

