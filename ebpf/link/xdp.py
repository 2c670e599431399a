"""XDP on a network interface: a bpf_link (5.9+), or IFLA_XDP over rtnetlink before.

The interface is looked up in the calling thread's network namespace (see
`ebpf.link.in_netns`); the link stays with the interface wherever it moves.
"""

from __future__ import annotations

import enum
import threading
import weakref
from typing import TYPE_CHECKING

from .. import features
from .._sys import consts
from .._sys import forking as _forking
from .._sys import validate as _validate
from .._sys.fd import holds_first
from .._sys.netlink import NetlinkSocket, XdpInfo
from .._sys.types import AttachType, LinkCreateAttr, LinkType, ProgramType
from ..errors import ClosedError, InvalidArgumentError, NotSupportedError, SyscallError
from ._attach import ifindex as _ifindex
from ._attach import link_create
from .base import Link

if TYPE_CHECKING:
    from .._sys.fd import FD
    from ..programs import Program

__all__ = ["XDPLink", "XDPMode", "XDPNetlinkLink", "xdp", "xdp_info"]


class XDPMode(enum.IntFlag):
    """Where the program runs: AUTO lets the kernel choose (the driver when it supports
    XDP, else generic); GENERIC is the stack's skb-based path (any interface); DRIVER
    the driver's native hook; OFFLOAD the NIC itself."""

    AUTO = 0
    GENERIC = consts.XDP_FLAGS_SKB_MODE
    DRIVER = consts.XDP_FLAGS_DRV_MODE
    OFFLOAD = consts.XDP_FLAGS_HW_MODE


_MODE_NAMES = {
    "auto": XDPMode.AUTO, "generic": XDPMode.GENERIC, "skb": XDPMode.GENERIC,
    "driver": XDPMode.DRIVER, "native": XDPMode.DRIVER, "drv": XDPMode.DRIVER,
    "offload": XDPMode.OFFLOAD, "hw": XDPMode.OFFLOAD,
}


def _mode(mode: XDPMode | str | int | None) -> XDPMode:
    if mode is None:
        return XDPMode.AUTO
    if isinstance(mode, str):
        try:
            return _MODE_NAMES[mode.lower()]
        except KeyError:
            raise InvalidArgumentError(
                f"unknown XDP mode {mode!r} (use one of {', '.join(_MODE_NAMES)})") from None
    m = XDPMode(_validate.unsigned(mode, "xdp: mode", 32))
    if m not in (XDPMode.AUTO, XDPMode.GENERIC, XDPMode.DRIVER, XDPMode.OFFLOAD):
        raise InvalidArgumentError(f"give one XDP mode, not {m!r}")
    return m


class XDPLink(Link):
    """An XDP program attached with a bpf_link: `update()` swaps it atomically."""

    def __init__(self, fd: FD, program: Program, ifindex: int, mode: XDPMode) -> None:
        super().__init__(fd, program)
        self.ifindex = ifindex
        self.mode = mode

    def _where(self) -> str:
        return f"ifindex {self.ifindex} {self.mode.name}"


class _NetlinkXdp:
    """What a netlink XDP attachment needs to detach, owned by it: the netlink socket
    and its own descriptor of the attached program (a close-on-exec dup, named as
    the expected program so a program someone else attached since is left alone)."""

    __slots__ = ("__weakref__", "generation", "ifindex", "lock", "mode", "prog", "sock")

    def __init__(self, sock: NetlinkSocket, prog: FD, ifindex: int, mode: XDPMode) -> None:
        self.sock = sock
        self.prog = prog
        self.ifindex = ifindex
        self.mode = mode
        self.generation = _forking.generation()
        self.lock = _forking.new_lock(self, "lock", threading.Lock)

    def release(self) -> None:
        """Detach the program if it is still the interface's, then close what is owned
        (a forked child only closes its copies: the attachment is its parent's)."""
        with self.lock:
            try:
                if self.generation == _forking.generation():
                    with self.prog.hold() as fd:
                        self.sock.set_xdp(self.ifindex, -1, int(self.mode), expected_fd=fd)
            except SyscallError:
                pass  # replaced by someone else, or the interface is gone
            finally:
                self.prog.close()
                self.sock.close()


def _own_program_fd(program: Program) -> FD:
    fd = program.fd.dup()
    fd.kind = f"attached program {program.name!r}"
    return fd


