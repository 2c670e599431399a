"""`ebpf gen`: generated modules import, have to_ctypes' exact layouts, load and run in
the kernel through their typed wrappers, and pass mypy --strict and ruff."""

from __future__ import annotations

import ast
import ctypes
import hashlib
import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import types
from typing import Any

import pytest
from bpfbuild import CACHE_DIR, CLANG, REPO_DIR, BPFBuildError, compile_bpf, standalone_sources
from hypothesis import given, settings
from hypothesis import strategies as st
from test_btf_ctypes import check_layout
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf import btf
from ebpf.btf.ctypes_conv import to_ctypes
from ebpf.cli import main
from ebpf.gen import default_name, generate
from ebpf.gen.ctypes_src import docstring

EXECSNOOP_C = REPO_DIR / "examples" / "bpf" / "execsnoop.bpf.c"
_counter = [0]


def compile_execsnoop() -> pathlib.Path:
    """examples/bpf/execsnoop.bpf.c, built as examples/execsnoop.py builds it (cached)."""
    inc = vmlinux_include_dir()
    key = hashlib.sha256(EXECSNOOP_C.read_bytes() + str(inc).encode()).hexdigest()[:24]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    out = CACHE_DIR / f"execsnoop.bpf-{key}.o"
    if not out.is_file():
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run([CLANG, "-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86",
                        f"-I{inc}", "-c", str(EXECSNOOP_C), "-o", str(tmp)], check=True)
        os.replace(tmp, out)
    return out


def import_path(path: pathlib.Path) -> types.ModuleType:
    _counter[0] += 1
    name = f"_gen_{path.stem}_{_counter[0]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def gen_module(obj: pathlib.Path, directory: pathlib.Path, modname: str, **kw: Any
               ) -> types.ModuleType:
    path = directory / f"{modname}.py"
    path.write_text(generate(obj, **kw))
    return import_path(path)


# -- layouts ---------------------------------------------------------------------------


def same_layout(gen: Any, ref: Any, where: str) -> None:
    """Generated ctypes type `gen` has the layout of to_ctypes' `ref`, recursively."""
    assert ctypes.sizeof(gen) == ctypes.sizeof(ref), where
    if isinstance(ref, type) and issubclass(ref, ctypes.Array):
        assert issubclass(gen, ctypes.Array) and gen._length_ == ref._length_, where
        same_layout(gen._type_, ref._type_, where + "[]")
        return
    if isinstance(ref, type) and issubclass(ref, (ctypes.Structure, ctypes.Union)):
        assert issubclass(gen, ctypes.Union) == issubclass(ref, ctypes.Union), where
        assert [f[0] for f in gen._fields_] == [f[0] for f in ref._fields_], where
        assert getattr(gen, "_anonymous_", ()) == getattr(ref, "_anonymous_", ()), where
        for prop in getattr(ref, "_btf_props_", ()):      # bitfields ctypes cannot place
            assert isinstance(getattr(gen, prop), property), (where, prop)
        for gf, rf in zip(gen._fields_, ref._fields_, strict=True):
            gd, rd = getattr(gen, gf[0]), getattr(ref, rf[0])
            assert (gd.offset, gd.size) == (rd.offset, rd.size), (where, gf[0])
            assert gf[2:] == rf[2:], (where, gf[0])     # bitfield width
            same_layout(gf[1], rf[1], f"{where}.{gf[0]}")
        return
    assert gen is ref, where


def check_module_layouts(mod: types.ModuleType, obj: pathlib.Path) -> int:
    """Compare every named struct/union class of `mod` with to_ctypes; returns how many."""
    spec = btf.load_spec(str(obj))
    n = 0
    for cname in mod.__all__:
        cls = getattr(mod, cname)
        bt = getattr(cls, "_btf_type_", "")
        kind, _, tname = bt.partition(" ")
        if kind not in ("struct", "union") or tname == "(anon)":
            continue
        t = spec.type_by_name(tname, btf.Struct if kind == "struct" else btf.Union)
        same_layout(cls, to_ctypes(t), cname)
        check_layout(t, cls)
        n += 1
    return n


@pytest.fixture(scope="module")
def outdir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("gen")


@pytest.fixture(scope="module")
def globals_mod(outdir: pathlib.Path) -> types.ModuleType:
    return gen_module(compile_bpf("loader_globals"), outdir, "loader_globals_bpf",
                      name="LoaderGlobals")


@pytest.fixture(scope="module")
def execsnoop_obj() -> pathlib.Path:
    return compile_execsnoop()


def test_default_name() -> None:
    assert default_name("examples/bpf/execsnoop.bpf.o") == "Execsnoop"
    assert default_name("loader_globals.o") == "LoaderGlobals"
    assert default_name("2fast.o") == "T2fast"


