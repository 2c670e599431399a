"""Arena maps (BPF_MAP_TYPE_ARENA, 6.9+): memory shared by programs and user space,
`max_entries` pages, mapped into this process where the kernel wants it.

An arena created here is mapped at once, as libbpf does: at `MapSpec.map_extra` when
that is set (the address the programs' arena pointers use; MAP_FIXED_NOREPLACE, so an
address already in use fails with EEXIST instead of replacing anything), else where the
kernel places it; programs that use the arena can only be loaded once its user address
is known. `MapSpec.contents` of an arena are ``(offset, bytes)`` written into that memory
(the object's ``__arena`` globals, section ``.addr_space.1``, at offset 0). An arena
opened by pin, id or fd is mapped on first use.

`Map.memory()` of an arena is a writable byte view of all its pages;
`Map.arena_address` is where they start, so a pointer a program stored in the arena
(a user-space address: clang's ``cast_user``) is at offset ``ptr - arena_address`` of
that view. Pages the programs have not allocated are allocated by the kernel when
touched from user space (unless the map has `MapFlags.SEGV_ON_FAULT`). Lifetime: the
memory stays mapped while the map is open or any view of it is alive (a view keeps it
mapped after `close()`; it is unmapped when the last one is released).
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

from .._sys import mman as _mman
from ..errors import InvalidArgumentError, SyscallError

if TYPE_CHECKING:
    from .base import MapState

__all__ = ["arena_pages", "fill_arena"]


def _size(m: MapState) -> int:
    return m._spec.max_entries * os.sysconf("SC_PAGE_SIZE")


def arena_pages(m: MapState) -> Any:
    """The arena's mapping (`ebpf._sys.mman.SharedPages`), made on first use."""
    pages = getattr(m, "_arena", None)
    if pages is None:
        if m._fd.closed:
            raise m._fd.closed_error()
        try:
            with m._fd.hold() as fd:
                pages = _mman.map_shared(fd, _size(m), m._spec.map_extra)
        except SyscallError as e:
            if e.errno != errno.EINVAL:
                raise
            raise SyscallError(e.errno, f"{e.strerror}: an arena created without map_extra "
                                        "has the user address of its first mapping, made "
                                        "elsewhere (another process)") from None
        m._arena = pages
    return pages


def fill_arena(m: MapState, contents: list[tuple[Any, Any]]) -> None:
    """Map the arena just created and write its initial `contents` ((offset, bytes)
    pairs) into it; InvalidArgumentError for contents outside the arena."""
    size = _size(m)
    for off, data in contents:
        if not isinstance(off, int) or not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(
                f"arena {m._name!r}: contents must be (offset, bytes) pairs")
        if off < 0 or off + len(data) > size:
            raise InvalidArgumentError(
                f"arena {m._name!r}: {len(data)} bytes of initial data at offset {off} do "
                f"not fit in its {m._spec.max_entries} pages ({size} bytes)")
    view = memoryview(arena_pages(m)).cast("B")
    with view:
        for off, data in contents:
            view[off:off + len(data)] = data
