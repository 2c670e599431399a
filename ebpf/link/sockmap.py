"""Sockmap / sockhash programs: sk_msg verdicts (sendmsg) and sk_skb stream
parser/verdict programs (receive), attached to the map that holds the sockets.

A sockmap bpf_link (6.10+) is used when the kernel has it, else BPF_PROG_ATTACH
on the map; either way one program per map and attach type, and `update()`
replaces it atomically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import features
from .._sys.fd import FD, hold
from .._sys.types import AttachType, LinkCreateAttr, LinkType, MapType, ProgramType
from ..errors import InvalidArgumentError, NotSupportedError
from ._attach import ProgAttachLink, expected_attach_type, link_create, prog_attach
from .base import Link

if TYPE_CHECKING:
    from ..maps import Map
    from ..programs import Program

__all__ = ["SOCKMAP_ATTACH_TYPES", "SockmapLink", "sockmap"]

#: The attach types of programs run by a sockmap/sockhash.
SOCKMAP_ATTACH_TYPES = frozenset({
    AttachType.SK_MSG_VERDICT, AttachType.SK_SKB_STREAM_PARSER,
    AttachType.SK_SKB_STREAM_VERDICT, AttachType.SK_SKB_VERDICT,
})

_DEFAULTS: dict[int, AttachType] = {ProgramType.SK_MSG: AttachType.SK_MSG_VERDICT}


class SockmapLink(Link):
    """A program attached to a sockmap/sockhash with a bpf_link."""

    def __init__(self, fd: FD, program: Program, map_name: str, attach_type: AttachType
                 ) -> None:
        super().__init__(fd, program)
        self.map_name = map_name
        self.attach_type = attach_type

    def _where(self) -> str:
        return f"{self.attach_type.name} map {self.map_name!r}"


def sockmap(program: Program, map: Map, attach_type: AttachType | int | None = None, *,
            link: bool | None = None) -> SockmapLink | ProgAttachLink:
    """Attach an SK_MSG or SK_SKB program to a SOCKMAP/SOCKHASH `map`.

    `attach_type` (SK_MSG_VERDICT, SK_SKB_STREAM_PARSER, SK_SKB_STREAM_VERDICT or
    SK_SKB_VERDICT) defaults to the one the program was loaded with (its section,
    e.g. ``sk_skb/stream_verdict``), SK_MSG_VERDICT for SK_MSG programs. `link`
    None uses a bpf_link when the kernel has sockmap links; False forces
    BPF_PROG_ATTACH.
    """
    at = expected_attach_type(program, attach_type, _DEFAULTS, "sockmap")
    if at not in SOCKMAP_ATTACH_TYPES:
        raise InvalidArgumentError(f"{at.name} is not a sockmap attach type (use one of "
                                   f"{', '.join(sorted(a.name for a in SOCKMAP_ATTACH_TYPES))})")
    if map.type not in (MapType.SOCKMAP, MapType.SOCKHASH):
        raise InvalidArgumentError(f"sockmap: map {map.name!r} is {map.type.name}, not a "
                                   "SOCKMAP or SOCKHASH")
    what = f"{map.type.name.lower()} {map.name!r}"
    have_links = features.have_link_type(LinkType.SOCKMAP)
    if link is None:
        link = have_links
    elif link and not have_links:
        raise NotSupportedError("sockmap bpf_links", "they need Linux 6.10+; pass "
                                "link=None or False to use BPF_PROG_ATTACH")
    if link:
        # the map's number stays the map's until the kernel has the link
        with hold(map):
            attr = LinkCreateAttr(attach_type=int(at))
            attr.target_fd = map.fileno()
            return SockmapLink(link_create(program, attr, what), program, map.name, at)
    return prog_attach(program, map.fd.dup(), at, 0, what)  # the attachment owns the dup
