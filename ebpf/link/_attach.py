"""Shared plumbing of the networking hooks: BPF_PROG_ATTACH attachments behind the
`Link` API, BPF_PROG_QUERY, relative ordering (mprog), targets (interfaces,
cgroups, network namespaces) and the attach type a program expects."""

from __future__ import annotations

import contextlib
import ctypes
import errno as _errno
import fcntl
import os
import socket
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from .._sys import caps as _caps
from .._sys import consts
from .._sys import forking as _forking
from .._sys import link as _syslink
from .._sys import prog as _sysprog
from .._sys import validate as _validate
from .._sys.fd import FD, hold, holds_first
from .._sys.netlink import CLONE_NEWNET, open_netns, setns
from .._sys.syscall import bpf
from .._sys.types import (
    BPF_PROG_ATTACH,
    BPF_PROG_QUERY,
    AttachType,
    LinkCreateAttr,
    LinkType,
    ProgAttachAttr,
    ProgQueryAttr,
)
from ..errors import (
    ClosedError,
    InvalidArgumentError,
    NotSupportedError,
    SyscallError,
)
from .base import Link

if TYPE_CHECKING:
    from ..programs import Program

__all__ = [
    "ProgAttachLink",
    "QueryResult",
    "Relative",
    "expected_attach_type",
    "ifindex",
    "in_netns",
    "net_link_target",
    "query",
]


IFINDEX_MAX = (1 << 31) - 1
"""The largest interface index (the kernel's ifindex is an int)."""


def ifindex(iface: str | int) -> int:
    """The index of interface `iface` (a name or an index) in the calling thread's
    network namespace."""
    if not isinstance(iface, str):
        return _validate.integer(iface, "ifindex", 1, IFINDEX_MAX)
    try:
        return socket.if_nametoindex(iface)
    except (OSError, ValueError):  # ValueError: a NUL byte in the name
        raise InvalidArgumentError(
            f"no network interface {iface!r} in this network namespace (use "
            "ebpf.link.in_netns to attach inside another one)") from None


