"""The `ebpf` command: bpftool's nouns and verbs (prog, map, link, btf, net, cgroup, perf,
feature) plus inspect, load and gen for BPF objects. `main()` is the entry point.

Importing `ebpf` does not import this package; each subcommand imports what it needs
when it runs.
"""

from __future__ import annotations

from .gen import write_atomically
from .inspect import _inspect_text, inspect_spec
from .load import _failed_program, _prog_result, load_object
from .main import build_parser, main

__all__ = ["build_parser", "inspect_spec", "load_object", "main", "write_atomically"]
# _inspect_text, _failed_program and _prog_result stay importable for tools/ (fuzz.py,
# realworld.py)
_TOOLS = (_inspect_text, _failed_program, _prog_result)
