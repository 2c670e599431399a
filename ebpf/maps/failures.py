"""Why the kernel refused a map command, as a typed error: `create_error` (BPF_MAP_CREATE)
and `elem_error` (the element commands: a missing key, a full map, a frozen or read-only
map, what the map type does not support), and `KeyExistsError`, the maps' own error. A
module of its own that `ebpf.maps` imports only on a failure (or when `KeyExistsError` is
first asked for), so that creating and using maps does not unmarshal it (process start,
issue 15)."""

from __future__ import annotations

import errno
import os

from .._sys import types as _t
from .._sys.syscall import from_errno
from .._sys.types import MapType
from ..errors import (
    InvalidArgumentError,
    KeyNotFoundError,
    NotSupportedError,
    SyscallError,
)
from .base import ARRAY_TYPES, FD_VALUE_TYPES, type_name
from .base import DELETE as _DELETE
from .base import LOOKUP as _LOOKUP
from .base import LOOKUP_AND_DELETE as _LOOKUP_AND_DELETE
from .base import NEXT_KEY as _NEXT_KEY
from .base import UPDATE as _UPDATE
from .elements import _fdinfo
from .flags import UpdateFlags

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from ..spec.maps import MapSpec
    from .elements import MapElements

__all__ = ["KeyExistsError", "create_error", "elem_error"]


class KeyExistsError(SyscallError):
    """`update(..., UpdateFlags.NOEXIST)` found the key already present."""


def elem_error(m: MapElements, cmd: int, err: int, key: Any, flags: int) -> Exception:
    """The typed error of element command `cmd` on `m` that failed with `err`."""
    op = {_LOOKUP: "lookup", _UPDATE: "update", _DELETE: "delete",
          _LOOKUP_AND_DELETE: "lookup_and_delete", _NEXT_KEY: "next_key"}.get(cmd, str(cmd))
    where = f"{op} in {type_name(m._type)} map {m._name!r}"
    if err == errno.EBADF and m._fd.closed:
        return m._fd.closed_error()  # closed by another thread during the call
    if err == errno.ENOENT:
        return KeyNotFoundError(m._missing(key))
    if err == errno.EEXIST and cmd == _UPDATE:
        return KeyExistsError(err, f"{where}: key {key!r} already exists (NOEXIST)")
    if err == errno.E2BIG and cmd == _UPDATE and m._type in ARRAY_TYPES:
        n = m._spec.max_entries  # (an array is never full: the index is past its end)
        return InvalidArgumentError(
            f"{where}: key {key!r} is out of range: the indexes are 0..{n - 1} "
            f"(max_entries {n})")
    if err == errno.E2BIG and cmd == _UPDATE:
        return SyscallError(err, f"{where}: map is full "
                                 f"(max_entries {m._spec.max_entries})")
    if err == errno.EPERM:
        return _access_error(m, cmd, err, where)
    if err in (errno.EINVAL, errno.EOPNOTSUPP, 524) and cmd in (
            _DELETE, _LOOKUP_AND_DELETE) and m._type in ARRAY_TYPES and \
            m._type not in FD_VALUE_TYPES:
        return InvalidArgumentError(
            f"{where}: elements of {type_name(m._type)} maps cannot be deleted")
    known = int(UpdateFlags.NOEXIST | UpdateFlags.EXIST | UpdateFlags.LOCK)
    if err == errno.EINVAL and flags & ~known:
        return InvalidArgumentError(
            f"{where}: flags {flags:#x} has bits no UpdateFlags member has (ANY, NOEXIST, "
            f"EXIST, LOCK)")
    if err == errno.EINVAL and flags & UpdateFlags.LOCK:
        return InvalidArgumentError(
            f"{where}: UpdateFlags.LOCK needs a value with a struct bpf_spin_lock (BTF)")
    if err in (errno.EOPNOTSUPP, 524):
        return NotSupportedError(f"{op} on {type_name(m._type)} maps")
    return from_errno(err, where)

def _access_error(m: MapElements, cmd: int, err: int, where: str) -> Exception:
    """EPERM from an element operation: the map's or the descriptor's access mode
    (what the kernel checks there), else `ebpf._sys.caps.eperm_error`."""
    write = cmd in (_UPDATE, _DELETE, _LOOKUP_AND_DELETE)
    info: dict[str, str] = {}
    mode = -1
    import fcntl as _fcntl  # on an EPERM only, as caps below (process start)

    try:
        with m._fd.hold() as fd:
            info = _fdinfo(fd)
            mode = _fcntl.fcntl(fd, _fcntl.F_GETFL) & os.O_ACCMODE
    except (OSError, ValueError):
        pass
    # BPF_F_RDONLY/WRONLY at creation only set the mode of the creator's descriptor
    flags = int(getattr(m._spec, "flags", 0) or 0)
    why = ""
    if write and (m._frozen or info.get("frozen") == "1"):
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
        from ..errors import PermissionError  # on an EPERM only (process start)

        return PermissionError(err, f"{where}: {why}")
    from .._sys.caps import eperm_error  # on an EPERM only (process start)

    return eperm_error(where, err=err, cmd=cmd, map_type=int(m._type),
                       obj=where)



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
        from .._sys.caps import eperm_error  # on an EPERM only (process start)

        return eperm_error(f"bpf(BPF_MAP_CREATE): {desc}", cmd=_t.BPF_MAP_CREATE,
                           map_type=int(spec.type), obj=f"map {spec.name!r} ({tname.lower()})",
                           feature=f"map type {tname}")
    return from_errno(err, desc)
