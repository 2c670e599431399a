"""Entries of a ``BPF_MAP_TYPE_STACK_TRACE`` map as addresses and as symbolized frames.

A program stores a stack with ``id = bpf_get_stackid(ctx, &stacks, flags)`` (kernel
stack, or the user stack with ``BPF_F_USER_STACK``) and passes the id on; the map's
value under that id is an array of instruction pointers, innermost first, padded
with zeros.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import Any

from ..errors import InvalidArgumentError
from .frame import Frame
from .symbolizer import Symbolizer

_IP = struct.Struct("=Q")

_default: Symbolizer | None = None


def default_symbolizer() -> Symbolizer:
    """The process-wide `Symbolizer` the helpers use when given none."""
    global _default
    if _default is None:
        _default = Symbolizer()
    return _default


def stack_addresses(m: Any, stack_id: int) -> list[int]:
    """The instruction pointers of stack `stack_id` in stack-trace map `m`, innermost
    first. A negative id is the error `bpf_get_stackid` returned (InvalidArgumentError
    naming it); an id not in the map raises `KeyNotFoundError`."""
    if stack_id < 0:
        name = errno.errorcode.get(-stack_id, str(-stack_id))
        raise InvalidArgumentError(
            f"stack id {stack_id} is bpf_get_stackid's error -{name} ({os.strerror(-stack_id)})"
            + ("; the map is full or the stack collided with another (BPF_F_REUSE_STACKID "
               "replaces it)" if -stack_id == errno.EEXIST else ""))
    if m.value_size % 8:
        raise InvalidArgumentError(f"map {m.name!r} holds {m.value_size}-byte values, not "
                                   "arrays of 8-byte addresses (is it a STACK_TRACE map "
                                   "with BPF_F_STACK_BUILD_ID?)")
    raw = m.lookup(stack_id, raw=True)
    ips = [ip for (ip,) in _IP.iter_unpack(bytes(raw))]
    n = len(ips)
    while n and not ips[n - 1]:
        n -= 1
    return ips[:n]


def stack_frames(m: Any, stack_id: int, *, pid: int | None = None,
                 symbolizer: Symbolizer | None = None) -> list[Frame]:
    """Stack `stack_id` of map `m` as frames, innermost first: kernel frames, or the
    user frames of process `pid` when given (a ``BPF_F_USER_STACK`` stack)."""
    sym = symbolizer if symbolizer is not None else default_symbolizer()
    ips = stack_addresses(m, stack_id)
    if pid is None:
        return [sym.kernel(ip) for ip in ips]
    return [sym.user(pid, ip) for ip in ips]


def format_stack(frames: list[Frame], *, indent: str = "    ") -> str:
    """One frame a line (``name+0xoff [module]``), innermost first, like BCC's tools."""
    return "".join(f"{indent}{f}\n" for f in frames)


__all__ = ["default_symbolizer", "format_stack", "stack_addresses", "stack_frames"]

