"""The layers of `ebpf/`: one-way imports between packages, checked from the source.

The import graph is built from the AST of every module of `ebpf/`: top-level and
function-level imports, relative and absolute, ``from ebpf import Name`` resolved
through `ebpf.__init__`'s lazy table, and the modules' lazy tables (`ebpf._lazyattr`:
imports on first use, counted as function-level ones). Each top-level module of `ebpf/`
and each subpackage is one node (`ebpf.maps`, `ebpf.btf`, `ebpf.collection`, ...). Imports
under ``if TYPE_CHECKING:`` never run, so they are no edges of the cycle check (a
link function may name `Program` in its signature while `Program.attach` calls into
`ebpf.link`); the layer rules below count them too, so that the pure layers do not
even name a kernel object.

The layers, bottom up (see docs/INTERFACES.md):

    _lazyattr                     module __getattr__ from a table; imports nothing of ebpf
    errors                        exceptions; imports nothing of ebpf
    _sys                          the only code that talks to the kernel (bpf(2), perf,
                                  netlink, mmap) and loads libc
    asm, elffile, _objcache       instructions; the ELF64 reader; per-object caches
    btf                           BTF types, parser, writer, CO-RE
    spec                          pure data: CollectionSpec, MapSpec, ProgramSpec, ...
    elf                           relocatable BPF ELF -> specs
    features                      kernel feature probes
    maps, programs, struct_ops    kernel objects
    instantiate, collection       specs -> kernel objects; the object that owns them
    link, readers, ringbuf, perf  hooks; event readers
    gen, cli, ...                 tools on top
"""

from __future__ import annotations

import ast
import collections
import importlib
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

import ebpf
import ebpf._lazyattr as _lazyattr

PKG = pathlib.Path(ebpf.__file__).resolve().parent

# Modules that create or use kernel objects (maps, programs, links, readers).
KERNEL_OBJECTS = ("ebpf.maps", "ebpf.programs", "ebpf.collection", "ebpf.instantiate",
                  "ebpf.struct_ops", "ebpf.link", "ebpf.readers", "ebpf.ringbuf", "ebpf.perf")
# Layers that are pure computation on bytes and data: no kernel object, no feature probe.
PURE = ("ebpf.elf", "ebpf.spec", "ebpf.btf", "ebpf.asm", "ebpf.elffile")
# What libc-level code looks like: only ebpf/_sys may load libc or call syscalls itself.
LIBC_NAMES = frozenset({"CDLL", "cdll", "PyDLL", "pydll", "LibraryLoader", "pythonapi", "util",
                        "dlopen"})


@dataclass(frozen=True)
class Edge:
    src: str          # importing module, e.g. "ebpf.maps.core"
    dst: str          # imported module, e.g. "ebpf.btf.values" (a module, never a name)
    name: str | None  # the name imported from `dst`, when it is not a module itself
    path: str
    line: int
    function: bool    # inside a function (or a lambda)
    type_only: bool   # under `if TYPE_CHECKING:`

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _lazy_table() -> dict[str, str]:
    """`ebpf.__init__`'s lazy names: name -> module."""
    lazy = getattr(ebpf, "_LAZY", {})
    return {name: "ebpf" + mod if mod.startswith(".") else mod for name, mod in lazy.items()}


LAZY = _lazy_table()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _edges_of(module: str, path: pathlib.Path) -> Iterator[Edge]:
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    rel = str(path.relative_to(PKG.parent))

    def visit(node: ast.AST, function: bool, type_only: bool) -> Iterator[Edge]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from one(stmt, function, True)
                    yield from visit(stmt, function, True)
                for stmt in child.orelse:
                    yield from one(stmt, function, type_only)
                    yield from visit(stmt, function, type_only)
                continue
            yield from one(child, function, type_only)
            inner = function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                   ast.Lambda))
            yield from visit(child, inner, type_only)

    def one(node: ast.AST, function: bool, type_only: bool) -> Iterator[Edge]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "ebpf" or alias.name.startswith("ebpf."):
                    yield Edge(module, alias.name, None, rel, node.lineno, function, type_only)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            if target != "ebpf" and not target.startswith("ebpf."):
                return
            for alias in node.names:
                full = f"{target}.{alias.name}"
                if full in MODULES:
                    yield Edge(module, full, None, rel, node.lineno, function, type_only)
                elif target == "ebpf" and alias.name in LAZY:
                    yield Edge(module, LAZY[alias.name], alias.name, rel, node.lineno,
                               function, type_only)
                else:
                    yield Edge(module, target, alias.name, rel, node.lineno, function,
                               type_only)

    yield from visit(tree, False, False)


