"""The `ebpf` command line: one subcommand per noun, bpftool's nouns and verbs."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from .. import __version__
from ..errors import Error
from . import btf, build, cgroup, feature, gen, inspect, link, load, net, perf, prog, trace
from . import map as map_
from .common import error

__all__ = ["build_parser", "main"]

DESCRIPTION = """Inspect and load BPF objects, generate typed Python bindings for them, and
show, dump and manage what is loaded in the kernel (programs, maps, links, BTF, network
and cgroup attachments, features), with bpftool's nouns, verbs and JSON fields."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `ebpf` command."""
    p = argparse.ArgumentParser(prog="ebpf", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"ebpf {__version__}")
    p.add_argument("-j", "--json", dest="json_global", action="store_true",
                   help="print JSON (also accepted after the subcommand)")
    sub = p.add_subparsers(dest="command", required=True)
    for noun in (inspect, load, build, gen, prog, map_, link, btf, net, cgroup, perf, feature,
                 trace):
        noun.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `ebpf` command; returns the exit status (errors: one line on stderr, 1)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BrokenPipeError:
        return 1
    except (Error, OSError, ValueError, RecursionError) as e:
        # OSError: a missing or unreadable file; ValueError: a bad argument
        error(str(e) or type(e).__name__)
        return 1
