"""Creating a map from a `MapSpec`: the checked BPF_MAP_CREATE attrs, the key/value BTF
the kernel gets, a temporary inner map for map-in-map types, and the error that says
why the kernel refused."""

from __future__ import annotations

import ctypes
import errno
from typing import TYPE_CHECKING, Any

from .._sys import ops as _ops
from .._sys import types as _t
from .._sys import validate as _validate
from .._sys.caps import eperm_error
from .._sys.fd import FD
from .._sys.syscall import bpf_errno as _bpf_errno
from .._sys.syscall import from_errno
from .._sys.types import MapType
from ..errors import Error, InvalidArgumentError, KeyNotFoundError, NotSupportedError
from ..spec.maps import MapSpec, PinType
from ..spec.names import kernel_name
from .kinds import NO_BTF_TYPES, type_name

if TYPE_CHECKING:
    from .. import btf

__all__ = ["create", "create_attr", "create_error", "map_btf", "spec_type_id"]


def create_attr(spec: MapSpec) -> _t.MapCreateAttr:
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


def create(spec: MapSpec, inner_map_fd: int | None, btf_handle: Any) -> FD:
    """Create the map `spec` describes (its name sanitized, its BTF attached when the
    kernel takes it); `inner_map_fd` is the template of a map-in-map (else one is made
    from `spec.inner_map` for the duration of the call)."""
    attr = create_attr(spec)
    if spec.type == MapType.PERF_EVENT_ARRAY and spec.max_entries == 0:
        spec.max_entries = attr.max_entries = _ops.possible_cpus()  # like libbpf
    name = kernel_name(spec.name).encode()
    ctypes.memmove(ctypes.addressof(attr) + _t.MapCreateAttr.map_name.offset, name, len(name))
    if spec.numa_node is not None:
        attr.map_flags |= _t.BPF_F_NUMA_NODE
    temp_inner: FD | None = None
    handle: Any = None
    own_handle = False
    try:
        if spec.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
            if inner_map_fd is None:
                if spec.inner_map is None:
                    raise InvalidArgumentError(
                        f"map {spec.name!r}: {type_name(spec.type)} needs an inner map "
                        "(MapSpec.inner_map or inner_map_fd)")
                inner = spec.inner_map.copy()
                inner.pinning, inner.contents, inner.freeze = PinType.NONE, [], False
                temp_inner = create(inner, None, None)
                inner_map_fd = temp_inner.fileno()
            _validate.put(attr, "inner_map_fd", inner_map_fd, "inner_map_fd")
        if (spec.key is not None or spec.value is not None) and spec.type not in NO_BTF_TYPES:
            handle, own_handle, kid, vid = map_btf(spec, btf_handle)
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
            raise create_error(spec, -ret)
        return FD(ret, f"map {spec.name!r}")
    finally:
        if temp_inner is not None:
            temp_inner.close()
        if handle is not None and own_handle:
            handle.close()


def map_btf(spec: MapSpec, btf_handle: Any) -> tuple[Any, bool, int, int]:
    """(handle, owned, key type id, value type id) for the map's BTF, or (None, ...)
    when no BTF object can be made."""
    if btf_handle is not None:
        # ids of the types in the Spec they were decoded from (which the handle holds)
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


def create_error(spec: MapSpec, err: int) -> Exception:
    """Why the kernel refused to create `spec` (errno `err`), as a typed error."""
    tname = type_name(spec.type)
    desc = (f"create {tname} map {spec.name!r} (key_size {spec.key_size}, value_size "
            f"{spec.value_size}, max_entries {spec.max_entries}, flags {int(spec.flags):#x})")
    if err in (errno.EINVAL, errno.E2BIG, errno.EOPNOTSUPP, 524):
        try:
            known = MapType(spec.type)
        except ValueError:
            return NotSupportedError(f"map type {int(spec.type)}", "unknown to this kernel")
        from .. import features  # on a refusal only: features loads ebpf.btf

        if not features.have_map_type(known):
            return NotSupportedError(f"map type {tname}")
    if err == errno.EPERM:  # a missing capability, or the kernel's policy
        return eperm_error(f"bpf(BPF_MAP_CREATE): {desc}", cmd=_t.Cmd.MAP_CREATE,
                           map_type=int(spec.type), obj=f"map {spec.name!r} ({tname.lower()})",
                           feature=f"map type {tname}")
    return from_errno(err, desc)
