"""The `ebpf` command: bpftool's nouns and verbs (prog, map, link, btf, net, cgroup, perf,
feature) plus inspect, load and gen for BPF objects. `main()` is the entry point.

Importing `ebpf` does not import this package; each subcommand imports what it needs
when it runs.
"""

from __future__ import annotations

import importlib

from .main import build_parser, main

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["build_parser", "inspect_spec", "load_object", "main", "write_atomically"]

# Names served from their subcommand's module on first use (`ebpf.cli.main` imports only
# the module of the subcommand it runs). _inspect_text, _failed_program and _prog_result
# stay importable for tools/ (fuzz.py, realworld.py).
_LAZY = {"write_atomically": "gen", "inspect_spec": "inspect", "_inspect_text": "inspect",
         "load_object": "load", "_failed_program": "load", "_prog_result": "load"}


def __getattr__(name: str) -> Any:
    """The names of _LAZY, imported from their module when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
