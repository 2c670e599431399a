"""The documentation is tested: docstrings of the public API, names the guides cite, and
every Python code block of README.md and docs/**/*.md, run against the real kernel.

Code blocks
-----------
Each fenced ```` ```python ```` block is one test item (``test_snippet[docs/maps.md:42]``).
The blocks of a page run in order in one namespace of their own (a page reads top to
bottom, so a block may use what an earlier one defined), with a fresh temporary
directory of the page as working directory (also on ``sys.path``, as for a script run
there). Running one block alone (``-k``) first replays the page's earlier blocks. After
a block fails, the page's later blocks fail naming it. Output is not compared: blocks
check what they claim with ``assert``.

A block may start with marker lines, ``# doctest: <marker> [<marker> ...]``:

``needs-object=NAME.c``
    compile a BPF C source with clang before the block runs, into ``NAME.o`` in the
    page's directory. The source is the page's own ```` ```c title="NAME.c" ```` block
    when there is one (so the C a guide shows is the C that is tested), else
    ``examples/bpf/NAME.c`` or ``tests/bpf/NAME.c``. The include path has the running
    kernel's ``vmlinux.h`` (tests/vmlinux.py), as a reader's would after
    ``ebpf btf dump > vmlinux.h``.
``requires=FEATURE`` (with optional ``min_kernel=X.Y``, ``config=CONFIG_X``, ``refusable``)
    the block needs a kernel feature: the same declaration as ``tests/kernelmatrix``'s
    ``requires`` (FEATURE is a feature-probe string such as ``map_type:RINGBUF``,
    ``program_type:LSM``, ``link_type:KPROBE_MULTI``, ``misc:<name>``). Where the probe
    says no, the block is skipped naming the feature; the kernel matrix runs it on its
    kernels (and fails it there if ``min_kernel`` says it must work). Such a block runs in
    a fresh namespace (the matrix runs it without the page's other blocks), so it must be
    self-contained.
``netns``
    run the block with its thread inside a fresh network namespace holding ``lo`` (up)
    and ``veth0`` (10.77.0.1/24), whose peer ``veth1`` (10.77.0.2/24) is in a second
    namespace; both are deleted afterwards. The host's interfaces are never touched.

An unknown marker is an error. bpffs (``/sys/fs/bpf``) and tracefs
(``/sys/kernel/tracing``) are mounted for every page, as on a usual distribution.
Blocks in other languages (``sh``, ``c``) are not run; C blocks named by
``needs-object`` are compiled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import gc
import hashlib
import importlib
import importlib.util
import inspect
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bpfbuild import BASE_FLAGS, CLANG, REPO_DIR
from kernelmatrix import requires

DOCS = REPO_DIR / "docs"
PAGES = [REPO_DIR / "README.md", *sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)]

# -- the API reference's module list (docs/_hooks/api_reference.py) ---------------------

_spec = importlib.util.spec_from_file_location("_api_reference",
                                               DOCS / "_hooks" / "api_reference.py")
assert _spec is not None and _spec.loader is not None
api_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api_reference)
MODULES = [m for m, _ in api_reference.documented_modules()]


# -- fenced blocks -------------------------------------------------------------------------

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)(?P<attrs>.*)$")
MARKER = re.compile(r"^#\s*doctest:\s*(?P<rest>.*)$")
KNOWN_MARKERS = {"needs-object", "requires", "min_kernel", "config", "refusable", "netns"}


@dataclasses.dataclass
class Block:
    page: pathlib.Path
    line: int                       # 1-based line of the block's first code line
    lang: str
    title: str | None
    code: str
    markers: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def page_name(self) -> str:
        try:
            return str(self.page.relative_to(REPO_DIR))
        except ValueError:
            return str(self.page)

    @property
    def id(self) -> str:
        return f"{self.page_name}:{self.line}"

    @property
    def alone(self) -> bool:
        """Runs in a fresh namespace (a kernel-feature block the matrix runs by itself)."""
        return "requires" in self.markers


def parse_blocks(page: pathlib.Path) -> list[Block]:
    """Every fenced block of a Markdown page (fences may be indented, as in admonitions)."""
    blocks: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m.group("indent"), m.group("fence")
        tm = re.search(r'title="([^"]*)"', m.group("attrs"))
        start = i + 1
        j = start
        while j < len(lines) and not (lines[j].strip().startswith(fence)
                                      and lines[j].strip().strip(fence[0]) == ""):
            j += 1
        if j == len(lines):
            raise ValueError(f"{page}:{i + 1}: unclosed code fence")
        body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[start:j]]
        blocks.append(Block(page, start + 1, m.group("lang").lower(),
                            tm.group(1) if tm else None, "\n".join(body) + "\n"))
        i = j + 1
    for b in blocks:
        for ln in b.code.splitlines():
            mm = MARKER.match(ln.strip())
            if not mm:
                continue
            for tok in mm.group("rest").split():
                key, _, value = tok.partition("=")
                if key not in KNOWN_MARKERS:
                    raise ValueError(f"{b.id}: unknown doctest marker {key!r}")
                b.markers.setdefault(key, []).append(value)
    return blocks


def python_blocks(page: pathlib.Path) -> list[Block]:
    return [b for b in parse_blocks(page) if b.lang in ("python", "py")]


def _params() -> list[Any]:
    out = []
    for page in PAGES:
        for b in python_blocks(page):
            marks = []
            if "requires" in b.markers:
                m = b.markers
                marks.append(requires(m["requires"][0],
                                      min_kernel=(m.get("min_kernel") or [None])[0],
                                      config=m.get("config", ()),
                                      refusable="refusable" in m))
            out.append(pytest.param(b, id=b.id, marks=marks))
    return out


# -- compiling the objects blocks need ---------------------------------------------------------

OBJ_CACHE = REPO_DIR / ".cache" / "docs-bpf"


def _source_for(block: Block, name: str) -> tuple[str, str]:
    """(C source, where it came from) of needs-object=NAME."""
    for b in parse_blocks(block.page):
        if b.lang == "c" and b.title == name:
            return b.code, f"{block.page_name}:{b.line}"
    for d in (REPO_DIR / "examples" / "bpf", REPO_DIR / "tests" / "bpf"):
        for cand in (d / name, d / f"{name}.c"):
            if cand.is_file():
                return cand.read_text(), str(cand.relative_to(REPO_DIR))
    raise FileNotFoundError(f"{block.id}: needs-object={name}: no ```c title=\"{name}\" block on "
                            "the page, and no such file in examples/bpf or tests/bpf")


def compile_object(block: Block, name: str, outdir: pathlib.Path | None,
                   btf_path: str | None = None) -> pathlib.Path:
    """Compile needs-object=NAME into outdir/<NAME without .c>.o (cached by content),
    against the vmlinux.h of `btf_path` (default: the running kernel's BTF); with
    `outdir` None, only into the cache (returned)."""
    from vmlinux import VMLINUX_BTF, vmlinux_h

    source, origin = _source_for(block, name)
    flags = [*BASE_FLAGS, "-target", "bpf", f"-I{vmlinux_h(btf_path or VMLINUX_BTF).parent}",
             f"-I{REPO_DIR / 'tests' / 'bpf'}", f"-I{REPO_DIR / 'examples' / 'bpf'}"]
    key = hashlib.sha256("\0".join([source, *flags]).encode()).hexdigest()[:32]
    OBJ_CACHE.mkdir(parents=True, exist_ok=True, mode=0o700)
    cached = OBJ_CACHE / f"{key}.o"
    if not cached.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            src = pathlib.Path(tmp) / (name if name.endswith(".c") else name + ".c")
            src.write_text(source)
            proc = subprocess.run([CLANG, *flags, str(src), "-o", str(cached) + ".tmp"],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise AssertionError(f"{origin}: {CLANG} failed:\n{proc.stderr}")
            os.replace(str(cached) + ".tmp", cached)
    if outdir is None:
        return cached
    out = outdir / (name.removesuffix(".c") + ".o")
    shutil.copyfile(cached, out)
    return out


def prewarm_objects(btf_paths: list[str]) -> tuple[int, int]:
    """Compile every object the pages' blocks need, for each kernel BTF in `btf_paths`
    (the kernel matrix builds them on the host before the guests boot: clang under TCG
    is 20-50x slower). Returns (compiled or cached, wanted); failures are left for the
    block's test to report."""
    wanted: dict[tuple[pathlib.Path, str], Block] = {}  # a block per page and object
    for page in PAGES:
        for b in python_blocks(page):
            for name in b.markers.get("needs-object", []):
                wanted.setdefault((page, name), b)
    ok = total = 0
    for btf_path in btf_paths:
        for (_, name), block in sorted(wanted.items(), key=lambda kv: kv[0]):
            total += 1
            try:
                compile_object(block, name, None, btf_path)
                ok += 1
            except (AssertionError, OSError, subprocess.SubprocessError):
                pass
    return ok, total


# -- running a page ------------------------------------------------------------------------


@dataclasses.dataclass
class PageState:
    cwd: pathlib.Path
    namespace: dict[str, Any]
    done: set[int] = dataclasses.field(default_factory=set)
    failed: Block | None = None

    def close(self) -> None:
        self.namespace.clear()
        gc.collect()
        shutil.rmtree(self.cwd, ignore_errors=True)


_STATES: dict[pathlib.Path, PageState] = {}


def _fresh_namespace() -> dict[str, Any]:
    return {"__name__": "__doc_snippet__", "__builtins__": __builtins__}


@contextlib.contextmanager
def _netns() -> Iterator[None]:
    from ebpf.link import in_netns

    name = f"ebpf-doc-{uuid.uuid4().hex[:8]}"
    peer = name + "-peer"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", name)
    ip("netns", "add", peer)
    try:
        ip("-n", name, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
           "netns", peer)
        ip("-n", name, "addr", "add", "10.77.0.1/24", "dev", "veth0")
        ip("-n", peer, "addr", "add", "10.77.0.2/24", "dev", "veth1")
        for ns, dev in ((name, "veth0"), (peer, "veth1"), (name, "lo"), (peer, "lo")):
            ip("-n", ns, "link", "set", dev, "up")
        with in_netns(name):
            yield
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", peer], check=False, capture_output=True)


def _exec(block: Block, namespace: dict[str, Any], cwd: pathlib.Path) -> None:
    for name in block.markers.get("needs-object", []):
        compile_object(block, name, cwd)
    # Line numbers of tracebacks are the Markdown file's.
    code = compile("\n" * (block.line - 1) + block.code, block.page_name, "exec")
    old_cwd = os.getcwd()
    os.chdir(cwd)
    sys.path.insert(0, str(cwd))
    try:
        with _netns() if "netns" in block.markers else contextlib.nullcontext():
            exec(code, namespace)
    finally:
        sys.path.remove(str(cwd))
        os.chdir(old_cwd)


def run_block(block: Block) -> None:
    page_blocks = python_blocks(block.page)
    state = _STATES.get(block.page)
    if state is None:
        state = PageState(pathlib.Path(tempfile.mkdtemp(prefix="ebpf-docs-")), _fresh_namespace())
        _STATES[block.page] = state
    if state.failed is not None:
        pytest.fail(f"an earlier block of the page failed ({state.failed.id})")
    # Replay what a reader ran before this block (when it is selected alone).
    for b in page_blocks:
        if b.line >= block.line:
            break
        if b.line not in state.done and not b.alone:
            try:
                _exec(b, state.namespace, state.cwd)
            except BaseException:
                state.failed = b
                raise
            state.done.add(b.line)
    try:
        _exec(block, _fresh_namespace() if block.alone else state.namespace, state.cwd)
    except BaseException:
        if not block.alone:
            state.failed = block
        raise
    finally:
        state.done.add(block.line)
        if block.line == page_blocks[-1].line:
            state.close()
            del _STATES[block.page]


@pytest.fixture(scope="module")
def _mounts() -> Iterator[None]:
    """bpffs and tracefs, as a distribution mounts them (undone afterwards if we mounted)."""
    made = []
    for path, fstype in (("/sys/fs/bpf", "bpf"), ("/sys/kernel/tracing", "tracefs")):
        with open("/proc/self/mounts") as f:
            if any(ln.split()[1:3] == [path, fstype] for ln in f):
                continue
        os.makedirs(path, exist_ok=True)
        subprocess.run(["mount", "-t", fstype, fstype, path], check=True)
        made.append(path)
    try:
        yield
    finally:
        for st in _STATES.values():
            st.close()
        _STATES.clear()
        for path in made:
            subprocess.run(["umount", "-l", path], check=False)


@pytest.mark.parametrize("block", _params())
def test_snippet(block: Block, _mounts: None) -> None:
    run_block(block)


# -- the runner itself -----------------------------------------------------------------------


def test_runner_collects_and_fails(tmp_path: pathlib.Path) -> None:
    """A failing block fails its item, markers parse, a C block named by needs-object is
    compiled, and the page's later blocks fail naming the first failure."""
    page = tmp_path / "page.md"
    page.write_text(
        '```c title="t.bpf.c"\n#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
        'SEC("socket") int f(void *ctx) { return 7; }\n'
        'char LICENSE[] SEC("license") = "GPL";\n```\n'
        "```python\n# doctest: needs-object=t.bpf.c\nimport ebpf\n"
        'spec = ebpf.load_collection_spec("t.bpf.o")\n```\n'
        "text\n\n```python\nassert spec.programs['f'].name == 'g'\n```\n"
        "```python\nx = 1\n```\n")
    blocks = python_blocks(page)
    assert [b.line for b in blocks] == [8, 15, 18]
    assert blocks[0].markers == {"needs-object": ["t.bpf.c"]}
    try:
        run_block(blocks[0])
        with pytest.raises(AssertionError):
            run_block(blocks[1])
        with pytest.raises(pytest.fail.Exception, match=r"page\.md:15"):
            run_block(blocks[2])
    finally:
        if page in _STATES:
            _STATES.pop(page).close()
    bad = tmp_path / "bad.md"
    bad.write_text("```python\n# doctest: no-such-marker\n```\n")
    with pytest.raises(ValueError, match="unknown doctest marker"):
        parse_blocks(bad)


def test_every_page_is_in_the_nav() -> None:
    """A guide that is not in mkdocs.yml's nav is unreachable from the site."""
    nav = (REPO_DIR / "mkdocs.yml").read_text()
    for page in DOCS.rglob("*.md"):
        if "_hooks" in page.parts:
            continue
        assert str(page.relative_to(DOCS)) in nav, f"{page} is not in mkdocs.yml's nav"


# -- docstrings of the public API ---------------------------------------------------------


def public_names(mod: Any) -> list[str]:
    """`__all__`, or else the names the module defines itself (not imports)."""
    names = getattr(mod, "__all__", None)
    if names is not None:
        return list(names)
    return [n for n, v in vars(mod).items() if not n.startswith("_")
            and getattr(v, "__module__", None) == mod.__name__
            and (inspect.isclass(v) or inspect.isroutine(v))]


def own_docstring(obj: Any) -> str | None:
    """The object's own docstring (a dataclass's generated signature is not one)."""
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj) and doc \
            and doc.startswith(obj.__name__ + "("):
        return None
    return doc.strip() if doc else None


