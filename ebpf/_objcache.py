"""Caches that live on the object they are about, so that they die with it.

A module-level dict (or `weakref.WeakKeyDictionary`) keyed by an object whose cached
value refers back to that object (a BTF spec and the types parsed from it, a type and
the encoder compiled for it) keeps the object alive forever: a long-running process
that re-parses and reloads an object file would grow with every cycle. Instead, such a
cache is a dict stored in the object's own ``__dict__``: references from the value back
to the object form a cycle that the garbage collector frees together with the object.
"""

from __future__ import annotations

from typing import Any


def attached(obj: object, name: str) -> dict[Any, Any]:
    """The dict stored on `obj` under attribute `name` (created empty on first use).

    `obj` must have a ``__dict__``; `name` should be private to the caller (e.g.
    ``"_programs_core_caches"``). Creating the dict is atomic under the GIL, so two
    threads asking at once get the same dict.
    """
    d: dict[Any, Any] = vars(obj).setdefault(name, {})
    return d


class Bounded(dict[Any, Any]):
    """A dict that forgets everything once it holds `limit` entries: the fallback for
    keys with no owner to attach a cache to, where growth must stay bounded."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: Any, value: Any) -> None:
        if len(self) >= self.limit and key not in self:
            self.clear()
        super().__setitem__(key, value)


__all__ = ["Bounded", "attached"]
