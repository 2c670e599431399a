"""`ebpf net show [dev IFACE]`: the networking programs of this network namespace, per
interface — XDP (by mode), tc (classic clsact filters, tcx and netkit hooks) — and the
namespace's flow dissector, as bpftool's `net` shows them."""

from __future__ import annotations

import argparse
import socket
from typing import Any

from ..errors import Error, InvalidArgumentError
from .common import add_json, emit

__all__ = ["net_attachments", "register"]


def _prog_name(prog_id: int) -> str:
    from ..programs import Program  # on use: a subcommand loads only what it needs

    try:
        with Program.from_id(prog_id) as prog:
            return prog.name
    except Error:
        return ""


def _xdp(name: str, index: int) -> list[dict[str, Any]]:
    from ..link import xdp_info  # on use: a subcommand loads only what it needs

    info = xdp_info(index)
    out = []
    for mode, pid in (("generic", info.generic_prog_id), ("driver", info.driver_prog_id),
                      ("offload", info.offload_prog_id)):
        if pid:
            out.append({"devname": name, "ifindex": index, "mode": mode, "id": pid})
    return out


def _tc(name: str, index: int) -> list[dict[str, Any]]:
    # on use: a subcommand loads only what it needs
    from ..link import netkit_programs, tc_filters, tcx_programs

    out: list[dict[str, Any]] = []
    for direction in ("ingress", "egress"):
        try:
            q = tcx_programs(index, direction)
        except Error:
            q = None  # no tcx on this kernel
        if q is not None:
            for pid, lid in zip(q.prog_ids, q.link_ids, strict=True):
                rec = {"devname": name, "ifindex": index, "kind": f"tcx/{direction}",
                       "name": _prog_name(pid), "prog_id": pid}
                if lid:
                    rec["link_id"] = lid
                out.append(rec)
        try:
            filters = tc_filters(index, direction)
        except Error:
            filters = []  # no clsact qdisc
        for f in filters:
            out.append({"devname": name, "ifindex": index, "kind": f"clsact/{direction}",
                        "name": f.name, "id": f.prog_id})
    for side in ("primary", "peer"):
        try:
            q = netkit_programs(index, side)
        except Error:
            break  # not a netkit device, or no netkit on this kernel
        for pid, lid in zip(q.prog_ids, q.link_ids, strict=True):
            rec = {"devname": name, "ifindex": index, "kind": f"netkit/{side}",
                   "name": _prog_name(pid), "prog_id": pid}
            if lid:
                rec["link_id"] = lid
            out.append(rec)
    return out


def _flow_dissector() -> list[dict[str, Any]]:
    from .._sys.types import AttachType  # on use: a subcommand loads only what it needs
    from ..link import netns_programs  # on use: a subcommand loads only what it needs

    try:
        q = netns_programs(AttachType.FLOW_DISSECTOR)
    except Error:
        return []
    return [{"id": pid, "name": _prog_name(pid)} for pid in q.prog_ids]


def net_attachments(dev: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """bpftool's `net show` sections: "xdp", "tc" (clsact, tcx and netkit entries) and
    "flow_dissector", for every interface of this namespace or only `dev`."""
    if dev is not None:
        try:
            ifaces = [(socket.if_nametoindex(dev), dev)]
        except OSError:
            raise InvalidArgumentError(f"no interface named {dev!r}") from None
    else:
        ifaces = sorted(socket.if_nameindex())
    xdp: list[dict[str, Any]] = []
    tc: list[dict[str, Any]] = []
    for index, name in ifaces:
        xdp.extend(_xdp(name, index))
        tc.extend(_tc(name, index))
    return {"xdp": xdp, "tc": tc, "flow_dissector": _flow_dissector()}


def _text(d: dict[str, list[dict[str, Any]]]) -> str:
    out = ["xdp:"]
    out.extend(f"{r['devname']}({r['ifindex']}) {r['mode']} id {r['id']}" for r in d["xdp"])
    out += ["", "tc:"]
    for r in d["tc"]:
        line = f"{r['devname']}({r['ifindex']}) {r['kind']} {r['name']}"
        if "prog_id" in r:
            line += f" prog_id {r['prog_id']}"
            if "link_id" in r:
                line += f" link_id {r['link_id']}"
        else:
            line += f" id {r['id']}"
        out.append(line)
    out += ["", "flow_dissector:"]
    out.extend(f"id {r['id']} {r['name']}".rstrip() for r in d["flow_dissector"])
    out.append("")
    return "\n".join(out)


def _cmd_show(args: argparse.Namespace) -> int:
    words = list(args.target)
    dev = None
    if words:
        if len(words) != 2 or words[0] != "dev":
            raise InvalidArgumentError(f"unexpected {' '.join(words)!r}: use `dev IFACE`")
        dev = words[1]
    data = net_attachments(dev)
    emit(args, [data], lambda rows: _text(rows[0]))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `net` and its verbs to the command line."""
    p = sub.add_parser("net", help="networking programs per interface (bpftool net)")
    verbs = p.add_subparsers(dest="verb", required=True)
    for verb in ("show", "list"):
        s = verbs.add_parser(verb, help="XDP, tc, tcx and netkit programs per interface")
        s.add_argument("target", nargs="*", metavar="dev IFACE")
        add_json(s)
        s.set_defaults(func=_cmd_show)
