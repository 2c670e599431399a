"""The `ebpf` command line: one subcommand per noun, bpftool's nouns and verbs."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from ..errors import Error

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    import argparse
    from typing import Any

__all__ = ["build_parser", "main"]

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
        from .common import error  # (loaded by every subcommand's module)

        error(str(e) or type(e).__name__)
        return 1
