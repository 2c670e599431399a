"""Programs attached through perf events, and groups of links.

A tracepoint, kprobe or uprobe is a perf event; so is a sampling event such as
``cpu-clock``. A program is attached to a perf event with a bpf_link
(BPF_LINK_CREATE with attach type BPF_PERF_EVENT, Linux 5.15+, which also
carries a BPF cookie) or, on older kernels, with the PERF_EVENT_IOC_SET_BPF
ioctl. `PerfEventLink` hides the difference.

>>> with ebpf.link.perf_event(prog, frequency=99):    # doctest: +SKIP
...     time.sleep(1)                                # cpu-clock samples on every CPU
"""

from __future__ import annotations

import errno
import logging
import os
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .. import features
from .._sys import perf as _perf
from .._sys import probe as _probe
from .._sys import validate as _validate
from .._sys.fd import FD, holds_first
from .._sys.types import LinkType, PerfSwId, PerfTypeId, ProgramType
from ..errors import InvalidArgumentError, NotSupportedError, SyscallError
from .base import Link

_log = logging.getLogger("ebpf")

if TYPE_CHECKING:
    from ..programs import Program

__all__ = ["COOKIE_FEATURE", "MultiLink", "PerfEventLink", "attach_perf_event", "perf_event"]

COOKIE_FEATURE = "BPF cookies on perf events"
"""`NotSupportedError.feature` when a kernel cannot pass a cookie to a perf event program."""


def _close_quietly(*objs: FD | None) -> None:
    for obj in objs:
        if obj is not None:
            obj.close()


def _finalize(link_fd: FD | None, perf_fd: FD, cleanup: Callable[[], None] | None) -> None:
    """Release a perf-event attachment: the link first, then the event, then the
    tracefs probe the event was made from (which the kernel keeps busy while any
    perf event on it is open)."""
    try:
        _close_quietly(link_fd, perf_fd)
    finally:
        if cleanup is not None:
            cleanup()


class PerfEventLink(Link):
    """A program attached to one perf event (tracepoint, kprobe, uprobe, sampling event).

    With a bpf_link (`has_bpf_link`) it supports `info()`, `id` and, when the
    event does not depend on a tracefs probe this process created, `pin()`.
    With the ioctl fallback (kernels before 5.15) only `close()` and `detach()`
    (which disables the event) work. `update()` is not supported by the kernel
    for perf-event links. `close()` also removes the legacy tracefs probe event
    the link was made from, if any.
    """

    def __init__(self, perf_fd: FD, link_fd: FD | None, program: Program | None,
                 *, cleanup: Callable[[], None] | None = None, description: str = "") -> None:
        super().__init__(link_fd, program)
        self._perf_fd = perf_fd
        self._legacy_probe = cleanup is not None
        self.description = description
        """What the link is attached to, e.g. ``tracepoint syscalls/sys_enter_getpid``."""
        # runs on close(), at garbage collection and at interpreter exit
        self._finalizer = weakref.finalize(self, _finalize, link_fd, perf_fd, cleanup)

    @property
    def perf_fd(self) -> FD:
        """The perf event's descriptor."""
        return self._perf_fd

    @property
    def has_bpf_link(self) -> bool:
        """Whether the attachment is a kernel bpf_link (else the ioctl fallback)."""
        return self._fd is not None

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the bpf_link (see `Link.pin`). Not possible with the ioctl fallback,
        nor for probes made through tracefs, whose event would outlive this process."""
        if self._fd is None:
            raise NotSupportedError("pinning a perf event attachment without a bpf_link",
                                    "BPF_LINK_CREATE with BPF_PERF_EVENT needs Linux 5.15")
        if self._legacy_probe:
            raise NotSupportedError(
                "pinning a probe created through tracefs",
                "the probe event is removed when this process closes the link")
        super().pin(path)

    def update(self, program: Program, *, old: Program | None = None) -> None:
        """Not supported: the kernel cannot swap the program of a perf event link."""
        raise NotSupportedError(f"updating the program of a {self.description or 'perf event'} "
                                "link", "close it and attach the new program instead")

    def detach(self) -> None:
        """Stop running the program now: BPF_LINK_DETACH for a bpf_link where the
        kernel supports it, else disable the perf event."""
        if self._fd is not None and not self._fd.closed:
            try:
                super().detach()
                return
            except NotSupportedError:
                pass
            except SyscallError as e:
                if e.errno != errno.EINVAL:
                    raise
        with self._perf_fd.hold() as fd:
            _perf.disable(fd)

    def close(self) -> None:
        """Detach and release the perf event (and remove any tracefs probe it used)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __del__(self) -> None:
        if getattr(self, "_finalizer", None) is not None and self._finalizer.alive:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)
            self._finalizer()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("bpf_link" if self._fd is not None else "ioctl")
        return f"<PerfEventLink {self.description} {state}>"


def _have_perf_link() -> bool:
    """Whether BPF_LINK_CREATE can attach programs to perf events (5.15+), probed once."""
    return features.have_link_type(LinkType.PERF_EVENT)


