"""Network-namespace hooks: sk_lookup (5.9+) and the BPF flow dissector.

Both attach to a whole network namespace with a netns bpf_link; the flow
dissector falls back to BPF_PROG_ATTACH on kernels before 5.8. `in_netns`
runs a block inside another namespace (for hooks that take an interface).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .. import features
from .._sys.fd import FD
from .._sys.netlink import open_netns
from .._sys.types import AttachType, LinkCreateAttr, LinkType, ProgramType
from ..errors import InvalidArgumentError, NotSupportedError
from ._attach import ProgAttachLink, QueryResult, in_netns, link_create, prog_attach, query
from .base import Link

if TYPE_CHECKING:
    from ..programs import Program

__all__ = ["NetNsLink", "flow_dissector", "in_netns", "netns_programs", "sk_lookup"]

NetNs = str | os.PathLike[str] | int | None


class NetNsLink(Link):
    """A program attached to a network namespace (bpf_link): `update()` swaps it
    atomically."""

    def __init__(self, fd: FD, program: Program, netns: str, attach_type: AttachType) -> None:
        super().__init__(fd, program)
        self.netns = netns
        self.attach_type = attach_type

    def _where(self) -> str:
        return f"{self.attach_type.name} {self.netns}"


def _describe(netns: NetNs) -> str:
    if netns is None:
        return "the current network namespace"
    if isinstance(netns, int):
        return f"network namespace fd {netns}"
    return f"network namespace {os.fspath(netns)}"


def _netns_fd(netns: NetNs) -> int:
    return open_netns("/proc/thread-self/ns/net" if netns is None else netns)


def _attach(program: Program, netns: NetNs, at: AttachType) -> NetNsLink:
    what = _describe(netns)
    target = _netns_fd(netns)
    try:
        attr = LinkCreateAttr(attach_type=int(at))
        attr.target_fd = target
        fd = link_create(program, attr, what)
    finally:
        os.close(target)
    return NetNsLink(fd, program, what.removeprefix("network namespace "), at)


def sk_lookup(program: Program, netns: NetNs = None) -> NetNsLink:
    """Attach an SK_LOOKUP program to a network namespace (a name made by ``ip netns
    add``, a path such as ``/proc/<pid>/ns/net``, an fd, or None for the calling
    thread's). It runs when a packet looks for a listening/unconnected socket and may
    pick one with ``bpf_sk_assign`` (e.g. from a SOCKMAP); several may be attached and
    run in order."""
    if program.type != ProgramType.SK_LOOKUP:
        raise InvalidArgumentError(
            f"sk_lookup: program {program.name!r} is {program.type.name}, not SK_LOOKUP")
    return _attach(program, netns, AttachType.SK_LOOKUP)


def flow_dissector(program: Program, netns: NetNs = None, *, link: bool | None = None
                   ) -> NetNsLink | ProgAttachLink:
    """Attach a FLOW_DISSECTOR program to a network namespace (default: the calling
    thread's): it replaces the kernel's flow dissector for packets in that namespace.
    One per namespace (and none while the root namespace has one). Uses a netns
    bpf_link (5.8+) unless `link` is False, else BPF_PROG_ATTACH inside the
    namespace (then `update()` attaches the new program in its place)."""
    if program.type != ProgramType.FLOW_DISSECTOR:
        raise InvalidArgumentError(f"flow_dissector: program {program.name!r} is "
                                   f"{program.type.name}, not FLOW_DISSECTOR")
    have_links = features.have_link_type(LinkType.NETNS)
    if link is None:
        link = have_links
    elif link and not have_links:
        raise NotSupportedError("netns bpf_links", "they need Linux 5.8+; pass link=None "
                                "or False to use BPF_PROG_ATTACH")
    if link:
        return _attach(program, netns, AttachType.FLOW_DISSECTOR)
    ns = _netns_fd(netns)
    try:
        with in_netns(ns):
            return prog_attach(program, None, AttachType.FLOW_DISSECTOR, 0, _describe(netns),
                               netns=os.dup(ns))
    finally:
        os.close(ns)


def netns_programs(attach_type: AttachType | int, netns: NetNs = None) -> QueryResult:
    """The programs attached to a network namespace (default: the calling thread's) for
    `attach_type` (FLOW_DISSECTOR, SK_LOOKUP), from BPF_PROG_QUERY."""
    ns = _netns_fd(netns)
    try:
        return query(target_fd=ns, attach_type=attach_type)
    finally:
        os.close(ns)
