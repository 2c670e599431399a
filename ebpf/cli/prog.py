"""`ebpf prog`: show, dump, pin and load programs, as bpftool's `prog` does.

    ebpf prog show|list [ID | id ID | pinned PATH | name NAME | tag TAG] [--json] [-f]
    ebpf prog dump xlated PROG [linum]
    ebpf prog dump jited PROG
    ebpf prog pin PROG FILE
    ebpf prog load OBJ PATH [pinmaps DIR]
    ebpf prog loadall OBJ DIR [pinmaps DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import Error, InvalidArgumentError, KeyNotFoundError
from .common import (
    add_json,
    emit,
    enum_name,
    fdinfo,
    local_time,
    open_one,
    open_selected,
    parse_selector,
    pinned_paths,
    wallclock,
    wants_json,
)

if TYPE_CHECKING:
    from ..programs import Program, ProgramInfo

__all__ = ["describe", "open_programs", "register"]


# -- selecting programs ------------------------------------------------------------------


def open_programs(selector: tuple[str, str] | None) -> Iterator[Program]:
    """The programs a selector names (every program for None); the caller closes each."""
    from .._sys.types import BPF_PROG_GET_NEXT_ID  # on use: a subcommand loads only what it needs
    from ..programs import Program  # on use: a subcommand loads only what it needs

    return open_selected(selector, "program", from_id=Program.from_id,
                         from_pin=Program.open_pinned, next_id_cmd=BPF_PROG_GET_NEXT_ID,
                         attribute=lambda p, kind: p.name if kind == "name" else p.tag)


def _one(words: Sequence[str]) -> Program:
    sel = parse_selector(words, "program", kinds=("id", "pinned", "name", "tag"))
    if sel is None:
        raise InvalidArgumentError("name a program: ID | id ID | pinned PATH | name NAME")
    return open_one(open_programs(sel), sel, "program")


# -- show ------------------------------------------------------------------------------------


def describe(prog: Program, info: ProgramInfo | None = None) -> dict[str, Any]:
    """bpftool's `prog show` fields for one program."""
    if info is None:
        info = prog.info()
    mem = fdinfo(prog.fileno()).get("memlock")
    d: dict[str, Any] = {
        "id": info.id,
        "type": enum_name(info.type) if hasattr(info.type, "name") else int(info.type),
        "name": info.name,
        "tag": info.tag,
        "gpl_compatible": info.gpl_compatible,
    }
    if info.run_time_ns:
        d["run_time_ns"] = info.run_time_ns
        d["run_cnt"] = info.run_cnt
    if info.recursion_misses:
        d["recursion_misses"] = info.recursion_misses
    d["loaded_at"] = wallclock(info.load_time_ns)
    d["uid"] = info.created_by_uid
    d["bytes_xlated"] = len(info.xlated)
    d["jited"] = bool(info.jited)
    if info.jited:
        d["bytes_jited"] = len(info.jited)
    if mem is not None and mem.isdigit():
        d["bytes_memlock"] = int(mem)
    if info.map_ids:
        d["map_ids"] = list(info.map_ids)
    if info.btf_id:
        d["btf_id"] = info.btf_id
    d["verified_insns"] = info.verified_insns
    return d