@holds_first
def attach_perf_event(program: Program, perf_fd: FD, *, cookie: int = 0,
                      cleanup: Callable[[], None] | None = None,
                      description: str = "") -> PerfEventLink:
    """Attach `program` to the perf event `perf_fd` (taking ownership of it).

    Uses BPF_LINK_CREATE (BPF_PERF_EVENT) when the kernel has it, else
    PERF_EVENT_IOC_SET_BPF + PERF_EVENT_IOC_ENABLE. A non-zero `cookie` (read by
    the program with bpf_get_attach_cookie) needs the bpf_link. `cleanup` runs
    after the event is closed (it removes legacy tracefs probes). On failure
    the perf event is closed and `cleanup` has run.
    """
    try:
        link_fd: FD | None = None
        cookie = _validate.unsigned(cookie, "cookie", 64)
        if _have_perf_link():
            link_fd = FD(_probe.link_create_perf_event(program.fileno(), perf_fd.fileno(),
                                                       cookie), "link")
        elif cookie:
            raise NotSupportedError(COOKIE_FEATURE, "BPF_LINK_CREATE with BPF_PERF_EVENT "
                                    "needs Linux 5.15", errno.EINVAL)
        else:
            _log.info("attaching %r to %s with PERF_EVENT_IOC_SET_BPF: the kernel has no "
                      "perf_event bpf_link (Linux 5.15)", program.name,
                      description or "a perf event")
            _perf.set_bpf(perf_fd.fileno(), program.fileno())
        _perf.enable(perf_fd.fileno())
    except SyscallError as e:
        _finalize(link_fd, perf_fd, cleanup)
        if description and not isinstance(e, NotSupportedError):
            e.strerror = f"attaching {program.name!r} to {description}: {e.strerror}"
            e.args = (e.errno, e.strerror)
        raise
    except BaseException:
        _finalize(link_fd, perf_fd, cleanup)
        raise
    return PerfEventLink(perf_fd, link_fd, program, cleanup=cleanup, description=description)


class MultiLink(Link):
    """Several links that belong together (one per CPU, one per probe location),
    closed together. Iterate over it or index it for the individual links."""

    def __init__(self, links: Iterable[Link], program: Program | None = None,
                 description: str = "") -> None:
        super().__init__(None, program)
        self.links: list[Link] = list(links)
        self.description = description
        self._closed = False

    def __iter__(self) -> Iterator[Link]:
        return iter(self.links)

    def __len__(self) -> int:
        return len(self.links)

    def __getitem__(self, index: int) -> Link:
        return self.links[index]

    @property
    def fd(self) -> FD:
        """Not available: a group has one descriptor per link (see `links`)."""
        raise NotSupportedError("a file descriptor for a group of links",
                                "use .links for the individual links")

    def info(self) -> Any:
        raise NotSupportedError("info() of a group of links", "use .links[i].info()")

    def pin(self, path: str | os.PathLike[str]) -> None:
        raise NotSupportedError("pinning a group of links", "pin the individual .links")

    def update(self, program: Program, *, old: Program | None = None) -> None:
        """Update every link of the group (each must support it)."""
        for link in self.links:
            link.update(program, old=old)
        self.program = program

    def detach(self) -> None:
        """Detach every link of the group."""
        for link in self.links:
            link.detach()

    def close(self) -> None:
        """Close every link (all are closed even if one fails)."""
        links, self.links = self.links, []
        first: BaseException | None = None
        for link in reversed(links):
            try:
                link.close()
            except BaseException as e:
                first = first or e
        self._closed = True
        if first is not None:
            raise first

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{len(self.links)} links"
        return f"<{type(self).__name__} {self.description} {state}>"


def _parse_cpus(cpus: int | Sequence[int] | None) -> list[int]:
    if cpus is None:
        return _perf.online_cpus()
    if isinstance(cpus, int):
        return [cpus]
    return list(cpus)


def perf_event(
    program: Program,
    type: int = PerfTypeId.SOFTWARE,
    config: int = PerfSwId.CPU_CLOCK,
    *,
    sample_period: int = 0,
    frequency: int = 0,
    cpus: int | Sequence[int] | None = None,
    pid: int = -1,
    cookie: int = 0,
    inherit: bool = False,
) -> MultiLink:
    """Run a ``perf_event`` program on every sample of a perf event.

    The default event is the ``cpu-clock`` software timer. Give `frequency`
    (samples per second) or `sample_period` (events per sample). One event is
    opened per CPU in `cpus` (default: every online CPU), counting every
    process, or only process `pid` (on every CPU when `cpus` is None and
    `pid` >= 0). Returns a `MultiLink` of one `PerfEventLink` per event.
    """
    if program.type != ProgramType.PERF_EVENT:
        raise InvalidArgumentError(
            f"perf_event needs a PERF_EVENT program, {program.name!r} is {program.type.name}")
    # checked before any event is opened (each perf_event_open checks them again)
    sample_period = _validate.unsigned(sample_period, "sample_period", 64)
    frequency = _validate.unsigned(frequency, "frequency", 64)
    pid = _validate.integer(pid, "pid", -1, (1 << 31) - 1)
    cookie = _validate.unsigned(cookie, "cookie", 64)
    if bool(sample_period) == bool(frequency):
        raise InvalidArgumentError("give exactly one of sample_period and frequency")
    if pid >= 0 and cpus is None:
        cpu_list = [-1]
    else:
        cpu_list = _parse_cpus(cpus)
    links: list[Link] = []
    try:
        for cpu in cpu_list:
            pfd = _probe.open_perf_event(int(type), int(config), pid=pid, cpu=cpu,
                                         sample_period=sample_period, sample_freq=frequency,
                                         inherit=inherit)
            links.append(attach_perf_event(program, pfd, cookie=cookie,
                                           description=f"perf event {type}:{config} cpu {cpu}"))
    except BaseException:
        for link in links:
            link.close()
        raise
    return MultiLink(links, program, description=f"perf event {type}:{config}")
