"""`ebpf gen OBJECT`: write a typed Python module for an object (like bpf2go)."""

from __future__ import annotations

import argparse
import os
import sys

from .build import add_build_arguments, build_from_args, default_output, is_source

__all__ = ["register", "write_atomically"]


def _cmd_gen(args: argparse.Namespace) -> int:
    from ..gen import generate  # on use: a subcommand loads only what it needs

    objects = args.object
    if len(objects) > 1:
        # on use: a subcommand loads only what it needs
        from ..linker.command import generate_linked, is_link_command, write_object

        if is_link_command(objects):  # `ebpf gen object OUT.o A.o B.o ...`
            write_object(objects[1], objects[2:])
            return 0
        source = generate_linked(objects, name=args.name, embed=not args.no_embed)
    else:
        obj, name, filename = objects[0], args.name, None
        if is_source(obj):  # `ebpf gen SRC.bpf.c`: build it first (ebpf build)
            from ..gen import default_name  # on use: a subcommand loads only what it needs

            filename = os.path.basename(default_output(obj))
            name = name or default_name(filename)
            beside = os.path.join(os.path.dirname(args.output or ""), filename)
            obj = build_from_args(args, obj, beside if args.no_embed else None)
        source = generate(obj, name=name, embed=not args.no_embed, filename=filename)
    if args.output is None:
        sys.stdout.write(source)
        return 0
    write_atomically(args.output, source)
    return 0


def write_atomically(path: str, text: str) -> None:
    """Write `text` (UTF-8) to `path` through a temporary file in the same directory,
    renamed over `path` on success and removed on any failure: `path` is either its old
    self or the whole new text, and no temporary file stays behind."""
    from ..gen.build import write_atomically as write  # the build step, on first use

    write(path, text)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `gen` to the command line."""
    gen = sub.add_parser("gen", help="write a typed Python module for an object (bpf2go)")
    gen.add_argument("object", nargs="+", help="the object; several are linked first; "
                     "`gen object OUT.o A.o B.o ...` links them into OUT.o")
    gen.add_argument("-o", "--output", metavar="FILE",
                     help="write the module here (default: standard output)")
    gen.add_argument("--name", help="class name (default from the file name: "
                     "execsnoop.bpf.o -> Execsnoop)")
    gen.add_argument("--no-embed", action="store_true",
                     help="load the object from its file next to the module instead of "
                     "embedding it")
    add_build_arguments(gen)  # for a C source: `ebpf gen SRC.bpf.c` builds it first
    gen.set_defaults(func=_cmd_gen)
