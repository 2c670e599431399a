"""`ebpf build`: compile BPF C into a CO-RE object, like bpf2go's build step.

    from ebpf.gen.build import build

    obj = build("execsnoop.bpf.c")                      # a cached object, by content
    build("execsnoop.bpf.c", "execsnoop.bpf.o")         # or written where asked
    spec = ebpf.load_collection_spec(obj)

What it does:

- finds a clang that can target BPF: ``$CLANG`` if set, else the newest of
  ``clang-24`` .. ``clang-14`` on ``PATH``, else ``clang`` when it is version 14 or
  newer (`find_clang`); none -> `ToolchainNotFoundError` naming the package;
- generates ``vmlinux.h`` for the running kernel (or for the BTF file given as `btf`)
  with `ebpf.btf.cdump.dump_c`, when the source includes it and no ``vmlinux.h`` of the
  user's own is found first, and caches it by the BTF's SHA-256;
- compiles with what CO-RE objects need: ``-g -O2 -target bpf`` (or ``bpfel``/
  ``bpfeb``), ``-D__TARGET_ARCH_<arch>`` from `platform.machine()` (x86_64 -> x86,
  aarch64 -> arm64, ...), ``-I`` the directory holding ``vmlinux.h``; the user's flags
  come after these, so they can override them. libbpf's headers
  (``bpf/bpf_helpers.h``, ...) come from the system (Debian's ``libbpf-dev``); when the
  source includes one that is missing, `ToolchainNotFoundError` names that package;
- caches the object by content: the source (and its path, which the debug info
  holds), every header it includes that can be found (recursively; the generated
  ``vmlinux.h`` by the BTF's hash), the flags and clang's version. A second build of
  the same inputs runs no compiler, and an `out` whose bytes are already right is
  not rewritten (its mtime stays).

The cache lives in the invoking user's cache directory, ``$XDG_CACHE_HOME/ebpf`` or
``~/.cache/ebpf`` (subdirectories ``build`` and ``vmlinux``), or in `cache_dir`. It is
used only when the base directory belongs to the effective user and no one else can
write to it; the directories are created 0700 and every directory and file is checked
(owner, no group/other write, not a symlink) before it is trusted. Without a usable
cache the build goes through a private temporary directory: with `out` nothing else
stays behind; without `out` the returned object lives until the process exits.

Errors: `ToolchainNotFoundError` (no suitable clang, or libbpf's headers missing: the
message names the package to install), `CompileError` (clang failed; `stderr` holds
its diagnostics), `BuildError` (their base, also for an unknown architecture), and
`InvalidArgumentError` for a bad `target`.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from .. import btf as btf_mod
from ..errors import Error, InvalidArgumentError, NotSupportedError

__all__ = [
    "ARCHITECTURES",
    "MIN_CLANG",
    "BuildError",
    "Clang",
    "CompileError",
    "ToolchainNotFoundError",
    "build",
    "cache_directory",
    "core_flags",
    "find_clang",
    "target_arch",
    "vmlinux_header",
    "write_atomically",
]

_log = logging.getLogger("ebpf")

MIN_CLANG = 14
"""The oldest clang major version `find_clang` accepts (BTF, CO-RE and BPF atomics)."""

_NEWEST_PROBED = 24
_CACHE_VERSION = "1"  # part of every object's key: bump when the build's output changes
_MAX_OBJECTS = 256
_VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
_SYSTEM_INCLUDES = ("/usr/local/include", "/usr/include")

ARCHITECTURES = {
    "x86_64": "x86", "amd64": "x86", "i386": "x86", "i486": "x86", "i586": "x86",
    "i686": "x86", "aarch64": "arm64", "arm64": "arm64", "s390x": "s390", "s390": "s390",
    "ppc64le": "powerpc", "ppc64": "powerpc", "ppc": "powerpc", "riscv64": "riscv",
    "riscv32": "riscv", "loongarch64": "loongarch", "mips": "mips", "mips64": "mips",
    "mipsel": "mips", "mips64el": "mips", "sparc64": "sparc", "sparc": "sparc",
}
"""`platform.machine()` -> the ``__TARGET_ARCH_<arch>`` libbpf's ``bpf_tracing.h`` knows
(an ``arm*`` machine is ``arm``)."""

_TARGETS = ("bpf", "bpfel", "bpfeb")

_CLANG_HINT = ("install clang 14 or newer (Debian/Ubuntu: apt-get install clang; "
               "Fedora: dnf install clang) or set $CLANG to a clang binary")
_LIBBPF_HINT = ("libbpf's headers are missing: install libbpf-dev (Debian/Ubuntu; "
                "libbpf-devel on Fedora) or pass -I with the directory holding bpf/")


class BuildError(Error):
    """Building a BPF object failed (base of `ToolchainNotFoundError` and `CompileError`)."""


class ToolchainNotFoundError(BuildError, FileNotFoundError):
    """A build tool or its headers are missing; `package` names what to install."""

    def __init__(self, message: str, package: str) -> None:
        super().__init__(message)
        self.package = package

    def __str__(self) -> str:
        return str(self.args[0])


class CompileError(BuildError):
    """clang refused the source. `stderr` holds its diagnostics, `returncode` its exit
    status, `command` the command line, `source` the file."""

    def __init__(self, source: str, command: Sequence[str], returncode: int,
                 stderr: str) -> None:
        self.source = source
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(self.summary + (":\n" + stderr.rstrip() if stderr.strip() else ""))

    @property
    def summary(self) -> str:
        """One line: which compiler failed on which file, and its first error."""
        first = next((ln.strip() for ln in self.stderr.splitlines() if "error:" in ln), "")
        line = (f"{os.path.basename(self.command[0])} failed to compile {self.source} "
                f"(exit {self.returncode})")
        return f"{line}: {first}" if first else line


class Clang:
    """A clang binary: its `path`, `version` (major, minor, patch) and `version_text`
    (the first line of ``--version``)."""

    def __init__(self, path: str, version: tuple[int, int, int], version_text: str) -> None:
        self.path = path
        self.version = version
        self.version_text = version_text

    def __repr__(self) -> str:
        return f"Clang({self.path!r}, version={'.'.join(map(str, self.version))})"


_version_memo: dict[tuple[str, int, int, int], tuple[tuple[int, int, int], str] | None] = {}


def _clang_version(path: str, cache_dir: str | os.PathLike[str] | None = None,
                   ) -> tuple[tuple[int, int, int], str] | None:
    """(version, first line of --version) of the clang at `path`, None if it is not one.
    Remembered per binary (path, size, mtime) in memory and in the cache directory:
    starting clang costs seconds when its binary is not in the page cache."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    memo = (path, st.st_ino, st.st_size, st.st_mtime_ns)
    if memo in _version_memo:
        return _version_memo[memo]
    disk_key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    known = _memo_get("clang-versions", disk_key, cache_dir)
    if (isinstance(known, list) and len(known) == 2 and isinstance(known[1], str)
            and isinstance(known[0], list) and len(known[0]) == 3
            and all(isinstance(n, int) for n in known[0])):
        a, b, c = known[0]
        _version_memo[memo] = ((a, b, c), known[1])
        return _version_memo[memo]
    result = None
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True,
                              timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        proc = None
    if proc is not None and proc.returncode == 0:
        m = re.search(r"clang version (\d+)(?:\.(\d+))?(?:\.(\d+))?", proc.stdout)
        if m:
            version = (int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0))
            result = (version, proc.stdout.splitlines()[0].strip())
            _memo_put("clang-versions", disk_key, [list(version), result[1]], cache_dir)
    _version_memo[memo] = result
    return result