@contextlib.contextmanager
def in_netns(netns: str | os.PathLike[str] | int) -> Iterator[None]:
    """Run the block with the calling thread inside network namespace `netns`: a name
    made by ``ip netns add``, a path (``/proc/<pid>/ns/net``, a bind mount) or an open
    fd. Interfaces, netlink sockets and sockets created in the block belong to it; the
    thread returns to its own namespace afterwards (other threads are unaffected).
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = open_netns(netns)
        try:
            setns(target, CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(own, CLONE_NEWNET)
    finally:
        os.close(own)


def open_dir(path: str | os.PathLike[str] | int, what: str) -> FD:
    """An fd (close-on-exec) for a cgroup directory given by path, fd or an object with
    ``fileno()``; `InvalidArgumentError` for anything else or a directory that is not
    there."""
    fileno = getattr(path, "fileno", None)
    if isinstance(path, int) or callable(fileno):
        number = fileno() if callable(fileno) else path
        fd = _validate.integer(number, f"{what} fd", 0, (1 << 31) - 1)
        try:
            return FD(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3), what)
        except OSError as e:
            raise InvalidArgumentError(f"{what} fd {fd}: {os.strerror(e.errno or 0)}") from None
    p = _validate.path(path, what)
    try:
        return FD(os.open(p, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), what)
    except FileNotFoundError:
        raise InvalidArgumentError(f"{what} {p!r} does not exist") from None


def describe_dir(path: object) -> str:
    """How messages name a directory given to `open_dir` (a path, "fd N")."""
    fileno = getattr(path, "fileno", None)
    if isinstance(path, int) or callable(fileno):
        return str(path) if isinstance(path, int) else f"fd {fileno()}"  # type: ignore[misc]
    return os.fsdecode(os.fspath(path))  # type: ignore[call-overload]


def program_spec_attach_type(program: Program) -> AttachType | None:
    """The expected attach type the program was loaded with, when known."""
    spec = getattr(program, "spec", None)
    at = getattr(spec, "attach_type", None)
    return AttachType(at) if at is not None else None


def attach_type_arg(attach_type: object, hook: str) -> AttachType:
    """`attach_type` (an `AttachType` or its number) checked: `InvalidArgumentError` for
    anything else, naming `hook`."""
    lo, hi = _validate.field_range(LinkCreateAttr, "attach_type")
    at = _validate.integer(attach_type, f"{hook}: attach_type", lo, hi)
    try:
        return AttachType(at)
    except ValueError:
        raise InvalidArgumentError(f"{hook}: unknown attach type {at}") from None


def expected_attach_type(program: Program, attach_type: AttachType | int | None,
                         defaults: dict[int, AttachType], hook: str) -> AttachType:
    """`attach_type`, else the one the program was loaded with, else the only sensible
    one for its program type; InvalidArgumentError when it stays ambiguous."""
    if attach_type is not None:
        return attach_type_arg(attach_type, hook)
    at = program_spec_attach_type(program)
    if at is not None:
        return at
    default = defaults.get(int(program.type))
    if default is None:
        raise InvalidArgumentError(
            f"{hook}: cannot tell how to attach program {program.name!r} of type "
            f"{program.type.name}; pass attach_type")
    return default


# -- ordering (bpf_mprog: tcx, netkit, cgroup links on 6.16+) ---------------------------

Relative = Union["Program", Link, int, None]
"""A program, a link, or a program id to attach before/after."""


def ordering(before: Relative, after: Relative, first: bool, last: bool,
             hook: str) -> tuple[int, int, bool]:
    """(flags, relative fd or id, relative_is_id) for BPF_F_BEFORE/AFTER requests."""
    given = [x for x in (before is not None, after is not None, first, last) if x]
    if len(given) > 1:
        raise InvalidArgumentError(f"{hook}: give at most one of before, after, first, last")
    if first:
        return consts.BPF_F_BEFORE, 0, False
    if last:
        return consts.BPF_F_AFTER, 0, False
    rel, flag = (before, consts.BPF_F_BEFORE) if before is not None else (after, consts.BPF_F_AFTER)
    if rel is None:
        return 0, 0, False
    if isinstance(rel, Link):
        return flag | consts.BPF_F_LINK_ATTACH, rel.fileno(), False
    if isinstance(rel, int) and not isinstance(rel, bool):
        return flag | consts.BPF_F_ID, _validate.unsigned(rel, f"{hook}: program id", 32), True
    fileno = getattr(rel, "fileno", None)
    if not callable(fileno):
        raise InvalidArgumentError(f"{hook}: before/after takes a Program, a Link or a "
                                   f"program id, not {type(rel).__name__}")
    return flag, int(fileno()), False


def mprog_attr(attach_type: AttachType, ifindex: int, options: str, hook: str, *,
               before: Relative, after: Relative, first: bool, last: bool,
               expected_revision: int) -> LinkCreateAttr:
    """BPF_LINK_CREATE attrs for a bpf_mprog hook of an interface (tcx, netkit): the
    position (`ordering`) and the expected revision, in the `options` member of
    link_create ("tcx" or "netkit", which share a layout)."""
    flags, relative, rel_is_id = ordering(before, after, first, last, hook)
    attr = LinkCreateAttr(attach_type=int(attach_type), flags=flags)
    _validate.put(attr, "target_ifindex", ifindex, "ifindex")
    opts = getattr(attr, options)        # a view into attr's memory
    _validate.put(opts, "relative_id" if rel_is_id else "relative_fd", relative)
    _validate.put(opts, "expected_revision", expected_revision)
    return attr


# -- BPF_PROG_QUERY ---------------------------------------------------------------------

@dataclass(frozen=True)
class QueryResult:
    """What BPF_PROG_QUERY reports for a hook: the attached program ids in run order,
    the link ids alongside them (0 for a program attached without a link), the hook's
    attach flags and its revision (bumped on every change; mprog hooks only)."""

    prog_ids: tuple[int, ...]
    link_ids: tuple[int, ...]
    attach_flags: int
    revision: int


_query_link_ids = True  # cleared on kernels whose BPF_PROG_QUERY has no link_ids (< 6.6)


def query(*, target_fd: int = 0, target_ifindex: int = 0, attach_type: int,
          effective: bool = False) -> QueryResult:
    """BPF_PROG_QUERY on a cgroup (`target_fd`), an interface (`target_ifindex`, tcx),
    a map or a netns."""
    global _query_link_ids
    lo, hi = _validate.field_range(ProgQueryAttr, "attach_type")
    target = (target_fd, target_ifindex, _validate.integer(attach_type, "attach_type", lo, hi),
              effective)
    if not _query_link_ids:
        return _query(*target, with_links=False)
    try:
        return _query(*target, with_links=True)
    except SyscallError as e:
        if e.errno != _errno.EINVAL:
            raise
        # kernels before 6.6 refuse attrs with link_ids set; anything else the kernel
        # dislikes fails again without them and is raised as it is
        try:
            result = _query(*target, with_links=False)
        except SyscallError:
            raise e from None
        _query_link_ids = False
        return result


def _query(target_fd: int, target_ifindex: int, attach_type: int, effective: bool, *,
           with_links: bool) -> QueryResult:
    n = 64
    while True:
        ids = (ctypes.c_uint32 * n)()
        links = (ctypes.c_uint32 * n)()
        attr = ProgQueryAttr(attach_type=attach_type,
                             query_flags=consts.BPF_F_QUERY_EFFECTIVE if effective else 0)
        if target_ifindex:
            attr.target_ifindex = target_ifindex
        else:
            attr.target_fd = target_fd
        attr.prog_ids = ctypes.addressof(ids)
        attr.count = n
        if attach_type == AttachType.LSM_CGROUP and not effective:
            # the kernel wants per-program flags (6.0+) for these, else EINVAL
            prog_flags = (ctypes.c_uint32 * n)()
            attr.prog_attach_flags = ctypes.addressof(prog_flags)
        if with_links:
            attr.link_ids = ctypes.addressof(links)
        try:
            bpf(BPF_PROG_QUERY, attr)
        except SyscallError as e:
            if e.errno == _errno.ENOSPC and n < 1 << 16:
                n *= 4
                continue
            raise
        count = int(attr.count)
        link_ids = tuple(links[:count]) if with_links else (0,) * count
        return QueryResult(tuple(ids[:count]), link_ids, int(attr.attach_flags),
                           int(attr.revision))


# -- BPF_PROG_ATTACH attachments ----------------------------------------------------------

class _Attachment:
    """What a BPF_PROG_ATTACH attachment needs to detach, owned by it: its own
    descriptor of the attached program (a close-on-exec dup, so closing the `Program`
    first does not strand the attachment), the target and the network namespace.
    `lock` orders `update` and the detach."""

    __slots__ = ("__weakref__", "attach_type", "generation", "lock", "netns", "prog",
                 "target")

    def __init__(self, prog: FD, target: FD | None, netns: FD | None,
                 attach_type: AttachType) -> None:
        self.prog = prog
        self.target = target
        self.netns = netns
        self.attach_type = attach_type
        self.generation = _forking.generation()
        self.lock = _forking.new_lock(self, "lock", threading.Lock)

    def target_fd(self) -> int:
        return self.target.fileno() if self.target is not None else 0

    @contextlib.contextmanager
    def in_netns(self) -> Iterator[None]:
        if self.netns is None:
            yield
            return
        with self.netns.hold() as ns, in_netns(ns):
            yield

    def release(self) -> None:
        """Detach (BPF_PROG_DETACH with the attachment's own program descriptor) and
        close what it owns. A forked child only closes its copies: the attachment is
        its parent's."""
        with self.lock:
            try:
                if self.generation == _forking.generation():
                    with hold(self.target, self.prog), self.in_netns():
                        _sysprog.prog_detach(self.target_fd(), self.prog.fileno(),
                                             int(self.attach_type))
            except SyscallError as e:
                if e.errno not in (_errno.ENOENT, _errno.EBADF):
                    raise
            finally:
                for fd in (self.prog, self.target, self.netns):
                    if fd is not None:
                        fd.close()


def _own_program_fd(program: Program) -> FD:
    """A close-on-exec dup of the program's descriptor for an attachment to keep."""
    fd = program.fd.dup()
    fd.kind = f"attached program {program.name!r}"
    return fd


class ProgAttachLink(Link):
    """A program attached with BPF_PROG_ATTACH (no bpf_link): cgroups on kernels before
    5.7, sockmaps before 6.10, flow dissectors before 5.8, or when asked for explicitly
    (cgroup attach flags). `close()` detaches it with BPF_PROG_DETACH; `update()`
    replaces the program (atomically, with BPF_F_REPLACE for multi-attach cgroups);
    `pin`, `info` and `id` are not available (there is no link object).

    The attachment keeps its own descriptor of the program, so it detaches on
    `close()` even after the `Program` was closed; garbage collection (with a
    ResourceWarning) and interpreter exit detach it too; in a forked child, `close()`
    only releases the child's copies (the attachment is the parent's).
    """

    _detach_at_gc = True

    def __init__(self, program: Program, target: FD | None, attach_type: AttachType,
                 flags: int, what: str, netns: int | None = None,
                 prog_fd: FD | None = None) -> None:
        super().__init__(None, program)
        self.attach_type = attach_type
        self.flags = flags
        self._what = what
        # an owned netns fd to detach from (flow dissector)
        ns = FD(netns, "network namespace") if netns is not None else None
        own = prog_fd if prog_fd is not None else _own_program_fd(program)
        self._state = _Attachment(own, target, ns, attach_type)
        # runs on close(), at garbage collection and at interpreter exit
        self._finalizer = weakref.finalize(self, self._state.release)

    @property
    def target(self) -> str:
        """What the program is attached to (for messages)."""
        return self._what

    def _closed_error(self) -> ClosedError:
        name = getattr(self.program, "name", "")
        return ClosedError(f"attachment of program {name!r} to {self._what} is closed")

    def update(self, program: Program, *, old: Program | None = None) -> None:
        """Replace the attached program. For multi-attach cgroups the kernel swaps it
        in place (BPF_F_REPLACE); elsewhere attaching again replaces the single one."""
        state = self._state
        flags = self.flags
        multi = bool(flags & consts.BPF_F_ALLOW_MULTI)
        with state.lock:
            if not self._finalizer.alive:
                raise self._closed_error()
            new = _own_program_fd(program)
            try:
                # the program replaced: `old` if given, else the one this link attached
                replace: FD | None = None
                if multi:
                    replace = old.fd if old is not None else state.prog
                # held for the call: no number handed to the kernel can be reused meanwhile
                with hold(state.target, new, replace):
                    attr = ProgAttachAttr(attach_type=int(self.attach_type))
                    _validate.put(attr, "attach_bpf_fd", new.fileno())
                    if replace is not None:
                        flags |= consts.BPF_F_REPLACE
                        _validate.put(attr, "replace_bpf_fd", replace.fileno())
                    _validate.put(attr, "attach_flags", flags, "flags")
                    attr.target_fd = state.target_fd()
                    with state.in_netns():
                        _attach_call(attr, self._what, program)
            except BaseException:
                new.close()
                raise
            state.prog, previous = new, state.prog
            previous.close()
        self.program = program

    def pin(self, path: object) -> None:
        raise NotSupportedError(f"pinning the attachment to {self._what}",
                                "it was made with BPF_PROG_ATTACH, not a bpf_link")

    def info(self) -> Any:
        raise NotSupportedError(f"link info of the attachment to {self._what}",
                                "it was made with BPF_PROG_ATTACH, not a bpf_link")

    def detach(self) -> None:
        self.close()

    def close(self) -> None:
        """Detach the program (BPF_PROG_DETACH), even if the `Program` was closed."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __repr__(self) -> str:
        state = "closed" if self.closed else "attached"
        return f"<{type(self).__name__} {self.attach_type.name} to {self._what} {state}>"


@holds_first
def prog_attach(program: Program, target: FD | None, attach_type: AttachType, flags: int,
                what: str, netns: int | None = None) -> ProgAttachLink:
    """BPF_PROG_ATTACH `program` to `target` and wrap it; takes ownership of `target`
    (and `netns`) even on failure."""
    own: FD | None = None
    try:
        own = _own_program_fd(program)  # before attaching: nothing to undo if it fails
        attr = ProgAttachAttr(attach_type=int(attach_type))
        _validate.put(attr, "attach_flags", flags, "flags")
        _validate.put(attr, "attach_bpf_fd", own.fileno())
        attr.target_fd = target.fileno() if target is not None else 0
        _attach_call(attr, what, program)
    except BaseException:
        if own is not None:
            own.close()
        if target is not None:
            target.close()
        if netns is not None:
            os.close(netns)
        raise
    return ProgAttachLink(program, target, attach_type, flags, what, netns, own)


def _attach_call(attr: ProgAttachAttr, what: str, program: Program) -> None:
    try:
        bpf(BPF_PROG_ATTACH, attr)
    except SyscallError as e:
        raise _explain(e, "BPF_PROG_ATTACH", program, int(attr.attach_type), what) from None


@holds_first
def link_create(program: Program, attr: LinkCreateAttr, what: str) -> FD:
    """BPF_LINK_CREATE for `program` with a caller-filled `attr`; the link fd."""
    attr.prog_fd = program.fileno()
    try:
        return FD(_syslink.link_create(attr), "link")
    except SyscallError as e:
        raise _explain(e, "BPF_LINK_CREATE", program, int(attr.attach_type), what) from None


def _explain(e: SyscallError, cmd: str, program: Program, attach_type: int,
             what: str) -> SyscallError:
    try:
        at = AttachType(attach_type).name
    except ValueError:
        at = str(attach_type)
    ptype = getattr(program.type, "name", str(program.type))
    base = f"bpf({cmd}) of program {program.name!r} ({ptype}) as {at} to {what}"
    hint = ""
    if e.errno == _errno.EPERM:
        # the command: the bpf(BPF_...) that `base` names
        exc = _caps.eperm_error(base, prog_type=int(program.type),
                                feature=f"attach type {at}")
        from ..errors import PermissionError  # on an EPERM only (process start)
        if isinstance(exc, PermissionError) or not (at.startswith("CGROUP_")
                                                    or at == "LSM_CGROUP"):
            return exc
        # privileged, so EPERM is the cgroup hook's rule: an exclusive/override
        # attachment is in the way, or the new flags conflict with the existing ones
        return SyscallError(e.errno, f"{base}: refused (EPERM) although the process is "
                            "privileged: the hook already has programs attached with "
                            "incompatible flags (exclusive or ALLOW_OVERRIDE vs ALLOW_MULTI, "
                            "which bpf_links use)")
    if e.errno == _errno.EINVAL:
        spec_at = program_spec_attach_type(program)
        hint = ("; the program type, its expected attach type "
                f"({spec_at.name if spec_at is not None else 'unknown'}) and the attach "
                "type must agree")
    elif e.errno == _errno.EEXIST:
        hint = "; a program is already attached there"
    elif e.errno == _errno.ENODEV:
        hint = "; no such interface"
    elif e.errno == _errno.EBUSY:
        hint = "; the hook is busy (an attachment of another kind is in place)"
    if isinstance(e, NotSupportedError):
        e.strerror = f"{base}: {e.strerror}"
        e.args = (e.errno, e.strerror)
        return e
    return SyscallError(e.errno, f"{base}: {os.strerror(e.errno)}{hint}")


# -- describing networking links (for `ebpf link list`) ------------------------------------

_NF_HOOKS = ("prerouting", "input", "forward", "output", "postrouting")


def _attach_name(value: int) -> str:
    try:
        return AttachType(value).name.lower()
    except ValueError:
        return str(value)


def net_link_target(info: Any) -> dict[str, Any] | None:
    """What a networking bpf_link is attached to, from its `struct bpf_link_info`
    (`Link.info()`), as plain data: {"attach_type": ..., "ifindex"/"cgroup_id"/
    "netns_ino"/"map_id"/...}. None for link types that are not networking hooks."""
    try:
        lt = LinkType(info.type)
    except ValueError:
        return None
    if lt == LinkType.CGROUP:
        return {"attach_type": _attach_name(info.cgroup.attach_type),
                "cgroup_id": int(info.cgroup.cgroup_id)}
    if lt == LinkType.NETNS:
        return {"attach_type": _attach_name(info.netns.attach_type),
                "netns_ino": int(info.netns.netns_ino)}
    if lt == LinkType.XDP:
        return {"attach_type": "xdp", **_iface(int(info.xdp.ifindex))}
    if lt in (LinkType.TCX, LinkType.NETKIT):
        return {"attach_type": _attach_name(info.tcx.attach_type),
                **_iface(int(info.tcx.ifindex))}
    if lt == LinkType.NETFILTER:
        nf = info.netfilter
        hook = _NF_HOOKS[nf.hooknum] if nf.hooknum < len(_NF_HOOKS) else str(nf.hooknum)
        return {"attach_type": "netfilter", "family": "ipv6" if nf.pf == 10 else "ipv4",
                "hook": hook, "priority": int(nf.priority), "flags": int(nf.flags)}
    if lt == LinkType.SOCKMAP:
        return {"attach_type": _attach_name(info.sockmap.attach_type),
                "map_id": int(info.sockmap.map_id)}
    if lt == LinkType.STRUCT_OPS:
        return {"attach_type": "struct_ops", "map_id": int(info.struct_ops.map_id)}
    return None


def _iface(index: int) -> dict[str, Any]:
    out: dict[str, Any] = {"ifindex": index}
    if index:
        try:
            out["ifname"] = socket.if_indextoname(index)
        except OSError:
            pass  # in another network namespace
    return out
