"""The `ebpf` command line: one subcommand per noun, bpftool's nouns and verbs; and what
every subcommand uses, `load` included, about the command's process and its output (the
--json option, one-line errors, enums' names, the early end), which `ebpf.cli.common`
re-exports: `ebpf load` imports no common (process start)."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from ..errors import Error

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    import argparse
    from typing import Any

__all__ = ["add_json", "build_parser", "end_command_process", "enum_name", "error", "main",
           "running_as_command", "wants_json"]

DESCRIPTION = """Inspect and load BPF objects, generate typed Python bindings for them, and
show, dump and manage what is loaded in the kernel (programs, maps, links, BTF, network
and cgroup attachments, features), with bpftool's nouns, verbs and JSON fields."""


# Each noun is the module ebpf.cli.<noun> with a register(sub) function; in help order.
NOUNS = ("inspect", "load", "build", "gen", "prog", "map", "link", "btf", "net", "cgroup",
         "perf", "feature", "trace")

# gc's young-generation threshold of the one-shot subcommands that allocate much and free
# little (see load._cmd_load). Run as the `ebpf` command, `main` sets it before it imports
# the subcommand's module, whose imports would otherwise collect once at the default
# threshold (process start: ~0.3 M instructions).
GC_THRESHOLDS = {"load": 20_000}


def build_parser(nouns: Sequence[str] = NOUNS) -> argparse.ArgumentParser:
    """The argument parser of the `ebpf` command (with the subcommands `nouns`: all of
    them by default)."""
    import argparse  # not for the spellings a subcommand's plain_args parses (process start)

    p = argparse.ArgumentParser(prog="ebpf", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"ebpf {__version__}")
    p.add_argument("-j", "--json", dest="json_global", action="store_true",
                   help="print JSON (also accepted after the subcommand)")
    sub = p.add_subparsers(dest="command", required=True)
    for noun in nouns:
        importlib.import_module(f"{__package__}.{noun}").register(sub)
    return p


def _chosen_noun(argv: Sequence[str]) -> str | None:
    """The subcommand argv names (its first word that is no option), if it is one of
    NOUNS: a command then imports and registers only that one (process start: the
    other nouns' modules and their argparse trees cost more than most commands)."""
    for arg in argv:
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg if arg in NOUNS else None
    return None


def running_as_command() -> bool:
    """Whether this process is the `ebpf` command (`python -m ebpf`, the installed script,
    or a script whose `main` is ours), not other code calling `main([...])` and going on:
    only the command may change process-wide state for its own exit (gc, an early end)."""
    return getattr(sys.modules.get("__main__"), "main", None) is main


def add_json(parser: argparse.ArgumentParser) -> None:
    """Give a subcommand `--json` (also `-j`, as bpftool spells it)."""
    parser.add_argument("-j", "--json", action="store_true", help="print JSON")


def wants_json(args: argparse.Namespace) -> bool:
    """Whether JSON was asked for, on the subcommand or before the noun."""
    return bool(getattr(args, "json", False) or getattr(args, "json_global", False))


def end_command_process(status: int) -> None:
    """End this process with `status` when it is the `ebpf` command (see
    `running_as_command`) and no other thread runs (a normal exit would wait for it):
    the output flushed and the atexit handlers run (the BTF index cache's writer,
    logging's flush, ...), as a normal exit does, but without the interpreter then
    freeing every module and object one at a time (mypy ends the same way). Returns,
    doing nothing, otherwise."""
    if not running_as_command():
        return
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    import atexit  # (built in; only here)

    atexit._run_exitfuncs()
    sys.stdout.flush()  # (what the handlers printed)
    sys.stderr.flush()
    os._exit(status)


def error(message: str) -> None:
    """`message` on standard error as one line prefixed with ``ebpf: ``."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    print("ebpf: " + "; ".join(lines), file=sys.stderr)


def enum_name(v: Any) -> str | None:
    """An enum member's name in lower case (bpftool's spelling); other values as str."""
    if v is None:
        return None
    name = getattr(v, "name", None)
    return name.lower() if isinstance(name, str) else str(v)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `ebpf` command; returns the exit status (errors: one line on stderr, 1)."""
    if argv is None:
        argv = sys.argv[1:]
    noun = _chosen_noun(argv)
    threshold = GC_THRESHOLDS.get(noun or "")
    if threshold is not None and running_as_command():
        import gc  # (built in)

        gc.set_threshold(threshold, *gc.get_threshold()[1:])
    args: Any = None
    if noun:  # a subcommand may parse its usual spellings itself (see load.plain_args)
        plain = getattr(importlib.import_module(f"{__package__}.{noun}"), "plain_args", None)
        args = plain(argv) if plain is not None else None
    if args is None:
        args = build_parser((noun,) if noun else NOUNS).parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BrokenPipeError:
        return 1
    except (Error, OSError, ValueError, RecursionError) as e:
        # OSError: a missing or unreadable file; ValueError: a bad argument
        error(str(e) or type(e).__name__)
        return 1
