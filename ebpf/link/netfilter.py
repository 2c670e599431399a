"""Netfilter hooks with BPF programs (nf bpf_link, 6.4+).

The program sees ``struct bpf_nf_ctx`` (the hook state and the skb) and returns
NF_DROP (0) or NF_ACCEPT (1). Hooks belong to the network namespace of the
calling thread (see `ebpf.link.in_netns`).
"""

from __future__ import annotations

import enum
import socket
from typing import TYPE_CHECKING

from .._sys import validate as _validate
from .._sys.types import AttachType, LinkCreateAttr, ProgramType
from ..errors import InvalidArgumentError
from ._attach import link_create
from .base import Link

if TYPE_CHECKING:
    from .._sys.fd import FD
    from ..programs import Program

__all__ = ["NF_ACCEPT", "NF_DROP", "NetfilterHook", "NetfilterLink", "netfilter"]

NF_DROP = 0
NF_ACCEPT = 1
BPF_F_NETFILTER_IP_DEFRAG = 1 << 0

NFPROTO_IPV4 = 2
NFPROTO_IPV6 = 10


class NetfilterHook(enum.IntEnum):
    """The inet hooks (enum nf_inet_hooks)."""

    PRE_ROUTING = 0
    LOCAL_IN = 1
    FORWARD = 2
    LOCAL_OUT = 3
    POST_ROUTING = 4


_HOOK_NAMES = {
    "prerouting": NetfilterHook.PRE_ROUTING, "pre_routing": NetfilterHook.PRE_ROUTING,
    "input": NetfilterHook.LOCAL_IN, "local_in": NetfilterHook.LOCAL_IN,
    "forward": NetfilterHook.FORWARD,
    "output": NetfilterHook.LOCAL_OUT, "local_out": NetfilterHook.LOCAL_OUT,
    "postrouting": NetfilterHook.POST_ROUTING, "post_routing": NetfilterHook.POST_ROUTING,
}
_FAMILIES = {"ipv4": NFPROTO_IPV4, "ip": NFPROTO_IPV4, "inet": NFPROTO_IPV4,
             "ipv6": NFPROTO_IPV6, "ip6": NFPROTO_IPV6,
             socket.AF_INET: NFPROTO_IPV4, socket.AF_INET6: NFPROTO_IPV6}


class NetfilterLink(Link):
    """A program on a netfilter hook (bpf_link). The kernel does not support
    `update()` for these links (EOPNOTSUPP): attach the new program, then close the
    old link."""

    def __init__(self, fd: FD, program: Program, family: int, hook: NetfilterHook,
                 priority: int) -> None:
        super().__init__(fd, program)
        self.family = family
        self.hook = hook
        self.priority = priority

    def _where(self) -> str:
        fam = "ipv6" if self.family == NFPROTO_IPV6 else "ipv4"
        return f"{fam} {self.hook.name} prio {self.priority}"


def netfilter(program: Program, hook: NetfilterHook | str | int, *,
              family: str | int = "ipv4", priority: int = 0, defrag: bool = False
              ) -> NetfilterLink:
    """Attach a NETFILTER program to `hook` ("prerouting", "input", "forward",
    "output", "postrouting" or a `NetfilterHook`) of `family` ("ipv4"/"ipv6" or
    NFPROTO_*) with `priority` (lower runs earlier; INT_MIN/INT_MAX are reserved).
    `defrag` asks for reassembled packets (needs the defrag module, 6.6+)."""
    if program.type != ProgramType.NETFILTER:
        raise InvalidArgumentError(
            f"netfilter: program {program.name!r} is {program.type.name}, not NETFILTER")
    if isinstance(hook, str):
        try:
            h = _HOOK_NAMES[hook.lower()]
        except KeyError:
            raise InvalidArgumentError(f"unknown netfilter hook {hook!r} (use one of "
                                       f"{', '.join(sorted(_HOOK_NAMES))})") from None
    else:
        hooks = [int(x) for x in NetfilterHook]
        h = NetfilterHook(_validate.integer(hook, "netfilter: hook", min(hooks), max(hooks)))
    if isinstance(family, str):
        try:
            pf = _FAMILIES[family.lower()]
        except KeyError:
            raise InvalidArgumentError(f"unknown netfilter family {family!r}") from None
    else:
        family = _validate.unsigned(family, "netfilter: family", 32)
        pf = family if family in (NFPROTO_IPV4, NFPROTO_IPV6) else _FAMILIES.get(family, -1)
        if pf < 0:
            raise InvalidArgumentError(f"unknown netfilter family {family!r}")
    # INT_MIN and INT_MAX are reserved (the kernel refuses them)
    lo, hi = _validate.field_range(type(LinkCreateAttr().netfilter), "priority")
    priority = _validate.integer(priority, "netfilter: priority", lo + 1, hi - 1)
    attr = LinkCreateAttr(attach_type=int(AttachType.NETFILTER))
    attr.netfilter.pf = pf
    attr.netfilter.hooknum = int(h)
    attr.netfilter.priority = priority
    attr.netfilter.flags = BPF_F_NETFILTER_IP_DEFRAG if defrag else 0
    fam = "ipv6" if pf == NFPROTO_IPV6 else "ipv4"
    fd = link_create(program, attr, f"netfilter {fam} {h.name} priority {priority}")
    return NetfilterLink(fd, program, pf, h, priority)
