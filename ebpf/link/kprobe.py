"""Kernel probes: kprobe, kretprobe, ksyscall and kprobe_multi.

A kprobe is a perf event made through the kprobe PMU
(``/sys/bus/event_source/devices/kprobe``, Linux 4.17+) or, where that PMU is
missing, through tracefs' legacy ``kprobe_events`` file (the probe event this
process creates is removed again when the link is closed). `kprobe_multi`
attaches one program to many functions with a single bpf_link (Linux 5.18+).

Kernels built without CONFIG_KPROBES have neither: every function here then
raises NotSupportedError saying so (`kprobes_missing()` tells beforehand).

>>> with ebpf.link.kprobe(prog, "do_sys_openat2"):        # doctest: +SKIP
...     open("/etc/hostname").close()
"""

from __future__ import annotations

import errno
import fnmatch
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._sys import probe as _probe
from .._sys import validate as _validate
from .._sys.fd import FD, holds_first
from .._sys.types import ProgramType
from ..errors import InvalidArgumentError, NotSupportedError, SyscallError
from .base import Link
from .perf_event import PerfEventLink, attach_perf_event

_log = logging.getLogger("ebpf")

if TYPE_CHECKING:
    from ..programs import Program

__all__ = [
    "kprobe",
    "kprobe_multi",
    "kprobes_missing",
    "kretprobe",
    "kretsyscall",
    "ksyscall",
    "syscall_function",
]


def kprobes_missing() -> str | None:
    """None when this kernel can attach kprobes, else the reason it cannot."""
    return _probe.kprobes_missing()


def _require_kprobes() -> None:
    reason = _probe.kprobes_missing()
    if reason is not None:
        raise NotSupportedError("kprobes", reason, errno.ENOENT)


def _require_kprobe_program(program: Program, what: str) -> None:
    if program.type != ProgramType.KPROBE:
        ptype = getattr(program.type, "name", str(program.type))
        raise InvalidArgumentError(
            f"{what} needs a KPROBE program; {program.name!r} is a {ptype} program")


def _attach(program: Program, symbol: str | None, offset: int, address: int | None,
            retprobe: bool, cookie: int, maxactive: int) -> PerfEventLink:
    _require_kprobe_program(program, "kretprobe" if retprobe else "kprobe")
    # checked before a probe exists (the perf event and the link check them again)
    if symbol is not None and (not isinstance(symbol, str) or not symbol or "\0" in symbol):
        raise InvalidArgumentError(f"kprobe: symbol must be a function name, got {symbol!r}")
    offset = _validate.unsigned(offset, "offset", 64)
    if address is not None:
        address = _validate.unsigned(address, "address", 64)
    cookie = _validate.unsigned(cookie, "cookie", 64)
    maxactive = _validate.unsigned(maxactive, "maxactive", 32)
    _require_kprobes()
    what = "kretprobe" if retprobe else "kprobe"
    target = symbol if symbol is not None else f"{address:#x}"
    if offset:
        target += f"+{offset:#x}"
    description = f"{what} {target}"
    if _probe.pmu_type("kprobe") is not None and not maxactive:
        if symbol is not None:
            pfd = _probe.open_probe_pmu("kprobe", name=symbol, offset=offset, retprobe=retprobe)
        else:
            pfd = _probe.open_probe_pmu("kprobe", address=address or 0, retprobe=retprobe)
        return attach_perf_event(program, pfd, cookie=cookie, description=description)
    definition = f"{symbol}+{offset}" if symbol is not None else f"{address:#x}"
    _log.info("%s: through tracefs' kprobe_events (%s)", description,
              "maxactive needs it" if maxactive else "the kernel has no kprobe PMU")
    probe = _probe.add_tracefs_probe("kprobe", target, definition, retprobe=retprobe,
                                     maxactive=maxactive)
    try:
        pfd = probe.open()
    except BaseException:
        probe.remove()
        raise
    return attach_perf_event(program, pfd, cookie=cookie, cleanup=probe.remove,
                             description=description)


