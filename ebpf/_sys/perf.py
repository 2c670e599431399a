"""perf_event_open wrappers, ring mmaps, perf ioctls and the readers' poller.

Everything the event readers (`ebpf.ringbuf`, `ebpf.perf`) need from the kernel
lives here: opening BPF_OUTPUT and tracepoint perf events, mapping ring
buffers, the perf ioctls, a handful of bpf(2) map calls on raw descriptors, and
`Poller`, an epoll set with an eventfd that `close()` from another thread uses
to wake a blocked reader.

Memory ordering: the readers load the producer position and store the consumer
position of a mapped ring with CPython's buffer accessors (`memoryview` items
of format ``Q``), which compile to single, naturally aligned 8-byte loads and
stores. On x86-64 (TSO) a plain load has acquire and a plain store has release
semantics, which is what the kernel's protocol (smp_load_acquire of the
producer position, smp_store_release of the consumer position) requires. On
weakly ordered architectures (arm64, ppc64, riscv) CPython emits no barriers;
there the readers rely on the many instructions the interpreter executes, and
on the syscalls (epoll_wait) between batches, rather than on a formal
guarantee. This is the same assumption BCC's Python bindings make.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import select
import struct
import threading
from collections.abc import Iterable

from ..errors import InvalidArgumentError, NotSupportedError, SyscallError
from . import consts, forking, validate
from .fd import FD
from .syscall import bpf, from_errno, perf_event_open
from .types import (
    BPF_MAP_DELETE_ELEM,
    BPF_MAP_UPDATE_ELEM,
    BPF_OBJ_GET_INFO_BY_FD,
    MapElemAttr,
    MapInfo,
    ObjGetInfoAttr,
    PerfEventAttr,
    PerfEventMmapPage,
    PerfSwId,
    PerfTypeId,
)

PAGE_SIZE = mmap.PAGESIZE

PERF_SAMPLE_RAW = 1 << 10
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9

# struct perf_event_mmap_page: offsets of the ring positions in the first page.
DATA_HEAD_OFFSET: int = PerfEventMmapPage.data_head.offset
DATA_TAIL_OFFSET: int = PerfEventMmapPage.data_tail.offset
DATA_OFFSET_OFFSET: int = PerfEventMmapPage.data_offset.offset
DATA_SIZE_OFFSET: int = PerfEventMmapPage.data_size.offset

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


# --------------------------------------------------------------------------- CPUs


def parse_cpu_list(text: str) -> list[int]:
    """Parse a kernel CPU list such as ``0-3,5,7-8``."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if sep:
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(lo))
    return cpus


def online_cpus() -> list[int]:
    """The CPUs that are online now (``/sys/devices/system/cpu/online``)."""
    with open("/sys/devices/system/cpu/online") as f:
        return parse_cpu_list(f.read())


def possible_cpus() -> list[int]:
    """The CPUs the kernel may ever bring online (``/sys/devices/system/cpu/possible``)."""
    with open("/sys/devices/system/cpu/possible") as f:
        return parse_cpu_list(f.read())


# --------------------------------------------------------------------------- bpf(2) on raw fds


def map_info(fd: int) -> MapInfo:
    """BPF_OBJ_GET_INFO_BY_FD for a map descriptor."""
    info = MapInfo()
    attr = ObjGetInfoAttr()
    attr.bpf_fd = fd
    attr.info_len = ctypes.sizeof(info)
    attr.info = ctypes.addressof(info)
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return info


def map_update_u32(fd: int, key: int, value: int) -> None:
    """Set a u32 -> u32 element (the CPU -> perf event fd slots of a PERF_EVENT_ARRAY)."""
    k = ctypes.c_uint32(key)
    v = ctypes.c_uint32(value)
    attr = MapElemAttr()
    attr.map_fd = fd
    attr.key = ctypes.addressof(k)
    attr.value = ctypes.addressof(v)
    attr.flags = 0
    bpf(BPF_MAP_UPDATE_ELEM, attr)


def map_delete_u32(fd: int, key: int) -> bool:
    """Delete a u32-keyed element; False when it was not there."""
    k = ctypes.c_uint32(key)
    attr = MapElemAttr()
    attr.map_fd = fd
    attr.key = ctypes.addressof(k)
    try:
        bpf(BPF_MAP_DELETE_ELEM, attr)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            return False
        raise
    return True


def dup_fd(fd: int) -> FD:
    """A new close-on-exec descriptor for the same file, owned by an `FD`."""
    return FD(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3), "map")


# --------------------------------------------------------------------------- perf events


