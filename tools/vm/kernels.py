"""Fetch the Debian kernels of the matrix into ``<repo>/.cache/kernels/`` (never /boot).

Each matrix entry names a Debian (meta)package. It is resolved with ``apt-cache depends``
to the concrete ``linux-image-<release>`` package, downloaded with ``apt-get download``
into ``.cache/kernels/debs/`` and unpacked with ``dpkg-deb -x`` into
``.cache/kernels/<release>/``::

    .cache/kernels/<release>/
        boot/vmlinuz-<release>, boot/config-<release>
        lib/modules/<release>/...   (+ modules.dep/.alias made with busybox depmod)
        kernel.json                 what was fetched (matrix name, package, version)
        initramfs.cpio              built by tools/vm/initramfs.py
        vmlinux                     the guest's /sys/kernel/btf/vmlinux, copied out of the VM

Nothing is installed on the host. Once fetched, a kernel is found again without apt
(offline runs use the newest fetched release of a matrix entry).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "kernels"
DEBS = CACHE / "debs"


@dataclasses.dataclass(frozen=True)
class MatrixEntry:
    name: str       # short name shown in the table, e.g. "6.1"
    package: str    # Debian package (usually a metapackage), e.g. "linux-image-amd64"


# The kernel matrix. Debian bookworm's kernel (6.1 LTS) and the 6.12 backport from the
# security suite. Add entries here (any Debian linux-image package apt can see).
MATRIX: tuple[MatrixEntry, ...] = (
    MatrixEntry("6.1", "linux-image-amd64"),
    MatrixEntry("6.12", "linux-image-6.12-amd64"),
)


class FetchError(RuntimeError):
    """A kernel could not be resolved, downloaded or unpacked (an infrastructure error)."""


@dataclasses.dataclass(frozen=True)
class Kernel:
    name: str
    package: str
    release: str            # uname -r of the guest, e.g. "6.1.0-56-amd64"
    version: str            # Debian package version, e.g. "6.1.192-2"
    root: pathlib.Path      # .cache/kernels/<release>

    @property
    def image(self) -> pathlib.Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def config(self) -> pathlib.Path:
        return self.root / "boot" / f"config-{self.release}"

    @property
    def modules(self) -> pathlib.Path:
        return self.root / "lib" / "modules" / self.release

    @property
    def btf(self) -> pathlib.Path:
        return self.root / "vmlinux"


def entry(name: str) -> MatrixEntry:
    for e in MATRIX:
        if e.name == name or e.package == name:
            return e
    if name.startswith("linux-image-"):
        return MatrixEntry(name.removeprefix("linux-image-"), name)
    known = ", ".join(e.name for e in MATRIX)
    raise FetchError(f"unknown kernel {name!r} (matrix: {known}; or a linux-image-* package)")


def _run(cmd: list[str], cwd: pathlib.Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False,
                              timeout=600)
    except FileNotFoundError as e:
        raise FetchError(f"{cmd[0]} not found: {e}") from None
    except subprocess.TimeoutExpired:
        raise FetchError(f"{' '.join(cmd)} timed out") from None
    if proc.returncode != 0:
        raise FetchError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                         f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


# A concrete image package: linux-image-<release>, the release starting with x.y.z.
_IMAGE_RE = re.compile(r"^linux-image-(\d+\.\d+\.\d+\S*-amd64)$")


def resolve(package: str) -> tuple[str, str]:
    """Resolve a (meta)package to (concrete package, candidate version) with apt-cache."""
    pkg = package
    for _ in range(4):
        if _IMAGE_RE.match(pkg):
            break
        out = _run(["apt-cache", "depends", "--no-recommends", "--no-suggests", pkg])
        deps = [ln.split(":", 1)[1].strip() for ln in out.splitlines()
                if ln.strip().startswith("Depends:")]
        images = [d for d in deps if d.startswith("linux-image-")]
        if not images:
            raise FetchError(f"apt-cache cannot resolve {pkg} to a linux-image package "
                             f"(run apt-get update?)")
        pkg = images[0]
    out = _run(["apt-cache", "policy", pkg])
    cand = re.search(r"Candidate:\s*(\S+)", out)
    if not cand or cand.group(1) == "(none)":
        raise FetchError(f"no installable candidate for {pkg} (run apt-get update?)")
    return pkg, cand.group(1)


def _load(root: pathlib.Path) -> Kernel | None:
    try:
        meta = json.loads((root / "kernel.json").read_text())
        k = Kernel(meta["name"], meta["package"], meta["release"], meta["version"], root)
    except (OSError, ValueError, KeyError):
        return None
    if not (k.image.is_file() and (k.modules / "modules.dep").is_file()):
        return None
    return k


def cached(name: str) -> Kernel | None:
    """The newest already-fetched kernel of matrix entry `name`, if any."""
    found = []
    if CACHE.is_dir():
        for root in CACHE.iterdir():
            k = _load(root)
            if k and k.name == name:
                found.append(k)
    if not found:
        return None

    def key(k: Kernel) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", k.version))
    return max(found, key=key)


def fetch(name: str, *, offline: bool = False, log: bool = True) -> Kernel:
    """Make sure matrix entry `name` is unpacked under .cache/kernels; return it.

    Resolves the package with apt (the newest candidate wins); falls back to the cached
    release when apt cannot resolve it (no network, no apt lists) or `offline` is set.
    """
    e = entry(name)
    if offline:
        k = cached(e.name)
        if k is None:
            raise FetchError(f"kernel {e.name} is not in {CACHE} (run without --offline)")
        return k
    try:
        pkg, version = resolve(e.package)
    except FetchError:
        k = cached(e.name)
        if k is not None:
            return k
        raise
    release = _IMAGE_RE.match(pkg).group(1)  # type: ignore[union-attr]
    root = CACHE / release
    k = _load(root)
    if k is not None and k.version == version:
        return k
    if log:
        print(f"[kernels] fetching {pkg} {version} for {e.name}", flush=True)
    DEBS.mkdir(parents=True, exist_ok=True)
    debs = list(DEBS.glob(f"{pkg}_*.deb"))
    deb = next((d for d in debs if d.name.startswith(f"{pkg}_{version.replace(':', '%3a')}_")),
               None)
    if deb is None:
        # apt-get download runs as _apt when it can; let it write into a fresh dir.
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="dl-", dir=DEBS))
        try:
            os.chmod(tmp, 0o777)
            _run(["apt-get", "download", "-q", f"{pkg}={version}"], cwd=tmp)
            got = list(tmp.glob("*.deb"))
            if len(got) != 1:
                raise FetchError(f"apt-get download {pkg} produced {got}")
            for old in debs:
                old.unlink()
            deb = DEBS / got[0].name
            os.replace(got[0], deb)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{release}-", dir=CACHE))
    try:
        _run(["dpkg-deb", "-x", str(deb), str(staging)])
        moddir = staging / "lib" / "modules" / release
        if not (staging / "boot" / f"vmlinuz-{release}").is_file() or not moddir.is_dir():
            raise FetchError(f"{deb.name} has no boot/vmlinuz-{release} or lib/modules")
        # Debian's postinst runs depmod; we use busybox's (it reads .ko.xz too).
        _run([busybox(), "depmod", "-b", str(staging), release])
        meta = {"name": e.name, "package": pkg, "meta_package": e.package,
                "version": version, "release": release, "deb": deb.name}
        (staging / "kernel.json").write_text(json.dumps(meta, indent=2) + "\n")
        if root.exists():
            old_btf = root / "vmlinux"
            if old_btf.exists():
                shutil.copy2(old_btf, staging / "vmlinux")
            shutil.rmtree(root)
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    k = _load(root)
    if k is None:
        raise FetchError(f"unpacked {pkg} but {root} is incomplete")
    try:
        extract_btf(k)
    except (FetchError, OSError, ValueError) as err:
        print(f"[kernels] {k.name}: cannot extract BTF from the image: {err}", flush=True)
    return k


def _decompress_payload(data: bytes) -> bytes:
    """The vmlinux ELF inside a bzImage (xz, gzip or zstd, as Debian builds them)."""
    setup_sects = data[0x1F1] or 4
    pm = (setup_sects + 1) * 512
    off = int.from_bytes(data[0x248:0x24C], "little")
    length = int.from_bytes(data[0x24C:0x250], "little")
    payload = data[pm + off: pm + off + length]
    if payload.startswith(b"\xfd7zXZ\x00"):
        import lzma
        return lzma.LZMADecompressor().decompress(payload)
    if payload.startswith(b"\x1f\x8b"):
        import zlib
        return zlib.decompressobj(31).decompress(payload)
    if payload.startswith(b"\x28\xb5\x2f\xfd"):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise FetchError("zstd not found (apt-get install zstd) to unpack the kernel")
        proc = subprocess.run([zstd, "-dc"], input=payload, capture_output=True, check=False)
        if not proc.stdout.startswith(b"\x7fELF"):
            raise FetchError(f"zstd -dc failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout
    raise FetchError(f"unknown kernel compression (magic {payload[:6].hex()})")


def _elf_section(elf: bytes, name: str) -> bytes | None:
    import struct

    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise FetchError("the kernel payload is not a 64-bit ELF")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def sh(i: int) -> tuple[int, int, int]:
        name_off, _type, _flags, _addr, off, size = struct.unpack_from(
            "<IIQQQQ", elf, shoff + i * shentsize)
        return name_off, off, size

    _, stroff, _ = sh(shstrndx)
    for i in range(shnum):
        n, off, size = sh(i)
        end = elf.index(b"\0", stroff + n)
        if elf[stroff + n:end].decode() == name:
            return elf[off:off + size]
    return None


def extract_btf(k: Kernel) -> pathlib.Path | None:
    """Write the kernel's BTF (the .BTF section of vmlinux, which is what the running
    kernel serves as /sys/kernel/btf/vmlinux) to .cache/kernels/<release>/vmlinux.

    Kept if already there (e.g. copied out of the VM). Returns None if the kernel has no
    BTF."""
    if k.btf.is_file():
        return k.btf
    elf = _decompress_payload(k.image.read_bytes())
    btf = _elf_section(elf, ".BTF")
    if not btf:
        return None
    tmp = k.btf.with_suffix(".tmp")
    tmp.write_bytes(btf)
    os.replace(tmp, k.btf)
    return k.btf


def busybox() -> str:
    for p in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if p and os.path.exists(p):
            return p
    raise FetchError("busybox not found (apt-get install busybox-static)")


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python3 -m tools.vm fetch",
                                 description="fetch the matrix kernels into .cache/kernels")
    ap.add_argument("kernels", nargs="*", help="matrix names (default: all)")
    ap.add_argument("--offline", action="store_true", help="use only what is cached")
    args = ap.parse_args(argv)
    names = args.kernels or [e.name for e in MATRIX]
    rc = 0
    for n in names:
        try:
            k = fetch(n, offline=args.offline)
        except FetchError as err:
            print(f"[kernels] {n}: {err}")
            rc = 1
            continue
        try:
            btf = extract_btf(k)
        except FetchError as err:
            btf = None
            print(f"[kernels] {n}: no BTF: {err}")
        print(f"[kernels] {k.name}: {k.package} {k.version} -> {k.root}"
              + (f" (BTF {btf.stat().st_size} bytes)" if btf else ""))
    return rc
