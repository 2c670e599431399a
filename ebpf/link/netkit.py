"""netkit: BPF programs on a netkit device pair (Linux 6.7+, CONFIG_NETKIT).

A netkit pair is two network devices, a *primary* (usually in the host's
namespace) and a *peer* (usually in a container's), created with
``ip link add ... type netkit`` (iproute2 6.7+) or rtnetlink. Packets sent out
of one device are received by the other; SCHED_CLS programs attached to a
side run when that side transmits:

- "primary" programs see what the primary sends towards the peer;
- "peer" programs see what the peer sends towards the primary.

Both attach types take the *primary* device's interface (the kernel looks the
peer up from it). Programs are ordered like tcx (before/after/first/last) and
return NETKIT_NEXT (-1) to let the next one run, NETKIT_PASS (0), NETKIT_DROP
(2) or NETKIT_REDIRECT (7); with no program left, the device's policy
(forward or blackhole, set at creation) applies.

Interfaces are looked up in the calling thread's network namespace (see
`ebpf.link.in_netns`).
"""

from __future__ import annotations

import errno as _errno
from typing import TYPE_CHECKING, Any

from .. import features
from .._sys.fd import hold
from .._sys.types import AttachType, LinkType
from ..errors import InvalidArgumentError, NotSupportedError, SyscallError
from ._attach import QueryResult, Relative, link_create, mprog_attr, query
from ._attach import ifindex as _ifindex
from .base import Link, register_link_class
from .tc import _check_sched_cls

if TYPE_CHECKING:
    from .._sys.fd import FD
    from ..programs import Program

__all__ = ["NETKIT_DROP", "NETKIT_NEXT", "NETKIT_PASS", "NETKIT_REDIRECT", "NetkitLink",
           "netkit", "netkit_programs"]

NETKIT_NEXT = -1
NETKIT_PASS = 0
NETKIT_DROP = 2
NETKIT_REDIRECT = 7

_NETKIT_TYPES = {"primary": AttachType.NETKIT_PRIMARY, "peer": AttachType.NETKIT_PEER}


def _side(attach_type: str | AttachType) -> str:
    if attach_type in ("primary", AttachType.NETKIT_PRIMARY):
        return "primary"
    if attach_type in ("peer", AttachType.NETKIT_PEER):
        return "peer"
    raise InvalidArgumentError(
        f"netkit attach type must be 'primary' or 'peer', not {attach_type!r}")


def _have_netkit() -> bool:
    return features.have_link_type(LinkType.NETKIT)


def _not_supported() -> NotSupportedError:
    return NotSupportedError("netkit", "it needs Linux 6.7+ built with CONFIG_NETKIT")


def _translate(e: SyscallError, iface: str | int, index: int) -> Exception:
    """The error a failed netkit attach or query should raise."""
    from ..errors import PermissionError  # on a failure only (process start)
    if isinstance(e, PermissionError):
        return e
    if not _have_netkit():
        return _not_supported()
    if e.errno == _errno.ENXIO:
        return InvalidArgumentError(
            f"netkit: interface {iface!r} (ifindex {index}) is not a netkit device")
    if e.errno == _errno.EACCES:
        return InvalidArgumentError(
            f"netkit: interface {iface!r} (ifindex {index}) is the peer of a netkit pair; "
            "pass the primary device (attach type 'peer' selects the peer side)")
    return e


class NetkitLink(Link):
    """A program on one side of a netkit pair (bpf_link): `update()` swaps it atomically
    in place, keeping its position; `close()` detaches it. `ifindex` is the primary
    device's; `attach_type` is AttachType.NETKIT_PRIMARY or NETKIT_PEER."""

    def __init__(self, fd: FD, program: Program | None, ifindex: int,
                 attach_type: AttachType) -> None:
        super().__init__(fd, program)
        self.ifindex = ifindex
        self.attach_type = attach_type

    @property
    def side(self) -> str:
        """The side the program is on: "primary" or "peer"."""
        return _side(self.attach_type)

    def _where(self) -> str:
        return f"ifindex {self.ifindex} {self.side}"

    @classmethod
    def _from_info(cls, fd: FD, info: Any) -> NetkitLink:
        """A netkit link opened by id or pin (`link.from_id`, `link.open_pinned`)."""
        return cls(fd, None, int(info.netkit.ifindex), AttachType(info.netkit.attach_type))


register_link_class(LinkType.NETKIT, NetkitLink)


def netkit(program: Program, iface: str | int, attach_type: str | AttachType, *,
           before: Relative = None, after: Relative = None, first: bool = False,
           last: bool = False, expected_revision: int = 0) -> NetkitLink:
    """Attach a SCHED_CLS program to the "primary" or "peer" side (`attach_type`, or
    AttachType.NETKIT_PRIMARY/NETKIT_PEER) of the netkit pair whose *primary* device
    is `iface` (name or index) — for both sides.

    Without ordering it is appended (runs after the others). `before`/`after` name
    a program, link or program id already attached there; `first`/`last` put it at
    the front/back. `expected_revision` (from `netkit_programs`) makes the attach
    fail with ESTALE if that side changed meanwhile.

    Raises NotSupportedError on kernels without netkit (before 6.7 or without
    CONFIG_NETKIT), InvalidArgumentError when `iface` is not a netkit device or is
    the pair's peer device.
    """
    _check_sched_cls(program, "netkit")
    side = _side(attach_type)
    index = _ifindex(iface)
    # the program or link to order against stays open until the kernel has the link
    with hold(before, after):
        attr = mprog_attr(_NETKIT_TYPES[side], index, "netkit", "netkit", before=before,
                          after=after, first=first, last=last,
                          expected_revision=expected_revision)
        try:
            fd = link_create(program, attr, f"netkit {side} of interface {iface}")
        except SyscallError as e:
            err = _translate(e, iface, index)
            if err is e:
                raise
            raise err from e
    return NetkitLink(fd, program, index, _NETKIT_TYPES[side])


def netkit_programs(iface: str | int, attach_type: str | AttachType) -> QueryResult:
    """The programs on the "primary" or "peer" side of the netkit pair whose primary
    device is `iface`, in run order, with their link ids and that side's revision.
    NotSupportedError on kernels without netkit."""
    side = _side(attach_type)
    index = _ifindex(iface)
    if not _have_netkit():
        # (asked first: the EINVAL of an unknown hook would look like a kernel that
        # predates BPF_PROG_QUERY's link_ids to `query`)
        raise _not_supported()
    try:
        return query(target_ifindex=index, attach_type=int(_NETKIT_TYPES[side]))
    except SyscallError as e:
        err = _translate(e, iface, index)
        if err is e:
            raise
        raise err from e
