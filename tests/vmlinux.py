"""A cached ``vmlinux.h`` for the running kernel, for BPF C test programs.

    from vmlinux import vmlinux_include_dir
    obj = compile_bpf("core_fields", extra_flags=[f"-I{vmlinux_include_dir()}"])

The header is generated with ``bpftool btf dump file /sys/kernel/btf/vmlinux
format c`` into ``<repo>/.cache/vmlinux/<hash>/vmlinux.h`` (directories mode
0700), keyed by the SHA-256 of the kernel's BTF, and written atomically so that
parallel test workers can share it. A different kernel gets a different
directory, so compiler caches keyed by the include path stay correct.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile

TESTS_DIR = pathlib.Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
CACHE_DIR = REPO_DIR / ".cache" / "vmlinux"
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
BPFTOOL = "bpftool"


def btf_hash(path: str = VMLINUX_BTF) -> str:
    """A short SHA-256 of a BTF file (the cache key)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:32]


def _mkdirs(path: pathlib.Path) -> None:
    for d in (path.parent.parent, path.parent, path):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass


def vmlinux_h(btf_path: str = VMLINUX_BTF) -> pathlib.Path:
    """The path of a ``vmlinux.h`` generated from `btf_path` (cached).

    Raises FileNotFoundError when the BTF file or bpftool is missing and
    RuntimeError when bpftool fails.
    """
    if not os.path.exists(btf_path):
        raise FileNotFoundError(f"no kernel BTF at {btf_path}")
    directory = CACHE_DIR / btf_hash(btf_path)
    out = directory / "vmlinux.h"
    if out.is_file():
        return out
    if shutil.which(BPFTOOL) is None:
        raise FileNotFoundError(f"{BPFTOOL} not found on PATH")
    _mkdirs(directory)
    fd, tmp = tempfile.mkstemp(prefix=".vmlinux-", suffix=".h.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            proc = subprocess.run(
                [BPFTOOL, "btf", "dump", "file", btf_path, "format", "c"],
                stdout=f,
                stderr=subprocess.PIPE,
                check=False,
            )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{BPFTOOL} btf dump failed (exit {proc.returncode}): "
                f"{proc.stderr.decode(errors='replace')}"
            )
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def vmlinux_include_dir(btf_path: str = VMLINUX_BTF) -> pathlib.Path:
    """The directory holding the cached ``vmlinux.h`` (pass it to clang with -I)."""
    return vmlinux_h(btf_path).parent