def _show_text(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        head = f"{r['id']}: {r['type']}  "
        if r["name"]:
            head += f"name {r['name']}  "
        head += f"tag {r['tag']}"
        if r["gpl_compatible"]:
            head += "  gpl"
        if "run_time_ns" in r:
            head += f" run_time_ns {r['run_time_ns']} run_cnt {r['run_cnt']}"
        if "recursion_misses" in r:
            head += f" recursion_misses {r['recursion_misses']}"
        out.append(head)
        out.append(f"\tloaded_at {local_time(r['loaded_at'])}  uid {r['uid']}")
        sizes = f"\txlated {r['bytes_xlated']}B  "
        sizes += f"jited {r['bytes_jited']}B" if r["jited"] else "not jited"
        if "bytes_memlock" in r:
            sizes += f"  memlock {r['bytes_memlock']}B"
        if "map_ids" in r:
            sizes += "  map_ids " + ",".join(str(i) for i in r["map_ids"])
        out.append(sizes)
        if "btf_id" in r:
            out.append(f"\tbtf_id {r['btf_id']}")
        for path in r.get("pinned", ()):
            out.append(f"\tpinned {path}")
    return "\n".join(out)


def _cmd_show(args: argparse.Namespace) -> int:
    sel = parse_selector(args.target, "program", kinds=("id", "pinned", "name", "tag"))
    pins = pinned_paths("program") if args.bpffs else {}
    rows = []
    for prog in open_programs(sel):
        with prog:
            try:
                row = describe(prog)
            except KeyNotFoundError:
                continue
        if args.bpffs:
            row["pinned"] = pins.get(row["id"], [])
        rows.append(row)
    if sel is not None and sel[0] in ("id", "pinned") and wants_json(args):
        emit(args, rows[0], lambda r: _show_text([r]))
    else:
        emit(args, rows, _show_text)
    return 0


# -- dump ------------------------------------------------------------------------------------


def _cmd_dump(args: argparse.Namespace) -> int:
    words = list(args.target)
    linum = "linum" in words
    opcodes = "opcodes" in words
    out_file = None
    if "file" in words:
        i = words.index("file")
        if i + 1 >= len(words):
            raise InvalidArgumentError("`file` wants a path")
        out_file = words[i + 1]
        del words[i:i + 2]
    words = [w for w in words if w not in ("linum", "opcodes")]
    with _one(words) as prog:
        info = prog.info()
        if args.kind == "xlated":
            return _dump_xlated(args, prog, info, linum, out_file)
        return _dump_jited(args, info, opcodes, out_file)


def _dump_xlated(args: argparse.Namespace, prog: Program, info: ProgramInfo, linum: bool,
                 out_file: str | None) -> int:
    from .proglines import read_lines  # on use: a subcommand loads only what it needs
    from .xlated import listing, render_json, render_text  # loaded on use

    if out_file is not None:
        with open(out_file, "wb") as f:
            f.write(info.xlated)
        return 0
    if not info.xlated:
        raise Error(f"program {info.id} has no translated instructions (kernel.kptr_restrict "
                    "or bpf_jit_harden may hide them)")
    with prog.fd.hold() as fd:
        lines = read_lines(fd, info.btf_id)
    entries = listing(info.xlated, lines, info.jited_ksyms)
    if wants_json(args):
        emit(args, render_json(entries, linum), str)
    else:
        print(render_text(entries, linum))
    return 0


def _dump_jited(args: argparse.Namespace, info: ProgramInfo, opcodes: bool,
                out_file: str | None) -> int:
    code = info.jited
    if out_file is not None:
        with open(out_file, "wb") as f:
            f.write(code)
        return 0
    if not code:
        raise Error(f"program {info.id} is not JIT-compiled")
    funcs = _split_functions(code, info.jited_func_lens)
    if wants_json(args):
        emit(args, [{"name": f"bpf_prog_{info.tag}_{info.name}" if i == 0
                     else f"bpf_prog_{info.tag}_F", "bytes": chunk.hex()}
                    for i, chunk in enumerate(funcs)], str)
        return 0
    text = _objdump(code) if not opcodes else None
    if text is None:
        for i, chunk in enumerate(funcs):
            if len(funcs) > 1:
                print(f"func #{i}:")
            for off in range(0, len(chunk), 16):
                print(f"{off:4x}: " + " ".join(f"{b:02x}" for b in chunk[off:off + 16]))
    else:
        print(text)
    return 0


def _split_functions(code: bytes, lens: Sequence[int]) -> list[bytes]:
    if not lens or sum(lens) != len(code):
        return [code]
    out, at = [], 0
    for n in lens:
        out.append(code[at:at + n])
        at += n
    return out


def _objdump(code: bytes) -> str | None:
    """Native code disassembled by GNU objdump when it is installed (None otherwise)."""
    tool = shutil.which("objdump")
    arch = {"x86_64": "i386:x86-64", "aarch64": "aarch64"}.get(os.uname().machine)
    if tool is None or arch is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(code)
        f.flush()
        try:
            r = subprocess.run([tool, "-D", "-b", "binary", "-m", arch, f.name],
                               capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
    if r.returncode != 0:
        return None
    lines = r.stdout.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.rstrip().endswith(">:")), -1)
    return "\n".join(ln for ln in lines[start + 1:] if ln.strip())


