"""The flag enums of the specs: `MapFlags` (`MapSpec.flags`) and `ProgramFlags`
(`ProgramSpec.flags`). Specs hold plain ints, so that reading and loading an object
make neither class; public as ``ebpf.spec.maps.MapFlags`` and
``ebpf.spec.programs.ProgramFlags`` (their `__module__`), which load this module on
first use (process start)."""

from __future__ import annotations

from .._sys import consts
from .._sys import types as _t

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from enum import IntFlag
else:  # the stdlib class without enum's per-member cost (process start)
    from .._sys.fastclass import IntFlag

__all__ = ["MapFlags", "ProgramFlags"]


class MapFlags(IntFlag):
    """BPF_F_* flags for `MapSpec.flags` (map_flags of BPF_MAP_CREATE)."""

    NONE = 0
    NO_PREALLOC = _t.BPF_F_NO_PREALLOC
    NO_COMMON_LRU = _t.BPF_F_NO_COMMON_LRU
    NUMA_NODE = _t.BPF_F_NUMA_NODE
    RDONLY = _t.BPF_F_RDONLY
    WRONLY = _t.BPF_F_WRONLY
    STACK_BUILD_ID = _t.BPF_F_STACK_BUILD_ID
    ZERO_SEED = _t.BPF_F_ZERO_SEED
    RDONLY_PROG = _t.BPF_F_RDONLY_PROG
    WRONLY_PROG = _t.BPF_F_WRONLY_PROG
    CLONE = _t.BPF_F_CLONE
    MMAPABLE = _t.BPF_F_MMAPABLE
    PRESERVE_ELEMS = _t.BPF_F_PRESERVE_ELEMS
    INNER_MAP = _t.BPF_F_INNER_MAP
    LINK = _t.BPF_F_LINK
    PATH_FD = _t.BPF_F_PATH_FD
    VTYPE_BTF_OBJ_FD = _t.BPF_F_VTYPE_BTF_OBJ_FD
    TOKEN_FD = _t.BPF_F_TOKEN_FD
    SEGV_ON_FAULT = _t.BPF_F_SEGV_ON_FAULT
    NO_USER_CONV = _t.BPF_F_NO_USER_CONV


class ProgramFlags(IntFlag):
    """`ProgramSpec.flags` (BPF_PROG_LOAD ``prog_flags``)."""

    NONE = 0
    STRICT_ALIGNMENT = consts.BPF_F_STRICT_ALIGNMENT
    ANY_ALIGNMENT = consts.BPF_F_ANY_ALIGNMENT
    TEST_RND_HI32 = consts.BPF_F_TEST_RND_HI32
    TEST_STATE_FREQ = consts.BPF_F_TEST_STATE_FREQ
    SLEEPABLE = consts.BPF_F_SLEEPABLE
    XDP_HAS_FRAGS = consts.BPF_F_XDP_HAS_FRAGS
    XDP_DEV_BOUND_ONLY = consts.BPF_F_XDP_DEV_BOUND_ONLY
    TEST_REG_INVARIANTS = consts.BPF_F_TEST_REG_INVARIANTS


MapFlags.__module__ = "ebpf.spec.maps"  # where they are public (reprs, pickles, docs)
ProgramFlags.__module__ = "ebpf.spec.programs"
