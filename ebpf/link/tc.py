"""Traffic control: tcx links (6.6+) and classic clsact + cls_bpf filters.

`tcx(prog, iface, "ingress")` attaches a SCHED_CLS program with a bpf_link to the
interface's tcx hook, ordered among the others (before/after a program or
link, first, last); programs return TCX_NEXT (-1) to let the next one run,
TCX_PASS (0), TCX_DROP (2) or TCX_REDIRECT (7).

`tc(prog, iface, "ingress")` is the mechanism for kernels without tcx
(references/003): a ``clsact`` qdisc (created on demand, removed again when the
library created it and its last filter goes) and a ``cls_bpf`` filter in
direct-action mode, managed over rtnetlink. `tc_filters` lists the filters,
`tc(..., priority=p, handle=h, replace=True)` replaces one, `tc_delete`
deletes one, and the returned link's `update()` swaps its program atomically.

Interfaces are looked up in the calling thread's network namespace (see
`ebpf.link.in_netns`).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from .. import features
from .._sys import forking as _forking
from .._sys import validate as _validate
from .._sys.fd import hold, holds_first
from .._sys.netlink import (
    ETH_P_ALL,
    TC_H_CLSACT,
    NetlinkSocket,
    TcFilterInfo,
    clsact_parent,
)
from .._sys.types import AttachType, LinkType, ProgramType
from ..errors import (
    ClosedError,
    InvalidArgumentError,
    NotSupportedError,
    SyscallError,
)
from ._attach import QueryResult, Relative, link_create, mprog_attr, query
from ._attach import ifindex as _ifindex
from .base import Link, register_link_class

if TYPE_CHECKING:
    from .._sys.fd import FD
    from ..programs import Program

__all__ = ["TCFilter", "TCLink", "TCXLink", "tc", "tc_delete", "tc_filters", "tcx",
           "tcx_programs"]

TCFilter = TcFilterInfo
"""One tc filter as listed by `tc_filters`."""

TCX_NEXT = -1
TCX_PASS = 0
TCX_DROP = 2
TCX_REDIRECT = 7

_TCX_TYPES = {"ingress": AttachType.TCX_INGRESS, "egress": AttachType.TCX_EGRESS}


def _direction(direction: str | AttachType) -> str:
    if direction in ("ingress", AttachType.TCX_INGRESS):
        return "ingress"
    if direction in ("egress", AttachType.TCX_EGRESS):
        return "egress"
    raise InvalidArgumentError(f"direction must be 'ingress' or 'egress', not {direction!r}")


def _check_sched_cls(program: Program, hook: str) -> None:
    if program.type not in (ProgramType.SCHED_CLS, ProgramType.SCHED_ACT):
        raise InvalidArgumentError(
            f"{hook}: program {program.name!r} is {program.type.name}, not SCHED_CLS")


# -- tcx -------------------------------------------------------------------------------

class TCXLink(Link):
    """A program on an interface's tcx hook (bpf_link): `update()` swaps it atomically
    in place, keeping its position."""

    def __init__(self, fd: FD, program: Program | None, ifindex: int, direction: str) -> None:
        super().__init__(fd, program)
        self.ifindex = ifindex
        self.direction = direction

    def _where(self) -> str:
        return f"ifindex {self.ifindex} {self.direction}"

    @classmethod
    def _from_info(cls, fd: FD, info: Any) -> TCXLink:
        """A tcx link opened by id or pin (`link.from_id`, `link.open_pinned`)."""
        return cls(fd, None, int(info.tcx.ifindex), _direction(AttachType(info.tcx.attach_type)))


register_link_class(LinkType.TCX, TCXLink)


def tcx(program: Program, iface: str | int, direction: str | AttachType, *,
        before: Relative = None, after: Relative = None, first: bool = False,
        last: bool = False, expected_revision: int = 0) -> TCXLink:
    """Attach a SCHED_CLS program to the tcx `direction` ("ingress"/"egress") hook of
    `iface` (name or index).

    Without ordering it is appended (runs after the others). `before`/`after` name
    a program, link or program id already attached there; `first`/`last` put it at
    the front/back. `expected_revision` (from `tcx_programs`) makes the attach fail
    with ESTALE if the hook changed meanwhile.
    """
    _check_sched_cls(program, "tcx")
    d = _direction(direction)
    index = _ifindex(iface)
    # the program or link to order against stays open until the kernel has the link
    with hold(before, after):
        attr = mprog_attr(_TCX_TYPES[d], index, "tcx", "tcx", before=before, after=after,
                          first=first, last=last, expected_revision=expected_revision)
        try:
            fd = link_create(program, attr, f"tcx {d} of interface {iface}")
        except SyscallError as e:
            from ..errors import PermissionError  # on a failure only (process start)
            if isinstance(e, PermissionError) or _have_tcx():
                raise
            raise _tcx_not_supported() from e
    return TCXLink(fd, program, index, d)


def _have_tcx() -> bool:
    return features.have_link_type(LinkType.TCX)


def _tcx_not_supported() -> NotSupportedError:
    return NotSupportedError("tcx links", "they need Linux 6.6+; use `tc` (cls_bpf) on "
                                          "older kernels")


def tcx_programs(iface: str | int, direction: str | AttachType) -> QueryResult:
    """The programs on the tcx `direction` hook of `iface` in run order, with their
    link ids and the hook's revision."""
    d = _direction(direction)
    index = _ifindex(iface)
    if not _have_tcx():
        raise _tcx_not_supported()
    return query(target_ifindex=index, attach_type=int(_TCX_TYPES[d]))


