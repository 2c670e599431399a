"""Attach programs to hooks. Every function returns a `Link` (a context manager)."""

from __future__ import annotations

from .base import Link, from_id, open_pinned
from .socket import SocketFilterLink, reuseport, socket_filter

__all__ = ["Link", "SocketFilterLink", "from_id", "open_pinned", "reuseport", "socket_filter"]
