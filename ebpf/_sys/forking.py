"""What a child process inherits through ``fork()``, and what it must reset.

A child starts with one thread (the one that forked), but with every lock in
the state other threads of the parent left it in: a lock held by a parent
thread at fork time would deadlock the child on first use. The child also
inherits every descriptor, which refer to the *same* kernel objects as the
parent's: maps and programs are simply shared (a map written by the child is
the map the parent reads), but a ring buffer or perf reader owns per-process
state that must not be shared (consumer positions in shared memory, the epoll
set and the wakeup eventfd that `close()` signals).

This module runs the resets registered here in the child (`os.register_at_fork`,
``after_in_child``): locks registered with `reset_lock` are replaced by new,
unlocked ones, and objects registered with `track` get their
``_after_fork_in_child()`` called (descriptor use counts, readers).
Nothing runs in the parent or for `os.posix_spawn`/`subprocess` (no fork
handlers run there, and close-on-exec descriptors are not inherited by the
program a child execs).
"""

from __future__ import annotations

import _thread  # (threading's locks, without importing threading: process start)
import os
import sys
import weakref
from collections.abc import Callable

from . import log as _log

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:  # a type for track(): no Protocol class at run time (import cost)
    from typing import Any, Protocol, TypeVar

    _L = TypeVar("_L")

    class _ForkAware(Protocol):
        def _after_fork_in_child(self) -> None: ...


# Weak references to the objects `track` was given: plain ones, without the callback a
# WeakSet gives each (an FD is made at every map and program load: ~6 k instructions
# less each); the dead ones are dropped when the list has doubled since it was last pruned.
_tracked: list[weakref.ref[Any]] = []
_prune_at = 256
_prune_lock = _thread.allocate_lock()
_locks: weakref.WeakKeyDictionary[Any, dict[str, Callable[[], Any]]] = \
    weakref.WeakKeyDictionary()
_generation = 0


def generation() -> int:
    """How many fork()s separate this process from the one that imported `ebpf`
    (0 in that process; each child counts one more than its parent)."""
    return _generation


def track(obj: _ForkAware) -> None:
    """Call ``obj._after_fork_in_child()`` in a child forked while `obj` lives."""
    _tracked.append(weakref.ref(obj))
    if len(_tracked) >= _prune_at:
        _prune()


def _prune() -> None:
    global _prune_at
    # One prune at a time (two would drop each other's entries); a prune asked for while
    # one runs, in another thread or from a finalizer the first one's allocations ran,
    # is skipped rather than waited for (the list is pruned again as it grows).
    if not _prune_lock.acquire(blocking=False):
        return
    try:
        n = len(_tracked)
        if n < _prune_at:
            return  # another thread pruned meanwhile
        # only the first n: entries appended meanwhile stay after them
        _tracked[:n] = [r for r in _tracked[:n] if r() is not None]
        _prune_at = max(256, 2 * len(_tracked))
    finally:
        _prune_lock.release()


def reset_lock(owner: Any, attr: str, factory: Callable[[], Any] = _thread.allocate_lock) -> None:
    """Replace ``owner.<attr>`` (a module or any weakly referenceable object) by
    ``factory()`` in a forked child, so that a lock a parent thread held at fork
    time cannot deadlock the child."""
    _locks.setdefault(owner, {})[attr] = factory


def new_lock(owner: Any, attr: str, factory: Callable[[], _L]) -> _L:
    """A new ``factory()`` lock for ``owner.<attr>``, registered first (`reset_lock`), so
    that no thread can hold it before a forked child would replace it. The caller
    publishes it: ``self._lock = new_lock(self, "_lock", _thread.RLock)``."""
    reset_lock(owner, attr, factory)
    return factory()


# Module-level locks of modules that may not be imported yet: reset when they are.
_MODULE_LOCKS: dict[str, dict[str, Callable[[], Any]]] = {
    "ebpf._sys.probe": {"_tracefs_lock": _thread.allocate_lock},
    "ebpf._sys.rlimit": {"_lock": _thread.allocate_lock},
    "ebpf.btf.cache": {"_lock": _thread.allocate_lock},
    "ebpf.btf.ctypes_conv": {"_lock": _thread.RLock},
    "ebpf.btf.kernel": {"_lock": _thread.allocate_lock},
    "ebpf.collection": {"_rewrite_lock": _thread.allocate_lock},
    "ebpf.instantiate": {"_shared_lock": _thread.RLock},
    "ebpf.link.tc": {"_qdisc_lock": _thread.allocate_lock},
    "ebpf.link.usdt": {"_ids_lock": _thread.allocate_lock},
    "ebpf.symbols.kernel": {"_lock": _thread.allocate_lock},
}


def _replace(owner: Any, attr: str, factory: Callable[[], Any]) -> None:
    try:
        setattr(owner, attr, factory())
    except Exception:  # logged, and the other resets still made
        _log.exception("replacing %r's %s after fork failed", owner, attr)


def _after_fork_in_child() -> None:
    # Each reset is made on its own: one that fails (logged) leaves the others done.
    global _generation, _prune_lock
    _generation += 1
    _prune_lock = _thread.allocate_lock()
    for name, attrs in _MODULE_LOCKS.items():
        module = sys.modules.get(name)
        if module is not None:
            for attr, factory in attrs.items():
                if hasattr(module, attr):
                    _replace(module, attr, factory)
    for owner, attrs in list(_locks.items()):
        for attr, factory in attrs.items():
            _replace(owner, attr, factory)
    for ref in list(_tracked):
        obj = ref()
        if obj is None:
            continue
        try:
            obj._after_fork_in_child()
        except Exception:  # pragma: no cover - a reset must never break the child
            _log.exception("resetting %r after fork failed", obj)


os.register_at_fork(after_in_child=_after_fork_in_child)