# -- classic tc: clsact + cls_bpf -------------------------------------------------------

# qdiscs this process created: (netns inode, ifindex) -> number of our live filters
_owned_qdiscs: dict[tuple[int, int], int] = {}
_created_qdiscs: set[tuple[int, int]] = set()
_qdisc_lock = threading.Lock()


def _netns_ino() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _ensure_clsact(sock: NetlinkSocket, ifindex: int, key: tuple[int, int]) -> None:
    """Make sure `ifindex` has a clsact qdisc; count one more filter of ours on it."""
    with _qdisc_lock:
        have = [q for q in sock.qdiscs(ifindex) if q.parent == TC_H_CLSACT]
        if have and have[0].kind != "clsact":
            raise InvalidArgumentError(
                f"interface {ifindex} has an {have[0].kind!r} qdisc where clsact goes; "
                "delete it (tc qdisc del dev IFACE ingress) or use tcx")
        if not have:
            try:
                sock.add_clsact(ifindex)
                _created_qdiscs.add(key)
            except SyscallError as e:
                if e.errno != 17:  # EEXIST: someone else made it meanwhile
                    raise
        _owned_qdiscs[key] = _owned_qdiscs.get(key, 0) + 1


def _release_clsact(sock: NetlinkSocket, ifindex: int, key: tuple[int, int]) -> None:
    """One filter of ours is gone; delete the qdisc if we made it and it is empty."""
    with _qdisc_lock:
        n = _owned_qdiscs.get(key, 0) - 1
        if n > 0:
            _owned_qdiscs[key] = n
            return
        _owned_qdiscs.pop(key, None)
        if key not in _created_qdiscs:
            return
        _created_qdiscs.discard(key)
        try:
            if any(sock.filters(ifindex, clsact_parent(d)) for d in ("ingress", "egress")):
                return  # someone else's filters live there now
            sock.del_clsact(ifindex)
        except SyscallError:
            pass  # the interface (or the qdisc) is gone already


class TCLink(Link):
    """A cls_bpf filter (direct-action) in an interface's clsact qdisc.

    `close()` deletes the filter (and the qdisc when this library created it and
    nothing else is left on it); `update()` replaces the program atomically
    (RTM_NEWTFILTER with NLM_F_REPLACE on the same priority and handle); `info()`
    lists the filter as the kernel reports it. There is no bpf_link: `pin()` is
    not available. Garbage collection (with a ResourceWarning) and interpreter exit
    delete the filter too; a forked child's `close()` only closes its copy of the
    netlink socket.
    """

    _detach_at_gc = True

    def __init__(self, program: Program, sock: NetlinkSocket, filt: TcFilterInfo,
                 direction: str, key: tuple[int, int], owns_qdisc_ref: bool) -> None:
        super().__init__(None, program)
        self._sock: NetlinkSocket | None = sock
        self.ifindex = filt.ifindex
        self.direction = direction
        self.parent = filt.parent
        self.priority = filt.priority
        self.handle = filt.handle
        self.protocol = filt.protocol
        self.name = filt.name
        # orders update() and the delete: an update in flight when close() starts
        # finishes first (the filter is then deleted), a later one raises ClosedError
        self._lock = _forking.new_lock(self, "_lock", threading.Lock)
        # runs on close(), at garbage collection and at interpreter exit
        self._finalizer = weakref.finalize(
            self, _delete_filter, sock, self._lock, self.ifindex, self.parent,
            self.priority, self.handle, self.protocol, key if owns_qdisc_ref else None,
            _forking.generation())

    def _live(self) -> NetlinkSocket:
        if self._sock is None:
            raise ClosedError(f"tc filter {self.priority}:{self.handle:#x} on interface "
                              f"{self.ifindex} {self.direction} is closed")
        return self._sock

    def update(self, program: Program, *, old: Program | None = None) -> None:
        """Replace the filter's program atomically (same priority and handle);
        `ClosedError` once `close()` has started (from any thread)."""
        with self._lock:
            sock = self._live()
            # the program's number stays its own until the kernel has taken the program
            with hold(program, old):
                if old is not None:
                    cur = self.info()
                    if cur.prog_id != old.id:
                        raise SyscallError(1, f"tc filter {self.priority}:{self.handle:#x} "
                                           f"runs program {cur.prog_id}, not {old.id}")
                sock.add_bpf_filter(self.ifindex, self.parent, prog_fd=program.fileno(),
                                    name=self.name, priority=self.priority,
                                    handle=self.handle, protocol=self.protocol, replace=True)
            self.program = program

    def info(self) -> TcFilterInfo:
        """The filter as the kernel lists it now (program id, tag, name, flags)."""
        sock = self._live()
        for f in sock.bpf_filters(self.ifindex, self.parent):
            if f.priority == self.priority and f.handle == self.handle:
                return f
        raise SyscallError(2, f"tc filter {self.priority}:{self.handle:#x} on interface "
                           f"{self.ifindex} {self.direction} is gone")

    @property
    def id(self) -> int:
        """Not available: cls_bpf filters are not bpf_links (`NotSupportedError`)."""
        raise NotSupportedError("tc filter link id", "cls_bpf filters are not bpf_links")

    def pin(self, path: object) -> None:
        raise NotSupportedError("pinning a tc filter", "cls_bpf filters are not bpf_links; "
                                "use tcx for a pinnable link")

    def detach(self) -> None:
        self.close()

    def close(self) -> None:
        """Delete the filter (and the clsact qdisc this library made, once empty)."""
        self._sock = None
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._sock is None


    def __repr__(self) -> str:
        state = "closed" if self.closed else "attached"
        return (f"<TCLink ifindex {self.ifindex} {self.direction} prio {self.priority} "
                f"handle {self.handle:#x} {state}>")