def _perf_attr() -> PerfEventAttr:
    attr = PerfEventAttr()
    attr.size = ctypes.sizeof(PerfEventAttr)
    return attr


def open_bpf_output(cpu: int, *, watermark: int = 0, wakeup_events: int = 1,
                    overwritable: bool = False) -> FD:
    """A PERF_COUNT_SW_BPF_OUTPUT event on `cpu` whose ring receives
    bpf_perf_event_output samples. Wakes pollers after `watermark` bytes when
    non-zero, else after `wakeup_events` samples. Enabled at open."""
    attr = _perf_attr()
    attr.type = PerfTypeId.SOFTWARE
    attr.config = PerfSwId.BPF_OUTPUT
    attr.sample_type = PERF_SAMPLE_RAW
    attr.sample_period = 1
    cpu = validate.integer(cpu, "cpu", -1, (1 << 31) - 1)
    if validate.put(attr, "wakeup_watermark", watermark, "watermark") > 0:
        attr.watermark = 1
    else:
        validate.put(attr, "wakeup_events", max(1, validate.unsigned(
            wakeup_events, "wakeup_events", 32)))
    if overwritable:
        attr.write_backward = 1
    try:
        fd = perf_event_open(attr, -1, cpu, -1, consts.PERF_FLAG_FD_CLOEXEC)
    except SyscallError as e:
        if e.errno == errno.EINVAL and overwritable:
            raise NotSupportedError("overwritable perf buffers (write_backward)") from e
        raise
    return FD(fd, "perf event")


def tracefs_path() -> str | None:
    """Where tracefs is mounted (``/sys/kernel/tracing`` or the debugfs path),
    or None. The library never mounts it: that is up to the application."""
    for path in TRACEFS_CANDIDATES:
        if os.path.exists(os.path.join(path, "events")):
            return path
    return None


def tracepoint_id(category: str, name: str) -> int:
    """The id of tracepoint `category`/`name`, read from tracefs."""
    if "/" in category or "/" in name or category.startswith(".") or name.startswith("."):
        raise InvalidArgumentError(f"invalid tracepoint {category!r}/{name!r}")
    root = tracefs_path()
    if root is None:
        raise NotSupportedError(
            "tracefs", "not mounted; mount it with `mount -t tracefs tracefs /sys/kernel/tracing`",
            errno.ENOENT)
    path = os.path.join(root, "events", category, name, "id")
    try:
        with open(path) as f:
            return int(f.read())
    except FileNotFoundError:
        raise SyscallError(errno.ENOENT, f"tracepoint {category}/{name} does not exist "
                           f"({path})") from None


def open_tracepoint(category: str, name: str, *, cpu: int = 0, pid: int = -1) -> FD:
    """A PERF_TYPE_TRACEPOINT event for `category`/`name`, disabled until
    `enable`. One event (on CPU 0, any process) is enough for a BPF program:
    the program hangs off the tracepoint itself and runs on every CPU."""
    attr = _perf_attr()
    attr.type = PerfTypeId.TRACEPOINT
    attr.config = tracepoint_id(category, name)
    attr.sample_type = PERF_SAMPLE_RAW
    attr.sample_period = 1
    attr.wakeup_events = 1
    attr.disabled = 1
    return FD(perf_event_open(attr, pid, cpu, -1, consts.PERF_FLAG_FD_CLOEXEC), "perf event")


def _ioctl(fd: int, request: int, arg: int, what: str) -> None:
    try:
        fcntl.ioctl(fd, request, arg)
    except OSError as e:
        raise from_errno(e.errno or errno.EIO, what) from None


def set_bpf(perf_fd: int, prog_fd: int) -> None:
    """PERF_EVENT_IOC_SET_BPF: run program `prog_fd` when the event fires."""
    _ioctl(perf_fd, consts.PERF_EVENT_IOC_SET_BPF, prog_fd, "PERF_EVENT_IOC_SET_BPF")


def enable(perf_fd: int) -> None:
    """PERF_EVENT_IOC_ENABLE."""
    _ioctl(perf_fd, consts.PERF_EVENT_IOC_ENABLE, 0, "PERF_EVENT_IOC_ENABLE")


def disable(perf_fd: int) -> None:
    """PERF_EVENT_IOC_DISABLE."""
    _ioctl(perf_fd, consts.PERF_EVENT_IOC_DISABLE, 0, "PERF_EVENT_IOC_DISABLE")


def pause_output(perf_fd: int, paused: bool) -> None:
    """PERF_EVENT_IOC_PAUSE_OUTPUT: stop (or restart) writing to the event's ring."""
    _ioctl(perf_fd, consts.PERF_EVENT_IOC_PAUSE_OUTPUT, 1 if paused else 0,
           "PERF_EVENT_IOC_PAUSE_OUTPUT")