def _absolute(module: str, is_package: bool, target: str) -> str:
    """`target` of an import statement in `module` (``"._enums"``, ``"ebpf.elffile"``)."""
    name = target.lstrip(".")
    if len(name) == len(target):
        return name
    node = ast.ImportFrom(module=name or None, names=[], level=len(target) - len(name))
    return _resolve(module, is_package, node)


def _table_edges() -> Iterator[Edge]:
    """The imports the modules' lazy tables make on first use (`ebpf._lazyattr`): as
    function-level imports, at the line that makes the module's `__getattr__`."""
    for module in MODULES:
        if not module.endswith("__main__"):  # `python -m ebpf` would run the CLI
            importlib.import_module(module)
    for module, table in sorted(_lazyattr.TABLES.items()):
        path = MODULES[module]
        rel = str(path.relative_to(PKG.parent))
        line = next(n for n, text in enumerate(path.read_text().splitlines(), 1)
                    if text.startswith("__getattr__ = "))
        for name, entry in table.items():
            target, source = entry if isinstance(entry, tuple) else (entry, name)
            dst = _absolute(module, path.name == "__init__.py", target)
            yield Edge(module, dst, None if f"{dst}.{source}" in MODULES else source, rel,
                       line, True, False)


# `ebpf._lazyattr` (the `__getattr__` of the modules that serve names on first use) is
# below every layer: any module may import it, and it imports nothing of ebpf
# (test_lazyattr_imports_nothing); the imports its tables make are edges.
LAZYATTR = "ebpf._lazyattr"
EDGES = [e for m, p in MODULES.items() for e in _edges_of(m, p) if e.dst != LAZYATTR]
EDGES += _table_edges()


def node_of(module: str) -> str:
    """The graph node of a module: `ebpf.<top-level module or subpackage>`."""
    parts = module.split(".")
    return ".".join(parts[:2])


