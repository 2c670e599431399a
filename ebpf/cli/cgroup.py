"""`ebpf cgroup`: the programs attached to cgroups, as bpftool's `cgroup` shows them.

    ebpf cgroup tree [ROOT] [--json]      every cgroup under ROOT (default: the cgroup2
                                          mount) that has programs attached
    ebpf cgroup show|list CGROUP [--json] the programs of one cgroup
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import Error, NotSupportedError
from .common import add_json, emit, enum_name

__all__ = ["cgroup_programs_of", "register"]


def _cgroup2_root() -> str:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    raise NotSupportedError("cgroup tree", "no cgroup2 file system is mounted")


def _flags(value: int) -> str:
    from .._sys import consts  # on use: a subcommand loads only what it needs

    if value & consts.BPF_F_ALLOW_MULTI:
        return "multi"
    if value & consts.BPF_F_ALLOW_OVERRIDE:
        return "override"
    return ""


def cgroup_programs_of(path: str) -> list[dict[str, Any]]:
    """bpftool's records for the programs attached to the cgroup at `path` (not its
    ancestors'): id, attach_type, attach_flags, name."""
    # on use: a subcommand loads only what it needs
    from ..link import CGROUP_ATTACH_TYPES, cgroup_programs
    from ..programs import Program  # on use: a subcommand loads only what it needs

    out = []
    for at in sorted(CGROUP_ATTACH_TYPES):
        try:
            q = cgroup_programs(path, at)
        except Error:
            continue  # an attach type this kernel does not know
        for pid in q.prog_ids:
            try:
                with Program.from_id(pid) as prog:
                    name = prog.name
            except Error:
                continue
            out.append({"id": pid, "attach_type": enum_name(at),
                        "attach_flags": _flags(q.attach_flags), "name": name})
    return out


def _rows_text(rows: list[dict[str, Any]], indent: str) -> list[str]:
    return [f"{indent}{r['id']:<8} {r['attach_type']:<20} {r['attach_flags']:<15} "
            f"{r['name']}".rstrip() for r in rows]


def _tree_text(tree: list[dict[str, Any]]) -> str:
    out = ["CgroupPath", "ID       AttachType           AttachFlags     Name"]
    for node in tree:
        out.append(node["cgroup"])
        out.extend(_rows_text(node["programs"], "    "))
    return "\n".join(out)


def _cmd_tree(args: argparse.Namespace) -> int:
    root = args.root or _cgroup2_root()
    if not os.path.isdir(root):
        raise NotSupportedError("cgroup tree", f"{root} is not a directory")
    tree = []
    for dirpath, dirs, _files in os.walk(root):
        dirs.sort()
        programs = cgroup_programs_of(dirpath)
        if programs:
            tree.append({"cgroup": dirpath, "programs": programs})
    emit(args, tree, _tree_text)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    rows = cgroup_programs_of(args.cgroup)
    emit(args, rows, lambda rs: "\n".join(
        ["ID       AttachType           AttachFlags     Name", *_rows_text(rs, "")]))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cgroup` and its verbs to the command line."""
    p = sub.add_parser("cgroup", help="programs attached to cgroups (bpftool cgroup)")
    verbs = p.add_subparsers(dest="verb", required=True)
    tree = verbs.add_parser("tree", help="every cgroup with programs attached")
    tree.add_argument("root", nargs="?", metavar="ROOT",
                      help="where to start (default: the cgroup2 mount point)")
    add_json(tree)
    tree.set_defaults(func=_cmd_tree)
    for verb in ("show", "list"):
        s = verbs.add_parser(verb, help="the programs attached to one cgroup")
        s.add_argument("cgroup", metavar="CGROUP")
        add_json(s)
        s.set_defaults(func=_cmd_show)
