"""bpf(2) wrappers shared by every kind of kernel object, and map-specific helpers.

Object commands (pin, get, next id, fd by id, info), BTF load/read-back, map
freeze, the number of possible CPUs, and `fast_syscall`: the entry point map
hot paths use with preallocated attr buffers.
"""

from __future__ import annotations

import ctypes
import errno
import mmap as _mmap
import os
import sys
from functools import cache

from ..errors import SyscallError
from . import types as _t  # _t.<attr> of a command a load never issues: types_misc.py
from . import validate
from .syscall import NR_BPF, bpf, bpf_errno
from .types import (
    BPF_BTF_GET_FD_BY_ID,
    BPF_BTF_LOAD,
    BPF_MAP_FREEZE,
    BPF_OBJ_GET,
    BPF_OBJ_GET_INFO_BY_FD,
    BPF_OBJ_PIN,
    BtfLoadAttr,
)

__all__ = [
    "btf_get_data",
    "btf_get_fd_by_id",
    "btf_load",
    "fast_syscall",
    "get_fd_by_id",
    "get_next_id",
    "map_freeze",
    "mmap_fd",
    "obj_get",
    "obj_get_info",
    "obj_pin",
    "possible_cpus",
]

# syscall(2) through a PyDLL: the GIL stays held during the call. Map element
# operations are short and non-blocking, so this costs other threads nothing
# noticeable and saves the release/reacquire. Call as
# fast_syscall(NR_BPF, cmd, buffer_or_byref, size) and read ctypes.get_errno()
# when the result is negative.
fast_syscall = ctypes.PyDLL(None, use_errno=True).syscall


def _path_buf(path: str | os.PathLike[str]) -> ctypes.Array[ctypes.c_char]:
    # a NUL byte would cut the path short in the kernel: refused (InvalidArgumentError)
    return ctypes.create_string_buffer(os.fsencode(validate.path(path, "pin path")))


def obj_pin(fd: int, path: str | os.PathLike[str]) -> None:
    """BPF_OBJ_PIN: pin the object behind `fd` at `path` (on a bpffs)."""
    buf = _path_buf(path)
    bpf(BPF_OBJ_PIN, _t.ObjAttr(pathname=ctypes.addressof(buf), bpf_fd=fd))


def obj_get(path: str | os.PathLike[str], flags: int = 0) -> int:
    """BPF_OBJ_GET: a new close-on-exec fd for the object pinned at `path`.

    `flags` is BPF_F_RDONLY / BPF_F_WRONLY or 0 for read-write.
    """
    buf = _path_buf(path)
    return bpf(BPF_OBJ_GET, _t.ObjAttr(pathname=ctypes.addressof(buf), file_flags=flags))


def get_next_id(cmd: int, start_id: int) -> int | None:
    """BPF_{PROG,MAP,BTF,LINK}_GET_NEXT_ID: the smallest id above `start_id`, or None."""
    attr = _t.GetIdAttr()
    attr.start_id = validate.unsigned(start_id, "start id", 32)
    ret = bpf_errno(cmd, attr)
    if ret == -errno.ENOENT:
        return None
    if ret < 0:
        bpf(cmd, attr)  # raises the typed error
    return int(attr.next_id)


def get_fd_by_id(cmd: int, obj_id: int, open_flags: int = 0) -> int:
    """BPF_{PROG,MAP,BTF,LINK}_GET_FD_BY_ID: a new close-on-exec fd for `obj_id`.

    A missing id raises SyscallError with errno ENOENT.
    """
    attr = _t.GetIdAttr()
    validate.put(attr, "open_flags", open_flags)
    attr.start_id = validate.unsigned(obj_id, "id", 32)
    return bpf(cmd, attr)


def btf_get_fd_by_id(btf_id: int) -> int:
    """BPF_BTF_GET_FD_BY_ID: a new close-on-exec fd for the BTF object `btf_id`."""
    return get_fd_by_id(BPF_BTF_GET_FD_BY_ID, btf_id)


def obj_get_info(fd: int, info: ctypes.Structure) -> int:
    """BPF_OBJ_GET_INFO_BY_FD into `info`; returns the number of bytes the kernel filled."""
    attr = _t.ObjGetInfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info),
                             info=ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return int(attr.info_len)


def btf_load(data: bytes, log_size: int = 0) -> tuple[int, str]:
    """BPF_BTF_LOAD a raw BTF blob: (fd or -errno, kernel log). Never raises for the
    kernel's verdict, so feature probes can inspect it."""
    blob = ctypes.create_string_buffer(bytes(data), len(data))
    log = ctypes.create_string_buffer(log_size) if log_size else None
    attr = BtfLoadAttr(btf=ctypes.addressof(blob), btf_size=len(data))
    if log is not None:
        attr.btf_log_buf, attr.btf_log_size, attr.btf_log_level = (
            ctypes.addressof(log), log_size, 1)
    fd = bpf_errno(BPF_BTF_LOAD, attr)
    return fd, (log.value.decode(errors="replace") if log is not None else "")


def btf_get_data(btf_id: int) -> bytes:
    """The raw BTF blob of the kernel BTF object `btf_id` (as loaded by its creator)."""
    fd = btf_get_fd_by_id(btf_id)
    try:
        info = _t.BtfInfo()
        obj_get_info(fd, info)
        size = int(info.btf_size)
        buf = ctypes.create_string_buffer(size)
        info = _t.BtfInfo(btf=ctypes.addressof(buf), btf_size=size)
        obj_get_info(fd, info)
        return buf.raw[: int(info.btf_size)]
    finally:
        os.close(fd)


def map_freeze(fd: int) -> None:
    """BPF_MAP_FREEZE: make the map read-only for user space from now on."""
    # The attr is just map_fd: bytes, which ctypes passes as a pointer to their data (the
    # kernel only reads it), through fast_syscall (a short command); a refusal is asked
    # again through bpf(), which retries an interrupted command and raises the typed error
    if fast_syscall(NR_BPF, BPF_MAP_FREEZE, fd.to_bytes(4, sys.byteorder), 4) < 0:
        bpf(BPF_MAP_FREEZE, ctypes.c_uint32(fd), 4)


def mmap_fd(fd: int, length: int, writable: bool) -> _mmap.mmap:
    """mmap(2) a map's memory (BPF_F_MMAPABLE arrays), shared. A read-only mapping is
    an ACCESS_READ mmap: the buffers it exports are read-only, so no write through a
    view of it can fault."""
    access = _mmap.ACCESS_WRITE if writable else _mmap.ACCESS_READ  # both MAP_SHARED
    try:
        return _mmap.mmap(fd, length, access=access)
    except OSError as e:
        raise SyscallError(e.errno or errno.EINVAL, f"mmap of map fd {fd}: {e.strerror}") from None


@cache
def possible_cpus() -> int:
    """Number of possible CPUs (the length of per-CPU map values): one more than
    the highest CPU listed in /sys/devices/system/cpu/possible."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    highest = 0
    for part in text.split(","):
        highest = max(highest, int(part.split("-")[-1]))
    return highest + 1