def test_btf_kinds_layouts(outdir: pathlib.Path) -> None:
    obj = compile_bpf("btf_kinds")
    mod = gen_module(obj, outdir, "btf_kinds_bpf", name="BtfKinds")
    assert check_module_layouts(mod, obj) == 5  # bits, inner, packed, aligned, kinds
    k = mod.Kinds()
    k.bits.c = (1 << 40) - 1        # a bitfield ctypes cannot place: a property
    k.bits.b = -3
    assert (k.bits.c, k.bits.b) == ((1 << 40) - 1, -3)
    k.inner.y = 7                   # through the anonymous union
    assert k.inner.y == 7 and k.inner.named.d == 0.0
    k.bits.name = b"comm"
    assert k.bits.name == b"comm"
    assert mod.Small.SMALL_A == -1 and mod.Big.BIG_A == 0xffffffffff
    assert issubclass(mod.Small, __import__("enum").IntEnum)
    # typed variables: a struct by value and scalars
    spec = mod.BtfKinds.load_spec()
    assert spec.counter == 1 and spec.config == 42
    spec.global_kinds = {"bits": {"a": 5}}
    assert spec.global_kinds["bits"]["a"] == 5
    spec.global_kinds = mod.Kinds()             # a ctypes instance of the generated class
    assert spec.global_kinds["bits"]["a"] == 0


def test_loader_globals_in_kernel(globals_mod: types.ModuleType) -> None:
    LG = globals_mod.LoaderGlobals
    spec = LG.load_spec()
    assert isinstance(spec, globals_mod.LoaderGlobalsSpec)
    assert isinstance(spec.spec, ebpf.CollectionSpec)
    assert spec.cfg_magic == 0x1234 and spec.cfg_name == "default"
    assert spec.cfg_pair == {"a": 1, "b": 2, "c": 3}
    spec.cfg_magic = 0x4321
    assert LG.load_spec().cfg_magic == 0x1234      # each load_spec() is fresh
    with LG.load(spec) as objs:
        assert isinstance(objs.read_config, ebpf.Program)
        assert isinstance(objs.rodata, ebpf.Map) and isinstance(objs.data_custom, ebpf.Map)
        assert objs.read_config.test_run().retval == 0x4321
        assert objs.cfg_magic == 0x4321            # .rodata: readable live
        with pytest.raises(AttributeError):
            objs.cfg_magic = 1                     # ... but not writable
        assert (objs.data_counter, objs.bss_hits, objs.custom_data) == (100, 0, 42)
    with LG.load() as objs:                        # defaults
        assert objs.check_defaults.test_run().retval == 0
        assert (objs.bss_hits, objs.bss_bytes, objs.data_counter) == (1, [0, 0xaa, 0], 101)
        objs.data_counter = 7
        assert objs.data_counter == 7
    assert objs.collection._closed
    pair = globals_mod.Pair(a=1, b=2, c=3)
    assert ctypes.sizeof(pair) == 8 and bytes(pair)[:7] == b"\1\0\0\0\2\0\3"


def test_docstrings(globals_mod: types.ModuleType) -> None:
    LG = globals_mod.LoaderGlobals
    assert 'SEC("syscall")' in (LG.read_config.__doc__ or "")
    assert "ARRAY" in (LG.rodata.__doc__ or "")
    assert ".rodata" in (globals_mod.LoaderGlobalsSpec.cfg_magic.__doc__ or "")
    assert "unsigned int" in (globals_mod.LoaderGlobalsSpec.cfg_magic.__doc__ or "")
    for name in globals_mod.__all__:
        assert getattr(globals_mod, name).__doc__


def test_execsnoop(outdir: pathlib.Path, execsnoop_obj: pathlib.Path) -> None:
    mod = gen_module(execsnoop_obj, outdir, "execsnoop_bpf", name="Execsnoop")
    src = (outdir / "execsnoop_bpf.py").read_text()
    sha = hashlib.sha256(execsnoop_obj.read_bytes()).hexdigest()
    assert src.splitlines()[0].startswith(
        f"# Generated by `ebpf gen` from {execsnoop_obj.name} (sha256 {sha}); do not edit.")
    assert check_module_layouts(mod, execsnoop_obj) == 1
    Event = mod.Event
    assert ctypes.sizeof(Event) == 168
    raw = bytearray(168)
    raw[0:4] = (42).to_bytes(4, "little")
    raw[24:28] = b"bash"
    ev = Event.from_buffer_copy(raw)
    assert (ev.pid, ev.comm) == (42, b"bash")
    spec = mod.Execsnoop.load_spec()
    spec.min_uid = 1000
    with mod.Execsnoop.load(spec) as objs:
        assert isinstance(objs.handle_exec, ebpf.Program)
        assert isinstance(objs.events, ebpf.Map) and isinstance(objs.execs_by_uid, ebpf.Map)
        assert objs.min_uid == 1000 and objs.dropped == 0
        objs.dropped = 3
        assert objs.dropped == 3
        assert len(list(objs.execs_by_uid.keys())) == 0
    # embedded without its DWARF (zeroed: same layout, same BTF), so the module is small
    obj = execsnoop_obj.read_bytes()
    embedded = mod._object_bytes()
    assert len(embedded) == len(obj) and embedded != obj
    assert btf.load_spec(embedded).type_by_name("event").size == 168
    assert len(src) < 60_000 < len(obj)


