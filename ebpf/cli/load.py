"""`ebpf load OBJECT`: load an object's programs (together or each alone) and report
what the kernel accepted."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import Error
from .main import (  # (not common: process start)
    GC_THRESHOLDS,
    add_json,
    end_command_process,
    enum_name,
    error,
    running_as_command,
    wants_json,
)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:  # argparse only builds the parser (see plain_args)
    import argparse
    from typing import Any

__all__ = ["load_object", "plain_args", "register"]


def _parse_value(text: str) -> Any:
    import json  # on use: only --set values are JSON (process start)

    try:
        return json.loads(text)
    except ValueError:
        return text


def _prog_result(name: str, spec: Any, exc: BaseException | None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "name": name, "section": spec.section, "type": enum_name(spec.type),
        "attach_type": enum_name(spec.attach_type), "ok": exc is None, "errno": 0,
        "error": "", "log_tail": "",
    }
    if exc is not None:
        res["errno"] = getattr(exc, "errno", 0) or 0
        res["error"] = str(exc)
        from ..errors import VerifierError  # a failed load only (process start)

        if isinstance(exc, VerifierError):
            res["log_tail"] = "\n".join(exc.log.rstrip("\0").splitlines()[-20:])
    return res


def load_object(path: str, *, each: bool = False, sets: Sequence[str] = (),
                btf_path: str | None = None) -> dict[str, Any]:
    """Load an object (all programs together, or each on its own) and report per program."""
    # on use: a subcommand loads only what it needs
    from .. import Collection, btf, load_collection_spec
    from ..programs import load_once  # (loaded by Collection anyway)

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
    # --each means every program, whatever its autoload default (SEC("?...")); all
    # together means what the object loads by default
    names = [n for n, p in spec.programs.items() if each or getattr(p, "autoload", True)]
    for p in spec.programs.values():
        load_once(p)  # each program loads at most once here: no template for a next load
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
    import gc  # (built in) only this one-shot command changes the thresholds

    # Young collections every 20000 net allocations instead of 700 while loading: the
    # imports and the load make ~15000, hardly any of them garbage, and the ~17
    # collections they caused were ~2.3 ms of the process (memory stays bounded). Run
    # as the program, the threshold stays up until the exit, which freezes everything:
    # put back, the next allocation would collect the ~10000 young objects (~2 ms).
    # (Run as the program, `main` set it already, before this module's imports.)
    program = running_as_command()
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLDS["load"], *thresholds[1:])
    try:
        d = load_object(args.object, each=args.each, sets=args.set or (), btf_path=args.btf)
    finally:
        if not program:
            gc.set_threshold(*thresholds)
    if program:
        _freeze_at_exit()
    if wants_json(args):
        import json  # on use: a plain-text report imports no json (process start)

        print(json.dumps(d, indent=2, default=str))
    elif d["open"]["ok"] and any(p["ok"] for p in d["programs"]):
        print(_load_text({**d, "programs": [p for p in d["programs"] if p["ok"]]}))
    if not d["open"]["ok"]:
        error(f"{d['object']}: cannot open: {d['open']['error']}")
        status = 1
    else:
        failed = [p for p in d["programs"] if not p["ok"]]
        for p in failed:
            error(f"{d['object']}: program {p['name']}: {p['error']}")
        status = 1 if failed else 0
    if program:
        # the report is out: end here, without the interpreter freeing the ~70 modules
        # and what the load made one object at a time (~6M instructions, a sixth of the
        # load's own work)
        end_command_process(status)
    return status


def _freeze_at_exit() -> None:
    """At interpreter exit (atexit: after the command's output), move every object to
    gc's permanent generation: the interpreter's last collections then skip the ~70
    modules' and the load's cycles (classes, functions and their globals, BTF types)
    whose memory the exit returns anyway (~5 ms of the process), when the command does
    not end early (`end_command_process`: another thread runs). The kernel objects are
    closed by then, and the other exit handlers (the BTF index cache's writer,
    logging's flush) still run."""
    import atexit  # (built in)
    import gc  # (built in)

    atexit.register(gc.freeze)


def plain_args(argv: Sequence[str]) -> Any:
    """The parsed arguments of the usual spellings, ``ebpf [-j] load [--json|-j]
    [--each] OBJECT`` (flags in any order), without argparse: it costs ~5 ms of process
    start (gettext, locale, the parser's regular expressions) in a command that takes
    ~10 ms once imported. None for anything else (--set, --btf, --help, abbreviations,
    errors), which the argparse parser of `register` handles; the two must agree
    (tests/test_cli_start.py compares them)."""
    from types import SimpleNamespace  # types is always loaded, argparse (Namespace) not

    flags = {"json_global": False, "json": False, "each": False}
    obj = None
    words = iter(argv)
    for arg in words:  # the options before the noun: only --json
        if arg == "load":
            break
        if arg not in ("-j", "--json"):
            return None
        flags["json_global"] = True
    else:
        return None
    for arg in words:
        if arg in ("-j", "--json"):
            flags["json"] = True
        elif arg == "--each":
            flags["each"] = True
        elif arg.startswith("-") or obj is not None:
            return None
        else:
            obj = arg
    if obj is None:
        return None
    return SimpleNamespace(command="load", object=obj, set=None, btf=None, func=_cmd_load,
                           **flags)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `load` to the command line."""
    load = sub.add_parser("load", help="load an object into the kernel and report")
    load.add_argument("object")
    add_json(load)
    load.add_argument("--each", action="store_true",
                      help="load each program on its own, without the others")
    load.add_argument("--set", action="append", metavar="NAME=VALUE",
                      help="set a global variable before loading (JSON or a string)")
    load.add_argument("--btf", metavar="FILE", help="relocate CO-RE against this BTF")
    load.set_defaults(func=_cmd_load)
