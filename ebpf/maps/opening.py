"""Maps this process did not create: opened by descriptor, pin path or id (`Map.from_fd`,
`Map.open_pinned`, `Map.from_id`), their type, sizes, flags and BTF types read from the
kernel. A module of its own that `Map` imports on first use, so that creating maps does
not unmarshal it (process start, issue 15)."""

from __future__ import annotations

import errno
import os

from .._sys import ops as _ops
from .._sys import types as _t
from .._sys import validate as _validate
from .._sys.fd import FD
from ..errors import InvalidArgumentError, KeyNotFoundError, SyscallError
from ..spec.maps import MapSpec
from .info import anon_kind, kernel_btf_types, query_info
from .pinning import not_bpffs, on_bpffs

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from .core import Map

__all__ = ["from_fd", "from_id", "open_pinned"]


def from_fd(cls: type[Map], fd: int | FD, spec: MapSpec | None = None) -> Map:
    """`Map.from_fd`."""
    owned = fd if isinstance(fd, FD) else FD(_validate.integer(fd, "fd", 0, 2**31 - 1), "map")
    kind = anon_kind(owned.fileno())
    if kind not in ("", "bpf-map"):
        owned.close()
        raise InvalidArgumentError(f"fd is a {kind}, not a map")
    m = cls.__new__(cls)
    m._owner = 0
    m._mmaps = []
    m._pinned = None
    m._frozen = False
    try:
        info = query_info(owned.fileno())
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
        base.key, base.value = kernel_btf_types(info)
    owned.kind = f"map {base.name!r}"
    m._setup(owned, base)
    m._frozen = info.frozen
    return m


def open_pinned(cls: type[Map], path: str | os.PathLike[str], read_only: bool = False,
                write_only: bool = False) -> Map:
    """`Map.open_pinned`."""
    flags = (_t.BPF_F_RDONLY if read_only else 0) | (_t.BPF_F_WRONLY if write_only else 0)
    p = _validate.path(path, "pin path")
    try:
        fd = _ops.obj_get(p, flags)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            raise SyscallError(errno.ENOENT, f"no pinned object at {p}") from None
        if e.errno == errno.EPERM and not on_bpffs(p):
            raise not_bpffs(p) from None
        raise
    kind = anon_kind(fd)
    if kind and kind != "bpf-map":
        os.close(fd)
        raise InvalidArgumentError(f"{p} is a {kind}, not a map")
    m = cls.from_fd(fd)
    m._pinned = p
    return m


def from_id(cls: type[Map], map_id: int) -> Map:
    """`Map.from_id`."""
    try:
        fd = _ops.get_fd_by_id(_t.BPF_MAP_GET_FD_BY_ID, map_id)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            raise KeyNotFoundError(f"no map with id {map_id}") from None
        raise
    return cls.from_fd(fd)
