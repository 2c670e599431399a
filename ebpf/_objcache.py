"""Caches that live on the object they are about, so that they die with it.

A module-level dict (or `weakref.WeakKeyDictionary`) keyed by an object whose cached
value refers back to that object (a BTF spec and the types parsed from it, a type and
the encoder compiled for it) keeps the object alive forever: a long-running process
that re-parses and reloads an object file would grow with every cycle. Instead, such a
cache is a dict stored in the object's own ``__dict__``: references from the value back
to the object form a cycle that the garbage collector frees together with the object.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from itertools import compress, repeat

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

_edits = 0
_tracked: dict[type, type] = {}


def attached(obj: object, name: str) -> dict[Any, Any]:
    """The dict stored on `obj` under attribute `name` (created empty on first use).

    `obj` must have a ``__dict__``; `name` should be private to the caller (e.g.
    ``"_programs_core_caches"``). Creating the dict is atomic under the GIL, so two
    threads asking at once get the same dict.
    """
    d: dict[Any, Any] = vars(obj).setdefault(name, {})
    return d


class Bounded(dict["Any", "Any"]):  # (names: no typing at run time, process start)
    """A dict that forgets everything once it holds `limit` entries: the fallback for
    keys with no owner to attach a cache to, where growth must stay bounded."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: Any, value: Any) -> None:
        if len(self) >= self.limit and key not in self:
            self.clear()
        super().__setitem__(key, value)


def edits() -> int:
    """How many attribute assignments (or deletions) objects passed to `track_edits`
    have seen since the process started: a cache built from such objects is still
    valid while this count is the same as when it was built."""
    return _edits


def tracked_classes(cls: type) -> tuple[type, type] | None:
    """`cls` and its edit-counting subclass (see `track_edits`), or None when objects
    of `cls` cannot be tracked (its class has a ``__dict__`` or no slots)."""
    base = getattr(cls, "_objcache_tracked_base", None) or cls
    sub = _tracked.get(base)
    if sub is None:
        # (instances have a __dict__ when a class of the MRO declares one: what
        # `"__dict__" in dir(base)` says, without building and sorting every name)
        if (any("__dict__" in vars(k) for k in base.__mro__)
                or not getattr(base, "__slots__", None)):
            return None
        sub = _tracked.setdefault(base, _tracking_subclass(base))
    return base, sub


def track_edits(objs: Iterable[object]) -> bool:
    """Make every later attribute assignment to one of `objs` count in `edits`; False
    (and none tracked) when one cannot be (see `tracked_classes`).

    Each object keeps its identity and values: its class becomes a subclass of the
    same name that only counts assignments (``isinstance`` holds, ``type(obj) is
    cls`` no longer does; copies and pickles are of the original class). Creating
    and reading such objects costs nothing extra, which a counting ``__setattr__``
    on the class itself would (every object the ELF parser creates would pay).
    """
    objs = list(objs)
    types = list(map(type, objs))
    swaps: list[tuple[type, type]] = []
    for cls in set(types):
        pair = tracked_classes(cls)
        if pair is None:
            return False
        if cls is pair[0]:
            swaps.append(pair)
    for base, sub in swaps:  # (at C speed: thousands of instructions per program)
        try:
            list(map(setattr, compress(objs, map(operator.is_, types, repeat(base))),
                     repeat("__class__"), repeat(sub)))
        except TypeError:  # a layout the subclass cannot take over
            return False
    return True


def _counting(method: Any) -> Any:
    """`method` of `dict`, counting a call in `edits` (even one that raised midway)."""

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        global _edits
        try:
            return method(self, *args, **kwargs)
        finally:
            _edits += 1

    counted.__name__ = method.__name__
    return counted


class CountingDict(dict["Any", "Any"]):  # (names: no typing at run time, process start)
    """A dict whose edits count in `edits`, as a tracked object's attribute assignments
    do (`track_edits`): a cache built from its contents holds while the count is the
    same, without comparing a copy of it. The ELF parser makes the instructions' meta
    dicts so. Copies and pickles are plain dicts; an edit through `dict`'s own methods
    (``dict.__setitem__(d, k, v)``, ``d.__init__(...)`` again) is not counted, as
    ``object.__setattr__`` is not for a tracked object."""

    __slots__ = ()

    def __reduce_ex__(self, protocol: Any) -> Any:
        return dict, (dict(self),)


for _name in ("__setitem__", "__delitem__", "__ior__", "clear", "pop", "popitem",
              "setdefault", "update"):
    setattr(CountingDict, _name, _counting(getattr(dict, _name)))
del _name


def _new_of(cls: Any) -> Any:
    """An empty `cls` object (what a copy or pickle of a tracked object starts from)."""
    return cls.__new__(cls)


def _tracking_subclass(cls: type) -> type:
    """A subclass of `cls` (same slots) that counts attribute assignments."""
    base_set: Any = cls.__setattr__
    base_del: Any = cls.__delattr__

    def __setattr__(self: Any, name: str, value: Any) -> None:
        global _edits
        base_set(self, name, value)
        _edits += 1

    def __delattr__(self: Any, name: str) -> None:
        global _edits
        base_del(self, name)
        _edits += 1

    def __reduce_ex__(self: Any, protocol: Any) -> Any:
        # copies and pickles are of `cls`: untracked, and loadable without this class
        reduced: Any = object.__reduce_ex__(self, max(int(protocol), 2))
        return (_new_of, (cls,), *reduced[2:])

    return type(cls.__name__, (cls,), {
        "__slots__": (), "__module__": cls.__module__, "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__, "__setattr__": __setattr__, "__delattr__": __delattr__,
        "__reduce_ex__": __reduce_ex__, "_objcache_tracked_base": cls})


__all__ = ["Bounded", "CountingDict", "attached", "edits", "track_edits", "tracked_classes"]
