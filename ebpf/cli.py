"""The `ebpf` command: inspect and load objects, generate typed Python bindings for
them, dump BTF as C (vmlinux.h), probe features, list kernel objects."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import Error, VerifierError

if TYPE_CHECKING:
    from .collection import CollectionSpec


def _emit(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text(data))


def _enum_name(v: Any) -> str | None:
    if v is None:
        return None
    name = getattr(v, "name", None)
    return name.lower() if isinstance(name, str) else str(v)


def _type_desc(t: Any) -> str | None:
    if t is None:
        return None
    from .btf import values

    return values.describe(t)


# -- inspect ---------------------------------------------------------------------------


def inspect_spec(spec: CollectionSpec) -> dict[str, Any]:
    """A JSON-able description of an object's programs, maps and variables."""
    progs = []
    for name, p in spec.programs.items():
        progs.append({
            "name": name, "section": p.section, "type": _enum_name(p.type),
            "attach_type": _enum_name(p.attach_type), "attach_to": p.attach_to or None,
            "instructions": sum(ins.size for ins in p.instructions),
            "autoload": getattr(p, "autoload", True),
        })
    maps = []
    for name, m in spec.maps.items():
        maps.append({
            "name": name, "type": _enum_name(m.type), "key_size": m.key_size,
            "value_size": m.value_size, "key": _type_desc(m.key), "value": _type_desc(m.value),
            "max_entries": m.max_entries, "flags": m.flags,
            "pinning": _enum_name(m.pinning),
            "inner_map": m.inner_map.name if m.inner_map is not None else None,
        })
    variables = []
    for name, v in spec.variables.items():
        try:
            value: Any = v.get()
        except Error as e:
            value = f"<{e}>"
        if isinstance(value, bytes):
            value = value.hex()
        variables.append({"name": name, "section": v.section, "type": _type_desc(v.type),
                          "offset": v.offset, "size": v.size, "value": value})
    return {"programs": progs, "maps": maps, "variables": variables}


def _inspect_text(d: dict[str, Any]) -> str:
    out = ["Programs:"]
    for p in d["programs"]:
        target = f" -> {p['attach_to']}" if p["attach_to"] else ""
        at = f" ({p['attach_type']})" if p["attach_type"] else ""
        out.append(f"  {p['name']:<24} {p['section']:<28} {p['type']}{at}{target}  "
                   f"{p['instructions']} insns")
    out.append("Maps:")
    for m in d["maps"]:
        kv = f"{m['key'] or m['key_size']} -> {m['value'] or m['value_size']}"
        pin = f" pinned:{m['pinning']}" if m["pinning"] not in (None, "none") else ""
        out.append(f"  {m['name']:<24} {m['type']:<16} {kv}  max {m['max_entries']}  "
                   f"flags {m['flags']:#x}{pin}")
    out.append("Variables:")
    for v in d["variables"]:
        out.append(f"  {v['name']:<24} {v['section']:<16} {v['type'] or v['size']} = "
                   f"{v['value']!r}")
    return "\n".join(out)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .collection import load_collection_spec

    spec = load_collection_spec(args.object)
    _emit(args, inspect_spec(spec), _inspect_text)
    return 0


# -- load ----------------------------------------------------------------------------------


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _prog_result(name: str, spec: Any, exc: BaseException | None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "name": name, "section": spec.section, "type": _enum_name(spec.type),
        "attach_type": _enum_name(spec.attach_type), "ok": exc is None, "errno": 0,
        "error": "", "log_tail": "",
    }
    if exc is not None:
        res["errno"] = getattr(exc, "errno", 0) or 0
        res["error"] = str(exc)
        if isinstance(exc, VerifierError):
            res["log_tail"] = "\n".join(exc.log.rstrip("\0").splitlines()[-20:])
    return res


def load_object(path: str, *, each: bool = False, sets: Sequence[str] = (),
                btf_path: str | None = None) -> dict[str, Any]:
    """Load an object (all programs together, or each on its own) and report per program."""
    from . import btf
    from .collection import Collection, load_collection_spec

    result: dict[str, Any] = {"object": path, "open": {"ok": True, "error": ""},
                              "programs": []}
    try:
        spec = load_collection_spec(path)
        for item in sets:
            name, sep, value = item.partition("=")
            if not sep:
                raise Error(f"--set wants NAME=VALUE, got {item!r}")
            spec.variables[name].set(_parse_value(value))
        kernel_btf = btf.load_spec(btf_path) if btf_path else None
    except (Error, OSError) as e:
        result["open"] = {"ok": False, "error": str(e)}
        return result
    names = [n for n, p in spec.programs.items() if getattr(p, "autoload", True)]
    groups = [[n] for n in names] if each else [names]
    for group in groups:
        try:
            with Collection(spec, programs=group, kernel_btf=kernel_btf):
                pass
        except (Error, OSError) as e:
            failed = _failed_program(e, group)
            for n in group:
                if each or n == failed or failed is None:
                    result["programs"].append(_prog_result(n, spec.programs[n], e))
                else:
                    result["programs"].append(_prog_result(
                        n, spec.programs[n], Error("not loaded: another program failed")))
            continue
        result["programs"].extend(_prog_result(n, spec.programs[n], None) for n in group)
    return result