def test_no_embed(tmp_path: pathlib.Path) -> None:
    obj = compile_bpf("loader_globals")
    src = generate(obj, name="LG", embed=False, filename="lg.bpf.o")
    assert "_OBJECT =" not in src and '"lg.bpf.o"' in src
    (tmp_path / "lg_bpf.py").write_text(src)
    shutil.copy(obj, tmp_path / "lg.bpf.o")
    mod = import_path(tmp_path / "lg_bpf.py")
    spec = mod.LG.load_spec()
    spec.cfg_magic = 5
    with mod.LG.load(spec) as objs:
        assert objs.read_config.test_run().retval == 5
    # another object in its place is refused (the bindings would be stale)
    shutil.copy(compile_bpf("btf_kinds"), tmp_path / "lg.bpf.o")
    mod2 = import_path(tmp_path / "lg_bpf.py")
    with pytest.raises(ebpf.Error, match="regenerate"):
        mod2.LG.load_spec()
    # the default file name is the object's
    assert f'"{obj.name}"' in generate(obj, name="LG", embed=False)
    with pytest.raises(ValueError):
        generate(obj.read_bytes(), name="LG", embed=False)
    with pytest.raises(ValueError):
        generate(obj.read_bytes())


def test_cli(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    obj = tmp_path / "loader_globals.bpf.o"
    shutil.copy(compile_bpf("loader_globals"), obj)
    out = tmp_path / "lg_bpf.py"
    assert main(["gen", str(obj), "-o", str(out)]) == 0
    mod = import_path(out)
    assert mod.LoaderGlobals.load_spec().cfg_pad == 7
    assert main(["gen", str(obj), "--name", "Other", "--no-embed"]) == 0
    printed = capsys.readouterr().out
    assert "class Other:" in printed and "class OtherSpec:" in printed
    assert '_OBJECT_FILE = "loader_globals.bpf.o"' in printed


@pytest.mark.parametrize("content", [b"not an ELF file at all",
                                     b"\x7fELF\x02\x01\x01" + b"\0" * 9])
def test_cli_errors(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str],
                    content: bytes) -> None:
    bad = tmp_path / "bad.o"
    bad.write_bytes(content)
    with pytest.raises(ebpf.ELFError):
        generate(bad)
    assert main(["gen", str(bad), "-o", str(tmp_path / "x.py")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ebpf: ") and err.count("\n") == 1
    assert not (tmp_path / "x.py").exists()


def test_cli_damaged(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = compile_bpf("loader_globals").read_bytes()
    bad = tmp_path / "cut.o"
    bad.write_bytes(data[: len(data) // 2])
    assert main(["gen", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ebpf: ") and err.count("\n") == 1
    assert main(["gen", str(tmp_path / "missing.o")]) == 1


# -- every test object: imports, layouts, mypy --strict, ruff ----------------------------


def _sweep_objects() -> list[tuple[str, pathlib.Path]]:
    objs = []
    for src in standalone_sources():
        try:
            objs.append((src.stem, compile_bpf(src.stem)))
        except BPFBuildError:
            continue  # needs extra flags (vmlinux.h)
    return objs


def test_every_object(outdir: pathlib.Path, globals_mod: types.ModuleType,
                      execsnoop_obj: pathlib.Path) -> None:
    sweep = outdir / "sweep"
    sweep.mkdir()
    objs = _sweep_objects()
    assert len(objs) >= 20
    checked = 0
    for stem, obj in objs:
        mod = gen_module(obj, sweep, f"{stem}_bpf", name=default_name(stem + ".o"))
        checked += check_module_layouts(mod, obj)
        spec = getattr(mod, default_name(stem + ".o")).load_spec()
        assert set(spec.spec.programs) == set(ebpf.load_collection_spec(obj).programs)
    assert checked >= 10
    for f in ("loader_globals_bpf.py", "btf_kinds_bpf.py", "execsnoop_bpf.py"):
        if (outdir / f).exists():
            shutil.copy(outdir / f, sweep / f"top_{f}")
    if not (sweep / "top_execsnoop_bpf.py").exists():
        (sweep / "top_execsnoop_bpf.py").write_text(generate(execsnoop_obj))
    env = dict(os.environ, MYPYPATH=str(REPO_DIR), PYTHONPATH=str(REPO_DIR))
    mypy = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(REPO_DIR / ".cache" / "mypy-gen"), str(sweep)],
        capture_output=True, text=True, env=env, cwd=sweep, check=False)
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated",
         "--select", "F,E,W", str(sweep)],
        capture_output=True, text=True, cwd=sweep, check=False)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr


NAMES_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
char _license[] SEC("license") = "GPL";
struct rec { unsigned int from; unsigned long long bytes; int l; char int_[4]; };
typedef struct { int a; unsigned int flag : 1; unsigned int rest : 31; } anon_t;
enum state { name = 1, value = 2, __MAX = 3, real = 4 };
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4);
         __type(key, anon_t); __type(value, struct rec); } load SEC(".maps");
volatile int spec = 1;
volatile int collection;
volatile unsigned long long bytes = 2;
volatile int None = 3;
volatile int lambda = 4;
volatile enum state st = value;
const volatile int __secret = 5;
const volatile int property = 6;
const struct rec *unused_rec __attribute__((unused));
SEC("syscall") int close(void *ctx) { return spec + None + lambda + __secret + property; }
SEC("syscall") int copy(void *ctx) { return bytes + collection + st; }
"""


def test_file_name_cannot_inject_code(tmp_path: pathlib.Path) -> None:
    obj = tmp_path / "x\nraise SystemExit('injected')\n.o"
    shutil.copyfile(compile_bpf("loader_globals"), obj)
    src = generate(obj, name="Globals")
    tree = ast.parse(src)
    assert not any(isinstance(n, ast.Name) and n.id == "SystemExit" for n in ast.walk(tree))
    assert "injected" in src.splitlines()[0]         # still in the comment


def test_awkward_names(tmp_path: pathlib.Path) -> None:
    """Keywords, the classes' own methods and annotation names as C names."""
    src = tmp_path / "names.bpf.c"
    src.write_text(NAMES_C)
    obj = tmp_path / "names.bpf.o"
    subprocess.run([CLANG, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
                    "-c", str(src), "-o", str(obj)], check=True)
    out = tmp_path / "names_bpf.py"
    out.write_text(generate(obj))
    mod = import_path(out)
    spec = mod.Names.load_spec()
    assert (spec.spec_, spec.bytes_, spec.None_, spec.lambda_, spec._secret,
            spec.property_) == (1, 2, 3, 4, 5, 6)
    assert spec.st == mod.State.value_
    spec.bytes_ = 10
    with mod.Names.load(spec) as objs:
        assert isinstance(objs.close_, ebpf.Program) and isinstance(objs.load_, ebpf.Map)
        assert objs.close_.test_run().retval == 1 + 3 + 4 + 5 + 6
        assert objs.copy.test_run().retval == 10 + 0 + 2
        objs.collection_ = 100
        assert objs.copy.test_run().retval == 112
        k = mod.AnonT(a=1)
        k.flag = 1
        objs.load_[k] = mod.Rec(bytes=7)
        got = objs.load_[bytes(k)]          # the Map decodes with to_ctypes: same layout
        assert mod.Rec.from_buffer_copy(bytes(got)).bytes == 7
    assert check_module_layouts(mod, obj) == 1
    rec = mod.Rec()
    rec.l = 3
    assert getattr(rec, "from") == 0 and rec.l == 3
    env = dict(os.environ, MYPYPATH=str(REPO_DIR), PYTHONPATH=str(REPO_DIR))
    for cmd in ([sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir",
                 str(REPO_DIR / ".cache" / "mypy-gen"), str(out)],
                [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated",
                 "--select", "F,E,W", str(out)]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path,
                           check=False)
        assert r.returncode == 0, r.stdout + r.stderr


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from('ab "\\\n\t\x00\x1b\x7f\u2028\u00e9\''), max_size=150))
def test_docstrings_of_any_names_parse(text: str) -> None:
    """Names in docstrings come from the object (section names can hold anything): the
    generated docstring is valid Python and says the same (whitespace aside)."""
    if not text.strip():
        return
    src = "def f():\n" + "\n".join(docstring(text, "    ")) + "\n    pass\n"
    tree = ast.parse(src)
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef)
    doc = ast.get_docstring(func, clean=False)
    assert doc is not None and "".join(doc.split()) == "".join(text.split())