_MEMO_ENTRIES = 64


def _memo_file(name: str, cache_dir: str | os.PathLike[str] | None) -> Path | None:
    root = Path(cache_dir) if cache_dir is not None else cache_directory()
    if root is None or not _private_dir(root) or not _private_dir(root / "memo"):
        return None
    return root / "memo" / f"{name}.json"


def _memo_read(path: Path) -> dict[str, object]:
    if not _trusted_file(path):
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _memo_get(name: str, key: str, cache_dir: str | os.PathLike[str] | None) -> object:
    """A value remembered in the cache directory's ``memo/<name>.json``, or None."""
    path = _memo_file(name, cache_dir)
    return _memo_read(path).get(key) if path is not None else None


def _memo_put(name: str, key: str, value: object,
              cache_dir: str | os.PathLike[str] | None) -> None:
    """Remember `value` (JSON) under `key`; the newest `_MEMO_ENTRIES` are kept. Best
    effort: a cache that cannot be written is skipped."""
    path = _memo_file(name, cache_dir)
    if path is None:
        return
    data = _memo_read(path)
    data.pop(key, None)
    data[key] = value
    while len(data) > _MEMO_ENTRIES:
        data.pop(next(iter(data)))
    with contextlib.suppress(OSError):
        write_atomically(path, json.dumps(data), 0o600)


