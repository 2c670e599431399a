"""Kernel interfaces behind the tracing attachments (`ebpf.link`).

- the kprobe and uprobe PMUs (``/sys/bus/event_source/devices/{kprobe,uprobe}``)
  and the legacy tracefs interface (``kprobe_events`` / ``uprobe_events``);
- generic perf events (sampling events for ``perf_event`` programs);
- BPF_LINK_CREATE for perf events, tracing programs, kprobe_multi and
  uprobe_multi links, and iterator links plus BPF_ITER_CREATE;
- kernel symbol lookups (``/proc/kallsyms``, ``available_filter_functions``)
  and the per-architecture syscall wrapper prefix.

Tracepoint perf events (`open_tracepoint`, `set_bpf`, `enable`, ...) live in
`ebpf._sys.perf` and are reused from there.

Every descriptor made here is close-on-exec. Everything that returns a
descriptor returns an `FD` that owns it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import re
import threading
from collections.abc import Sequence
from functools import cache

from ..errors import InvalidArgumentError, NotSupportedError, SyscallError
from . import consts, validate
from .fd import FD
from .perf import open_tracepoint, tracefs_path
from .syscall import bpf, bpf_errno, from_errno, perf_event_open
from .types import (
    BPF_ITER_CREATE,
    BPF_LINK_CREATE,
    AttachType,
    IterCreateAttr,
    LinkCreateAttr,
    PerfEventAttr,
)

__all__ = [
    "BPF_F_KPROBE_MULTI_RETURN",
    "BPF_F_UPROBE_MULTI_RETURN",
    "EVENT_SOURCE_DIR",
    "IterLinkInfo",
    "TracefsProbe",
    "add_tracefs_probe",
    "iter_create",
    "iter_link_create",
    "kallsyms",
    "kprobe_multi_link_create",
    "kprobes_missing",
    "link_create_perf_event",
    "open_perf_event",
    "open_probe_pmu",
    "pmu_retprobe_bit",
    "pmu_type",
    "probe_events_file",
    "syscall_prefix",
    "traceable_functions",
    "tracing_link_create",
    "uprobe_multi_link_create",
    "uprobes_missing",
]

EVENT_SOURCE_DIR = "/sys/bus/event_source/devices"

BPF_F_KPROBE_MULTI_RETURN = 1 << 0
BPF_F_UPROBE_MULTI_RETURN = 1 << 0

_PROBE_KINDS = ("kprobe", "uprobe")


def _check_kind(kind: str) -> None:
    if kind not in _PROBE_KINDS:
        raise InvalidArgumentError(f"probe kind must be 'kprobe' or 'uprobe', not {kind!r}")


# --------------------------------------------------------------------------- PMUs


@cache
def pmu_type(kind: str) -> int | None:
    """The dynamic PMU type of the ``kprobe`` or ``uprobe`` event source, or None
    when the kernel has none (no CONFIG_KPROBES / CONFIG_UPROBES, or before 4.17)."""
    _check_kind(kind)
    try:
        with open(os.path.join(EVENT_SOURCE_DIR, kind, "type"), encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


@cache
def _pmu_format(kind: str, field: str) -> tuple[int, int] | None:
    """(first bit, last bit) of a PMU format field such as ``config:0`` or ``config:32-63``."""
    try:
        with open(os.path.join(EVENT_SOURCE_DIR, kind, "format", field), encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    m = re.fullmatch(r"config:(\d+)(?:-(\d+))?", text)
    if m is None:
        return None
    lo = int(m.group(1))
    return lo, int(m.group(2) or lo)


def pmu_retprobe_bit(kind: str) -> int:
    """The ``config`` bit that makes a PMU probe a return probe (bit 0 on every kernel
    so far; read from ``format/retprobe``)."""
    fmt = _pmu_format(kind, "retprobe")
    return fmt[0] if fmt is not None else 0


def _ref_ctr_shift() -> int | None:
    fmt = _pmu_format("uprobe", "ref_ctr_offset")
    return fmt[0] if fmt is not None else None


def probe_events_file(kind: str) -> str | None:
    """The legacy tracefs control file (``kprobe_events``/``uprobe_events``) if it exists."""
    _check_kind(kind)
    root = tracefs_path()
    if root is None:
        return None
    path = os.path.join(root, f"{kind}_events")
    return path if os.path.exists(path) else None


def _missing(kind: str, config: str) -> str | None:
    if pmu_type(kind) is not None or probe_events_file(kind) is not None:
        return None
    pmu = os.path.join(EVENT_SOURCE_DIR, kind)
    if tracefs_path() is None:
        legacy = (f"tracefs is not mounted, so the legacy {kind}_events interface is not "
                  "available either (`mount -t tracefs tracefs /sys/kernel/tracing`)")
    else:
        legacy = f"and tracefs has no {kind}_events"
    return (f"there is no {kind} PMU ({pmu}) {legacy}; the kernel was probably built "
            f"without {config}")


def kprobes_missing() -> str | None:
    """None when kprobes can be attached (PMU or tracefs), else why not."""
    return _missing("kprobe", "CONFIG_KPROBES")


def uprobes_missing() -> str | None:
    """None when uprobes can be attached (PMU or tracefs), else why not."""
    return _missing("uprobe", "CONFIG_UPROBES")


def _perf_attr() -> PerfEventAttr:
    attr = PerfEventAttr()
    attr.size = ctypes.sizeof(PerfEventAttr)
    return attr


PID_MAX = (1 << 31) - 1


def _probe_pid_cpu(pid: int | None) -> tuple[int, int]:
    # A probe for every process must be bound to a CPU (any one: the BPF program
    # hangs off the probe itself); a probe for one process follows it on every CPU.
    if pid is None:
        return -1, 0
    pid = validate.integer(pid, "pid", -(1 << 31), PID_MAX)
    if pid < 0:
        return -1, 0
    return pid, -1


def open_probe_pmu(
    kind: str,
    *,
    name: str | bytes | None = None,
    offset: int = 0,
    address: int = 0,
    retprobe: bool = False,
    pid: int | None = None,
    ref_ctr_offset: int = 0,
) -> FD:
    """Open a kprobe or uprobe perf event through its PMU.

    kprobe: `name` is the kernel function and `offset` the offset into it, or
    `address` a kernel address. uprobe: `name` is the path of the binary and
    `offset` the file offset of the instruction; `ref_ctr_offset` is the file
    offset of a USDT semaphore the kernel increments while the probe exists.
    `pid` restricts a uprobe to one process (None: every process).
    """
    _check_kind(kind)
    attr = _perf_attr()
    if name is not None:
        validate.put(attr, "config2", offset, "offset")
        if not isinstance(name, (str, bytes)):
            raise InvalidArgumentError(f"{kind} target must be a str, got "
                                       f"{type(name).__name__} {name!r}")
        raw = name if isinstance(name, bytes) else os.fsencode(name)
        if b"\0" in raw:
            raise InvalidArgumentError(f"{kind} target {name!r} contains a NUL byte")
    else:
        validate.put(attr, "config2", address, "address")
    p, cpu = _probe_pid_cpu(pid)
    ptype = pmu_type(kind)
    if ptype is None:
        raise NotSupportedError(f"{kind} PMU", f"{EVENT_SOURCE_DIR}/{kind} does not exist",
                                errno.ENOENT)
    attr.type = ptype
    config = 0
    if retprobe:
        config |= 1 << pmu_retprobe_bit(kind)
    if ref_ctr_offset:
        shift = _ref_ctr_shift()
        if shift is None:
            raise NotSupportedError("uprobe reference counters (USDT semaphores)",
                                    "the uprobe PMU has no ref_ctr_offset field (Linux < 4.20)")
        # the PMU's format/ref_ctr_offset says which config bits hold it (32-63)
        config |= validate.unsigned(ref_ctr_offset, "ref_ctr_offset", 64 - shift) << shift
    attr.config = config
    buf = None
    if name is not None:
        buf = ctypes.create_string_buffer(raw)
        attr.config1 = ctypes.addressof(buf)
    else:
        attr.config1 = 0
    try:
        fd = perf_event_open(attr, p, cpu, -1, consts.PERF_FLAG_FD_CLOEXEC)
    except SyscallError as e:
        what = name.decode(errors="replace") if isinstance(name, bytes) else name
        target = f"{what}+{offset:#x}" if what is not None else f"{address:#x}"
        e.strerror = f"perf_event_open of {kind} {target}: {e.strerror}"
        e.args = (e.errno, e.strerror)
        raise
    del buf
    return FD(fd, f"{kind} perf event")


# --------------------------------------------------------------------------- tracefs probes

_counter = itertools.count()
_tracefs_lock = threading.Lock()
_EVENT_OK = re.compile(r"[^A-Za-z0-9_]")
TRACEFS_GROUP = "ebpf"


class TracefsProbe:
    """One probe event this process created in ``kprobe_events``/``uprobe_events``.

    `remove()` deletes it (idempotent). The event must have no open perf
    event left, or the kernel refuses with EBUSY.
    """

    __slots__ = ("__weakref__", "event", "group", "kind", "removed")

    def __init__(self, kind: str, group: str, event: str) -> None:
        self.kind = kind
        self.group = group
        self.event = event
        self.removed = False

    def open(self, pid: int | None = None) -> FD:
        """A disabled PERF_TYPE_TRACEPOINT event for this probe."""
        p, cpu = _probe_pid_cpu(pid)
        return open_tracepoint(self.group, self.event, cpu=cpu, pid=p)

    def remove(self) -> None:
        """Delete the probe event from tracefs (idempotent; errors are ignored when the
        event is already gone)."""
        if self.removed:
            return
        self.removed = True
        path = probe_events_file(self.kind)
        if path is None:
            return
        with contextlib.suppress(OSError):
            _write_events(path, f"-:{self.group}/{self.event}\n")

    def __repr__(self) -> str:
        return f"TracefsProbe({self.kind}, {self.group}/{self.event})"


def _write_events(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def add_tracefs_probe(kind: str, target: str, definition: str, *, retprobe: bool = False,
                      maxactive: int = 0) -> TracefsProbe:
    """Create a probe event through the legacy tracefs interface.

    `definition` is what follows the event name in ``kprobe_events`` syntax
    (``do_sys_open+0x0``, ``0xffffffff81000000``) or ``uprobe_events`` syntax
    (``/bin/bash:0x1234``, ``/bin/bash:0x1234(0x5678)`` with a reference counter).
    `target` only names the event. The event is called
    ``ebpf/ebpf_<pid>_<target>_<n>`` so that concurrent processes never clash.
    """
    path = probe_events_file(kind)
    if path is None:
        detail = _missing(kind, "CONFIG_KPROBES" if kind == "kprobe" else "CONFIG_UPROBES")
        raise NotSupportedError(f"legacy {kind} events", detail or f"no {kind}_events",
                                errno.ENOENT)
    event = _EVENT_OK.sub("_", f"ebpf_{os.getpid()}_{target}")[:48] + f"_{next(_counter)}"
    kind_char = "r" if retprobe else "p"
    if retprobe and maxactive and kind == "kprobe":
        kind_char += str(maxactive)
    line = f"{kind_char}:{TRACEFS_GROUP}/{event} {definition}\n"
    with _tracefs_lock:
        try:
            _write_events(path, line)
        except OSError as e:
            err = e.errno or errno.EINVAL
            detail = ""
            if err in (errno.ENOENT, errno.EINVAL):
                detail = f" (does {definition.split()[0]!r} exist and is it probe-able?)"
            raise SyscallError(err, f"writing {line.strip()!r} to {path}: "
                               f"{os.strerror(err)}{detail}") from None
    return TracefsProbe(kind, TRACEFS_GROUP, event)


# --------------------------------------------------------------------------- perf events


def open_perf_event(
    type: int,
    config: int,
    *,
    pid: int = -1,
    cpu: int = -1,
    sample_period: int = 0,
    sample_freq: int = 0,
    config1: int = 0,
    config2: int = 0,
    inherit: bool = False,
    exclude_kernel: bool = False,
    exclude_user: bool = False,
    disabled: bool = True,
) -> FD:
    """A perf event of any type (hardware, software, raw, breakpoint, ...).

    Exactly one of `sample_period` and `sample_freq` (samples per second)
    drives sampling. The event starts disabled unless `disabled` is False.
    """
    attr = _perf_attr()
    validate.put(attr, "type", type)
    validate.put(attr, "config", config)
    validate.put(attr, "sample_period", sample_period)
    if validate.put(attr, "sample_freq", sample_freq, "frequency"):
        attr.freq = 1
    else:
        attr.sample_period = sample_period
    validate.put(attr, "config1", config1)
    validate.put(attr, "config2", config2)
    pid = validate.integer(pid, "pid", -1, PID_MAX)
    cpu = validate.integer(cpu, "cpu", -1, PID_MAX)
    attr.inherit = int(inherit)
    attr.exclude_kernel = int(exclude_kernel)
    attr.exclude_user = int(exclude_user)
    attr.disabled = int(disabled)
    try:
        fd = perf_event_open(attr, pid, cpu, -1, consts.PERF_FLAG_FD_CLOEXEC)
    except SyscallError as e:
        if e.errno == errno.ENOENT or e.errno == errno.EOPNOTSUPP:
            raise NotSupportedError(f"perf event type {type} config {config}",
                                    f"perf_event_open on CPU {cpu}: {os.strerror(e.errno)}",
                                    e.errno) from None
        raise
    return FD(fd, "perf event")


# --------------------------------------------------------------------------- links


def _link_create(attr: LinkCreateAttr, what: str) -> int:
    ret = bpf_errno(BPF_LINK_CREATE, attr)
    if ret < 0:
        raise from_errno(-ret, f"bpf(BPF_LINK_CREATE) of {what}")
    return ret


def link_create_perf_event(prog_fd: int, perf_fd: int, cookie: int = 0) -> int:
    """BPF_LINK_CREATE with attach type BPF_PERF_EVENT (5.15+): a bpf_link fd
    attaching the program to the perf event, with an optional BPF cookie."""
    attr = LinkCreateAttr()
    validate.put(attr.perf_event, "bpf_cookie", cookie, "cookie")
    validate.put(attr, "prog_fd", prog_fd)
    validate.put(attr, "target_fd", perf_fd)
    attr.attach_type = AttachType.PERF_EVENT
    return _link_create(attr, "a perf event link")


def tracing_link_create(prog_fd: int, attach_type: int, *, target_fd: int = 0,
                        target_btf_id: int = 0, cookie: int = 0) -> int:
    """BPF_LINK_CREATE for tracing, LSM and extension programs (fentry, fexit,
    fmod_ret, tp_btf, lsm, freplace)."""
    attr = LinkCreateAttr()
    validate.put(attr.tracing, "cookie", cookie, "cookie")
    validate.put(attr, "attach_type", attach_type)
    validate.put(attr, "prog_fd", prog_fd)
    validate.put(attr, "target_fd", target_fd)
    validate.put(attr.tracing, "target_btf_id", target_btf_id)
    return _link_create(attr, "a tracing link")


def _u64_array(values: Sequence[int] | None) -> ctypes.Array[ctypes.c_uint64] | None:
    if not values:
        return None
    return (ctypes.c_uint64 * len(values))(*values)


def _addr(arr: ctypes.Array[ctypes.c_uint64] | ctypes.Array[ctypes.c_char_p] | None) -> int:
    return ctypes.addressof(arr) if arr is not None else 0


def kprobe_multi_link_create(
    prog_fd: int,
    *,
    symbols: Sequence[str] = (),
    addresses: Sequence[int] = (),
    cookies: Sequence[int] = (),
    retprobe: bool = False,
    session: bool = False,
) -> int:
    """BPF_LINK_CREATE of a kprobe_multi (or kprobe session) link on many kernel
    functions at once, by name or by address, with one cookie per function."""
    addresses = validate.unsigned_list(addresses, "addresses", 64)
    cookies = validate.unsigned_list(cookies, "cookies", 64)
    if isinstance(symbols, (str, bytes)):
        raise InvalidArgumentError(f"symbols must be a sequence of str, got {symbols!r}")
    for i, sym in enumerate(symbols):
        if not isinstance(sym, str) or not sym or "\0" in sym:
            raise InvalidArgumentError(f"symbols[{i}] must be a function name, got {sym!r}")
    count = len(symbols) or len(addresses)
    if not count or (symbols and addresses):
        raise InvalidArgumentError("pass either symbols or addresses (and not both)")
    if cookies and len(cookies) != count:
        raise InvalidArgumentError(f"{len(cookies)} cookies for {count} functions")
    syms = None
    if symbols:
        encoded = [s.encode() for s in symbols]
        syms = (ctypes.c_char_p * count)(*encoded)
    addrs = _u64_array(addresses)
    cks = _u64_array(cookies)
    attr = LinkCreateAttr()
    validate.put(attr, "prog_fd", prog_fd)
    attr.attach_type = (AttachType.TRACE_KPROBE_SESSION if session
                        else AttachType.TRACE_KPROBE_MULTI)
    attr.kprobe_multi.flags = BPF_F_KPROBE_MULTI_RETURN if retprobe else 0
    attr.kprobe_multi.cnt = count
    attr.kprobe_multi.syms = _addr(syms)
    attr.kprobe_multi.addrs = _addr(addrs)
    attr.kprobe_multi.cookies = _addr(cks)
    return _link_create(attr, f"a kprobe_multi link on {count} functions")


def uprobe_multi_link_create(
    prog_fd: int,
    path: str,
    offsets: Sequence[int],
    *,
    ref_ctr_offsets: Sequence[int] = (),
    cookies: Sequence[int] = (),
    retprobe: bool = False,
    pid: int | None = None,
    session: bool = False,
) -> int:
    """BPF_LINK_CREATE of a uprobe_multi link (6.6+): uprobes at many file offsets
    of one binary, with per-probe semaphores and cookies, optionally for one pid;
    with `session` (6.13+) a uprobe session link (entry and return)."""
    offsets = validate.unsigned_list(offsets, "offsets", 64)
    ref_ctr_offsets = validate.unsigned_list(ref_ctr_offsets, "ref_ctr_offsets", 64)
    cookies = validate.unsigned_list(cookies, "cookies", 64)
    count = len(offsets)
    if not count:
        raise InvalidArgumentError("uprobe_multi needs at least one offset")
    for what, seq in (("ref_ctr_offsets", ref_ctr_offsets), ("cookies", cookies)):
        if seq and len(seq) != count:
            raise InvalidArgumentError(f"{len(seq)} {what} for {count} offsets")
    pbuf = ctypes.create_string_buffer(os.fsencode(validate.path(path, "binary path")))
    offs = _u64_array(offsets)
    refs = _u64_array(ref_ctr_offsets) if any(ref_ctr_offsets) else None
    cks = _u64_array(cookies)
    attr = LinkCreateAttr()
    um = attr.uprobe_multi
    if pid is not None:
        pid = validate.integer(pid, "pid", -(1 << 31), PID_MAX)
    validate.put(um, "pid", pid if pid is not None and pid > 0 else 0, "pid")
    validate.put(attr, "prog_fd", prog_fd)
    attr.attach_type = (AttachType.TRACE_UPROBE_SESSION if session
                        else AttachType.TRACE_UPROBE_MULTI)
    um.path = ctypes.addressof(pbuf)
    um.offsets = _addr(offs)
    um.ref_ctr_offsets = _addr(refs)
    um.cookies = _addr(cks)
    um.cnt = count
    um.flags = BPF_F_UPROBE_MULTI_RETURN if retprobe else 0
    return _link_create(attr, f"a uprobe_multi link on {count} offsets of {path}")


# --------------------------------------------------------------------------- iterators


class _IterMap(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32)]


class _IterCgroup(ctypes.Structure):
    _fields_ = [("order", ctypes.c_uint32), ("cgroup_fd", ctypes.c_uint32),
                ("cgroup_id", ctypes.c_uint64)]


class _IterTask(ctypes.Structure):
    _fields_ = [("tid", ctypes.c_uint32), ("pid", ctypes.c_uint32), ("pid_fd", ctypes.c_uint32)]


class IterLinkInfo(ctypes.Union):
    """``union bpf_iter_link_info``: what an iterator link iterates over."""

    _fields_ = [("map", _IterMap), ("cgroup", _IterCgroup), ("task", _IterTask)]


def iter_link_create(prog_fd: int, info: IterLinkInfo | None = None) -> int:
    """BPF_LINK_CREATE of an iterator link (attach type BPF_TRACE_ITER)."""
    attr = LinkCreateAttr()
    validate.put(attr, "prog_fd", prog_fd)
    attr.attach_type = AttachType.TRACE_ITER
    if info is not None:
        attr.iter_info = ctypes.addressof(info)
        attr.iter_info_len = ctypes.sizeof(info)
    return _link_create(attr, "an iterator link")


def iter_create(link_fd: int) -> int:
    """BPF_ITER_CREATE: a new (close-on-exec) descriptor whose reads run the iterator."""
    attr = IterCreateAttr()
    attr.link_fd = link_fd
    return bpf(BPF_ITER_CREATE, attr)


# --------------------------------------------------------------------------- kernel symbols

_SYSCALL_ARCH = {
    "x86_64": "x64", "i386": "ia32", "i686": "ia32", "aarch64": "arm64", "arm64": "arm64",
    "armv7l": "arm", "s390x": "s390x", "riscv64": "riscv", "ppc64le": "powerpc",
    "ppc64": "powerpc", "loongarch64": "loongarch", "mips64": "mips",
}


@cache
def kallsyms() -> frozenset[str]:
    """The names of the kernel's text symbols (``/proc/kallsyms``, modules included
    without their ``[module]`` suffix); empty when unreadable."""
    names: set[str] = set()
    try:
        with open("/proc/kallsyms", encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tTwW":
                    names.add(parts[2])
    except OSError:
        pass
    return frozenset(names)


def traceable_functions() -> list[str]:
    """The kernel functions that kprobe_multi can attach to: tracefs'
    ``available_filter_functions`` (deduplicated, module suffixes removed), or the
    text symbols of ``/proc/kallsyms`` when tracefs is not mounted."""
    root = tracefs_path()
    if root is not None:
        path = os.path.join(root, "available_filter_functions")
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                seen: dict[str, None] = {}
                for line in f:
                    name = line.split(maxsplit=1)[0] if line.strip() else ""
                    if name and not name.startswith("__ftrace_invalid_address"):
                        seen.setdefault(name, None)
                return list(seen)
        except OSError:
            pass
    return sorted(kallsyms())


def syscall_prefix() -> str:
    """The prefix of the kernel's syscall entry points on this architecture
    (``__x64_`` on x86_64, ``__arm64_`` on arm64, ...), or "" for kernels without
    syscall wrappers (before 4.17) where the entry is ``sys_<name>``."""
    arch = _SYSCALL_ARCH.get(os.uname().machine)
    if arch is None:
        return ""
    prefix = f"__{arch}_"
    syms = kallsyms()
    if syms and f"{prefix}sys_bpf" not in syms and "sys_bpf" in syms:
        return ""
    return prefix