def _failed_program(exc: BaseException, group: list[str]) -> str | None:
    msg = str(exc)
    for n in group:
        if f"program {n!r}" in msg:
            return n
    return None


def _load_text(d: dict[str, Any]) -> str:
    if not d["open"]["ok"]:
        return f"{d['object']}: cannot open: {d['open']['error']}"
    lines = []
    for p in d["programs"]:
        state = "ok" if p["ok"] else f"FAILED: {p['error']}"
        lines.append(f"{p['name']:<28} {p['type']:<16} {state}")
        if p["log_tail"]:
            lines.extend("    " + ln for ln in p["log_tail"].splitlines())
    return "\n".join(lines)


def _cmd_load(args: argparse.Namespace) -> int:
    """The report goes to standard output (JSON with --json, else one line per program
    that loaded); every failure is also one line on standard error."""
    d = load_object(args.object, each=args.each, sets=args.set or (), btf_path=args.btf)
    if args.json:
        print(json.dumps(d, indent=2, default=str))
    elif d["open"]["ok"] and any(p["ok"] for p in d["programs"]):
        print(_load_text({**d, "programs": [p for p in d["programs"] if p["ok"]]}))
    if not d["open"]["ok"]:
        _error(f"{d['object']}: cannot open: {d['open']['error']}")
        return 1
    failed = [p for p in d["programs"] if not p["ok"]]
    for p in failed:
        _error(f"{d['object']}: program {p['name']}: {p['error']}")
    return 1 if failed else 0


# -- btf dump ------------------------------------------------------------------------------


def _cmd_btf_dump(args: argparse.Namespace) -> int:
    from . import btf
    from .btf.kernel import VMLINUX

    path = args.file or VMLINUX
    spec = btf.load_kernel_spec() if path == VMLINUX else btf.load_spec(path)
    types = [spec.type_by_name(name) for name in args.type] if args.type else None
    sys.stdout.write(btf.dump_c(spec, types))
    return 0


# -- gen -----------------------------------------------------------------------------------


def _cmd_gen(args: argparse.Namespace) -> int:
    from .gen import generate

    source = generate(args.object, name=args.name, embed=not args.no_embed)
    if args.output is None:
        sys.stdout.write(source)
        return 0
    write_atomically(args.output, source)
    return 0