def find_clang(clang: str | None = None, *,
               cache_dir: str | os.PathLike[str] | None = None) -> Clang:
    """The clang to build with: `clang` if given, else ``$CLANG``, else the newest of
    ``clang-24`` .. ``clang-14`` on ``PATH``, else ``clang`` if it is version 14 or newer.

    A clang named explicitly (argument or ``$CLANG``) must exist and be a clang of any
    version; raises `ToolchainNotFoundError` (naming the package) when none fits.
    `cache_dir`: where versions found are remembered (default: `cache_directory`)."""
    explicit = clang or os.environ.get("CLANG") or None
    if explicit:
        path = shutil.which(explicit)
        found = _clang_version(path, cache_dir) if path else None
        if path is None or found is None:
            raise ToolchainNotFoundError(
                f"{explicit!r} (from {'the clang argument' if clang else '$CLANG'}) is not "
                f"a clang that runs: {_CLANG_HINT}", "clang")
        return Clang(path, *found)
    for major in range(_NEWEST_PROBED, MIN_CLANG - 1, -1):
        path = shutil.which(f"clang-{major}")
        if path:
            found = _clang_version(path, cache_dir)
            if found is not None:
                return Clang(path, *found)
    path = shutil.which("clang")
    if path:
        found = _clang_version(path, cache_dir)
        if found is not None and found[0][0] >= MIN_CLANG:
            return Clang(path, *found)
        if found is not None:
            raise ToolchainNotFoundError(
                f"{path} is clang {found[0][0]}, older than {MIN_CLANG}: {_CLANG_HINT}",
                "clang")
    raise ToolchainNotFoundError(f"no clang found on PATH: {_CLANG_HINT}", "clang")


def target_arch(machine: str | None = None) -> str:
    """The ``__TARGET_ARCH_`` name for `machine` (default: `platform.machine()`)."""
    machine = machine or platform.machine()
    arch = ARCHITECTURES.get(machine)
    if arch is None and machine.startswith("arm"):
        arch = "arm"
    if arch is None:
        raise BuildError(f"unknown architecture {machine!r}: pass -D__TARGET_ARCH_<arch> "
                         "in cflags yourself")
    return arch


def core_flags(target: str | None = None) -> list[str]:
    """The flags every CO-RE object is compiled with (before the user's own)."""
    if target is None:
        target = "bpf"
    if target not in _TARGETS:
        raise InvalidArgumentError(f"target must be one of {', '.join(_TARGETS)}, got "
                                   f"{target!r}")
    flags = ["-g", "-O2", "-target", target, f"-D__TARGET_ARCH_{target_arch()}"]
    # <asm/types.h> and friends, for sources that include uapi headers (<linux/bpf.h>)
    # rather than vmlinux.h: the multiarch directory the bpf target does not search.
    multiarch = f"/usr/include/{platform.machine()}-linux-gnu"
    if os.path.isdir(multiarch):
        flags += ["-idirafter", multiarch]
    return flags