def undocumented(module: str) -> list[str]:
    """Public names of `module` (and public methods/properties of its public classes)
    without a docstring. A method may inherit its docstring from the method it overrides."""
    mod = importlib.import_module(module)
    missing = [] if mod.__doc__ else [f"{module} (module docstring)"]
    for name in public_names(mod):
        obj = getattr(mod, name)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if not own_docstring(obj):
            missing.append(f"{module}.{name}")
        if not inspect.isclass(obj) or not obj.__module__.startswith("ebpf") \
                or issubclass(obj, enum.Enum):
            continue
        for attr, raw in vars(obj).items():
            if attr.startswith("_"):
                continue
            fn = raw.fget if isinstance(raw, property) else \
                raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            if inspect.isfunction(fn) and not inspect.getdoc(getattr(obj, attr, fn)) \
                    and not _inherited_doc(obj, attr):
                missing.append(f"{module}.{name}.{attr}")
    return missing


def _inherited_doc(cls: type, attr: str) -> bool:
    for base in cls.__mro__[1:]:
        raw = vars(base).get(attr)
        if raw is not None:
            fn = raw.fget if isinstance(raw, property) else raw
            return bool(getattr(fn, "__doc__", None))
    return False


@pytest.mark.parametrize("module", MODULES)
def test_public_names_have_docstrings(module: str) -> None:
    missing = undocumented(module)
    assert not missing, f"public names without a docstring: {', '.join(missing)}"


