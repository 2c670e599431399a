"""BPF iterators (``SEC("iter/task")``, ``iter/bpf_map_elem``, ...).

An iterator program runs once per kernel object (task, map, map element,
socket, cgroup, ...) and writes text or binary records with bpf_seq_printf /
bpf_seq_write. Attaching it makes an iterator link; every `IterLink.open()`
starts a new pass and returns a binary file object streaming its output.

>>> with ebpf.link.iter(prog) as it:                       # doctest: +SKIP
...     with it.open() as f:
...         print(f.read().decode())
"""

from __future__ import annotations

import builtins
import contextlib
import os
from typing import TYPE_CHECKING, BinaryIO

from .._sys import probe as _probe
from .._sys import validate as _validate
from .._sys.fd import FD, hold, holds_first
from .._sys.types import LinkType, ProgramType
from ..errors import InvalidArgumentError
from ._attach import open_dir
from .base import Link, register_link_class

if TYPE_CHECKING:
    from ..programs import Program, SupportsFileno

__all__ = ["CGROUP_ORDERS", "IterLink", "iter"]

CGROUP_ORDERS = {
    "self": 1,  # BPF_CGROUP_ITER_SELF_ONLY
    "descendants_pre": 2,
    "descendants_post": 3,
    "ancestors_up": 4,
}
"""`iter(cgroup=..., order=...)` values (enum bpf_cgroup_iter_order)."""


class IterLink(Link):
    """An iterator link: `open()` runs the iterator and returns its output as a
    binary file object; `read()` returns it all at once. Supports `update()`
    (swap in another program for the same iterator target), `pin()` (a pinned
    iterator can be read by any process with ``cat``), `info()` and `detach()`."""

    def open(self) -> BinaryIO:
        """A new pass of the iterator (BPF_ITER_CREATE), as a buffered binary file.
        Close it when done (or use ``with``)."""
        with self.fd.hold() as link_fd:
            fd = _probe.iter_create(link_fd)
        return os.fdopen(fd, "rb")

    def read(self) -> bytes:
        """The whole output of one pass of the iterator."""
        with self.open() as f:
            return f.read()


register_link_class(LinkType.ITER, IterLink)


@holds_first
def iter(
    program: Program,
    *,
    map: SupportsFileno | None = None,
    cgroup: str | os.PathLike[str] | int | None = None,
    cgroup_id: int = 0,
    order: str | int | None = None,
    tid: int = 0,
    pid: int = 0,
    pid_fd: int = 0,
) -> IterLink:
    """Create an iterator link for a TRACING program loaded with attach type
    TRACE_ITER (``SEC("iter/<target>")``).

    Map iterators (``bpf_map_elem``, ``bpf_sk_storage_map``, ...) need `map`.
    Cgroup iterators take `cgroup` (a cgroup v2 directory or an open fd) or
    `cgroup_id`, and an `order` from `CGROUP_ORDERS`. Task iterators
    (``task``, ``task_file``, ``task_vma``) may be limited to thread `tid`,
    process `pid` or the process of pidfd `pid_fd`.
    """
    if program.type != ProgramType.TRACING:
        raise InvalidArgumentError(
            f"iter needs an iterator (TRACING) program; {program.name!r} is a "
            f"{program.type.name} program")
    info: _probe.IterLinkInfo | None = None
    target: FD | None = None
    # the map's number stays the map's until the kernel has the link
    with hold(map), contextlib.ExitStack() as stack:
        if map is not None:
            info = _probe.IterLinkInfo()
            _validate.put(info.map, "map_fd", map.fileno())
        elif cgroup is not None or cgroup_id or order is not None:
            info = _probe.IterLinkInfo()
            _validate.put(info.cgroup, "cgroup_id", cgroup_id)
            if isinstance(order, str):
                if order not in CGROUP_ORDERS:
                    raise InvalidArgumentError(
                        f"unknown cgroup iterator order {order!r} (one of "
                        f"{', '.join(CGROUP_ORDERS)})")
                info.cgroup.order = CGROUP_ORDERS[order]
            elif order is not None:
                _validate.put(info.cgroup, "order", order)
            if cgroup is not None:
                target = stack.enter_context(open_dir(cgroup, "cgroup"))
                _validate.put(info.cgroup, "cgroup_fd", target.fileno())
        elif tid or pid or pid_fd:
            if builtins.sum(bool(x) for x in (tid, pid, pid_fd)) > 1:
                raise InvalidArgumentError("give at most one of tid, pid and pid_fd")
            info = _probe.IterLinkInfo()
            _validate.put(info.task, "tid", tid)
            _validate.put(info.task, "pid", pid)
            _validate.put(info.task, "pid_fd", pid_fd)
        link_fd = _probe.iter_link_create(program.fileno(), info)
    return IterLink(FD(link_fd, "link"), program)