def kprobe(program: Program, symbol: str | None = None, offset: int = 0, *,
           address: int | None = None, cookie: int = 0) -> PerfEventLink:
    """Run a KPROBE program when kernel function `symbol` (at `offset` bytes into
    it) or the kernel `address` is executed. `cookie` is what
    bpf_get_attach_cookie returns in the program (Linux 5.15+)."""
    if (symbol is None) == (address is None):
        raise InvalidArgumentError("kprobe: give either a symbol or an address")
    return _attach(program, symbol, offset, address, False, cookie, 0)


def kretprobe(program: Program, symbol: str, *, cookie: int = 0,
              maxactive: int = 0) -> PerfEventLink:
    """Run a KPROBE program when kernel function `symbol` returns. `maxactive`
    (how many concurrent calls can be caught) forces the tracefs interface,
    which is the only one that takes it."""
    return _attach(program, symbol, 0, None, True, cookie, maxactive)


def syscall_function(name: str) -> str:
    """The kernel function implementing system call `name` on this architecture,
    e.g. ``__x64_sys_openat`` on x86_64, ``__arm64_sys_openat`` on arm64 (what
    libbpf's ``SEC("ksyscall/openat")`` attaches to)."""
    if name.startswith("sys_"):
        name = name[4:]
    return f"{_probe.syscall_prefix()}sys_{name}"


def ksyscall(program: Program, name: str, *, cookie: int = 0,
             retprobe: bool = False) -> PerfEventLink:
    """Run a KPROBE program on entry to system call `name` (``"openat"``), through
    the architecture's syscall wrapper (see `syscall_function`). The program
    sees the wrapper's ``struct pt_regs *``: use libbpf's BPF_KSYSCALL macro."""
    func = syscall_function(name)
    if retprobe:
        return kretprobe(program, func, cookie=cookie)
    return kprobe(program, func, cookie=cookie)


def kretsyscall(program: Program, name: str, *, cookie: int = 0) -> PerfEventLink:
    """Run a KPROBE program when system call `name` returns (see `ksyscall`)."""
    return ksyscall(program, name, cookie=cookie, retprobe=True)


@holds_first
def kprobe_multi(
    program: Program,
    symbols: Sequence[str] | None = None,
    *,
    pattern: str | None = None,
    addresses: Sequence[int] | None = None,
    cookies: Sequence[int] | None = None,
    retprobe: bool = False,
    session: bool = False,
) -> Link:
    """Attach a KPROBE program loaded with attach type TRACE_KPROBE_MULTI to many
    kernel functions with one bpf_link (Linux 5.18+).

    The functions are `symbols`, or every traceable function matching the
    glob `pattern` (``"tcp_*"``, as libbpf's ``SEC("kprobe.multi/tcp_*")``), or
    raw `addresses`. `cookies` gives one cookie per function (in the order of
    `symbols`/`addresses`). `retprobe` fires on return instead of entry;
    `session` (Linux 6.10+, attach type TRACE_KPROBE_SESSION) fires on both.
    """
    _require_kprobe_program(program, "kprobe_multi")
    given = sum(x is not None for x in (symbols, pattern, addresses))
    if given != 1:
        raise InvalidArgumentError("kprobe_multi: give exactly one of symbols, pattern, "
                                   "addresses")
    # checked here too, so that bad values are reported on kernels without kprobes
    if addresses is not None:
        addresses = _validate.unsigned_list(addresses, "addresses", 64)
    if cookies is not None:
        cookies = _validate.unsigned_list(cookies, "cookies", 64)
    _require_kprobes()
    if pattern is not None:
        if cookies:
            raise InvalidArgumentError("kprobe_multi: cookies need explicit symbols")
        symbols = [s for s in _probe.traceable_functions() if fnmatch.fnmatchcase(s, pattern)]
        if not symbols:
            raise InvalidArgumentError(f"kprobe_multi: no traceable kernel function matches "
                                       f"{pattern!r}")
    try:
        fd = _probe.kprobe_multi_link_create(
            program.fileno(), symbols=list(symbols or ()), addresses=list(addresses or ()),
            cookies=list(cookies or ()), retprobe=retprobe, session=session)
    except SyscallError as e:
        if isinstance(e, NotSupportedError) or e.errno in (errno.EOPNOTSUPP, 524):
            raise NotSupportedError("kprobe_multi links",
                                    "needs Linux 5.18 with CONFIG_FPROBE", e.errno) from None
        raise
    return Link(FD(fd, "link"), program)
