"""Socket filters and SO_REUSEPORT selection: programs attached to one socket with
setsockopt (no bpf_link exists for these)."""

from __future__ import annotations

import socket as _socket
import threading
from typing import TYPE_CHECKING

from .._sys import forking as _forking
from .._sys.fd import hold, holds_first
from .._sys.types import ProgramType
from ..errors import ClosedError, InvalidArgumentError, NotSupportedError
from .base import Link

if TYPE_CHECKING:
    from ..programs import Program

__all__ = ["SocketFilterLink", "reuseport", "socket_filter"]

SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27  # SO_DETACH_FILTER
SO_ATTACH_REUSEPORT_EBPF = 52
SO_DETACH_REUSEPORT_BPF = 68


class SocketFilterLink(Link):
    """A program attached to one socket with SO_ATTACH_BPF (or, for SO_REUSEPORT
    groups, SO_ATTACH_REUSEPORT_EBPF); close() detaches it.

    The socket keeps its own reference to the program, so closing the Program
    object does not detach it; closing this link (or the socket) does. `update()`
    swaps the program atomically; there is no link object to pin or query.
    """

    def __init__(self, program: Program, sock: _socket.socket, reuseport: bool = False) -> None:
        super().__init__(None, program)
        self._sock: _socket.socket | None = sock
        self._reuseport = reuseport
        # orders update() and close(): an update in flight when close() starts finishes
        # first (close then detaches its program), a later one raises
        self._lock = _forking.new_lock(self, "_lock", threading.Lock)

    @property
    def socket(self) -> _socket.socket | None:
        """The socket the program is attached to (None once closed)."""
        return self._sock

    def _closed_error(self) -> ClosedError:
        name = getattr(self.program, "name", "")
        where = "a socket's SO_REUSEPORT group" if self._reuseport else "a socket"
        return ClosedError(f"attachment of program {name!r} to {where} is closed")

    def update(self, program: Program, *, old: Program | None = None) -> None:
        """Replace the filter; the kernel swaps it atomically for the socket.
        `ClosedError` once `close()` has started (from any thread), as for every link."""
        with self._lock:
            if self._sock is None:
                raise self._closed_error()
            opt = SO_ATTACH_REUSEPORT_EBPF if self._reuseport else SO_ATTACH_BPF
            with hold(program):  # its number stays its own until the socket has it
                self._sock.setsockopt(_socket.SOL_SOCKET, opt, program.fileno())
            self.program = program

    def pin(self, path: object) -> None:
        raise NotSupportedError("pinning a socket filter", "it is not a bpf_link")

    def info(self) -> object:
        raise NotSupportedError("link info of a socket filter", "it is not a bpf_link")

    def detach(self) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
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

    def __repr__(self) -> str:
        kind = "reuseport" if self._reuseport else "filter"
        state = "closed" if self._sock is None else f"socket fd {self._sock.fileno()}"
        return f"<SocketFilterLink {kind} {state}>"


@holds_first
def socket_filter(program: Program, sock: _socket.socket) -> SocketFilterLink:
    """Attach a SOCKET_FILTER program to `sock` (SO_ATTACH_BPF): it sees every
    packet the socket receives (from the transport header for UDP/TCP, the link
    layer for packet sockets) and returns how many bytes to keep (0 drops it)."""
    if program.type != ProgramType.SOCKET_FILTER:
        raise InvalidArgumentError(f"socket_filter: program {program.name!r} is "
                                   f"{program.type.name}, not SOCKET_FILTER")
    sock.setsockopt(_socket.SOL_SOCKET, SO_ATTACH_BPF, program.fileno())
    return SocketFilterLink(program, sock)


@holds_first
def reuseport(program: Program, sock: _socket.socket) -> SocketFilterLink:
    """Attach an SK_REUSEPORT program (or a socket filter returning an index) that
    selects the socket of `sock`'s SO_REUSEPORT group for each incoming packet or
    connection (SO_ATTACH_REUSEPORT_EBPF). It applies to the whole group."""
    if program.type not in (ProgramType.SK_REUSEPORT, ProgramType.SOCKET_FILTER):
        raise InvalidArgumentError(f"reuseport: program {program.name!r} is "
                                   f"{program.type.name}, not SK_REUSEPORT")
    sock.setsockopt(_socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, program.fileno())
    return SocketFilterLink(program, sock, reuseport=True)
