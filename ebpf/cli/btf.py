"""`ebpf btf`: list the kernel's BTF objects and dump BTF, as bpftool's `btf` does.

    ebpf btf list|show [ID] [--json]
    ebpf btf dump file PATH | id ID | map MAP | prog PROG [format c|raw] [--base FILE]
    ebpf btf dump [PATH] [--type NAME ...]       (a C header; vmlinux.h by default)

With bpftool's `file|id|map|prog` selectors the default format is raw (bpftool's), and
`--json` prints the raw records as JSON; the short form prints C.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..errors import Error, InvalidArgumentError
from .common import (
    add_json,
    emit,
    end_command_process,
    iter_ids,
    parse_selector,
    running_as_command,
    wants_json,
)

if TYPE_CHECKING:
    from ..btf import Spec, Type

__all__ = ["btf_objects", "register"]

_SOURCES = ("file", "id", "map", "prog")


# -- list ------------------------------------------------------------------------------------


def _btf_info(btf_id: int) -> dict[str, Any]:
    import ctypes  # on use: `btf dump file` needs no ctypes

    from .._sys import ops  # on use: a subcommand loads only what it needs
    from .._sys.types import BtfInfo  # on use: a subcommand loads only what it needs

    fd = ops.btf_get_fd_by_id(btf_id)
    try:
        name = ctypes.create_string_buffer(256)
        info = BtfInfo(name=ctypes.addressof(name), name_len=len(name))
        ops.obj_get_info(fd, info)
    finally:
        os.close(fd)
    return {"id": int(info.id), "size": int(info.btf_size), "kernel": bool(info.kernel_btf),
            "name": name.value.decode("utf-8", "replace")}


def btf_objects(only: int | None = None) -> list[dict[str, Any]]:
    """bpftool's `btf list` records: id, size, prog_ids, map_ids, kernel, name."""
    from .._sys.types import BPF_BTF_GET_NEXT_ID  # on use: a subcommand loads only what it needs
    from .map import open_maps  # on use: `btf dump file` needs no map or program
    from .prog import open_programs  # on use: `btf dump file` needs no map or program

    ids = [only] if only is not None else list(iter_ids(BPF_BTF_GET_NEXT_ID))
    users: dict[int, dict[str, list[int]]] = {i: {"prog_ids": [], "map_ids": []} for i in ids}
    for prog in open_programs(None):
        with prog:
            try:
                info = prog.info()
            except Error:
                continue
        if info.btf_id in users:
            users[info.btf_id]["prog_ids"].append(info.id)
    for m in open_maps(None):
        with m:
            minfo = m.info()
        if minfo.btf_id in users:
            users[minfo.btf_id]["map_ids"].append(minfo.id)
    out = []
    for i in ids:
        try:
            info_d = _btf_info(i)
        except Error:
            if only is not None:
                raise
            continue  # freed meanwhile
        rec: dict[str, Any] = {"id": info_d["id"], "size": info_d["size"], **users[i],
                               "kernel": info_d["kernel"]}
        if info_d["name"] or info_d["kernel"]:
            rec["name"] = info_d["name"]
        out.append(rec)
    return out


