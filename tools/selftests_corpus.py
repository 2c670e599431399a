#!/usr/bin/env python3
"""Build the kernel's BPF selftests programs (tools/testing/selftests/bpf/progs/*.c)
into objects for tools/realworld.py: hundreds of small programs, written by the
kernel's BPF developers against libbpf, covering CO-RE, ksyms/kfuncs, struct_ops,
global functions, map-in-map, ring buffers, ... (the other loaders' test objects
that libbpf itself is tested with).

The source comes from Debian's ``linux-source-6.1`` package
(/usr/src/linux-source-6.1.tar.xz; libbpf 1.1 is of the same age) or any kernel
tree/tarball given with --source. Headers: libbpf-dev's <bpf/*.h>, the selftests'
own, and a vmlinux.h dumped with bpftool from --btf (default: the running
kernel's; a 6.1 kernel's BTF builds a few more programs). Programs that do not
compile with clang-19 are skipped. Objects are cached by source and flags.

    python3 tools/selftests_corpus.py                  # -> .cache/realworld/selftests-<ver>
    python3 tools/realworld.py --no-packages .cache/realworld/selftests-6.1
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence

REPO = pathlib.Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache" / "realworld"
CLANG = "clang-19"
SELFTESTS = "tools/testing/selftests/bpf"
UAPI = "tools/include/uapi"


def find_source() -> pathlib.Path | None:
    """The newest /usr/src/linux-source-*.tar.xz (Debian's linux-source-X.Y), if any."""
    found = sorted(glob.glob("/usr/src/linux-source-*.tar.xz"))
    return pathlib.Path(found[-1]) if found else None


def unpack(source: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    """The kernel tree root holding the selftests (extracting only what is needed)."""
    if source.is_dir():
        return source
    marker = dest / ".unpacked"
    if marker.is_file():
        return pathlib.Path(marker.read_text())
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(source) as tar:
        members = []
        root = ""
        for m in tar:
            parts = m.name.split("/", 1)
            if len(parts) < 2:
                continue
            root, rest = parts
            if rest.startswith((SELFTESTS + "/", UAPI + "/")) and (m.isfile() or m.isdir()):
                members.append(m)
        tar.extractall(dest, members=members, filter="data")
    tree = dest / root
    marker.write_text(str(tree))
    return tree


def vmlinux_h(btf: str, dest: pathlib.Path) -> pathlib.Path:
    """A vmlinux.h dumped from the BTF file `btf` into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / "vmlinux.h"
    if not out.is_file():
        text = subprocess.run(["bpftool", "btf", "dump", "file", btf, "format", "c"],
                              capture_output=True, text=True, check=True).stdout
        out.write_text(text)
    return out


def _compile(src: pathlib.Path, out: pathlib.Path, flags: Sequence[str]) -> bool:
    if out.is_file():
        return True
    tmp = out.with_suffix(".tmp")
    proc = subprocess.run([CLANG, *flags, "-c", str(src), "-o", str(tmp)],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        return False
    os.replace(tmp, out)
    return True


def build(source: pathlib.Path, btf: str = "/sys/kernel/btf/vmlinux",
          outdir: pathlib.Path | None = None, jobs: int = 0) -> pathlib.Path:
    """Compile every selftests program that compiles; return the directory of objects."""
    if shutil.which(CLANG) is None:
        raise RuntimeError(f"{CLANG} is needed to build the selftests corpus")
    name = source.name.removesuffix(".tar.xz").removeprefix("linux-source-")
    tree = unpack(source, CACHE / f"src-{name}")
    bh = hashlib.sha256(pathlib.Path(btf).read_bytes()).hexdigest()[:12]
    inc = vmlinux_h(btf, CACHE / f"vmlinux-{bh}").parent
    st = tree / SELFTESTS
    flags = ["-g", "-O2", "-target", "bpf", "-mcpu=v3", "-D__TARGET_ARCH_x86",
             f"-I{inc}", f"-I{st}", f"-I{st / 'progs'}", "-I/usr/include",
             "-I/usr/include/x86_64-linux-gnu", f"-I{tree / UAPI}",
             "-Wno-compare-distinct-pointer-types", "-Wno-everything"]
    out = outdir or CACHE / f"selftests-{name}-{bh}"
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted((st / "progs").glob("*.c"))
    with concurrent.futures.ThreadPoolExecutor(jobs or os.cpu_count() or 2) as ex:
        done = list(ex.map(lambda s: _compile(s, out / f"{s.stem}.bpf.o", flags),
                           sources))
    print(f"{sum(done)} of {len(sources)} programs compiled into {out}", file=sys.stderr)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", help="kernel tree or linux-source tarball "
                                     "(default: /usr/src/linux-source-*.tar.xz)")
    ap.add_argument("--btf", default="/sys/kernel/btf/vmlinux",
                    help="BTF to dump vmlinux.h from")
    ap.add_argument("-o", "--outdir", help="where the objects go")
    ap.add_argument("-j", "--jobs", type=int, default=0)
    args = ap.parse_args(argv)
    source = pathlib.Path(args.source) if args.source else find_source()
    if source is None:
        print("no kernel source: apt-get install linux-source-6.1, or pass --source",
              file=sys.stderr)
        return 2
    print(build(source, args.btf, pathlib.Path(args.outdir) if args.outdir else None,
                args.jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
