"""Build the guest initramfs (a newc cpio archive) for one fetched kernel.

Contents: a static busybox, /init (tools/vm/init.sh), /stage2.sh, /dev/console, and the
kernel modules needed to reach the host (virtio-pci, 9p over virtio, overlayfs,
virtio-rng) with their dependencies, decompressed, listed in load order in
/modules.list. Modules built into the kernel are simply left out.

The archive is cached as .cache/kernels/<release>/initramfs.cpio and rebuilt when its
inputs (this file, init.sh, stage2.sh, busybox, the module set) change.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import pathlib
import stat

from .kernels import Kernel, busybox

HERE = pathlib.Path(__file__).resolve().parent
# Modules stage 1 needs; anything missing from modules.dep is built in (or absent, which
# stage 1 then reports when the mount fails).
WANTED = ("virtio_pci", "virtio_rng", "9pnet_virtio", "9p", "overlay")


def _modname(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep -> {name: (path, [dependency paths])}."""
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, deps = line.split(":", 1)
        out[_modname(path.strip())] = (path.strip(), deps.split())
    return out


def load_order(deps: dict[str, tuple[str, list[str]]], wanted: tuple[str, ...]) -> list[str]:
    """Module paths to insmod, dependencies first, each once."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in seen or name in stack:
            return
        entry = deps.get(name)
        if entry is None:
            return
        path, dl = entry
        for d in dl:
            visit(_modname(d), (*stack, name))
        seen.add(name)
        order.append(path)

    for w in wanted:
        visit(w.replace("-", "_"), ())
    return order


def _read_module(path: pathlib.Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        import gzip
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        raise RuntimeError(f"{path}: zstd-compressed modules are not supported")
    return data


class Cpio:
    """A minimal newc ("070701") cpio writer."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
               nlink: int = 1) -> None:
        nb = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(nb), 0)
        self.ino += 1
        hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.buf.write(hdr + nb)
        self.buf.write(b"\0" * (-(len(hdr) + len(nb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | perm, nlink=2)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        self.buf.write(b"\0" * (-self.buf.tell() % 512))
        return self.buf.getvalue()


def _inputs_key(k: Kernel, modules: list[str]) -> str:
    h = hashlib.sha256()
    for p in (pathlib.Path(__file__), HERE / "init.sh", HERE / "stage2.sh",
              pathlib.Path(busybox())):
        h.update(p.read_bytes())
    h.update("\n".join(modules).encode())
    h.update(k.release.encode())
    return h.hexdigest()[:24]


def build(k: Kernel, wanted: tuple[str, ...] = WANTED) -> pathlib.Path:
    """Return the path of kernel k's initramfs, (re)building it when needed."""
    deps = parse_modules_dep((k.modules / "modules.dep").read_text())
    modules = load_order(deps, wanted)
    out = k.root / "initramfs.cpio"
    key_file = k.root / "initramfs.key"
    key = _inputs_key(k, modules)
    if out.is_file() and key_file.is_file() and key_file.read_text().strip() == key:
        return out
    c = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "modules", "newroot", "host", "rw"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    c.file("bin/busybox", pathlib.Path(busybox()).read_bytes(), 0o755)
    c.symlink("bin/sh", "busybox")
    c.file("init", (HERE / "init.sh").read_bytes(), 0o755)
    c.file("stage2.sh", (HERE / "stage2.sh").read_bytes(), 0o644)
    names = []
    for rel in modules:
        name = _modname(rel) + ".ko"
        c.file(f"modules/{name}", _read_module(k.modules / rel))
        names.append(name)
    c.file("modules.list", ("\n".join(names) + "\n").encode())
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(c.finish())
    os.replace(tmp, out)
    # Replaced, never rewritten in place: a hard-linked copy of the cache keeps its pair.
    key_tmp = key_file.with_suffix(".tmp")
    key_tmp.write_text(key + "\n")
    os.replace(key_tmp, key_file)
    return out
