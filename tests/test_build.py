"""`ebpf build` / `ebpf.gen.build.build()`: clang found by its rules, vmlinux.h generated
and cached by the BTF's hash, CO-RE flags, objects cached by content (no recompile on a
hit), typed errors for a missing clang, missing libbpf headers and compile errors."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest

import ebpf
from ebpf.gen.build import (
    BuildError,
    CompileError,
    ToolchainNotFoundError,
    build,
    find_clang,
    target_arch,
)

REPO = pathlib.Path(__file__).resolve().parent.parent

CORE_SRC = r"""
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "answer.h"

char LICENSE[] SEC("license") = "GPL";

const volatile int bonus = 0;
__u64 seen_pid = 0;

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	seen_pid = BPF_CORE_READ(task, tgid);
	return 0;
}

SEC("xdp")
int answer(struct xdp_md *ctx)
{
	return ANSWER + bonus;  /* XDP_PASS (2) + bonus */
}
"""

# uapi headers instead of vmlinux.h: builds without generating one
PLAIN_SRC = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "answer.h"

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int answer(struct xdp_md *ctx)
{
#if !defined(__TARGET_ARCH_%(arch)s)
#error "__TARGET_ARCH_%(arch)s is not defined"
#endif
	return ANSWER;
}
"""


def _write(directory: pathlib.Path, src: str = PLAIN_SRC, answer: int = 2) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "answer.h").write_text(f"#define ANSWER {answer}\n")
    path = directory / "prog.bpf.c"
    path.write_text(src % {"arch": target_arch()} if src is PLAIN_SRC else src)
    return path


def _xdp_retval(obj: str | os.PathLike[str], **variables: int) -> int:
    spec = ebpf.load_collection_spec(os.fspath(obj))
    for name, value in variables.items():
        spec.variables[name].set(value)
    with ebpf.Collection(spec) as coll:
        return int(coll.programs["answer"].test_run(data=b"\0" * 64).retval)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """One cache for the module's CO-RE builds: vmlinux.h is generated once."""
    return tmp_path_factory.mktemp("ebpf-cache")


@pytest.fixture
def clang_log(tmp_path: pathlib.Path) -> tuple[str, pathlib.Path]:
    """A $CLANG wrapper that logs each invocation's arguments and runs the real clang."""
    log = tmp_path / "clang.log"
    wrapper = tmp_path / "bin" / "logging-clang"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {find_clang().path} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper), log


def _compiles(log: pathlib.Path) -> int:
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if " -c " in f" {line} ")