def write_atomically(path: str, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temporary file in the same directory,
    renamed over `path` on success and removed on any failure: `path` is either its old
    self or the whole new text, and no temporary file stays behind."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        tmp = ""
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for a moment, for
    every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


# -- feature / lists -----------------------------------------------------------------------


def _cmd_feature_probe(args: argparse.Namespace) -> int:
    from . import features

    result = features.probe_all()
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        print(features.format_text(result))
    return 0


def _iter_ids(cmd: int) -> list[int]:
    from ._sys import ops

    ids = []
    nid = ops.get_next_id(cmd, 0)
    while nid is not None:
        ids.append(nid)
        nid = ops.get_next_id(cmd, nid)
    return ids


def _cmd_prog_list(args: argparse.Namespace) -> int:
    from ._sys.types import Cmd
    from .programs import Program

    rows = []
    for pid in _iter_ids(Cmd.PROG_GET_NEXT_ID):
        try:
            with Program.from_id(pid) as p:
                info = p.info()
        except Error:
            continue  # unloaded meanwhile
        rows.append({"id": pid, "type": _enum_name(info.type), "name": info.name,
                     "tag": info.tag, "map_ids": list(getattr(info, "map_ids", []))})
    _emit(args, rows, lambda rs: "\n".join(
        f"{r['id']:>6}: {r['type']:<16} name {r['name']:<16} tag {r['tag']}" for r in rs))
    return 0


def _cmd_map_list(args: argparse.Namespace) -> int:
    from ._sys.types import Cmd
    from .maps import Map

    rows = []
    for mid in _iter_ids(Cmd.MAP_GET_NEXT_ID):
        try:
            with Map.from_id(mid) as m:
                info = m.info()
        except Error:
            continue
        rows.append({"id": mid, "type": _enum_name(info.type), "name": info.name,
                     "key_size": info.key_size, "value_size": info.value_size,
                     "max_entries": info.max_entries, "flags": int(info.flags)})
    _emit(args, rows, lambda rs: "\n".join(
        f"{r['id']:>6}: {r['type']:<16} name {r['name']:<16} key {r['key_size']}B value "
        f"{r['value_size']}B max_entries {r['max_entries']} flags {r['flags']:#x}"
        for r in rs))
    return 0


def _cmd_link_list(args: argparse.Namespace) -> int:
    from ._sys.types import Cmd, LinkType
    from .link import from_id

    rows = []
    for lid in _iter_ids(Cmd.LINK_GET_NEXT_ID):
        try:
            with from_id(lid) as link:
                info = link.info()
        except Error:
            continue
        try:
            ltype = _enum_name(LinkType(info.type))
        except ValueError:
            ltype = str(info.type)
        from .link._attach import net_link_target

        rows.append({"id": lid, "type": ltype, "prog_id": int(info.prog_id),
                     "target": net_link_target(info)})

    def text(rs: list[dict[str, Any]]) -> str:
        out = []
        for r in rs:
            target = " ".join(f"{k} {v}" for k, v in (r["target"] or {}).items())
            out.append(f"{r['id']:>6}: {r['type']:<16} prog {r['prog_id']:<6} {target}")
        return "\n".join(out)

    _emit(args, rows, text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebpf", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    ins = sub.add_parser("inspect", help="show an object's programs, maps and variables")
    ins.add_argument("object")
    ins.add_argument("--json", action="store_true")
    ins.set_defaults(func=_cmd_inspect)

    load = sub.add_parser("load", help="load an object into the kernel and report")
    load.add_argument("object")
    load.add_argument("--json", action="store_true")
    load.add_argument("--each", action="store_true",
                      help="load each program on its own, without the others")
    load.add_argument("--set", action="append", metavar="NAME=VALUE",
                      help="set a global variable before loading (JSON or a string)")
    load.add_argument("--btf", metavar="FILE", help="relocate CO-RE against this BTF")
    load.set_defaults(func=_cmd_load)

    bt = sub.add_parser("btf", help="BTF type information")
    bsub = bt.add_subparsers(dest="action", required=True)
    dump = bsub.add_parser("dump", help="print BTF as a C header (vmlinux.h by default)")
    dump.add_argument("file", nargs="?",
                      help="raw BTF or an ELF object (default: the running kernel's BTF)")
    dump.add_argument("--type", action="append", metavar="NAME",
                      help="only this type and what it needs (repeatable)")
    dump.set_defaults(func=_cmd_btf_dump)

    gen = sub.add_parser("gen", help="write a typed Python module for an object (bpf2go)")
    gen.add_argument("object")
    gen.add_argument("-o", "--output", metavar="FILE",
                     help="write the module here (default: standard output)")
    gen.add_argument("--name", help="class name (default from the file name: "
                     "execsnoop.bpf.o -> Execsnoop)")
    gen.add_argument("--no-embed", action="store_true",
                     help="load the object from its file next to the module instead of "
                     "embedding it")
    gen.set_defaults(func=_cmd_gen)

    feat = sub.add_parser("feature", help="kernel feature probes")
    fsub = feat.add_subparsers(dest="action", required=True)
    probe = fsub.add_parser("probe", help="probe program/map types, helpers and misc features")
    probe.add_argument("--json", action="store_true")
    probe.set_defaults(func=_cmd_feature_probe)

    for noun, func in (("prog", _cmd_prog_list), ("map", _cmd_map_list),
                       ("link", _cmd_link_list)):
        np = sub.add_parser(noun, help=f"{noun}s in the kernel")
        nsub = np.add_subparsers(dest="action", required=True)
        lst = nsub.add_parser("list", help=f"list every {noun} loaded in the kernel")
        lst.add_argument("--json", action="store_true")
        lst.set_defaults(func=func)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BrokenPipeError:
        return 1
    except (Error, OSError, ValueError, RecursionError) as e:
        # OSError: a missing or unreadable file; ValueError: a bad argument
        _error(str(e) or type(e).__name__)
        return 1


def _error(message: str) -> None:
    """`message` on standard error as one line prefixed with ``ebpf: ``."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    print("ebpf: " + "; ".join(lines), file=sys.stderr)
