#!/usr/bin/env python3
"""Extract BPF ELF objects embedded in other files (libbpf skeletons in executables).

libbpf's generated skeletons (`bpftool gen skeleton`) carry the whole BPF object
as a byte array inside the tool's executable. This scans a file for ELF64 headers
whose e_machine is EM_BPF (247), computes each image's length from its headers
(the section header table's end and the end of every section's data) and writes
the images out, validated by parsing them with `ebpf.elf.ELFFile`.

    python3 tools/extract_bpf_objects.py /usr/sbin/execsnoop -o /tmp/objs
    python3 tools/extract_bpf_objects.py --list /usr/sbin/*

Output files are named ``<input basename>.bpf.o`` (``<basename>.<n>.bpf.o`` when
one input holds several objects). Stdlib only.
"""

from __future__ import annotations

import argparse
import mmap
import os
import pathlib
import struct
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ebpf.elf import ELFFile  # noqa: E402
from ebpf.errors import ELFError  # noqa: E402

EM_BPF = 247
ELF_MAGIC = b"\x7fELF"
EHDR_SIZE = 64
SHDR_SIZE = 64
SHT_NOBITS = 8
MAX_SECTIONS = 1 << 16


@dataclass(frozen=True)
class Embedded:
    """One embedded BPF object: where it starts in its container and its bytes."""

    offset: int
    data: bytes


def _image_length(buf: mmap.mmap | bytes, off: int) -> int | None:
    """The length of the ELF64 image at `off`, or None if its headers don't add up."""
    if off + EHDR_SIZE > len(buf):
        return None
    ei_class, ei_data, ei_version = buf[off + 4], buf[off + 5], buf[off + 6]
    if ei_class != 2 or ei_data not in (1, 2) or ei_version != 1:
        return None
    bo = "<" if ei_data == 1 else ">"
    (e_machine,) = struct.unpack_from(bo + "H", buf, off + 18)
    if e_machine != EM_BPF:
        return None
    e_shoff, = struct.unpack_from(bo + "Q", buf, off + 40)
    e_shentsize, e_shnum = struct.unpack_from(bo + "HH", buf, off + 58)
    if e_shoff == 0 or e_shentsize != SHDR_SIZE:
        return None
    if e_shnum == 0:  # extended numbering: the count is in section 0's sh_size
        if off + e_shoff + SHDR_SIZE > len(buf):
            return None
        (e_shnum,) = struct.unpack_from(bo + "Q", buf, off + e_shoff + 32)
    if not 0 < e_shnum <= MAX_SECTIONS:
        return None
    end = e_shoff + e_shnum * e_shentsize
    if off + end > len(buf):
        return None
    for i in range(e_shnum):
        base = off + e_shoff + i * SHDR_SIZE
        sh_type, = struct.unpack_from(bo + "I", buf, base + 4)
        sh_offset, sh_size = struct.unpack_from(bo + "QQ", buf, base + 24)
        if sh_type != SHT_NOBITS and sh_size:
            end = max(end, sh_offset + sh_size)
    if off + end > len(buf):
        return None
    return end


def scan(buf: mmap.mmap | bytes) -> Iterator[Embedded]:
    """Every valid embedded EM_BPF ELF image in `buf`, in file order."""
    pos = buf.find(ELF_MAGIC)
    while pos >= 0:
        length = _image_length(buf, pos)
        if length is not None:
            data = bytes(buf[pos : pos + length])
            try:
                with ELFFile(data) as elf:
                    ok = elf.machine == EM_BPF and len(elf.sections) > 0
            except ELFError:
                ok = False
            if ok:
                yield Embedded(pos, data)
                pos = buf.find(ELF_MAGIC, pos + length)
                continue
        pos = buf.find(ELF_MAGIC, pos + 1)


def extract_file(path: str | os.PathLike[str]) -> list[Embedded]:
    """The BPF objects embedded in the file at `path` (a BPF object itself yields itself)."""
    with open(path, "rb") as f:
        try:
            size = os.fstat(f.fileno()).st_size
        except OSError:
            return []
        if size < EHDR_SIZE:
            return []
        with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
            return list(scan(m))


def output_names(path: str | os.PathLike[str], count: int) -> list[str]:
    base = pathlib.Path(path).name
    for suffix in (".bpf.o", ".o", ".elf"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    if count == 1:
        return [f"{base}.bpf.o"]
    return [f"{base}.{i}.bpf.o" for i in range(count)]


def extract_to(paths: Sequence[str | os.PathLike[str]], outdir: str | os.PathLike[str]
               ) -> list[pathlib.Path]:
    """Extract from every path into `outdir`; return the written files."""
    out = pathlib.Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[pathlib.Path] = []
    for p in paths:
        try:
            found = extract_file(p)
        except (OSError, ValueError):
            continue
        for emb, name in zip(found, output_names(p, len(found)), strict=True):
            dest = out / name
            tmp = dest.with_suffix(dest.suffix + ".tmp")
            tmp.write_bytes(emb.data)
            os.replace(tmp, dest)
            written.append(dest)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="executables, libraries or objects to scan")
    ap.add_argument("-o", "--outdir", default=".", help="where to write the objects")
    ap.add_argument("--list", action="store_true", help="only list what was found")
    args = ap.parse_args(argv)
    if args.list:
        for p in args.files:
            try:
                found = extract_file(p)
            except (OSError, ValueError) as e:
                print(f"{p}: {e}", file=sys.stderr)
                continue
            for emb in found:
                print(f"{p}\t{emb.offset:#x}\t{len(emb.data)}")
        return 0
    for w in extract_to(args.files, args.outdir):
        print(w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