def test_docstring_check_catches_a_missing_one() -> None:
    class Documented:
        """Yes."""

        def method(self) -> None:
            pass

    @dataclasses.dataclass
    class Generated:
        x: int

    assert own_docstring(Documented) == "Yes."
    assert own_docstring(Generated) is None
    assert not inspect.getdoc(Documented.method)


def test_every_public_module_has_a_reference_page() -> None:
    """Every public submodule `ebpf` exposes (and each listed module that exists) is in
    the API reference list of docs/_hooks/api_reference.py."""
    import ebpf

    listed = {m for m, _ in api_reference.MODULES}
    for sub in sorted(ebpf._SUBMODULES - {"elf"}):
        assert f"ebpf.{sub}" in listed, f"ebpf.{sub} has no API reference page"
    for m in MODULES:
        importlib.import_module(m)


# -- names the guides cite ---------------------------------------------------------------

CITED = re.compile(r"`(ebpf(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?:\(\))?`")


def cited_names() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        if page.name == "INTERFACES.md":
            continue
        for name in sorted(set(CITED.findall(page.read_text()))):
            out.append((str(page.relative_to(REPO_DIR)), name))
    return out


def resolve(dotted: str) -> Any:
    """Import the longest module prefix of `dotted`, then get the attributes after it."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize(("page", "name"), cited_names())
def test_cited_name_exists(page: str, name: str) -> None:
    """Every `ebpf.x.y` a page or the README names in backquotes exists (the migration
    tables' equivalents included)."""
    try:
        resolve(name)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"{page} cites {name}, which does not exist: {e}")