def _delete_filter(sock: NetlinkSocket, lock: Any, ifindex: int, parent: int,
                   priority: int, handle: int, protocol: int,
                   qdisc_key: tuple[int, int] | None, generation: int) -> None:
    """Delete a filter of ours (after an `update` in flight, `lock`) and release our
    reference on its qdisc (`qdisc_key`); a forked child only closes its copy of the
    socket: the filter is its parent's."""
    try:
        if generation != _forking.generation():
            return
        with lock:
            try:
                sock.del_filter(ifindex, parent, priority, handle, protocol)
            except SyscallError as e:
                if e.errno not in (2, 19, 22):  # ENOENT, ENODEV, EINVAL: gone already
                    raise
            if qdisc_key is not None:
                _release_clsact(sock, ifindex, qdisc_key)
    finally:
        sock.close()


@holds_first
def tc(program: Program, iface: str | int, direction: str, *, priority: int = 0,
       handle: int = 0, protocol: int = ETH_P_ALL, name: str | None = None,
       replace: bool = False, direct_action: bool = True, classid: int = 0) -> TCLink:
    """Attach a SCHED_CLS program as a cls_bpf filter on `iface`'s clsact `direction`
    ("ingress"/"egress"), creating the clsact qdisc if needed.

    `priority` and `handle` 0 let the kernel choose (the link reports them).
    With `replace`, the filter at `priority`/`handle` (both required) gets the
    program atomically (created if absent); the returned link owns the filter
    either way. `direct_action` (the default) makes the program's return value the
    tc verdict (TC_ACT_OK 0, TC_ACT_SHOT 2, TC_ACT_REDIRECT 7, ...).
    """
    _check_sched_cls(program, "tc")
    d = _direction(direction)
    # checked before the qdisc is made (the netlink request checks them again)
    priority = _validate.unsigned(priority, "tc: priority", 16)
    handle = _validate.unsigned(handle, "tc: handle", 32)
    protocol = _validate.unsigned(protocol, "tc: protocol", 16)
    classid = _validate.unsigned(classid, "tc: classid", 32)
    if name is not None and not isinstance(name, str):
        raise InvalidArgumentError(f"tc: name must be a str, got {type(name).__name__}")
    if replace and not (priority and handle):
        raise InvalidArgumentError("tc: replace needs the priority and handle of the filter")
    index = _ifindex(iface)
    key = (_netns_ino(), index)
    label = name if name is not None else (program.name or "bpf")
    sock = NetlinkSocket()
    try:
        _ensure_clsact(sock, index, key)
        try:
            filt = sock.add_bpf_filter(index, clsact_parent(d), prog_fd=program.fileno(),
                                       name=label, priority=priority, handle=handle,
                                       protocol=protocol, direct_action=direct_action,
                                       classid=classid, replace=replace)
        except BaseException:
            _release_clsact(sock, index, key)
            raise
    except BaseException:
        sock.close()
        raise
    return TCLink(program, sock, filt, d, key, True)


def tc_filters(iface: str | int, direction: str | None = None) -> list[TcFilterInfo]:
    """The cls_bpf filters on `iface`'s clsact qdisc (one direction, or both)."""
    index = _ifindex(iface)
    dirs = [_direction(direction)] if direction is not None else ["ingress", "egress"]
    with NetlinkSocket() as sock:
        return [f for d in dirs for f in sock.bpf_filters(index, clsact_parent(d))]


def tc_delete(iface: str | int, direction: str, priority: int, handle: int,
              protocol: int = ETH_P_ALL) -> None:
    """Delete the filter at `priority`/`handle` of `iface`'s clsact `direction`
    (e.g. one left behind by another program)."""
    index = _ifindex(iface)
    with NetlinkSocket() as sock:
        sock.del_filter(index, clsact_parent(_direction(direction)), priority, handle, protocol)
