"""What the kernel says about a map: `MapInfo` (BPF_OBJ_GET_INFO_BY_FD), the fields
of /proc/self/fdinfo, the kind of an anonymous-inode descriptor, and the BTF types
of a map created elsewhere."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from .._sys import ops as _ops
from .._sys import types as _t
from .._sys.types import MapType
from ..errors import Error
from ..spec.maps import MapFlags

__all__ = ["MapInfo", "anon_kind", "fdinfo", "kernel_btf_types", "query_info"]


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


def query_info(fd: int, *, frozen: bool = True) -> MapInfo:
    """The `MapInfo` of the map descriptor `fd` (`frozen` read from its fdinfo unless
    `frozen=False`: then False, and only the kernel's immutable facts are current)."""
    raw = _t.MapInfo()
    _ops.obj_get_info(fd, raw)
    name = bytes(raw.name).split(b"\0", 1)[0].decode(errors="replace")
    try:
        mtype = MapType(raw.type)
    except ValueError:
        mtype = raw.type
    if frozen:
        try:
            frozen = fdinfo(fd).get("frozen", "0") == "1"
        except (OSError, ValueError):
            frozen = False
    return MapInfo(id=raw.id, name=name, type=mtype, key_size=raw.key_size,
                   value_size=raw.value_size, max_entries=raw.max_entries,
                   flags=MapFlags(raw.map_flags), map_extra=raw.map_extra, btf_id=raw.btf_id,
                   btf_key_type_id=raw.btf_key_type_id,
                   btf_value_type_id=raw.btf_value_type_id,
                   btf_vmlinux_value_type_id=raw.btf_vmlinux_value_type_id,
                   ifindex=raw.ifindex, frozen=frozen)


def fdinfo(fd: int) -> dict[str, str]:
    """The ``key: value`` lines of /proc/self/fdinfo/<fd> ("frozen", "map_type", ...)."""
    out: dict[str, str] = {}
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


def kernel_btf_types(info: MapInfo) -> tuple[Any, Any]:
    """Key and value BTF types of a map created elsewhere (read back from the kernel)."""
    try:
        from ..btf import Spec  # only for maps with BTF: `import ebpf.maps` loads no BTF code

        spec = Spec(_ops.btf_get_data(info.btf_id))
        k = spec.type_by_id(info.btf_key_type_id) if info.btf_key_type_id else None
        v = spec.type_by_id(info.btf_value_type_id) if info.btf_value_type_id else None
        return k, v
    except (Error, OSError):
        # BTFError (BTF this library cannot parse), SyscallError (the BTF object is gone
        # or not readable): the map still works, its values are bytes
        return None, None


def anon_kind(fd: int) -> str:
    """What an anonymous-inode descriptor is ("bpf-map", "bpf-prog", ...; "" otherwise)."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""
    return target.removeprefix("anon_inode:") if target.startswith("anon_inode:") else ""
