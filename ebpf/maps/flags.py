"""`UpdateFlags`, the flags of `Map.update`, `Map.push` and `Map.update_batch`. A module
of its own, imported when the class is first asked for: a map's element operations take
plain ints, so creating and loading maps makes no enum class (process start, issue 15)."""

from __future__ import annotations

from .._sys import types as _t

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from enum import IntFlag
else:
    # the same stdlib class, made at a fraction of the cost (process start)
    from .._sys.fastclass import IntFlag

__all__ = ["UpdateFlags"]


class UpdateFlags(IntFlag):
    """Flags of `Map.update`: ANY (create or replace), NOEXIST (create only),
    EXIST (replace only), LOCK (update under the value's bpf_spin_lock)."""

    ANY = _t.BPF_ANY
    NOEXIST = _t.BPF_NOEXIST
    EXIST = _t.BPF_EXIST
    LOCK = _t.BPF_F_LOCK
