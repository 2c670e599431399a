"""MkDocs hook: one API reference page per public module, generated at build time.

`MODULES` is the list of documented modules: adding a module to the reference is one
line here. A listed module whose source does not exist (yet) is left out of the site;
tests/test_docs.py checks the docstrings of every listed module that exists.
"""

from __future__ import annotations

import pathlib
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]

# (module, one-line description shown in the reference index)
MODULES: list[tuple[str, str]] = [
    ("ebpf", "top-level names: Map, Program, Collection, specs, enums, errors"),
    ("ebpf.maps", "maps: dict-like access, batches, per-CPU values, pinning"),
    ("ebpf.programs", "programs: loading, test_run, info, pinning"),
    ("ebpf.collection", "objects compiled by clang: CollectionSpec and Collection"),
    ("ebpf.spec", "pure-data specs: CollectionSpec, MapSpec, ProgramSpec, VariableSpec"),
    ("ebpf.link", "attaching programs to hooks; links"),
    ("ebpf.ringbuf", "BPF ring buffer reader and user ring buffer writer"),
    ("ebpf.perf", "perf event buffer reader"),
    ("ebpf.btf", "BTF types, the kernel's BTF, CO-RE"),
    ("ebpf.btf.dedup", "BTF deduplication"),
    ("ebpf.asm", "instructions, assembler and disassembler"),
    ("ebpf.features", "kernel feature probes"),
    ("ebpf.token", "BPF tokens: loading in a user namespace without CAP_BPF (6.9+)"),
    ("ebpf.gen", "typed Python bindings for an object (ebpf gen)"),
    ("ebpf.gen.build", "compiling BPF C into CO-RE objects (ebpf build)"),
    ("ebpf.errors", "the exception hierarchy"),
    ("ebpf.tracing", "tracefs: trace_pipe and friends"),
    ("ebpf.hist", "histograms of BPF-side counters"),
    ("ebpf.symbols", "kernel and ELF symbolization"),
    ("ebpf.linker", "static linking of BPF objects"),
]


def module_exists(name: str) -> bool:
    """True when the module's source is in the tree (a .py file or a package)."""
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def documented_modules() -> list[tuple[str, str]]:
    """The listed modules that exist, in list order."""
    return [(m, d) for m, d in MODULES if module_exists(m)]


def page_path(module: str) -> str:
    return f"reference/{module}.md"


def page_text(module: str) -> str:
    return f"# `{module}`\n\n::: {module}\n"


def index_text() -> str:
    rows = "\n".join(f"| [`{m}`]({m}.md) | {d} |" for m, d in documented_modules())
    return ("# API reference\n\nGenerated from the docstrings. Everything public is also "
            "reachable from the modules below; `ebpf` re-exports the names most programs "
            "need.\n\n| module | what it holds |\n|---|---|\n" + rows + "\n")


def on_config(config: Any) -> Any:
    pages: list[Any] = [{"Overview": "reference/index.md"}]
    pages += [{m: page_path(m)} for m, _ in documented_modules()]
    config["nav"].append({"API reference": pages})
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, "reference/index.md", content=index_text()))
    for m, _ in documented_modules():
        files.append(File.generated(config, page_path(m), content=page_text(m)))
    return files
