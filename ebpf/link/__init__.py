"""Attach programs to hooks. Every function returns a `Link` (a context manager)."""

from __future__ import annotations

from .base import Link, from_id, open_pinned

__all__ = ["Link", "from_id", "open_pinned"]
