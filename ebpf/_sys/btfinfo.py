"""BPF_OBJ_GET_INFO_BY_FD on a BTF object: `btf_info` (its id, name, size, kernel flag,
as a `BtfObjectInfo`) and `btf_raw` (its blob). Re-exported by `ebpf._sys.btf`, which
loads this module on first use: loading an object asks for neither (process start:
the NamedTuple class alone is ~0.4 M instructions)."""

from __future__ import annotations

import ctypes

from .ops import obj_get_info
from .types_misc import BtfInfo

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import NamedTuple
else:
    # the same stdlib classes, made at a fraction of the cost (process start)
    from .fastclass import NamedTuple

__all__ = ["BtfObjectInfo", "btf_info", "btf_raw"]


class BtfObjectInfo(NamedTuple):
    """What BPF_OBJ_GET_INFO_BY_FD says about a BTF object."""

    id: int
    name: str
    size: int
    kernel_btf: bool


BtfObjectInfo.__module__ = "ebpf._sys.btf"  # where it is public (reprs, pickles)


def btf_info(fd: int) -> BtfObjectInfo:
    """Id, name (a kernel module's, or ""), blob size and kernel flag of a BTF fd."""
    name = ctypes.create_string_buffer(64)
    info = BtfInfo(name=ctypes.addressof(name), name_len=len(name))
    obj_get_info(fd, info)
    return BtfObjectInfo(int(info.id), name.value.decode(errors="replace"),
                         int(info.btf_size), bool(info.kernel_btf))


def btf_raw(fd: int) -> bytes:
    """The raw BTF blob behind a BTF fd (as its creator loaded it)."""
    info = BtfInfo()
    obj_get_info(fd, info)
    size = int(info.btf_size)
    buf = ctypes.create_string_buffer(max(size, 1))
    info = BtfInfo(btf=ctypes.addressof(buf), btf_size=size)
    obj_get_info(fd, info)
    return buf.raw[: min(size, int(info.btf_size))]
