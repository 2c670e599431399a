"""cgroup v2 hooks: skb ingress/egress, socket creation, sock_addr (bind/connect/
sendmsg/...), sockopt, sysctl, device access, sock_ops, ...

`cgroup(prog, path_or_fd)` attaches with a bpf_link (BPF_LINK_CREATE, 5.7+), which
always has multi-attach semantics: programs attached to a cgroup and to its
ancestors all run. On older kernels, or when `flags` are given, it uses
BPF_PROG_ATTACH with those flags instead (the only way to get the exclusive or
ALLOW_OVERRIDE modes); the returned object has the same `Link` API either way.
"""

from __future__ import annotations

import enum
import os
from typing import TYPE_CHECKING

from .. import features
from .._sys import consts
from .._sys import validate as _validate
from .._sys.fd import hold
from .._sys.types import AttachType, LinkCreateAttr, LinkType, ProgramType
from ..errors import InvalidArgumentError
from ._attach import (
    ProgAttachLink,
    QueryResult,
    Relative,
    describe_dir,
    expected_attach_type,
    link_create,
    open_dir,
    ordering,
    prog_attach,
    query,
)
from .base import Link

if TYPE_CHECKING:
    from .._sys.fd import FD
    from ..programs import Program

__all__ = ["CGROUP_ATTACH_TYPES", "CgroupAttachFlags", "CgroupLink", "cgroup",
           "cgroup_programs"]


class CgroupAttachFlags(enum.IntFlag):
    """BPF_PROG_ATTACH flags for cgroups.

    NONE: exclusive — one program, and no program in descendant cgroups.
    ALLOW_OVERRIDE: one program, which a descendant cgroup's program replaces.
    ALLOW_MULTI: any number; the programs of the cgroup and its ancestors all run.
    """

    NONE = 0
    ALLOW_OVERRIDE = consts.BPF_F_ALLOW_OVERRIDE
    ALLOW_MULTI = consts.BPF_F_ALLOW_MULTI


#: Every attach type that targets a cgroup.
CGROUP_ATTACH_TYPES = frozenset({
    AttachType.CGROUP_INET_INGRESS, AttachType.CGROUP_INET_EGRESS,
    AttachType.CGROUP_INET_SOCK_CREATE, AttachType.CGROUP_INET_SOCK_RELEASE,
    AttachType.CGROUP_SOCK_OPS, AttachType.CGROUP_DEVICE,
    AttachType.CGROUP_INET4_BIND, AttachType.CGROUP_INET6_BIND,
    AttachType.CGROUP_INET4_CONNECT, AttachType.CGROUP_INET6_CONNECT,
    AttachType.CGROUP_INET4_POST_BIND, AttachType.CGROUP_INET6_POST_BIND,
    AttachType.CGROUP_UDP4_SENDMSG, AttachType.CGROUP_UDP6_SENDMSG,
    AttachType.CGROUP_UDP4_RECVMSG, AttachType.CGROUP_UDP6_RECVMSG,
    AttachType.CGROUP_SYSCTL, AttachType.CGROUP_GETSOCKOPT, AttachType.CGROUP_SETSOCKOPT,
    AttachType.CGROUP_INET4_GETPEERNAME, AttachType.CGROUP_INET6_GETPEERNAME,
    AttachType.CGROUP_INET4_GETSOCKNAME, AttachType.CGROUP_INET6_GETSOCKNAME,
    AttachType.CGROUP_UNIX_CONNECT, AttachType.CGROUP_UNIX_SENDMSG,
    AttachType.CGROUP_UNIX_RECVMSG, AttachType.CGROUP_UNIX_GETPEERNAME,
    AttachType.CGROUP_UNIX_GETSOCKNAME, AttachType.LSM_CGROUP,
})

