"""User-space probes: uprobe, uretprobe and uprobe_multi.

A uprobe fires when any process (or one `pid`) executes an instruction of a
binary or shared library. The kernel wants the instruction's *file offset*;
this module finds it from a symbol name (``.symtab``, then ``.dynsym``,
preferring the default version of versioned symbols) by translating the
symbol's virtual address through the ``PT_LOAD`` segment that maps it, which
is right for executables, PIE and shared objects, and prelinked libraries
alike. A library given by bare name (``"libc.so.6"``) is looked up like the
dynamic linker would: ``/etc/ld.so.cache``, then ``LD_LIBRARY_PATH`` and the
standard library directories; a bare program name is looked up in ``PATH``.

>>> with ebpf.link.uprobe(prog, "libc.so.6", "getaddrinfo"):   # doctest: +SKIP
...     socket.getaddrinfo("localhost", 80)
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import logging
import os
import struct
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .._sys import probe as _probe
from .._sys import validate as _validate
from .._sys.fd import FD, holds_first
from .._sys.types import ProgramType
from ..elffile import SHN_UNDEF, ELFFile, SectionType, SegmentFlags, SegmentType, SymbolType
from ..errors import (
    ELFError,
    InvalidArgumentError,
    KeyNotFoundError,
    NotSupportedError,
    SyscallError,
)
from .base import Link
from .perf_event import PerfEventLink, attach_perf_event

if TYPE_CHECKING:
    from ..elffile import Symbol
    from ..programs import Program

__all__ = [
    "address_offset",
    "attach_uprobe_at",
    "function_symbols",
    "resolve_binary",
    "symbol_offset",
    "uprobe",
    "uprobe_multi",
    "uprobes_missing",
    "uretprobe",
]

_LIB_DIRS = ("/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib")
_LD_CACHE = "/etc/ld.so.cache"
_LD_CACHE_MAGIC = b"glibc-ld.so.cache1.1"
_LD_CACHE_HEADER = struct.Struct("<20sIIB3xI12x")
_LD_CACHE_ENTRY = struct.Struct("<iIIIQ")
_FUNC_TYPES = (SymbolType.FUNC, SymbolType.GNU_IFUNC)
_VERSYM_HIDDEN = 0x8000


def uprobes_missing() -> str | None:
    """None when this kernel can attach uprobes, else the reason it cannot."""
    return _probe.uprobes_missing()


# --------------------------------------------------------------------------- finding files


@functools.cache
def _own_machine() -> int | None:
    try:
        with ELFFile("/proc/self/exe") as elf:
            return int(elf.machine)
    except (OSError, ELFError):
        return None


def _matches_machine(path: str) -> bool:
    try:
        with ELFFile(path) as elf:
            mine = _own_machine()
            return mine is None or int(elf.machine) == mine
    except (OSError, ELFError):
        return False


def _ld_cache_entries(cache: str = _LD_CACHE) -> Iterator[tuple[str, str]]:
    """(soname, path) pairs of glibc's ld.so.cache (new format), in cache order."""
    try:
        with open(cache, "rb") as f:
            data = f.read()
    except OSError:
        return
    start = data.find(_LD_CACHE_MAGIC)
    if start < 0 or start + _LD_CACHE_HEADER.size > len(data):
        return
    _magic, nlibs, _strlen, _flags, _ext = _LD_CACHE_HEADER.unpack_from(data, start)
    base = start + _LD_CACHE_HEADER.size

    def string(off: int) -> str | None:
        pos = start + off  # string offsets count from the start of the new header
        end = data.find(b"\0", pos)
        if pos >= len(data) or end < 0:
            return None
        return os.fsdecode(data[pos:end])

    for i in range(nlibs):
        at = base + i * _LD_CACHE_ENTRY.size
        if at + _LD_CACHE_ENTRY.size > len(data):
            return
        _eflags, key, value, _osv, _hwcap = _LD_CACHE_ENTRY.unpack_from(data, at)
        name, path = string(key), string(value)
        if name is not None and path is not None:
            yield name, path


