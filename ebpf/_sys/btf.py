"""bpf(2) wrappers for BTF objects: BPF_BTF_LOAD with a log, fd by id, info.

`btf_load` returns ``-errno`` instead of raising so that callers can retry
with a bigger log and turn the kernel's log into a useful error; the others
raise the typed exceptions of `ebpf.errors`. `btf_info`, `btf_raw` and
`BtfObjectInfo` are in `btfinfo.py`, loaded on first use (process start).
"""

from __future__ import annotations

import ctypes
import errno

import ebpf._lazyattr as _lazyattr

from .ops import get_fd_by_id, get_next_id
from .syscall import bpf_errno
from .types import (
    BPF_BTF_GET_FD_BY_ID,
    BPF_BTF_GET_NEXT_ID,
    BPF_BTF_LOAD,
    BPF_F_TOKEN_FD,
    BtfLoadAttr,
)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from .btfinfo import BtfObjectInfo, btf_info, btf_raw

__all__ = ["BtfObjectInfo", "blob_buffer", "btf_get_fd_by_id", "btf_get_next_id", "btf_info",
           "btf_load", "btf_load_logged", "btf_raw"]

_LOG_MIN = 1 << 16
_LOG_MAX = 1 << 24


def blob_buffer(data: bytes) -> ctypes.Array[ctypes.c_char]:
    """`data` in a buffer of its size that `btf_load` takes as it is (no copy made)."""
    buf = (ctypes.c_char * len(data))()
    buf.raw = data
    return buf


def btf_load(data: bytes | ctypes.Array[ctypes.c_char], log_level: int = 0,
             log_size: int = 0, token_fd: int = -1) -> tuple[int, str, int]:
    """BPF_BTF_LOAD: (fd or ``-errno``, log text, log_true_size). `data`: the blob, or
    a `blob_buffer` (read by the kernel, never written: one may serve any number of
    loads, from any thread).

    With `log_level` > 0 a `log_size`-byte log buffer (at least 64 KiB) is
    passed; log_true_size is the size the kernel needed (0 on kernels that do
    not report it)."""
    blob = data if isinstance(data, ctypes.Array) else blob_buffer(bytes(data))
    attr = BtfLoadAttr(btf=ctypes.addressof(blob), btf_size=len(blob))
    log = None
    if log_level:
        log_size = max(log_size, _LOG_MIN)
        log = ctypes.create_string_buffer(log_size)
        attr.btf_log_buf = ctypes.addressof(log)
        attr.btf_log_size = log_size
        attr.btf_log_level = log_level
    if token_fd >= 0:
        attr.btf_token_fd = token_fd
        attr.btf_flags |= BPF_F_TOKEN_FD
    fd = bpf_errno(BPF_BTF_LOAD, attr)
    text = log.value.decode(errors="replace") if log is not None else ""
    return fd, text, int(attr.btf_log_true_size)


def btf_load_logged(data: bytes | ctypes.Array[ctypes.c_char],
                    log_level: int = 0) -> tuple[int, str]:
    """BPF_BTF_LOAD, retried with a log when it fails: (fd or ``-errno``, log).

    With `log_level` 0 the first attempt has no log (the fast path); a failure
    is retried at log level 1 to learn why. A log too small for the kernel
    (ENOSPC) is grown up to 16 MiB."""
    if log_level == 0:
        fd, _, _ = btf_load(data)
        if fd >= 0 or fd == -errno.EPERM:
            return fd, ""
        log_level = 1
    size = _LOG_MIN
    while True:
        fd, log, true_size = btf_load(data, log_level, size)
        if fd != -errno.ENOSPC or size >= _LOG_MAX:
            return fd, log
        size = min(_LOG_MAX, max(2 * size, true_size + 1))


def btf_get_fd_by_id(btf_id: int) -> int:
    """BPF_BTF_GET_FD_BY_ID: a new close-on-exec fd (SyscallError ENOENT when missing)."""
    return get_fd_by_id(BPF_BTF_GET_FD_BY_ID, btf_id)


def btf_get_next_id(start_id: int) -> int | None:
    """BPF_BTF_GET_NEXT_ID: the smallest BTF object id above `start_id`, None at the end."""
    return get_next_id(BPF_BTF_GET_NEXT_ID, start_id)


# BPF_OBJ_GET_INFO_BY_FD's, which a load never asks (process start)
__getattr__ = _lazyattr.lazy_attributes(globals(), {
    "BtfObjectInfo": ".btfinfo", "btf_info": ".btfinfo", "btf_raw": ".btfinfo"})
