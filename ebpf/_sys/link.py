"""bpf(2) wrappers for bpf_link objects."""

from __future__ import annotations

import ctypes

from ..errors import InvalidArgumentError
from . import validate
from .ops import obj_get_info
from .syscall import bpf
from .types import (
    BPF_LINK_CREATE,
    BPF_LINK_DETACH,
    BPF_LINK_UPDATE,
    BPF_RAW_TRACEPOINT_OPEN,
    LinkCreateAttr,
    LinkDetachAttr,
    LinkInfo,
    LinkUpdateAttr,
    RawTracepointOpenAttr,
)


def link_create(attr: LinkCreateAttr) -> int:
    """BPF_LINK_CREATE with a caller-filled attr; returns the link fd."""
    return bpf(BPF_LINK_CREATE, attr)


def link_update(link_fd: int, new_prog_fd: int, old_prog_fd: int = 0, flags: int = 0) -> None:
    """BPF_LINK_UPDATE: swap the program of a link atomically (BPF_F_REPLACE checks old)."""
    attr = LinkUpdateAttr()
    validate.put(attr, "link_fd", link_fd)
    validate.put(attr, "new_prog_fd", new_prog_fd)
    validate.put(attr, "flags", flags)
    if old_prog_fd:
        validate.put(attr, "old_prog_fd", old_prog_fd)
    bpf(BPF_LINK_UPDATE, attr)


def link_detach(link_fd: int) -> None:
    attr = LinkDetachAttr()
    validate.put(attr, "link_fd", link_fd)
    bpf(BPF_LINK_DETACH, attr)


def link_info(link_fd: int, info: LinkInfo | None = None) -> LinkInfo:
    """BPF_OBJ_GET_INFO_BY_FD on a link (the caller may pre-set pointer fields)."""
    if info is None:
        info = LinkInfo()
    obj_get_info(link_fd, info)
    return info


def raw_tracepoint_open(prog_fd: int, name: str | None, cookie: int = 0) -> int:
    """BPF_RAW_TRACEPOINT_OPEN (raw_tp, and tp_btf/fentry/fexit/lsm with name None)."""
    attr = RawTracepointOpenAttr()
    validate.put(attr, "prog_fd", prog_fd)
    validate.put(attr, "cookie", cookie)
    if name is not None and not isinstance(name, str):
        raise InvalidArgumentError(
            f"raw tracepoint name must be a str, got {type(name).__name__} {name!r}")
    if name and "\0" in name:
        raise InvalidArgumentError(f"raw tracepoint name {name!r} contains a NUL byte")
    buf = ctypes.create_string_buffer(name.encode()) if name else None
    attr.name = ctypes.addressof(buf) if buf is not None else 0
    return bpf(BPF_RAW_TRACEPOINT_OPEN, attr)
