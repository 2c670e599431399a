"""RLIMIT_MEMLOCK for kernels that charge BPF memory against it.

Before Linux 5.11 the kernel counted the memory of maps, programs and BTF objects
against the creating user's locked memory and failed with EPERM once RLIMIT_MEMLOCK
(often 64 KiB or 8 MiB) was reached; from 5.11 on that memory is charged to the memory
cgroup instead and the limit does not matter. `ensure_memlock` runs once per process,
before the first object is created (`ebpf._sys.syscall` calls it): on a kernel that
charges memlock it raises the soft and hard limits to infinity (the hard one needs
CAP_SYS_RESOURCE; without it the soft limit goes up to the hard one). On other kernels
it changes nothing. When the limit could not be raised, `memlock_note` says so, and
EPERM/ENOMEM errors carry that sentence.
"""

from __future__ import annotations

import errno
import os
import threading

from . import kernel_version
from . import log as _log
from .types import BPF_MAP_CREATE, MapCreateAttr

__all__ = ["INFINITY", "describe", "ensure_memlock", "kernel_charges_memlock",
           "memlock_note", "plan", "probe_memlock_charging"]


# resource.RLIM_INFINITY on Linux (the kernel's ~0): `resource` and `caps` are imported
# only on kernels that charge memlock (process start), tests compare the two
INFINITY = -1

_lock = threading.Lock()
_done = False
_charges: bool | None = None
_known = False
_failure = ""  # why raising the limit failed, "" when it did not


def plan(charges: bool | None, soft: int, hard: int,
         can_raise_hard: bool) -> tuple[int, int] | None:
    """The (soft, hard) RLIMIT_MEMLOCK to set, or None to leave the limits alone.

    Only a kernel known to charge memlock (`charges` True) gets a new limit: infinity
    when the process may raise the hard limit (CAP_SYS_RESOURCE) or the hard limit is
    already infinite, else the soft limit up to the hard one."""
    if not charges or soft == INFINITY:
        return None
    if can_raise_hard:
        return (INFINITY, INFINITY)
    if hard == INFINITY:
        return (INFINITY, INFINITY)
    if soft < hard:
        return (hard, hard)
    return None


def _size(limit: int) -> str:
    if limit == INFINITY:
        return "unlimited"
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if limit >= 1 << shift and limit % (1 << shift) == 0:
            return f"{limit >> shift} {unit}"
    return f"{limit} bytes"


def describe(charges: bool | None, soft: int, failure: str = "") -> str:
    """The sentence an EPERM/ENOMEM error carries about RLIMIT_MEMLOCK ("" when the
    limit cannot be the cause: the kernel does not charge it, or it is unlimited)."""
    if not charges or soft == INFINITY:
        return ""
    text = (f"this kernel (before Linux 5.11) charges BPF memory to RLIMIT_MEMLOCK, which is "
            f"{_size(soft)}")
    if failure:
        text += f" and could not be raised ({failure})"
    return text + ("; raise it (`ulimit -l unlimited`, LimitMEMLOCK=infinity) or give the "
                   "process CAP_SYS_RESOURCE")


def _create_array() -> int:
    from .syscall import bpf_errno  # circular: syscall imports this module

    attr = MapCreateAttr(map_type=2, key_size=4, value_size=4, max_entries=1)  # ARRAY
    return bpf_errno(BPF_MAP_CREATE, attr)


def probe_memlock_charging() -> bool | None:
    """Whether the running kernel charges BPF memory to RLIMIT_MEMLOCK, found by
    creating a one-element array map with the soft limit at 0 (restored at once).
    None when it cannot tell (maps cannot be created at all)."""
    import resource  # kernels that charge memlock only (see INFINITY)

    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, hard))
    except (ValueError, OSError):
        return None
    try:
        fd = _create_array()
    finally:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (soft, hard))
    if fd >= 0:
        os.close(fd)
        return False
    if fd != -errno.EPERM:
        return None
    fd = _create_array()  # EPERM at limit 0: the limit, or no privilege at all?
    if fd >= 0:
        os.close(fd)
        return True
    return None


def kernel_charges_memlock() -> bool | None:
    """Whether this kernel charges BPF memory to RLIMIT_MEMLOCK (False from 5.11 on,
    probed before), None when unknown. Learnt once per process."""
    global _charges, _known
    if not _known:
        _charges = False if kernel_version() >= (5, 11) else probe_memlock_charging()
        _known = _charges is not None
    return _charges


def _can_raise_hard() -> bool:
    from .caps import CAP_SYS_RESOURCE, read_privileges  # see INFINITY

    return read_privileges().has(CAP_SYS_RESOURCE)


def ensure_memlock() -> None:
    """Raise RLIMIT_MEMLOCK once per process if the kernel charges BPF memory to it."""
    global _done, _failure
    if _done:
        return
    with _lock:
        if _done:
            return
        _done = True  # first: the probe's own map creation comes back here
        charges = kernel_charges_memlock()
        if not charges:  # nothing to do (plan() says so too)
            return
        import resource  # see INFINITY

        soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        target = plan(charges, soft, hard, _can_raise_hard())
        if target is None:
            if charges and soft != INFINITY:
                _failure = "the hard limit is reached and CAP_SYS_RESOURCE is missing"
            return
        try:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, target)
        except (ValueError, OSError) as e:
            _failure = f"setrlimit: {e}"
            _log.warning("could not raise RLIMIT_MEMLOCK (%s): %s", _size(soft), e)
            return
        if target[0] != INFINITY:
            _failure = "the hard limit is reached and CAP_SYS_RESOURCE is missing"
        _log.debug("RLIMIT_MEMLOCK raised from %s to %s: this kernel charges BPF memory "
                   "to it", _size(soft), _size(target[0]))


def memlock_note() -> str:
    """What EPERM/ENOMEM errors say about RLIMIT_MEMLOCK ("" when it cannot be the cause)."""
    import resource  # see INFINITY

    try:
        charges = kernel_charges_memlock()
        soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    except (ValueError, OSError):
        return ""
    return describe(charges, soft, _failure)