# -- pin, load, loadall ------------------------------------------------------------------


def _cmd_pin(args: argparse.Namespace) -> int:
    words = list(args.target)
    if len(words) < 2:
        raise InvalidArgumentError("usage: ebpf prog pin PROG FILE")
    with _one(words[:-1]) as prog:
        prog.pin(words[-1])
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    from .. import Collection, load_collection_spec  # on use: a subcommand loads only what it needs

    words = list(args.rest)
    pinmaps = None
    if words:
        if len(words) != 2 or words[0] != "pinmaps":
            raise InvalidArgumentError(f"unexpected {' '.join(words)!r}: only `pinmaps DIR` "
                                       "may follow")
        pinmaps = words[1]
    spec = load_collection_spec(args.object)
    names = [n for n, p in spec.programs.items() if getattr(p, "autoload", True)]
    if not names:
        raise InvalidArgumentError(f"{args.object} has no programs")
    every = args.verb == "loadall"
    with Collection(spec, programs=names if every else names[:1]) as coll:
        if every:
            os.makedirs(args.path, exist_ok=True)
            for name, prog in coll.programs.items():
                prog.pin(os.path.join(args.path, name))
        else:
            coll.programs[names[0]].pin(args.path)
        if pinmaps is not None:
            os.makedirs(pinmaps, exist_ok=True)
            for name, m in coll.maps.items():
                m.pin(os.path.join(pinmaps, name.lstrip(".") or name))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `prog` and its verbs to the command line."""
    p = sub.add_parser("prog", help="programs loaded in the kernel (bpftool prog)")
    verbs = p.add_subparsers(dest="verb", required=True)
    for verb in ("show", "list"):
        s = verbs.add_parser(verb, help="show programs (all, or the one selected)")
        s.add_argument("target", nargs="*", metavar="PROG",
                       help="ID | id ID | pinned PATH | name NAME | tag TAG")
        s.add_argument("-f", "--bpffs", action="store_true",
                       help="also list where each program is pinned under /sys/fs/bpf")
        add_json(s)
        s.set_defaults(func=_cmd_show)
    d = verbs.add_parser("dump", help="dump a program's xlated or jited instructions")
    d.add_argument("kind", choices=("xlated", "jited"))
    d.add_argument("target", nargs="+", metavar="PROG",
                   help="id ID | pinned PATH | name NAME, then [linum] [opcodes] [file FILE]")
    add_json(d)
    d.set_defaults(func=_cmd_dump)
    pin = verbs.add_parser("pin", help="pin a program on bpffs")
    pin.add_argument("target", nargs="+", metavar="PROG FILE")
    pin.set_defaults(func=_cmd_pin)
    for verb, what in (("load", "load an object's first program and pin it at PATH"),
                       ("loadall", "load every program of an object and pin them in DIR")):
        ld = verbs.add_parser(verb, help=what)
        ld.add_argument("object", metavar="OBJ")
        ld.add_argument("path", metavar="PATH" if verb == "load" else "DIR")
        ld.add_argument("rest", nargs="*", metavar="pinmaps DIR")
        ld.set_defaults(func=_cmd_load)