# -- the cache directory ---------------------------------------------------------------


def _safe_dir_stat(st: os.stat_result) -> bool:
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def cache_directory() -> Path | None:
    """The default cache directory (``$XDG_CACHE_HOME/ebpf`` or ``~/.cache/ebpf``), or
    None when its base directory is not the effective user's alone."""
    from ..btf.cache import default_directory  # (the BTF index cache's rules, one copy)

    path = default_directory()
    return None if path is None else Path(path)


def _private_dir(path: Path) -> bool:
    """Make `path` (and missing parents) 0700; True when it is a real directory of ours
    that no one else can write to."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return _safe_dir_stat(os.lstat(path))
    except OSError:
        return False


def _trusted_file(path: Path) -> bool:
    """True when `path` is a regular file (not a symlink) of ours that no one else can
    write to."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


_scratch: Path | None = None


def _scratch_dir() -> Path:
    """A private temporary directory for this process, removed when it exits (the build
    without a usable cache)."""
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="ebpf-build-"))
        atexit.register(shutil.rmtree, str(_scratch), True)
    return _scratch


def _store_dir(cache_dir: str | os.PathLike[str] | None, sub: str) -> Path | None:
    """`<cache>/<sub>` when usable (created 0700 and checked), else None."""
    if cache_dir is not None:
        root: Path | None = Path(cache_dir)
    else:
        root = cache_directory()
    if root is None:
        _log.info("no usable cache directory (the home or $XDG_CACHE_HOME directory is "
                  "not ours alone): building without a cache")
        return None
    if not _private_dir(root) or not _private_dir(root / sub):
        if cache_dir is not None:
            raise BuildError(f"cache directory {root} is not a directory of uid "
                             f"{os.geteuid()} that only it can write to")
        _log.warning("cache directory %s is not ours alone: building without a cache", root)
        return None
    return root / sub


def write_atomically(path: str | os.PathLike[str], data: bytes | str,
                     mode: int | None = None) -> None:
    """Write `data` (str as UTF-8) to `path` through a temporary file in the same
    directory, renamed over `path` on success and removed on any failure: `path` is
    either its old self or the whole new content, and no temporary file stays behind.
    `mode` defaults to 0o666 less the process umask."""
    path = Path(path).absolute()
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
        os.replace(tmp, path)
        tmp = ""
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _prune(directory: Path, keep: Path) -> None:
    """Keep the newest `_MAX_OBJECTS` objects of the cache."""
    try:
        objects = [(p.stat().st_mtime, p) for p in directory.glob("*.o") if p != keep]
    except OSError:
        return
    if len(objects) < _MAX_OBJECTS:
        return
    objects.sort(reverse=True)
    for _, p in objects[_MAX_OBJECTS - 1:]:
        with contextlib.suppress(OSError):
            p.unlink()


# -- vmlinux.h -------------------------------------------------------------------------