def _list_text(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        name = r.get("name") or "<anon>"
        if r["kernel"]:
            name = f"[{name}]"
        line = f"{r['id']}: name {name}  size {r['size']}B"
        if r["prog_ids"]:
            line += "  prog_ids " + ",".join(map(str, r["prog_ids"]))
        if r["map_ids"]:
            line += "  map_ids " + ",".join(map(str, r["map_ids"]))
        out.append(line)
    return "\n".join(out)


def _cmd_list(args: argparse.Namespace) -> int:
    sel = parse_selector(args.target, "BTF object", kinds=("id",))
    rows = btf_objects(int(sel[1]) if sel is not None else None)
    if sel is not None and wants_json(args):
        emit(args, rows[0], lambda r: _list_text([r]))
    else:
        emit(args, rows, _list_text)
    return 0


# -- dump ------------------------------------------------------------------------------------


def _spec_of_id(btf_id: int, base: Spec | None) -> Spec:
    from .. import btf  # on use: a subcommand loads only what it needs
    from .._sys import ops  # on use: a subcommand loads only what it needs

    data = ops.btf_get_data(btf_id)
    if base is None:
        info = _btf_info(btf_id)
        if info["kernel"] and info["name"] != "vmlinux":
            base = btf.load_kernel_spec()  # a module's BTF is split on vmlinux
    return btf.load_spec(data, base)


def _source(words: list[str], base: Spec | None) -> tuple[Spec, list[Type] | None]:
    """The spec a bpftool-style selector names and the types to print (None: all)."""
    from .. import btf  # on use: a subcommand loads only what it needs
    from ..btf.kernel import VMLINUX  # on use: a subcommand loads only what it needs

    kind = words[0]
    if len(words) < 2:
        raise InvalidArgumentError(f"`{kind}` wants a value")
    if kind == "file":
        path = words[1]
        real = os.path.realpath(path)
        if base is None and real == VMLINUX:
            return btf.load_kernel_spec(), None
        if base is None and os.path.dirname(real) == os.path.dirname(VMLINUX):
            base = btf.load_kernel_spec()  # a module's BTF is split on vmlinux (as bpftool)
        return btf.load_spec(path, base), None
    if kind == "id":
        if not words[1].isdigit():
            raise InvalidArgumentError(f"BTF id must be a number, got {words[1]!r}")
        return _spec_of_id(int(words[1]), base), None
    sel = parse_selector(words[1:3] if not words[1].isdigit() else words[1:2], kind)
    from .map import open_maps  # on use: `btf dump file` needs no map or program
    from .prog import open_programs  # on use: `btf dump file` needs no map or program

    if kind == "prog":
        prog = next(open_programs(sel))
        with prog:
            info = prog.info()
        if not info.btf_id:
            raise InvalidArgumentError(f"program {info.id} has no BTF")
        return _spec_of_id(info.btf_id, base), None
    m = next(open_maps(sel))
    with m:
        minfo = m.info()
    if not minfo.btf_id:
        raise InvalidArgumentError(f"map {minfo.id} has no BTF")
    spec = _spec_of_id(minfo.btf_id, base)
    ids = [i for i in (minfo.btf_key_type_id, minfo.btf_value_type_id,
                       minfo.btf_vmlinux_value_type_id) if i]
    return spec, [spec.type_by_id(i) for i in ids]


def _cmd_dump(args: argparse.Namespace) -> int:
    from .. import btf  # on use: a subcommand loads only what it needs

    words = list(args.source)
    fmt = None
    if "format" in words:
        i = words.index("format")
        if i + 1 >= len(words) or words[i + 1] not in ("c", "raw"):
            raise InvalidArgumentError("format must be `c` or `raw`")
        fmt = words[i + 1]
        del words[i:i + 2]
    base = btf.load_spec(args.base) if args.base else None
    if words and words[0] in _SOURCES:
        spec, types = _source(words, base)
        fmt = fmt or "raw"
    else:
        if len(words) > 1:
            raise InvalidArgumentError(f"unexpected {' '.join(words[1:])!r}")
        from ..btf.kernel import VMLINUX  # on use: a subcommand loads only what it needs

        path = words[0] if words else VMLINUX
        if base is None and path == VMLINUX:
            spec = btf.load_kernel_spec()
        else:
            spec = btf.load_spec(path, base)
        types = None
        fmt = fmt or "c"
    if args.type:
        types = [spec.type_by_name(name) for name in args.type]
    if fmt == "c":
        from ..btf.cdump import dump_c_pieces  # on use: a subcommand loads only what it needs

        # (no collection until the printer's state is dropped: its ~1M objects would
        # all be young ones to scan)
        gc_was_enabled = gc.isenabled()
        gc.disable()
        if running_as_command():
            _reuse_freed_blocks()
        try:
            pieces, state = dump_c_pieces(spec, types)
            write = sys.stdout.write
            # (joined a few thousand at a time: no copy of the whole text, in new pages)
            for i in range(0, len(pieces), 4096):
                write("".join(pieces[i : i + 4096]))
            _end_process_if_command(spec, state)
            del state
        finally:
            if gc_was_enabled:
                gc.enable()
        return 0
    # on use: a subcommand loads only what it needs
    from ..btf.raw import raw_chunks, raw_lines, raw_records

    ids: Iterable[int] | None = None
    if types is not None:
        ids = [spec.type_id(t) for t in types]
    if wants_json(args):
        emit(args, {"types": list(raw_records(spec, ids))}, str)
        return 0
    write = sys.stdout.write
    if ids is None:
        for chunk in raw_chunks(spec):
            chunk.append("")
            write("\n".join(chunk))
        return 0
    batch: list[str] = []
    for line in raw_lines(spec, ids):
        batch.append(line)
        if len(batch) >= 4096:
            write("\n".join(batch) + "\n")
            batch.clear()
    if batch:
        write("\n".join(batch) + "\n")
    return 0


def _reuse_freed_blocks() -> None:
    """Have glibc's malloc serve the C dump's big blocks (lists, dict tables, text) from
    memory freed before rather than from new mappings, each faulted in page by page
    (a whole kernel: ~1k page faults, ~4 ms, fewer). glibc raises its mmap threshold to
    the size of a mapped block when it is freed (up to 32 MiB): a 16 MiB block, mapped
    by calloc and never touched, is freed here. A process-wide change, for the command's
    process only; another allocator only maps and unmaps it."""
    block = bytes(16 << 20)
    del block


def _end_process_if_command(*alive: object) -> None:
    """When this process is the `ebpf` command (`python -m ebpf` or the installed
    script, not a program calling `main`), end it here with status 0: the output
    flushed and the atexit handlers run, but without freeing `alive` and the
    interpreter one object at a time (a whole kernel's C dump: ~1M objects, ~4% of
    the command's CPU time)."""
    end_command_process(0)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `btf` and its verbs to the command line."""
    p = sub.add_parser("btf", help="BTF type information (bpftool btf)")
    verbs = p.add_subparsers(dest="action", required=True)
    for verb in ("list", "show"):
        s = verbs.add_parser(verb, help="list the BTF objects loaded in the kernel")
        s.add_argument("target", nargs="*", metavar="ID", help="ID | id ID")
        add_json(s)
        s.set_defaults(func=_cmd_list)
    dump = verbs.add_parser(
        "dump", help="print BTF: raw like bpftool, or as a C header (vmlinux.h by default)")
    dump.add_argument("source", nargs="*", metavar="SOURCE",
                      help="file PATH | id ID | map MAP | prog PROG [format c|raw], or a "
                      "raw BTF / ELF file (default: the running kernel's BTF, as C)")
    dump.add_argument("--type", action="append", metavar="NAME",
                      help="only this type (and, as C, what it needs); repeatable")
    dump.add_argument("-B", "--base", metavar="FILE",
                      help="base BTF of split BTF (e.g. /sys/kernel/btf/vmlinux for a module)")
    add_json(dump)
    dump.set_defaults(func=_cmd_dump)