# program types with only one sensible cgroup attach type
_DEFAULTS: dict[int, AttachType] = {
    ProgramType.CGROUP_DEVICE: AttachType.CGROUP_DEVICE,
    ProgramType.CGROUP_SYSCTL: AttachType.CGROUP_SYSCTL,
    ProgramType.SOCK_OPS: AttachType.CGROUP_SOCK_OPS,
    ProgramType.CGROUP_SOCK: AttachType.CGROUP_INET_SOCK_CREATE,
    ProgramType.LSM: AttachType.LSM_CGROUP,
}


class CgroupLink(Link):
    """A program attached to a cgroup with a bpf_link: `update()` swaps it atomically,
    `pin()` keeps it attached after the process exits."""

    def __init__(self, fd: FD, program: Program, cgroup: str, attach_type: AttachType) -> None:
        super().__init__(fd, program)
        self.cgroup = cgroup
        self.attach_type = attach_type

    def _where(self) -> str:
        return f"{self.attach_type.name} {self.cgroup}"


def cgroup(program: Program, cgroup: str | os.PathLike[str] | int,
           attach_type: AttachType | int | None = None, *,
           flags: CgroupAttachFlags | int | None = None,
           before: Relative = None, after: Relative = None,
           first: bool = False, last: bool = False) -> CgroupLink | ProgAttachLink:
    """Attach `program` to the cgroup v2 directory `cgroup` (a path or an open fd).

    `attach_type` defaults to the one the program was loaded with (its ELF
    section, e.g. ``cgroup/connect4``), else the only one its type allows
    (device, sysctl, sock_ops, sock_create). With `flags` None the attachment
    is a bpf_link where the kernel has them (multi-attach), else BPF_PROG_ATTACH
    with ALLOW_MULTI; explicit `flags` (`CgroupAttachFlags`) force
    BPF_PROG_ATTACH with exactly those flags. `before`/`after`/`first`/`last`
    order the program among the cgroup's others (kernels with bpf_mprog for
    cgroups, 6.16+).

    Raises InvalidArgumentError for a missing cgroup or an ambiguous attach type,
    SyscallError (EINVAL) when program and attach type do not match.
    """
    at = expected_attach_type(program, attach_type, _DEFAULTS, "cgroup")
    if at not in CGROUP_ATTACH_TYPES:
        raise InvalidArgumentError(f"{at.name} is not a cgroup attach type")
    mode = (consts.BPF_F_ALLOW_MULTI if flags is None
            else _validate.unsigned(flags, "cgroup: flags", 32))
    # the program or link to order against stays open until the kernel has the link
    with hold(before, after):
        order_flags, relative, rel_is_id = ordering(before, after, first, last, "cgroup")
        target = open_dir(cgroup, "cgroup")
        label = describe_dir(cgroup)
        what = f"cgroup {label}"
        if flags is None and _have_cgroup_links():
            try:
                attr = LinkCreateAttr(attach_type=int(at), flags=order_flags)
                attr.target_fd = target.fileno()
                _validate.put(attr.cgroup, "relative_id" if rel_is_id else "relative_fd",
                              relative)
                fd = link_create(program, attr, what)
            finally:
                target.close()  # the link holds the cgroup
            return CgroupLink(fd, program, label, at)
    if order_flags:
        target.close()
        raise InvalidArgumentError("cgroup: ordering (before/after/first/last) needs a "
                                   "bpf_link; leave flags unset")
    return prog_attach(program, target, at, mode, what)


def cgroup_programs(cgroup: str | os.PathLike[str] | int, attach_type: AttachType | int, *,
                    effective: bool = False) -> QueryResult:
    """The programs attached to `cgroup` for `attach_type` (BPF_PROG_QUERY), in run
    order; with `effective`, those that run for it including its ancestors'.
    LSM_CGROUP lists the cgroup LSM programs of every hook."""
    with open_dir(cgroup, "cgroup") as fd:
        return query(target_fd=fd.fileno(), attach_type=attach_type, effective=effective)


def _have_cgroup_links() -> bool:
    return features.have_link_type(LinkType.CGROUP)
