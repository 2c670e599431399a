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
import os
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

TESTS_DIR = pathlib.Path(__file__).resolve().parent
BPF_DIR = TESTS_DIR / "bpf"
REPO_DIR = TESTS_DIR.parent
CACHE_DIR = REPO_DIR / ".cache" / "bpf"
CLANG = "clang-19"
BASE_FLAGS = (
    "-O2",
    "-g",
    "-c",
    "-I/usr/include/x86_64-linux-gnu",
    "-D__TARGET_ARCH_x86",
)


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
    """Compile tests/bpf/<name>.c with ``clang-19 -O2 -g -target bpf -c``; return the object.

    `target` may be ``bpfel``/``bpfeb`` for an explicit byte order and
    `extra_flags` adds compiler flags (both are part of the cache key).
    Raises FileNotFoundError for a missing source or clang, BPFBuildError if
    clang fails.
    """
    source = BPF_DIR / f"{name}.c"
    if not source.is_file():
        raise FileNotFoundError(f"no BPF test source {source}")
    if shutil.which(CLANG) is None:
        raise FileNotFoundError(f"{CLANG} not found on PATH")
    flags = [*BASE_FLAGS, "-target", target, f"-I{BPF_DIR}", *extra_flags]
    cache = _cache_dir()
    out = cache / f"{name}-{_key(source, flags)}.o"
    if out.is_file():
        return out
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".o.tmp", dir=cache)
    os.close(fd)
    try:
        proc = subprocess.run(
            [CLANG, *flags, str(source), "-o", tmp],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise BPFBuildError(
                f"{CLANG} failed to compile {source.name} (exit {proc.returncode}):\n"
                f"{proc.stderr}{proc.stdout}"
            )
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
