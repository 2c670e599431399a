"""Fill the test build caches on the host before the VMs boot.

Tests compile tests/bpf/*.c with clang at test time (tests/bpfbuild.py, cached in
.cache/bpf/ by source + flags) and generate a vmlinux.h per kernel BTF
(tests/vmlinux.py, .cache/vmlinux/<btf hash>/). Under TCG clang is ~20-50x slower, so
every object a guest would build is built here first, for the host's BTF and each guest
kernel's (.cache/kernels/<release>/vmlinux): the repo is at the same path in the guest,
so the guest's cache lookups hit; so are the objects the documentation's code blocks
need (tests/test_docs.py, `needs-object`). The examples gallery's BPF C (examples/bpf/, built
by `ebpf build` into ~/.cache/ebpf, keyed by the BTF's digest; the guests' HOME is
/root, as root's on the host) is built for each kernel the same way, and the type index
of each kernel's BTF is written where the library looks for it. Best effort: a
source that does not compile is left for the test to report. The Python sources of
ebpf/, tests/, tools/ and examples/ are byte-compiled too (__pycache__, git-ignored):
guests run with PYTHONDONTWRITEBYTECODE and would otherwise compile every module under
TCG on each run.

    python3 -m tools.vm.prewarm [BTF ...]
"""

from __future__ import annotations

import compileall
import concurrent.futures
import importlib
import os
import pathlib
import sys
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[2]


def prewarm(btfs: list[str], jobs: int = 2) -> tuple[int, int]:
    sys.path.insert(0, str(REPO / "tests"))
    try:
        bpfbuild: Any = importlib.import_module("bpfbuild")
    except ImportError:
        return 0, 0
    vmlinux: Any = None
    try:
        vmlinux = importlib.import_module("vmlinux")
    except ImportError:
        pass
    flag_sets: list[list[str]] = [[]]
    if vmlinux is not None:
        for b in btfs:
            if os.path.exists(b):
                try:
                    flag_sets.append([f"-I{vmlinux.vmlinux_include_dir(b)}"])
                except Exception as e:
                    print(f"prewarm: vmlinux.h for {b}: {e}", file=sys.stderr)
    sources = sorted(p.stem for p in bpfbuild.BPF_DIR.glob("*.c"))
    jobs_list = [(s, "bpf", f) for f in flag_sets for s in sources]
    # the variants tests built against the host's vmlinux.h (-D flags, other targets:
    # recorded by tests/bpfbuild.py) for each guest kernel too
    for f in flag_sets[1:]:
        jobs_list += bpfbuild.variants(pathlib.Path(f[0][2:]))

    def one(job: tuple[str, str, list[str]]) -> bool:
        try:
            bpfbuild.compile_bpf(job[0], target=job[1], extra_flags=job[2])
            return True
        except Exception:
            return False

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        ok = sum(pool.map(one, jobs_list))
    return ok, len(jobs_list)


def prewarm_examples(btfs: list[str]) -> tuple[int, int]:
    """Build examples/bpf/*.bpf.c for each kernel BTF into the `ebpf build` cache."""
    from ebpf.gen.build import build  # the library only once the repo is on sys.path

    jobs = [(str(src), b) for b in btfs if os.path.exists(b)
            for src in sorted((REPO / "examples" / "bpf").glob("*.bpf.c"))]
    ok = 0
    for src, btf in jobs:     # one at a time: the vmlinux.h of a BTF is made once
        try:
            build(src, btf=btf)
            ok += 1
        except Exception as e:
            print(f"prewarm: {src} for {btf}: {e}".splitlines()[0], file=sys.stderr)
    return ok, len(jobs)


def prewarm_btf_index(btfs: list[str]) -> int:
    """Write the on-disk type index of each kernel BTF (ebpf.btf.cache, in ~/.cache/ebpf,
    keyed by the blob's length and CRC-32): a guest process that loads its kernel's BTF
    then finds it, instead of walking 100k+ types under TCG in every process."""
    from ebpf.btf import cache  # (see prewarm_examples)
    from ebpf.btf.spec import Spec

    written = 0
    for b in btfs:
        try:
            with open(b, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if cache.load_cached(data) is not None or cache.save(Spec(data, lazy=True)):
            written += 1
    return written


def prewarm_docs(btfs: list[str]) -> tuple[int, int]:
    """Build the objects the documentation's code blocks need (tests/test_docs.py's
    `needs-object`) for each kernel BTF."""
    try:
        test_docs: Any = importlib.import_module("test_docs")
    except Exception as e:  # (pytest or the docs missing: the tests will say)
        print(f"prewarm: docs objects: {e}", file=sys.stderr)
        return 0, 0
    ok, total = test_docs.prewarm_objects([b for b in btfs if os.path.exists(b)])
    return int(ok), int(total)


def compile_python() -> None:
    """Byte-compile the repository's Python for the guests (same interpreter)."""
    for d in ("ebpf", "tests", "tools", "examples"):
        compileall.compile_dir(str(REPO / d), quiet=1, workers=2)


def main(argv: list[str]) -> int:
    t0 = time.monotonic()
    compile_python()
    ok, total = prewarm(argv)
    sys.path.insert(0, str(REPO))
    ex_ok, ex_total = prewarm_examples(argv)
    docs_ok, docs_total = prewarm_docs(argv)
    indexed = prewarm_btf_index(argv)
    print(f"kmatrix: prewarmed {ok}/{total} BPF objects, {ex_ok}/{ex_total} examples, "
          f"{docs_ok}/{docs_total} docs objects and "
          f"{indexed} BTF indexes for {len(argv)} kernel BTFs in "
          f"{time.monotonic() - t0:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
