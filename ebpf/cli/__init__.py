"""The `ebpf` command: bpftool's nouns and verbs (prog, map, link, btf, net, cgroup, perf,
feature) plus inspect, load and gen for BPF objects. `main()` is the entry point.

Importing `ebpf` does not import this package; each subcommand imports what it needs
when it runs.
"""

from __future__ import annotations

import ebpf._lazyattr as _lazyattr

from .main import build_parser, main

__all__ = ["build_parser", "inspect_spec", "load_object", "main", "write_atomically"]

# Names served from their subcommand's module on first use (`ebpf.cli.main` imports only
# the module of the subcommand it runs). _inspect_text, _failed_program and _prog_result
# stay importable for tools/ (fuzz.py, realworld.py).
_LAZY = {"write_atomically": ".gen", "inspect_spec": ".inspect", "_inspect_text": ".inspect",
         "load_object": ".load", "_failed_program": ".load", "_prog_result": ".load"}
__getattr__ = _lazyattr.lazy_attributes(globals(), _LAZY)
