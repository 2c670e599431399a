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
    from typing import Any, Protocol

    class _ForkAware(Protocol):
        def _after_fork_in_child(self) -> None: ...


_tracked: weakref.WeakSet[Any] = weakref.WeakSet()
_locks: weakref.WeakKeyDictionary[Any, dict[str, Callable[[], Any]]] = \
    weakref.WeakKeyDictionary()
_generation = 0


def generation() -> int:
    """How many fork()s separate this process from the one that imported `ebpf`
    (0 in that process; each child counts one more than its parent)."""
    return _generation


def track(obj: _ForkAware) -> None:
    """Call ``obj._after_fork_in_child()`` in a child forked while `obj` lives."""
    _tracked.add(obj)


def reset_lock(owner: Any, attr: str, factory: Callable[[], Any] = _thread.allocate_lock) -> None:
    """Replace ``owner.<attr>`` (a module or any weakly referenceable object) by
    ``factory()`` in a forked child, so that a lock a parent thread held at fork
    time cannot deadlock the child."""
    _locks.setdefault(owner, {})[attr] = factory


# Module-level locks of modules that may not be imported yet: reset when they are.
_MODULE_LOCKS: dict[str, dict[str, Callable[[], Any]]] = {
    "ebpf._sys.probe": {"_tracefs_lock": _thread.allocate_lock},
    "ebpf.btf.ctypes_conv": {"_lock": _thread.RLock},
    "ebpf.link.tc": {"_qdisc_lock": _thread.allocate_lock},
    "ebpf.link.usdt": {"_ids_lock": _thread.allocate_lock},
}


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1
    for name, attrs in _MODULE_LOCKS.items():
        module = sys.modules.get(name)
        if module is not None:
            for attr, factory in attrs.items():
                if hasattr(module, attr):
                    setattr(module, attr, factory())
    for owner, attrs in list(_locks.items()):
        for attr, factory in attrs.items():
            setattr(owner, attr, factory())
    for obj in list(_tracked):
        try:
            obj._after_fork_in_child()
        except Exception:  # pragma: no cover - a reset must never break the child
            _log.exception("resetting %r after fork failed", obj)


os.register_at_fork(after_in_child=_after_fork_in_child)