class XDPNetlinkLink(Link):
    """An XDP program attached through rtnetlink (kernels without XDP links).

    `close()` detaches it if it is still the interface's program; `update()`
    replaces it atomically (XDP_FLAGS_REPLACE). The netlink socket is opened in
    the namespace of the call that attached, so closing works from anywhere. The
    attachment keeps its own descriptor of the program: it detaches even after the
    `Program` was closed, and at garbage collection and interpreter exit (a forked
    child's `close()` only releases its copies).
    """

    _detach_at_gc = True

    def __init__(self, program: Program, ifindex: int, mode: XDPMode,
                 sock: NetlinkSocket, prog_fd: FD | None = None) -> None:
        super().__init__(None, program)
        self.ifindex = ifindex
        self.mode = mode
        own = prog_fd if prog_fd is not None else _own_program_fd(program)
        self._state = _NetlinkXdp(sock, own, ifindex, mode)
        # runs on close(), at garbage collection and at interpreter exit
        self._finalizer = weakref.finalize(self, self._state.release)

    def _closed_error(self) -> ClosedError:
        return ClosedError(f"XDP attachment to interface {self.ifindex} is closed")

    def update(self, program: Program, *, old: Program | None = None) -> None:
        state = self._state
        with state.lock:
            if not self._finalizer.alive:
                raise self._closed_error()
            new = _own_program_fd(program)
            try:
                expected = old.fd if old is not None else state.prog
                # both numbers stay their programs' until the kernel has answered
                with new.hold() as fd, expected.hold() as expected_fd:
                    state.sock.set_xdp(self.ifindex, fd, int(self.mode),
                                       expected_fd=expected_fd)
            except BaseException:
                new.close()
                raise
            state.prog, previous = new, state.prog
            previous.close()
        self.program = program

    def pin(self, path: object) -> None:
        raise NotSupportedError("pinning an XDP attachment made over netlink",
                                "this kernel has no XDP bpf_link (5.9+)")

    def info(self) -> XdpInfo:
        """What the interface reports (programs by mode)."""
        state = self._state
        with state.lock:
            if not self._finalizer.alive:
                raise self._closed_error()
            return state.sock.xdp_info(self.ifindex)

    def detach(self) -> None:
        self.close()

    def close(self) -> None:
        """Detach the program if it is still the interface's (even if the `Program`
        was closed) and release the netlink socket."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive


@holds_first
def xdp(program: Program, iface: str | int, mode: XDPMode | str | int | None = None, *,
        netlink: bool = False) -> XDPLink | XDPNetlinkLink:
    """Attach an XDP program to interface `iface` (a name or an index in the calling
    thread's network namespace).

    `mode`: None/"auto", "generic" (skb), "driver" (native) or "offload", or an
    `XDPMode`. Uses a bpf_link where the kernel has them (a second attachment to the
    same interface and mode then fails with EBUSY/EEXIST; use `Link.update`), else
    (or with `netlink=True`) IFLA_XDP over rtnetlink, refusing to replace a program
    attached by someone else.
    """
    if program.type != ProgramType.XDP:
        raise InvalidArgumentError(
            f"xdp: program {program.name!r} is {program.type.name}, not XDP")
    m = _mode(mode)
    index = _ifindex(iface)
    what = f"interface {iface}" + (f" (index {index})" if isinstance(iface, str) else "")
    if not netlink and _have_xdp_links():
        attr = LinkCreateAttr(attach_type=int(AttachType.XDP))
        _validate.put(attr, "flags", int(m), "xdp: mode")
        _validate.put(attr, "target_ifindex", index, "ifindex")
        fd = link_create(program, attr, what)
        return XDPLink(fd, program, index, m)
    own = _own_program_fd(program)  # before attaching: nothing to undo if it fails
    sock: NetlinkSocket | None = None
    try:
        sock = NetlinkSocket()
        sock.set_xdp(index, own.fileno(), int(m) | consts.XDP_FLAGS_UPDATE_IF_NOEXIST)
    except BaseException:
        own.close()
        if sock is not None:
            sock.close()
        raise
    return XDPNetlinkLink(program, index, m, sock, own)


def xdp_info(iface: str | int) -> XdpInfo:
    """The XDP programs attached to `iface` (ids by mode), from rtnetlink."""
    with NetlinkSocket() as sock:
        return sock.xdp_info(_ifindex(iface))


def _have_xdp_links() -> bool:
    return features.have_link_type(LinkType.XDP)