def _btf_digest(btf: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """The BTF file's SHA-256 (32 hex digits), remembered per (path, size, mtime, and for
    the kernel's own files the boot)."""
    try:
        st = os.stat(btf)
    except OSError:
        st = None
    key = ""
    if st is not None:
        key = f"{os.path.abspath(btf)}|{st.st_size}|{st.st_mtime_ns}"
        if os.path.abspath(btf).startswith("/sys/"):
            try:
                with open("/proc/sys/kernel/random/boot_id") as f:
                    key += "|" + f.read().strip()
            except OSError:
                key = ""
    if key:
        known = _memo_get("btf-digests", key, cache_dir)
        if isinstance(known, str) and re.fullmatch(r"[0-9a-f]{32}", known):
            return known
    digest = _sha256_file(btf)
    if key:
        _memo_put("btf-digests", key, digest, cache_dir)
    return digest


def _sha256_file(btf: str) -> str:
    h = hashlib.sha256()
    with open(btf, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()[:32]


def vmlinux_header(btf: str | os.PathLike[str] | None = None, *,
                   cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The path of a ``vmlinux.h`` for `btf` (a raw BTF file or an ELF with ``.BTF``;
    default: the running kernel's), generated once by `ebpf.btf.cdump.dump_c` and cached
    under ``vmlinux/<sha256 of the BTF>/`` of the cache directory."""
    from ..btf.cdump import dump_c  # the C printer only to write a vmlinux.h

    path = os.fspath(btf) if btf is not None else _VMLINUX_BTF
    if not os.path.exists(path):
        if btf is None:
            raise NotSupportedError("kernel BTF", f"{path} is missing "
                                    "(CONFIG_DEBUG_INFO_BTF); pass a BTF file (--btf)")
        raise FileNotFoundError(f"no BTF file {path}")
    digest = _btf_digest(path, cache_dir)
    store = _store_dir(cache_dir, "vmlinux")
    directory = (store if store is not None else _scratch_dir() / "vmlinux") / digest
    header = directory / "vmlinux.h"
    if _trusted_file(header):
        return header
    if not _private_dir(directory):
        raise BuildError(f"cannot use {directory}: not a directory only uid "
                         f"{os.geteuid()} can write to")
    _log.info("generating vmlinux.h from %s", path)
    spec = btf_mod.load_kernel_spec() if btf is None else btf_mod.load_spec(path)
    write_atomically(header, dump_c(spec).encode(), 0o644)
    return header


# -- what the source includes ----------------------------------------------------------

_INCLUDE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]', re.M)


def _include_dirs(cflags: Sequence[str]) -> tuple[list[str], list[str]]:
    """(-iquote dirs, -I/-isystem/-idirafter dirs) named in `cflags`, in order."""
    quote: list[str] = []
    dirs: list[str] = []
    it = iter(cflags)
    for flag in it:
        for opt, where in (("-iquote", quote), ("-isystem", dirs), ("-idirafter", dirs),
                           ("-I", dirs)):
            if flag == opt:
                value = next(it, None)
                if value is not None:
                    where.append(value)
                break
            if flag.startswith(opt):
                where.append(flag[len(opt):])
                break
    return quote, dirs


class _Scan:
    """The headers a source includes, found the way the preprocessor would look."""

    def __init__(self, quote: list[str], dirs: list[str]) -> None:
        self.quote = quote
        self.dirs = dirs
        self.files: dict[str, bytes] = {}      # resolved header path -> contents
        self.missing: set[str] = set()         # names found nowhere

    def run(self, source: Path, text: bytes) -> None:
        pending = [(source.parent, text)]
        while pending:
            here, data = pending.pop()
            for m in _INCLUDE.finditer(data):
                name = m.group(2).decode(errors="replace").strip()
                where = [str(here), *self.quote, *self.dirs] if m.group(1) == b'"' \
                    else self.dirs
                found = next((os.path.join(d, name) for d in [*where, *_SYSTEM_INCLUDES]
                              if os.path.isfile(os.path.join(d, name))), None)
                if found is None:
                    self.missing.add(name)
                    continue
                found = os.path.realpath(found)
                if found in self.files:
                    continue
                try:
                    with open(found, "rb") as f:
                        content = f.read()
                except OSError:
                    continue
                self.files[found] = content
                if not name.endswith("vmlinux.h"):  # 100k lines of types, no #include
                    pending.append((Path(found).parent, content))


def _scan(source: Path, text: bytes, cflags: Sequence[str]) -> _Scan:
    s = _Scan(*_include_dirs(cflags))
    s.run(source, text)
    return s


def _object_key(source: Path, text: bytes, scan: _Scan, flags: Sequence[str],
                clang: Clang, vmlinux_digest: str) -> str:
    h = hashlib.sha256()
    for part in (_CACHE_VERSION, clang.version_text, str(source), *flags, vmlinux_digest):
        h.update(part.encode(errors="surrogateescape") + b"\0")
    h.update(hashlib.sha256(text).digest())
    for path in sorted(scan.files):
        h.update(path.encode(errors="surrogateescape") + b"\0")
        h.update(hashlib.sha256(scan.files[path]).digest())
    return h.hexdigest()[:32]


def _stem(source: Path) -> str:
    name = source.name
    for suffix in (".c", ".bpf"):
        name = name.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "bpf"


def _compile(clang: Clang, source: Path, flags: Sequence[str], out: Path,
             mode: int = 0o644) -> None:
    """Compile into a temporary file next to `out`, renamed over it on success."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    command = [clang.path, *flags, "-c", str(source), "-o", tmp]
    _log.info("compiling %s: %s", source, shlex.join(command))
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise CompileError(str(source), command, proc.returncode,
                               proc.stderr + proc.stdout)
        os.chmod(tmp, mode)
        os.replace(tmp, out)
        tmp = ""
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _install(obj: Path, out: Path) -> None:
    """Copy `obj` to `out` unless `out` already holds the same bytes."""
    data = obj.read_bytes()
    try:
        if out.is_file() and out.stat().st_size == len(data) and out.read_bytes() == data:
            return
    except OSError:
        pass
    write_atomically(out, data)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for a moment,
    for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def build(src: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
          cflags: Iterable[str] = (), target: str | None = None,
          btf: str | os.PathLike[str] | None = None,
          cache_dir: str | os.PathLike[str] | None = None,
          clang: str | None = None) -> Path:
    """Compile the BPF C file `src` into a CO-RE object; returns the object's path.

    `out`: where to write the object (default: keep it in the cache and return that
    path — do not modify it). `cflags`: more compiler flags (``-DNAME=1``, ``-I dir``),
    after the defaults. `target`: ``bpf`` (default: host byte order), ``bpfel`` or
    ``bpfeb``. `btf`: the BTF file ``vmlinux.h`` is generated from (default: the running
    kernel's). `cache_dir`: instead of ``$XDG_CACHE_HOME/ebpf`` / ``~/.cache/ebpf``.
    `clang`: the compiler (default: see `find_clang`).

    Raises `ToolchainNotFoundError`, `CompileError` (with clang's ``stderr``),
    `BuildError`, FileNotFoundError for a missing source.
    """
    source = Path(os.path.abspath(os.fspath(src)))
    text = source.read_bytes()
    user_flags = list(cflags)
    flags = core_flags(target)
    compiler = find_clang(clang, cache_dir=cache_dir)
    scan = _scan(source, text, user_flags)
    libbpf_missing = sorted(n for n in scan.missing if n.startswith("bpf/"))
    if libbpf_missing:
        raise ToolchainNotFoundError(f"{_LIBBPF_HINT} ({source.name} includes "
                                     f"<{libbpf_missing[0]}>)", "libbpf-dev")
    vmlinux_digest = ""
    if "vmlinux.h" in scan.missing:
        header = vmlinux_header(btf, cache_dir=cache_dir)
        vmlinux_digest = header.parent.name
        flags = [*flags, *user_flags, f"-I{header.parent}"]
    else:
        flags = [*flags, *user_flags]
    store = _store_dir(cache_dir, "build")
    destination = Path(os.path.abspath(os.fspath(out))) if out is not None else None
    key = _object_key(source, text, scan, flags, compiler, vmlinux_digest)
    if store is None:
        if destination is not None:
            _compile(compiler, source, flags, destination, 0o666 & ~_umask())
            return destination
        obj = _scratch_dir() / f"{_stem(source)}-{key}.o"
        if not obj.is_file():
            _compile(compiler, source, flags, obj, 0o600)
        return obj
    obj = store / f"{_stem(source)}-{key}.o"
    if _trusted_file(obj):
        _log.debug("%s: up to date in the cache (%s)", source, obj)
    else:
        _compile(compiler, source, flags, obj)
        _prune(store, obj)
    if destination is None:
        return obj
    _install(obj, destination)
    return destination