def _within(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def _package_graph(include_type_only: bool) -> dict[str, dict[str, list[Edge]]]:
    graph: dict[str, dict[str, list[Edge]]] = collections.defaultdict(
        lambda: collections.defaultdict(list))
    for e in EDGES:
        if e.type_only and not include_type_only:
            continue
        a, b = node_of(e.src), node_of(e.dst)
        if a != b and "ebpf" not in (a, b):  # `ebpf/__init__` re-exports everything, lazily
            graph[a][b].append(e)
    return graph


def _cycles(graph: dict[str, dict[str, list[Edge]]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in list(graph.get(v, {})):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def _describe(graph: dict[str, dict[str, list[Edge]]], comp: list[str]) -> str:
    lines = [" <-> ".join(comp)]
    for a in comp:
        for b in comp:
            for e in graph.get(a, {}).get(b, [])[:3]:
                lines.append(f"  {a} -> {b}: {e.where}")
    return "\n".join(lines)


def test_the_graph_sees_the_package() -> None:
    """The parser finds the modules and their imports (a broken walk would pass every rule)."""
    assert {"ebpf.maps", "ebpf.spec", "ebpf.elf", "ebpf.btf", "ebpf._sys"} <= {
        node_of(m) for m in MODULES}
    assert any(e.function for e in EDGES)
    assert any(e.type_only for e in EDGES)
    assert any(node_of(e.src) == "ebpf.collection" and node_of(e.dst) == "ebpf.instantiate"
               for e in EDGES)


def test_no_import_cycle_between_packages() -> None:
    graph = _package_graph(include_type_only=False)
    cycles = _cycles(graph)
    assert not cycles, "import cycles between packages:\n" + "\n".join(
        _describe(graph, c) for c in cycles)


def test_cycle_check_finds_a_cycle() -> None:
    graph: dict[str, dict[str, list[Edge]]] = {"a": {"b": []}, "b": {"c": []}, "c": {"a": []},
                                               "d": {"a": []}}
    assert _cycles(graph) == [["a", "b", "c"]]


def _violations(sources: tuple[str, ...], forbidden: tuple[str, ...], *,
                type_only: bool = True) -> list[str]:
    return [f"{e.where}: {e.src} imports {e.dst}" for e in EDGES
            if any(_within(e.src, s) for s in sources)
            and any(_within(e.dst, f) for f in forbidden)
            and (type_only or not e.type_only)]


def test_pure_layers_import_no_kernel_object() -> None:
    """ebpf.elf, ebpf.spec, ebpf.btf, ebpf.asm and ebpf.elffile work on bytes and data:
    they import no kernel-object module, no feature probe (not even for type hints)."""
    bad = _violations(PURE, (*KERNEL_OBJECTS, "ebpf.features", "ebpf.gen", "ebpf.cli"))
    assert not bad, "\n".join(bad)


def test_spec_and_elf_import_only_lower_layers() -> None:
    """Specs are made of BTF types and instructions; the ELF reader makes specs."""
    spec = [f"{e.where}: {e.dst}" for e in EDGES if _within(e.src, "ebpf.spec")
            and not any(_within(e.dst, ok) for ok in (
                "ebpf.spec", "ebpf.btf", "ebpf.asm", "ebpf.errors", "ebpf._sys.types",
                "ebpf._sys.consts", "ebpf._sys.fastclass",
                "ebpf._sys.nopickle"))]  # (copying's state restore, no syscall)
    assert not spec, "\n".join(spec)
    elf = [f"{e.where}: {e.dst}" for e in EDGES if _within(e.src, "ebpf.elf")
           and not any(_within(e.dst, ok) for ok in (
               "ebpf.elf", "ebpf.elffile", "ebpf.spec", "ebpf.btf", "ebpf.asm", "ebpf.errors",
               "ebpf._objcache", "ebpf._sys.types", "ebpf._sys.consts", "ebpf._sys.validate",
               "ebpf._sys.fastclass"))]
    assert not elf, "\n".join(elf)


def test_btf_does_not_import_the_elf_package() -> None:
    """btf reads an object's .BTF through ebpf.elffile; ebpf.elf is above btf."""
    bad = _violations(("ebpf.btf",), ("ebpf.elf", "ebpf.spec"))
    assert not bad, "\n".join(bad)


def test_features_never_import_link() -> None:
    """Feature probes sit below the kernel objects that use them (maps ask features why a
    map type was refused): they import neither link nor a kernel-object module."""
    bad = _violations(("ebpf.features",), KERNEL_OBJECTS)
    assert not bad, "\n".join(bad)


def test_link_is_above_the_kernel_objects() -> None:
    """Only the two attach entry points call up into ebpf.link, inside the function:
    Program.attach (section-name auto-attach) and Collection.attach_all; nothing below
    the kernel objects imports link at all."""
    below = _violations(("ebpf.maps", "ebpf.struct_ops", "ebpf.instantiate", "ebpf.readers",
                         "ebpf.ringbuf", "ebpf.perf", "ebpf.features", *PURE, "ebpf._sys"),
                        ("ebpf.link",))
    assert not below, "\n".join(below)
    calls_up = [e for e in EDGES if node_of(e.src) in ("ebpf.programs", "ebpf.collection")
                and _within(e.dst, "ebpf.link") and not e.type_only]
    assert calls_up and all(e.function for e in calls_up), [e.where for e in calls_up]


def test_sys_imports_only_errors() -> None:
    """ebpf/_sys is the bottom: it may raise the library's errors and nothing else."""
    bad = [f"{e.where}: {e.dst}" for e in EDGES if _within(e.src, "ebpf._sys")
           and not (_within(e.dst, "ebpf._sys") or e.dst == "ebpf.errors")]
    assert not bad, "\n".join(bad)


def test_lazyattr_imports_nothing() -> None:
    """ebpf._lazyattr, which every layer may import, imports nothing of ebpf."""
    edges = list(_edges_of(LAZYATTR, MODULES[LAZYATTR]))
    assert not edges, [e.where for e in edges]


def test_lazy_tables_are_edges() -> None:
    """The lazy tables' imports are in the graph (ebpf.btf.types serves IntEncoding from
    ebpf.btf.intencoding; ebpf.elf its names from ebpf.elffile)."""
    assert any(e.src == "ebpf.btf.types" and e.dst == "ebpf.btf.intencoding"
               and e.name == "IntEncoding" and e.function for e in EDGES)
    assert any(e.src == "ebpf.elf" and e.dst == "ebpf.elffile" for e in EDGES)


def test_errors_import_nothing() -> None:
    """ebpf.errors (the package: its classes no load uses are in errors/_lazy.py) imports
    nothing of ebpf outside itself."""
    bad = [f"{e.where}: {e.dst}" for e in EDGES
           if _within(e.src, "ebpf.errors") and not _within(e.dst, "ebpf.errors")]
    assert not bad, "\n".join(bad)


def _libc_uses(tree: ast.AST) -> Iterator[int]:
    """Lines that reach libc through ctypes: ``ctypes.CDLL``, ``ctypes.util``, ...,
    ``import ctypes.util``, ``from ctypes import CDLL``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in LIBC_NAMES and isinstance(
                node.value, ast.Name) and node.value.id == "ctypes":
            yield node.lineno
        elif isinstance(node, ast.Import) and any(a.name.startswith("ctypes.")
                                                  for a in node.names):
            yield node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "ctypes" or node.module.startswith("ctypes.")) and (
                node.module != "ctypes" or any(a.name in LIBC_NAMES for a in node.names)):
            yield node.lineno


def test_only_sys_loads_libc() -> None:
    """ctypes-level syscall code (libc through ctypes.CDLL, ctypes.util, pythonapi) is
    only in ebpf/_sys; everything else calls its functions."""
    bad = []
    for module, path in MODULES.items():
        if _within(module, "ebpf._sys"):
            continue
        lines = path.read_text().splitlines()
        for n in _libc_uses(ast.parse(path.read_text(), str(path))):
            bad.append(f"{path.relative_to(PKG.parent)}:{n}: {lines[n - 1].strip()}")
    assert not bad, "\n".join(bad)


def test_libc_pattern() -> None:
    def found(src: str) -> bool:
        return any(_libc_uses(ast.parse(src)))

    assert found("libc = ctypes.CDLL(None, use_errno=True)")
    assert found("import ctypes.util")
    assert found("from ctypes import CDLL")
    assert found("from ctypes.util import find_library")
    assert not found("x = ctypes.c_uint32(0)")
    assert not found("from ctypes import c_uint32")
    assert not found('"""calls syscall(2) through `ctypes.CDLL`"""')


def test_private_names_stay_in_their_package() -> None:
    """A name starting with ``_`` is imported only within the package (graph node) that
    defines it, and a private module (``ebpf.link._attach``) only within its package;
    the top-level internals (``ebpf._sys``, ``ebpf._objcache``) are shared by design."""
    bad = []
    for e in EDGES:
        parts = e.dst.split(".")
        for i in range(2, len(parts)):
            if parts[i].startswith("_") and not parts[i].startswith("__"):
                owner = ".".join(parts[:i])
                if not _within(e.src, owner):
                    bad.append(f"{e.where}: {e.src} imports the private module "
                               f"{'.'.join(parts[:i + 1])}")
        if e.name and e.name.startswith("_") and not e.name.startswith("__") \
                and node_of(e.dst) != node_of(e.src):
            bad.append(f"{e.where}: {e.src} imports the private name {e.dst}.{e.name}")
    assert not bad, "\n".join(bad)


def _function_imports() -> Iterator[tuple[pathlib.Path, int, str]]:
    """Every import statement inside a function (ebpf's own and others), as (path, line,
    source line), except those under TYPE_CHECKING."""
    for path in MODULES.values():
        tree = ast.parse(path.read_text(), str(path))

        def visit(node: ast.AST, function: bool) -> Iterator[int]:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child.test):
                    continue
                if function and isinstance(child, (ast.Import, ast.ImportFrom)):
                    yield child.lineno
                yield from visit(child, function or isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

        lines = path.read_text().splitlines()
        for lineno in visit(tree, False):
            yield path, lineno, lines[lineno - 1]


def test_function_level_imports_say_why() -> None:
    """An import inside a function is there to keep `import ebpf` (or the module) cheap, or
    for an optional dependency: each says why in a comment on its line or the line above."""
    bad = []
    for path, lineno, line in _function_imports():
        lines = path.read_text().splitlines()
        above = lines[lineno - 2].strip() if lineno > 1 else ""
        if "#" not in line and not above.startswith("#"):
            bad.append(f"{path.relative_to(PKG.parent)}:{lineno}: {line.strip()}")
    assert not bad, f"{len(bad)} function-level imports without a reason:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", ["ebpf", "ebpf.spec", "ebpf.elf", "ebpf.btf", "ebpf.maps",
                                    "ebpf.ringbuf", "ebpf.perf"])
def test_layer_imports_stay_below(module: str) -> None:
    """Importing a layer (in a fresh interpreter) loads nothing above it: what the static
    graph says holds at run time too."""
    import subprocess
    import sys

    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PKG.parent).stdout.split()
    loaded = {node_of(m) for m in out if m.startswith("ebpf.")}
    above = {
        "ebpf": {*KERNEL_OBJECTS, "ebpf.btf", "ebpf.elf", "ebpf.features"},
        "ebpf.spec": {*KERNEL_OBJECTS, "ebpf.elf", "ebpf.features"},
        "ebpf.elf": {*KERNEL_OBJECTS, "ebpf.features"},
        "ebpf.btf": {*KERNEL_OBJECTS, "ebpf.elf", "ebpf.spec", "ebpf.features"},
        "ebpf.maps": {"ebpf.programs", "ebpf.collection", "ebpf.instantiate", "ebpf.link",
                      "ebpf.readers", "ebpf.btf", "ebpf.features", "ebpf.elf"},
        "ebpf.ringbuf": {"ebpf.maps", "ebpf.programs", "ebpf.collection", "ebpf.link",
                         "ebpf.btf"},
        "ebpf.perf": {"ebpf.maps", "ebpf.programs", "ebpf.collection", "ebpf.link",
                      "ebpf.btf"},
    }[module]
    assert not loaded & above, sorted(loaded & above)