def _library_dirs() -> list[str]:
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    multiarch = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu",
                 "s390x": "s390x-linux-gnu", "ppc64le": "powerpc64le-linux-gnu",
                 "riscv64": "riscv64-linux-gnu"}.get(os.uname().machine)
    if multiarch:
        dirs += [f"/lib/{multiarch}", f"/usr/lib/{multiarch}"]
    return dirs + list(_LIB_DIRS)


def resolve_binary(binary: str | os.PathLike[str]) -> str:
    """The absolute path of `binary`: a path is used as is; a library name
    (``libc.so.6``, ``libssl.so``) is looked up in ``/etc/ld.so.cache``,
    ``LD_LIBRARY_PATH`` and the standard library directories; any other bare
    name is looked up in ``PATH``. Raises FileNotFoundError when not found."""
    name = os.fspath(binary)
    if not name:
        raise InvalidArgumentError("empty binary name")
    if "/" in name:
        if not os.path.isfile(name):
            raise FileNotFoundError(errno.ENOENT, "no such binary", name)
        return os.path.abspath(name)
    if ".so" in name:
        for soname, path in _ld_cache_entries():
            if soname == name and os.path.isfile(path) and _matches_machine(path):
                return path
        for d in _library_dirs():
            path = os.path.join(d, name)
            if os.path.isfile(path) and _matches_machine(path):
                return path
    else:
        for d in os.environ.get("PATH", os.defpath).split(":"):
            path = os.path.join(d or ".", name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return os.path.abspath(path)
    raise FileNotFoundError(errno.ENOENT, "cannot find binary or library (searched "
                            + ("ld.so.cache and library directories)" if ".so" in name
                               else "PATH)"), name)


# --------------------------------------------------------------------------- symbols


def _versym(elf: ELFFile) -> list[int] | None:
    secs = elf.sections_by_type(SectionType.GNU_VERSYM)
    if not secs:
        return None
    raw = bytes(secs[0].data())
    fmt = "<" if elf.little_endian else ">"
    return [v for (v,) in struct.iter_unpack(fmt + "H", raw[: len(raw) & ~1])]


def _is_defined_function(sym: Symbol) -> bool:
    return sym.type in _FUNC_TYPES and sym.section_index != SHN_UNDEF and sym.value != 0


def _find_function(elf: ELFFile, path: str, name: str) -> Symbol:
    base = name.split("@", 1)[0]
    for table, dynamic in ((elf.symbols(), False), (elf.dynamic_symbols(), True)):
        found = [s for s in table.lookup(base) if _is_defined_function(s)]
        if not found:
            continue
        if dynamic and len({s.value for s in found}) > 1:
            versym = _versym(elf)
            if versym is not None:
                default = [s for s in found
                           if s.index < len(versym) and not versym[s.index] & _VERSYM_HIDDEN]
                found = default or found
        order = {1: 0, 2: 1, 0: 2}  # GLOBAL, WEAK, LOCAL
        found.sort(key=lambda s: order.get(int(s.bind), 3))
        return found[0]
    raise KeyNotFoundError(f"no function {name!r} in {path} (searched .symtab and .dynsym)")


def _vaddr_to_offset(elf: ELFFile, path: str, vaddr: int, what: str) -> int:
    for seg in elf.segments:
        if (seg.type == SegmentType.LOAD and seg.flags & SegmentFlags.X
                and seg.vaddr <= vaddr < seg.vaddr + seg.memsz):
            return vaddr - seg.vaddr + seg.offset
    off = elf.vaddr_to_offset(vaddr)
    if off is None:
        raise InvalidArgumentError(
            f"{what} at {vaddr:#x} is not in any loadable segment of {path}")
    return off


def symbol_offset(binary: str | os.PathLike[str], symbol: str) -> int:
    """The file offset of function `symbol` in `binary` (what uprobes attach to)."""
    path = resolve_binary(binary)
    with ELFFile(path) as elf:
        sym = _find_function(elf, path, symbol)
        return _vaddr_to_offset(elf, path, sym.value, f"function {symbol!r}")


def address_offset(binary: str | os.PathLike[str], address: int) -> int:
    """The file offset of the virtual address `address` (as in the ELF file, e.g.
    from ``nm``) of `binary`."""
    path = resolve_binary(binary)
    with ELFFile(path) as elf:
        return _vaddr_to_offset(elf, path, address, "address")


def function_symbols(binary: str | os.PathLike[str], pattern: str = "*") -> dict[str, int]:
    """Name -> file offset of every defined function of `binary` matching the glob
    `pattern` (``.symtab`` and ``.dynsym``)."""
    path = resolve_binary(binary)
    out: dict[str, int] = {}
    with ELFFile(path) as elf:
        for table in (elf.symbols(), elf.dynamic_symbols()):
            for sym in table:
                if (sym.name and sym.name not in out and _is_defined_function(sym)
                        and fnmatch.fnmatchcase(sym.name, pattern)):
                    try:
                        out[sym.name] = _vaddr_to_offset(elf, path, sym.value, sym.name)
                    except InvalidArgumentError:
                        continue
    return out


# --------------------------------------------------------------------------- attaching


def _require_uprobe_program(program: Program, what: str) -> None:
    if program.type != ProgramType.KPROBE:
        ptype = getattr(program.type, "name", str(program.type))
        raise InvalidArgumentError(
            f"{what} needs a KPROBE program; {program.name!r} is a {ptype} program")


def _target_offset(path: str, symbol: str | None, offset: int | None) -> int:
    if offset is not None:
        offset = _validate.unsigned(offset, "offset", 64)
    if symbol is None:
        if offset is None:
            raise InvalidArgumentError("uprobe: give a symbol, an offset, or both")
        return offset
    if not isinstance(symbol, str):
        raise InvalidArgumentError(f"uprobe: symbol must be a str, got {symbol!r}")
    return symbol_offset(path, symbol) + (offset or 0)


def attach_uprobe_at(program: Program, path: str, file_offset: int, *, retprobe: bool = False,
                     pid: int | None = None, cookie: int = 0, ref_ctr_offset: int = 0,
                     description: str = "") -> PerfEventLink:
    """Attach a uprobe at `file_offset` of the binary `path` (already resolved)."""
    what = "uretprobe" if retprobe else "uprobe"
    # checked before a probe exists (the perf event and the link check them again)
    file_offset = _validate.unsigned(file_offset, "offset", 64)
    ref_ctr_offset = _validate.unsigned(ref_ctr_offset, "ref_ctr_offset", 64)
    cookie = _validate.unsigned(cookie, "cookie", 64)
    if pid is not None:
        pid = _validate.integer(pid, "pid", -(1 << 31), (1 << 31) - 1)
    description = description or f"{what} {path}:{file_offset:#x}"
    reason = _probe.uprobes_missing()
    if reason is not None:
        raise NotSupportedError("uprobes", reason, errno.ENOENT)
    if _probe.pmu_type("uprobe") is not None:
        pfd = _probe.open_probe_pmu("uprobe", name=path, offset=file_offset, retprobe=retprobe,
                                    pid=pid, ref_ctr_offset=ref_ctr_offset)
        return attach_perf_event(program, pfd, cookie=cookie, description=description)
    definition = f"{path}:{file_offset:#x}"
    if ref_ctr_offset:
        definition += f"({ref_ctr_offset:#x})"
    logging.getLogger("ebpf").info("%s: through tracefs' uprobe_events (the kernel has no "
                                   "uprobe PMU)", description)
    probe = _probe.add_tracefs_probe("uprobe", f"{os.path.basename(path)}_{file_offset:x}",
                                     definition, retprobe=retprobe)
    try:
        pfd = probe.open(pid)
    except BaseException:
        probe.remove()
        raise
    return attach_perf_event(program, pfd, cookie=cookie, cleanup=probe.remove,
                             description=description)


def uprobe(
    program: Program,
    binary: str | os.PathLike[str],
    symbol: str | None = None,
    offset: int | None = None,
    *,
    pid: int | None = None,
    cookie: int = 0,
    ref_ctr_offset: int = 0,
    retprobe: bool = False,
) -> PerfEventLink:
    """Run a KPROBE program when `binary` executes function `symbol` (plus `offset`
    bytes), or the instruction at file offset `offset` when no symbol is given.

    `binary` is a path, a library name (``"libc.so.6"``) or a program name in
    ``PATH``. `pid` limits the probe to one process (default: every process).
    `cookie` is returned by bpf_get_attach_cookie (Linux 5.15+).
    `ref_ctr_offset` is the file offset of a USDT-style semaphore to increment
    while the probe exists. `retprobe` makes it a uretprobe.
    """
    _require_uprobe_program(program, "uretprobe" if retprobe else "uprobe")
    path = resolve_binary(binary)
    file_offset = _target_offset(path, symbol, offset)
    what = "uretprobe" if retprobe else "uprobe"
    target = f"{symbol}+{offset or 0:#x}" if symbol is not None else f"{file_offset:#x}"
    return attach_uprobe_at(program, path, file_offset, retprobe=retprobe, pid=pid,
                            cookie=cookie, ref_ctr_offset=ref_ctr_offset,
                            description=f"{what} {path}:{target}")


def uretprobe(
    program: Program,
    binary: str | os.PathLike[str],
    symbol: str | None = None,
    offset: int | None = None,
    *,
    pid: int | None = None,
    cookie: int = 0,
) -> PerfEventLink:
    """Run a KPROBE program when function `symbol` of `binary` returns (see `uprobe`)."""
    return uprobe(program, binary, symbol, offset, pid=pid, cookie=cookie, retprobe=True)


@holds_first
def uprobe_multi(
    program: Program,
    binary: str | os.PathLike[str],
    symbols: Sequence[str] | None = None,
    *,
    pattern: str | None = None,
    offsets: Sequence[int] | None = None,
    cookies: Sequence[int] | None = None,
    ref_ctr_offsets: Sequence[int] | None = None,
    pid: int | None = None,
    retprobe: bool = False,
    session: bool = False,
) -> Link:
    """Attach a KPROBE program loaded with attach type TRACE_UPROBE_MULTI to many
    places of one binary with a single bpf_link (Linux 6.6+); with `session`, a
    program loaded with TRACE_UPROBE_SESSION (``SEC("uprobe.session")``, 6.13+) runs
    on both entry and return.

    The places are functions `symbols`, every function matching the glob
    `pattern`, or raw file `offsets`. `cookies` and `ref_ctr_offsets` give one
    value per place. `pid` limits the probes to one process.
    """
    _require_uprobe_program(program, "uprobe_multi")
    if sum(x is not None for x in (symbols, pattern, offsets)) != 1:
        raise InvalidArgumentError("uprobe_multi: give exactly one of symbols, pattern, offsets")
    for name, values in (("offsets", offsets), ("cookies", cookies),
                         ("ref_ctr_offsets", ref_ctr_offsets)):
        if values is not None:  # checked before the binary is read (and again when packed)
            _validate.unsigned_list(values, name, 64)
    if pid is not None:
        pid = _validate.integer(pid, "pid", -(1 << 31), (1 << 31) - 1)
    path = resolve_binary(binary)
    if symbols is not None:
        offs = [symbol_offset(path, s) for s in symbols]
    elif pattern is not None:
        if cookies:
            raise InvalidArgumentError("uprobe_multi: cookies need explicit symbols or offsets")
        found = function_symbols(path, pattern)
        if not found:
            raise InvalidArgumentError(f"uprobe_multi: no function of {path} matches "
                                       f"{pattern!r}")
        offs = sorted(set(found.values()))
    else:
        offs = list(offsets or ())
    try:
        fd = _probe.uprobe_multi_link_create(
            program.fileno(), path, offs, ref_ctr_offsets=list(ref_ctr_offsets or ()),
            cookies=list(cookies or ()), retprobe=retprobe, pid=pid, session=session)
    except SyscallError as e:
        if isinstance(e, NotSupportedError) or e.errno in (errno.EOPNOTSUPP, 524):
            raise NotSupportedError("uprobe_multi links", "needs Linux 6.6 with CONFIG_UPROBES",
                                    e.errno) from None
        raise
    return Link(FD(fd, "link"), program)