def test_core_object_builds_loads_and_runs(tmp_path: pathlib.Path,
                                           shared_cache: pathlib.Path) -> None:
    src = _write(tmp_path, CORE_SRC)
    obj = build(src, cache_dir=shared_cache)
    assert obj.parent == shared_cache / "build" and obj.name.startswith("prog-")
    # vmlinux.h of the running kernel, cached by the BTF's SHA-256
    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:32]
    header = shared_cache / "vmlinux" / digest / "vmlinux.h"
    assert "struct task_struct {" in header.read_text()
    # CO-RE relocations against the kernel, .rodata template, the program runs
    spec = ebpf.load_collection_spec(str(obj))
    assert spec.btf is not None
    assert any("core" in i.meta for i in spec.programs["on_getpid"].instructions)
    assert _xdp_retval(obj) == 2
    assert _xdp_retval(obj, bonus=1) == 3
    with ebpf.Collection(spec) as coll:
        assert coll.programs["on_getpid"].fileno() >= 0
    for d in (shared_cache, shared_cache / "build", header.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_cache_hit_does_not_recompile(tmp_path: pathlib.Path,
                                      clang_log: tuple[str, pathlib.Path]) -> None:
    clang, log = clang_log
    src = _write(tmp_path / "src")
    cache = tmp_path / "cache"
    obj = build(src, cache_dir=cache, clang=clang)
    assert _compiles(log) == 1
    mtime = obj.stat().st_mtime_ns
    assert build(src, cache_dir=cache, clang=clang) == obj
    assert _compiles(log) == 1 and obj.stat().st_mtime_ns == mtime
    # written where asked; an `out` already right is left alone
    out = tmp_path / "out.bpf.o"
    assert build(src, out, cache_dir=cache, clang=clang) == out
    assert out.read_bytes() == obj.read_bytes() and _compiles(log) == 1
    out_mtime = out.stat().st_mtime_ns
    build(src, out, cache_dir=cache, clang=clang)
    assert out.stat().st_mtime_ns == out_mtime and _compiles(log) == 1
    # an included local header is part of the key: changing it recompiles
    (src.parent / "answer.h").write_text("#define ANSWER 1\n")
    changed = build(src, out, cache_dir=cache, clang=clang)
    assert _compiles(log) == 2 and _xdp_retval(changed) == 1
    # so are the flags
    build(src, cflags=["-DUNUSED=1"], cache_dir=cache, clang=clang)
    assert _compiles(log) == 3
    assert _xdp_retval(build(src, cache_dir=cache, clang=clang)) == 1
    assert _compiles(log) == 3


def test_clang_env_override(tmp_path: pathlib.Path, clang_log: tuple[str, pathlib.Path],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    clang, log = clang_log
    monkeypatch.setenv("CLANG", clang)
    assert find_clang().path == clang
    obj = build(_write(tmp_path / "src"), cache_dir=tmp_path / "cache")
    assert _compiles(log) == 1 and _xdp_retval(obj) == 2
    monkeypatch.setenv("CLANG", str(tmp_path / "no-such-clang"))
    with pytest.raises(ToolchainNotFoundError, match=r"\$CLANG") as e:
        find_clang()
    assert e.value.package == "clang"


def test_missing_clang_names_the_package(tmp_path: pathlib.Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.delenv("CLANG", raising=False)
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ToolchainNotFoundError, match="apt-get install clang") as e:
        build(_write(tmp_path / "src"), cache_dir=tmp_path / "cache")
    assert e.value.package == "clang" and isinstance(e.value, FileNotFoundError)
    # a `clang` older than 14 does not count
    old = empty / "clang"
    old.write_text("#!/bin/sh\necho 'clang version 11.0.1'\n")
    old.chmod(0o755)
    with pytest.raises(ToolchainNotFoundError, match="older than 14"):
        find_clang()
    # the command: one line on stderr, exit 1
    env = {**os.environ, "PATH": str(tmp_path)}
    env.pop("CLANG", None)
    r = subprocess.run([sys.executable, "-m", "ebpf", "build", str(tmp_path / "src" /
                        "prog.bpf.c")], capture_output=True, text=True, env=env, cwd=REPO)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("ebpf: no clang found on PATH") and r.stderr.count("\n") == 1


def test_compile_error_carries_clang_stderr(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "bad.bpf.c"
    src.write_text("#include <linux/bpf.h>\n\nint broken(void)\n{\n\treturn no_such_name;\n}\n")
    with pytest.raises(CompileError) as e:
        build(src, cache_dir=tmp_path / "cache")
    err = e.value
    assert isinstance(err, BuildError) and isinstance(err, ebpf.Error)
    assert err.returncode != 0 and err.source == str(src)
    assert f"{src}:5:9: error: use of undeclared identifier 'no_such_name'" in err.stderr
    assert "no_such_name" in err.summary and "\n" not in err.summary
    assert err.stderr.strip() in str(err)
    assert not list((tmp_path / "cache" / "build").iterdir())  # nothing half-written
    r = subprocess.run([sys.executable, "-m", "ebpf", "build", str(src), "-o",
                        str(tmp_path / "bad.o"), "--cache-dir", str(tmp_path / "cache")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and not (tmp_path / "bad.o").exists()
    assert "error: use of undeclared identifier 'no_such_name'" in r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith("ebpf: ") and "failed to compile" in last


def test_missing_libbpf_header_names_the_package(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "x.bpf.c"
    src.write_text("#include <linux/bpf.h>\n#include <bpf/bpf_no_such_header.h>\n")
    with pytest.raises(ToolchainNotFoundError, match="libbpf-dev") as e:
        build(src, cache_dir=tmp_path / "cache")
    assert e.value.package == "libbpf-dev"


def test_target_byte_order(tmp_path: pathlib.Path) -> None:
    src = _write(tmp_path / "src")
    for target, ei_data in (("bpfel", 1), ("bpfeb", 2)):
        obj = build(src, target=target, cache_dir=tmp_path / "cache")
        assert obj.read_bytes()[5] == ei_data
    with pytest.raises(ValueError, match="target must be one of"):
        build(src, target="x86_64", cache_dir=tmp_path / "cache")


def test_vmlinux_from_a_given_btf(tmp_path: pathlib.Path, shared_cache: pathlib.Path) -> None:
    """--btf: vmlinux.h comes from that BTF (here an object's own .BTF)."""
    types = tmp_path / "types.bpf.c"
    types.write_text("struct gadget { int weight; long long serial; };\n"
                     "struct gadget the_gadget;\n")
    btf_file = build(types, tmp_path / "types.o", cache_dir=shared_cache)
    src = tmp_path / "user.bpf.c"
    src.write_text('#include "vmlinux.h"\n'
                   "int size_of_gadget(void) { return sizeof(struct gadget); }\n")
    build(src, tmp_path / "user.o", btf=btf_file, cache_dir=shared_cache)
    digest = hashlib.sha256(btf_file.read_bytes()).hexdigest()[:32]
    header = (shared_cache / "vmlinux" / digest / "vmlinux.h").read_text()
    assert "struct gadget {" in header and "task_struct" not in header


def test_default_cache_directory_and_untrusted_files(tmp_path: pathlib.Path,
                                                     clang_log: tuple[str, pathlib.Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    clang, log = clang_log
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    src = _write(tmp_path / "src")
    obj = build(src, clang=clang)
    assert obj.parent == xdg / "ebpf" / "build"
    assert stat.S_IMODE((xdg / "ebpf").stat().st_mode) == 0o700
    # a cached object someone else could have written is not trusted: rebuilt
    obj.chmod(0o666)
    obj.write_bytes(b"not an object")
    assert build(src, clang=clang) == obj and _compiles(log) == 2
    assert _xdp_retval(obj) == 2 and stat.S_IMODE(obj.stat().st_mode) & 0o022 == 0
    # a base directory others can write to is not used as a cache at all
    xdg.chmod(0o777)
    try:
        other = build(src, clang=clang)
        assert not other.is_relative_to(xdg) and _xdp_retval(other) == 2
        out = build(src, tmp_path / "o.o", clang=clang)
        assert _xdp_retval(out) == 2
    finally:
        xdg.chmod(0o700)
    # and an explicit --cache-dir that is not ours alone is refused
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(BuildError, match="only it can write to"):
        build(src, cache_dir=shared, clang=clang)


def test_cli_build_and_gen_from_source(tmp_path: pathlib.Path,
                                       shared_cache: pathlib.Path) -> None:
    src = _write(tmp_path / "src", CORE_SRC)
    cache = ["--cache-dir", str(shared_cache)]
    r = subprocess.run([sys.executable, "-m", "ebpf", "build", str(src), *cache],
                       capture_output=True, text=True, cwd=REPO, check=True)
    default_out = src.parent / "prog.bpf.o"
    assert r.stdout == f"{default_out}\n" and _xdp_retval(default_out) == 2
    out = tmp_path / "le.o"
    subprocess.run([sys.executable, "-m", "ebpf", "build", str(src), "-o", str(out),
                    "--target", "bpfel", "--cflags", "-DANSWER_UNUSED=1 -Wall", *cache],
                   capture_output=True, text=True, cwd=REPO, check=True)
    assert out.read_bytes()[5] == 1 and _xdp_retval(out) == 2
    # `ebpf gen SRC.bpf.c` builds, then writes the typed module
    module = tmp_path / "prog_bpf.py"
    r = subprocess.run([sys.executable, "-m", "ebpf", "gen", str(src), "-o", str(module),
                        *cache], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    text = module.read_text()
    assert "from prog.bpf.o" in text and "class Prog:" in text and "class ProgSpec:" in text
    spec_ = importlib.util.spec_from_file_location("prog_bpf", module)
    assert spec_ is not None and spec_.loader is not None
    mod = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mod)
    spec = mod.Prog.load_spec()
    spec.bonus = 3
    with mod.Prog.load(spec) as objs:
        assert objs.answer.test_run(data=b"\0" * 64).retval == 5


def test_clang_version_and_btf_digest_remembered_on_disk(
        tmp_path: pathlib.Path, clang_log: tuple[str, pathlib.Path]) -> None:
    # Starting clang (--version) and hashing the kernel's BTF cost seconds in a cold VM:
    # both are remembered in the cache directory, keyed by the file's path/size/mtime
    # (and the boot for the kernel's BTF), and a memo file another user could write is
    # ignored.
    from ebpf.gen import build as build_mod

    clang, log = clang_log
    cache = tmp_path / "cache"

    def versions_run() -> int:
        return sum(1 for line in log.read_text().splitlines()
                   if line.strip() == "--version") if log.exists() else 0

    build_mod._version_memo.clear()
    first = find_clang(clang, cache_dir=cache)
    assert versions_run() == 1
    build_mod._version_memo.clear()              # as a new process would start
    again = find_clang(clang, cache_dir=cache)
    assert versions_run() == 1 and again.version_text == first.version_text
    assert again.version == first.version
    memo = cache / "memo" / "clang-versions.json"
    assert stat.S_IMODE(memo.stat().st_mode) == 0o600
    memo.chmod(0o666)                            # writable by others: not trusted
    build_mod._version_memo.clear()
    find_clang(clang, cache_dir=cache)
    assert versions_run() == 2

    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:32]
    assert build_mod._btf_digest("/sys/kernel/btf/vmlinux", cache) == digest
    remembered = json.loads((cache / "memo" / "btf-digests.json").read_text())
    (key,) = remembered
    assert key.startswith("/sys/kernel/btf/vmlinux|") and remembered[key] == digest
    # the remembered digest is what is returned (a stale entry would be believed:
    # the key changes with the file's size, mtime and the boot)
    (cache / "memo" / "btf-digests.json").write_text(json.dumps({key: "0" * 32}))
    assert build_mod._btf_digest("/sys/kernel/btf/vmlinux", cache) == "0" * 32
