"""`ebpf build SRC.bpf.c [-o OUT.bpf.o]`: compile BPF C into a CO-RE object with clang,
vmlinux.h for the running kernel (or --btf) and the flags CO-RE needs, cached by
content (`ebpf.gen.build.build`). `ebpf gen SRC.bpf.c` builds the same way first."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

__all__ = ["add_build_arguments", "build_from_args", "default_output", "is_source",
           "register"]


def is_source(path: str) -> bool:
    """Whether `path` names C source (``.c``) rather than an object."""
    return path.endswith(".c")


def default_output(src: str) -> str:
    """Where `ebpf build` writes without -o: ``x.bpf.c`` -> ``x.bpf.o`` beside it."""
    return src[: -len(".c")] + ".o" if is_source(src) else src + ".o"


def add_build_arguments(p: argparse.ArgumentParser) -> None:
    """The compile options shared by `build` and `gen` (for a source given to gen)."""
    p.add_argument("--cflags", action="append", default=[], metavar="FLAGS",
                   help="more clang flags, split like a shell does (repeatable); they "
                   "come after the defaults (-g -O2 -target bpf -D__TARGET_ARCH_<arch>)")
    p.add_argument("--target", choices=("bpfel", "bpfeb", "bpf"), default=None,
                   help="byte order of the object (default: bpf, the host's)")
    p.add_argument("--btf", metavar="PATH", default=None,
                   help="generate vmlinux.h from this BTF file (default: the running "
                   "kernel's, /sys/kernel/btf/vmlinux)")
    p.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="cache directory (default: $XDG_CACHE_HOME/ebpf or ~/.cache/ebpf)")
    p.add_argument("--clang", metavar="PATH", default=None,
                   help="the compiler (default: $CLANG, else the newest clang-24 .. "
                   "clang-14, else clang)")


def build_from_args(args: argparse.Namespace, src: str, out: str | None) -> str:
    """Build `src` with the options of `add_build_arguments`; returns the object path.

    A compile error prints clang's diagnostics on stderr before it propagates."""
    # on use: a subcommand loads only what it needs
    from ..gen.build import BuildError, CompileError, build

    cflags = [flag for text in args.cflags for flag in shlex.split(text)]
    try:
        return os.fspath(build(src, out, cflags=cflags, target=args.target, btf=args.btf,
                               cache_dir=args.cache_dir, clang=args.clang))
    except CompileError as e:
        sys.stderr.write(e.stderr if e.stderr.endswith("\n") or not e.stderr
                         else e.stderr + "\n")
        raise BuildError(e.summary) from None


def _cmd_build(args: argparse.Namespace) -> int:
    print(build_from_args(args, args.source, args.output or default_output(args.source)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `build` to the command line."""
    p = sub.add_parser(
        "build", help="compile BPF C into a CO-RE object (clang, vmlinux.h, cached)",
        description="Compile a BPF C file with clang into a CO-RE object: finds clang "
        "($CLANG, else clang-24 .. clang-14, else clang >= 14), generates vmlinux.h for the "
        "running kernel (or --btf) when the source includes it, passes -g -O2 -target bpf "
        "-D__TARGET_ARCH_<arch>, and caches the object by the content of the source, its "
        "headers, the flags and the compiler's version. Prints the object's path.")
    p.add_argument("source", help="the BPF C file (SRC.bpf.c)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="the object to write (default: SRC.bpf.o beside the source)")
    add_build_arguments(p)
    p.set_defaults(func=_cmd_build)
