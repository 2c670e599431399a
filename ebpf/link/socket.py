"""Socket filters: SO_ATTACH_BPF on a socket (no bpf_link exists for these)."""

from __future__ import annotations

import socket as _socket
from typing import TYPE_CHECKING

from ..errors import NotSupportedError
from .base import Link

if TYPE_CHECKING:
    from ..programs import Program

SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27  # SO_DETACH_FILTER
SO_ATTACH_REUSEPORT_EBPF = 52
SO_DETACH_REUSEPORT_BPF = 68


class SocketFilterLink(Link):
    """A program attached to one socket with SO_ATTACH_BPF; close() detaches it.

    The socket keeps its own reference to the program, so closing the Program
    object does not detach it; closing this link (or the socket) does.
    """

    def __init__(self, program: Program, sock: _socket.socket, reuseport: bool = False) -> None:
        super().__init__(None, program)
        self._sock: _socket.socket | None = sock
        self._reuseport = reuseport

    def update(self, program: Program, *, old: Program | None = None) -> None:
        """Replace the filter; the kernel swaps it atomically for the socket."""
        if self._sock is None:
            raise ValueError("socket filter link is closed")
        opt = SO_ATTACH_REUSEPORT_EBPF if self._reuseport else SO_ATTACH_BPF
        self._sock.setsockopt(_socket.SOL_SOCKET, opt, program.fileno())
        self.program = program

    def pin(self, path: object) -> None:
        raise NotSupportedError("pinning a socket filter", "it is not a bpf_link")

    def detach(self) -> None:
        self.close()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None and sock.fileno() >= 0:
            opt = SO_DETACH_REUSEPORT_BPF if self._reuseport else SO_DETACH_BPF
            try:
                sock.setsockopt(_socket.SOL_SOCKET, opt, 0)
            except OSError:
                pass  # already detached (or the socket is gone)

    @property
    def closed(self) -> bool:
        return self._sock is None


def socket_filter(program: Program, sock: _socket.socket) -> SocketFilterLink:
    """Attach a SOCKET_FILTER program to `sock` (SO_ATTACH_BPF)."""
    sock.setsockopt(_socket.SOL_SOCKET, SO_ATTACH_BPF, program.fileno())
    return SocketFilterLink(program, sock)


def reuseport(program: Program, sock: _socket.socket) -> SocketFilterLink:
    """Attach a SK_REUSEPORT (or socket filter) program that selects the socket of a
    SO_REUSEPORT group (SO_ATTACH_REUSEPORT_EBPF)."""
    sock.setsockopt(_socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, program.fileno())
    return SocketFilterLink(program, sock, reuseport=True)
