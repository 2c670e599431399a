"""Compile the test BPF programs in tests/bpf/ with clang, caching the objects.

    from bpfbuild import compile_bpf
    obj = compile_bpf("elf_smoke")     # tests/bpf/elf_smoke.c -> cached .o path

Objects are cached under ``<repo>/.cache/bpf/`` (mode 0700), keyed by the
SHA-256 of the source, the local headers in tests/bpf/ and the compiler
flags, and written atomically (temporary file + rename), so parallel test
workers can share the cache safely.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import platform
import re
import subprocess
import tempfile
from collections.abc import Sequence

from ebpf.gen.build import find_clang, target_arch

TESTS_DIR = pathlib.Path(__file__).resolve().parent
BPF_DIR = TESTS_DIR / "bpf"
REPO_DIR = TESTS_DIR.parent
CACHE_DIR = REPO_DIR / ".cache" / "bpf"
# The compiler and the architecture flags come from `ebpf build`'s rules (ebpf.gen.build):
# $CLANG, else the newest clang-24 .. clang-14, else clang >= 14.
BASE_FLAGS = (
    "-O2",
    "-g",
    "-c",
    f"-I/usr/include/{platform.machine()}-linux-gnu",
    f"-D__TARGET_ARCH_{target_arch()}",
)


def _clang() -> str:
    """The clang binary (raises ebpf.gen.build.ToolchainNotFoundError, a
    FileNotFoundError, naming the package when there is none)."""
    return find_clang().path


try:
    CLANG = _clang()
except FileNotFoundError:  # compile_bpf raises it, naming the package
    CLANG = "clang"


# Sources that are no standalone object on purpose, skipped by the tests that sweep every
# tests/bpf/*.c: linked_bad is empty without the -D flag tests/test_linker.py compiles
# it with; arena_without_map is refused by the parser by design (tests/test_arena.py).
NOT_STANDALONE = frozenset({"linked_bad", "arena_without_map"})


def standalone_sources() -> list[pathlib.Path]:
    """Every tests/bpf/*.c that is an object of its own (not in NOT_STANDALONE), sorted."""
    return sorted(p for p in BPF_DIR.glob("*.c") if p.stem not in NOT_STANDALONE)


class BPFBuildError(RuntimeError):
    """clang failed; the message carries its output."""


def _cache_dir() -> pathlib.Path:
    for d in (CACHE_DIR.parent, CACHE_DIR):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass
    return CACHE_DIR


def _key(source: pathlib.Path, flags: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(source.read_bytes())
    for header in sorted(BPF_DIR.glob("*.h")):
        h.update(b"\0" + header.name.encode() + b"\0" + header.read_bytes())
    h.update("\0".join(flags).encode())
    return h.hexdigest()[:32]


def compile_bpf(
    name: str, *, target: str = "bpf", extra_flags: Sequence[str] = ()
) -> pathlib.Path:
    """Compile tests/bpf/<name>.c with ``clang -O2 -g -target bpf -c``; return the object.

    `target` may be ``bpfel``/``bpfeb`` for an explicit byte order and
    `extra_flags` adds compiler flags (both are part of the cache key).
    Raises FileNotFoundError for a missing source or clang, BPFBuildError if
    clang fails.
    """
    source = BPF_DIR / f"{name}.c"
    if not source.is_file():
        raise FileNotFoundError(f"no BPF test source {source}")
    clang = _clang()
    flags = [*BASE_FLAGS, "-target", target, f"-I{BPF_DIR}", *extra_flags]
    cache = _cache_dir()
    out = cache / f"{name}-{_key(source, flags)}.o"
    _note_variant(name, target, extra_flags)
    if out.is_file():
        return out
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".o.tmp", dir=cache)
    os.close(fd)
    try:
        proc = subprocess.run(
            [clang, *flags, str(source), "-o", tmp],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise BPFBuildError(
                f"{os.path.basename(clang)} failed to compile {source.name} "
                f"(exit {proc.returncode}):\n"
                f"{proc.stderr}{proc.stdout}"
            )
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


# -- variants built against a kernel's vmlinux.h (for the kernel matrix's prewarm) --------

VARIANTS = CACHE_DIR / "vmlinux-variants.txt"
_VMLINUX_DIR = REPO_DIR / ".cache" / "vmlinux"
_DEFINE = re.compile(r"-D[A-Za-z_][A-Za-z0-9_]*(=[A-Za-z0-9_]*)?")
_noted: set[str] = set()


def _note_variant(name: str, target: str, extra_flags: Sequence[str]) -> None:
    """Record a compile against some kernel's vmlinux.h (its -I replaced by @VMLINUX@),
    once per line, in VARIANTS: the kernel matrix builds the same variants for each
    guest kernel before booting (tools/vm/prewarm.py; `variants()`)."""
    flags = ["@VMLINUX@" if f.startswith(f"-I{_VMLINUX_DIR}/") else f for f in extra_flags]
    if "@VMLINUX@" not in flags or (flags == ["@VMLINUX@"] and target == "bpf"):
        return  # (the plain build against vmlinux.h is prewarmed for every source)
    line = json.dumps([name, target, flags])
    if line in _noted:
        return
    _noted.add(line)
    if line in _read_variants():
        return
    fd = os.open(VARIANTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (line + "\n").encode())  # one short append: whole lines, even if
    finally:                                  # test workers write at once
        os.close(fd)


def _read_variants() -> set[str]:
    try:
        with open(VARIANTS) as f:
            return {ln.strip() for ln in f if ln.strip()}
    except FileNotFoundError:
        return set()


def variants(include_dir: pathlib.Path) -> list[tuple[str, str, list[str]]]:
    """The recorded variants with `include_dir` (a vmlinux.h directory) in place of
    @VMLINUX@: (name, target, extra_flags). Only lines of the expected shape (a source
    of tests/bpf, a known target, -D definitions) are returned: the file sits in a
    cache and its flags go to clang."""
    out = []
    for line in sorted(_read_variants()):
        try:
            name, target, flags = json.loads(line)
        except ValueError:
            continue
        if (not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", name)
                or not (BPF_DIR / f"{name}.c").is_file()
                or target not in ("bpf", "bpfel", "bpfeb") or not isinstance(flags, list)
                or not all(f == "@VMLINUX@" or (isinstance(f, str) and _DEFINE.fullmatch(f))
                           for f in flags)):
            continue
        out.append((name, target, [f"-I{include_dir}" if f == "@VMLINUX@" else f
                                   for f in flags]))
    return out

