"""`ebpf link`: show, detach and pin bpf_links, as bpftool's `link` does.

    ebpf link show|list [LINK] [--json] [-f]
    ebpf link detach LINK
    ebpf link pin LINK FILE

LINK is ``ID``, ``id ID`` or ``pinned PATH``.
"""

from __future__ import annotations

import argparse
import errno
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, KeyNotFoundError, SyscallError
from .common import (
    add_json,
    emit,
    enum_name,
    open_one,
    open_selected,
    parse_selector,
    pinned_paths,
    wants_json,
)

if TYPE_CHECKING:
    from ..link import Link

__all__ = ["describe", "open_links", "register"]


def _from_id(link_id: int) -> Link:
    from ..link import from_id  # on use: a subcommand loads only what it needs

    try:
        return from_id(link_id)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            raise KeyNotFoundError(f"no link with id {link_id}") from None
        raise


def open_links(selector: tuple[str, str] | None) -> Iterator[Link]:
    """The links a selector names (every link for None); the caller closes each."""
    from .._sys.types import BPF_LINK_GET_NEXT_ID  # on use: a subcommand loads only what it needs
    from ..link import open_pinned as open_link  # on use: a subcommand loads only what it needs

    return open_selected(selector, "link", from_id=_from_id, from_pin=open_link,
                         next_id_cmd=BPF_LINK_GET_NEXT_ID)


def _one(words: Sequence[str]) -> Link:
    sel = parse_selector(words, "link", kinds=("id", "pinned"))
    if sel is None:
        raise InvalidArgumentError("name a link: ID | id ID | pinned PATH")
    return open_one(open_links(sel), sel, "link")


def describe(link: Link) -> dict[str, Any]:
    """bpftool's `link show` fields for one bpf_link (id, type, prog_id, and where it is
    attached)."""
    from .._sys.types import LinkType  # on use: a subcommand loads only what it needs
    from ..link import net_link_target  # on use: a subcommand loads only what it needs

    info = link.info()
    try:
        ltype: Any = enum_name(LinkType(info.type))
    except ValueError:
        ltype = int(info.type)
    d: dict[str, Any] = {"id": int(info.id), "type": ltype, "prog_id": int(info.prog_id)}
    target = net_link_target(info)
    if target is not None:
        for key, value in target.items():
            d["devname" if key == "ifname" else key] = value
    elif ltype == "tracing":
        d.update(attach_type=_attach_name(int(info.tracing.attach_type)),
                 target_obj_id=int(info.tracing.target_obj_id),
                 target_btf_id=int(info.tracing.target_btf_id))
    return d


def _attach_name(value: int) -> Any:
    from .._sys.types import AttachType  # on use: a subcommand loads only what it needs

    try:
        return enum_name(AttachType(value))
    except ValueError:
        return value


def _show_text(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        line = f"{r['id']}: {r['type']}  prog {r['prog_id']}"
        extra = [f"{k} {v}" for k, v in r.items()
                 if k not in ("id", "type", "prog_id", "pinned")]
        if extra:
            line += "\n\t" + "  ".join(extra)
        out.append(line)
        for path in r.get("pinned", ()):
            out.append(f"\tpinned {path}")
    return "\n".join(out)


def _cmd_show(args: argparse.Namespace) -> int:
    sel = parse_selector(args.target, "link", kinds=("id", "pinned"))
    pins = pinned_paths("link") if args.bpffs else {}
    rows = []
    for link in open_links(sel):
        with link:
            row = describe(link)
        if args.bpffs:
            row["pinned"] = pins.get(row["id"], [])
        rows.append(row)
    if sel is not None and wants_json(args):
        emit(args, rows[0], lambda r: _show_text([r]))
    else:
        emit(args, rows, _show_text)
    return 0


def _cmd_detach(args: argparse.Namespace) -> int:
    link = _one(args.target)
    with link:
        link.detach()
    return 0


def _cmd_pin(args: argparse.Namespace) -> int:
    words = list(args.target)
    if len(words) < 2:
        raise InvalidArgumentError("usage: ebpf link pin LINK FILE")
    link = _one(words[:-1])
    with link:
        link.pin(words[-1])
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `link` and its verbs to the command line."""
    p = sub.add_parser("link", help="bpf_links in the kernel (bpftool link)")
    verbs = p.add_subparsers(dest="verb", required=True)
    for verb in ("show", "list"):
        s = verbs.add_parser(verb, help="show links (all, or the one selected)")
        s.add_argument("target", nargs="*", metavar="LINK", help="ID | id ID | pinned PATH")
        s.add_argument("-f", "--bpffs", action="store_true",
                       help="also list where each link is pinned under /sys/fs/bpf")
        add_json(s)
        s.set_defaults(func=_cmd_show)
    d = verbs.add_parser("detach", help="detach a link's program now")
    d.add_argument("target", nargs="+", metavar="LINK")
    d.set_defaults(func=_cmd_detach)
    pin = verbs.add_parser("pin", help="pin a link on bpffs")
    pin.add_argument("target", nargs="+", metavar="LINK FILE")
    pin.set_defaults(func=_cmd_pin)