# --------------------------------------------------------------------------- mmap


def mmap_fd(fd: int, length: int, *, offset: int = 0, writable: bool = False,
            populate: bool = False) -> mmap.mmap:
    """A shared mapping of `length` bytes of `fd` at `offset`. `populate` asks
    for MAP_POPULATE so that the first drain does not fault page by page."""
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    flags = mmap.MAP_SHARED
    if populate:
        flags |= getattr(mmap, "MAP_POPULATE", 0)
    try:
        return mmap.mmap(fd, length, flags=flags, prot=prot, offset=offset)
    except OSError as e:
        raise from_errno(e.errno or errno.EINVAL, "mmap") from None


def ring_pages(size: int) -> int:
    """The number of data pages for a perf ring of at least `size` bytes: a power of two."""
    if size <= 0:
        raise InvalidArgumentError(f"per-CPU buffer size must be positive, got {size}")
    pages = (size + PAGE_SIZE - 1) // PAGE_SIZE
    return 1 << (pages - 1).bit_length()


_U64 = struct.Struct("=Q")


def read_u64(buf: mmap.mmap, offset: int) -> int:
    """One aligned 8-byte load from a mapping."""
    value: int = _U64.unpack_from(buf, offset)[0]
    return value


# --------------------------------------------------------------------------- polling


class ReaderClosed(Exception):
    """Internal: the poller was woken by close()."""


class Poller:
    """An epoll set over ring descriptors plus an eventfd that `wake()` makes
    readable (level-triggered, never drained), so that every waiter, current
    and future, returns at once after a close from another thread."""

    def __init__(self) -> None:
        self._ep = select.epoll(flags=select.EPOLL_CLOEXEC)
        try:
            self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        except BaseException:
            self._ep.close()
            raise
        self._ep.register(self._wake, select.EPOLLIN)
        self._tokens: dict[int, int] = {}
        self._woken = False
        self._lock = forking.new_lock(self, "_lock", threading.Lock)  # (a child can close())

    def fileno(self) -> int:
        """The epoll descriptor: readable when a ring has data or after `wake()`."""
        return self._ep.fileno()

    def register(self, fd: int, token: int) -> None:
        """Watch `fd` for readability; `wait` reports it as `token`."""
        self._ep.register(fd, select.EPOLLIN)
        self._tokens[fd] = token

    def unregister(self, fd: int) -> None:
        """Stop watching `fd`."""
        self._tokens.pop(fd, None)
        try:
            self._ep.unregister(fd)
        except (OSError, ValueError):
            pass

    def wait(self, timeout: float | None) -> list[int]:
        """Block up to `timeout` seconds (None: forever) for readiness; the
        tokens of the ready descriptors. Raises `ReaderClosed` after `wake()`."""
        if self._woken:
            raise ReaderClosed
        try:
            events = self._ep.poll(-1 if timeout is None else max(timeout, 0.0))
        except ValueError:  # the epoll object was closed under us
            raise ReaderClosed from None
        tokens = self._tokens
        out: list[int] = []
        for fd, _ in events:
            tok = tokens.get(fd)
            if tok is None:
                if fd == self._wake:
                    raise ReaderClosed
                continue
            out.append(tok)
        return out

    def wake(self) -> None:
        """Wake every waiter, now and later (idempotent)."""
        with self._lock:
            if self._woken:
                return
            self._woken = True
            os.eventfd_write(self._wake, 1)

    @property
    def woken(self) -> bool:
        return self._woken

    def close(self) -> None:
        """Close the epoll and eventfd descriptors (call after `wake` and once
        no thread is blocked in `wait`)."""
        with self._lock:
            self._woken = True
            if self._wake >= 0:
                os.close(self._wake)
                self._wake = -1
            self._ep.close()


def close_all(objs: Iterable[FD | mmap.mmap | None]) -> None:
    """Close every descriptor/mapping, ignoring ones already closed."""
    for obj in objs:
        if obj is not None:
            obj.close()


__all__ = [
    "PAGE_SIZE",
    "Poller",
    "ReaderClosed",
    "disable",
    "dup_fd",
    "enable",
    "map_delete_u32",
    "map_info",
    "map_update_u32",
    "mmap_fd",
    "online_cpus",
    "open_bpf_output",
    "open_tracepoint",
    "parse_cpu_list",
    "pause_output",
    "possible_cpus",
    "ring_pages",
    "set_bpf",
    "tracefs_path",
    "tracepoint_id",
]
