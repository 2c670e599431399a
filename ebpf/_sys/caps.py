"""Who may do what with bpf(2): the process's privileges, and the one EPERM classifier.

`read_privileges` reads what decides a permission check (the effective capability
set, the user namespace, ``kernel.unprivileged_bpf_disabled``, lockdown, seccomp).
`eperm_error` turns an EPERM (or an EACCES that means "not allowed") into the error a
user can act on: `ebpf.errors.PermissionError` naming exactly the capability that is
missing for what was attempted, or, when nothing is missing,
`ebpf.errors.KernelPolicyError` saying that the running kernel refused it by policy.

Kernel facts the requirements follow (kernel/bpf/syscall.c, Linux 5.8+):

- BPF_MAP_CREATE: CAP_BPF for every map type except the "unprivileged" ones (array,
  hash and their per-CPU / fd / of-maps variants, ring buffers, cgroup storage);
  CAP_NET_ADMIN for sockmap, sockhash, devmap, devmap_hash and xskmap. With
  ``kernel.unprivileged_bpf_disabled`` != 0 every map needs CAP_BPF.
- BPF_PROG_LOAD: CAP_BPF except for socket filters and cgroup skb programs (which also
  need it when unprivileged BPF is disabled); CAP_NET_ADMIN in addition for network
  program types, CAP_PERFMON for tracing types (freplace needs both).
- BPF_BTF_LOAD: CAP_BPF. The id commands (``*_GET_NEXT_ID``, ``*_GET_FD_BY_ID``),
  BPF_ENABLE_STATS and BPF_TASK_FD_QUERY: CAP_SYS_ADMIN. BPF_PROG_QUERY: CAP_NET_ADMIN.
- CAP_SYS_ADMIN implies all of them. Before 5.8 (no CAP_BPF/CAP_PERFMON) CAP_SYS_ADMIN
  stands in for both.
- Capabilities only count in the initial user namespace (without a BPF token).
- Before 5.11 the kernel charges BPF memory to RLIMIT_MEMLOCK and fails with EPERM when
  the limit is reached (see `ebpf._sys.rlimit`).
"""

from __future__ import annotations

import errno as _errno
import os

from ..errors import SyscallError
from . import kernel_version
from . import types as _t
from .fastclass import FrozenRecord
from .types import MapType, ProgramType

__all__ = [
    "CAP_BPF",
    "CAP_NET_ADMIN",
    "CAP_PERFMON",
    "CAP_SYS_ADMIN",
    "CAP_SYS_RESOURCE",
    "Privileges",
    "eperm_error",
    "read_privileges",
    "required_capabilities",
]

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24
CAP_PERFMON = 38
CAP_BPF = 39

_CAP_NAMES = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
              CAP_SYS_RESOURCE: "CAP_SYS_RESOURCE", CAP_PERFMON: "CAP_PERFMON",
              CAP_BPF: "CAP_BPF"}
# the capabilities bpf(2) looks at, in the order messages list them
_BPF_CAPS = (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN)

# /proc/self/ns/user of the initial user namespace has this fixed inode (PROC_USER_INIT_INO)
_INIT_USER_NS_INO = 0xEFFFFFFD

_UNPRIV_MAPS = frozenset({
    MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
    MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS, MapType.HASH, MapType.PERCPU_HASH,
    MapType.HASH_OF_MAPS, MapType.RINGBUF, MapType.USER_RINGBUF,
    MapType.CGROUP_STORAGE_DEPRECATED, MapType.PERCPU_CGROUP_STORAGE_DEPRECATED})
_NET_ADMIN_MAPS = frozenset({MapType.SOCKMAP, MapType.SOCKHASH, MapType.DEVMAP,
                             MapType.DEVMAP_HASH, MapType.XSKMAP})
_UNPRIV_PROGS = frozenset({ProgramType.SOCKET_FILTER, ProgramType.CGROUP_SKB})
_NET_ADMIN_PROGS = frozenset({
    ProgramType.SCHED_CLS, ProgramType.SCHED_ACT, ProgramType.XDP, ProgramType.LWT_IN,
    ProgramType.LWT_OUT, ProgramType.LWT_XMIT, ProgramType.LWT_SEG6LOCAL,
    ProgramType.SK_SKB, ProgramType.SK_MSG, ProgramType.FLOW_DISSECTOR,
    ProgramType.CGROUP_DEVICE, ProgramType.CGROUP_SOCK, ProgramType.CGROUP_SOCK_ADDR,
    ProgramType.CGROUP_SOCKOPT, ProgramType.CGROUP_SYSCTL, ProgramType.SOCK_OPS,
    ProgramType.EXT, ProgramType.NETFILTER})
_PERFMON_PROGS = frozenset({
    ProgramType.KPROBE, ProgramType.TRACEPOINT, ProgramType.PERF_EVENT,
    ProgramType.RAW_TRACEPOINT, ProgramType.RAW_TRACEPOINT_WRITABLE, ProgramType.TRACING,
    ProgramType.LSM, ProgramType.STRUCT_OPS, ProgramType.EXT})
_SYS_ADMIN_CMDS = frozenset({
    _t.BPF_PROG_GET_NEXT_ID, _t.BPF_MAP_GET_NEXT_ID, _t.BPF_BTF_GET_NEXT_ID,
    _t.BPF_LINK_GET_NEXT_ID, _t.BPF_PROG_GET_FD_BY_ID, _t.BPF_MAP_GET_FD_BY_ID,
    _t.BPF_BTF_GET_FD_BY_ID, _t.BPF_LINK_GET_FD_BY_ID, _t.BPF_ENABLE_STATS,
    _t.BPF_TASK_FD_QUERY})
# commands that check no capability: an EPERM from them is the object's access mode or policy
_NO_CAP_CMDS = frozenset({
    _t.BPF_MAP_LOOKUP_ELEM, _t.BPF_MAP_UPDATE_ELEM, _t.BPF_MAP_DELETE_ELEM,
    _t.BPF_MAP_GET_NEXT_KEY, _t.BPF_MAP_LOOKUP_AND_DELETE_ELEM, _t.BPF_MAP_LOOKUP_BATCH,
    _t.BPF_MAP_LOOKUP_AND_DELETE_BATCH, _t.BPF_MAP_UPDATE_BATCH, _t.BPF_MAP_DELETE_BATCH,
    _t.BPF_MAP_FREEZE, _t.BPF_OBJ_GET_INFO_BY_FD, _t.BPF_OBJ_PIN, _t.BPF_OBJ_GET,
    _t.BPF_PROG_TEST_RUN, _t.BPF_ITER_CREATE, _t.BPF_LINK_DETACH, _t.BPF_PROG_BIND_MAP})
PERF_EVENT_OPEN = "perf_event_open"
"""`eperm_error`'s `cmd` for perf_event_open(2) (kprobes, uprobes, tracepoints: CAP_PERFMON)."""



class Privileges(FrozenRecord):
    """What decides bpf(2)'s permission checks for this process, read at one moment."""

    # a FrozenRecord, not a dataclass: `dataclasses` costs process start ~1 ms a class
    _FIELDS = ("effective", "euid", "unprivileged_bpf_disabled", "lockdown", "seccomp",
                 "init_user_ns", "kernel")
    __slots__ = _FIELDS

    effective: int
    """The effective capability mask (CapEff of /proc/self/status)."""
    euid: int
    unprivileged_bpf_disabled: int | None
    """``kernel.unprivileged_bpf_disabled`` (0, 1 or 2), None when unreadable."""
    lockdown: str | None
    """The active lockdown mode ("none", "integrity", "confidentiality"), None if unknown."""
    seccomp: int | None
    """Seccomp mode of the process (0 none, 1 strict, 2 filter), None if unknown."""
    init_user_ns: bool
    """Whether the process runs in the initial user namespace (where capabilities count)."""
    kernel: tuple[int, int]
    """The running kernel's (major, minor) version."""

    def __init__(self, effective: int, euid: int, unprivileged_bpf_disabled: int | None,
                 lockdown: str | None, seccomp: int | None, init_user_ns: bool,
                 kernel: tuple[int, int] = (0, 0)) -> None:
        self._init_fields(effective, euid, unprivileged_bpf_disabled, lockdown, seccomp,
                          init_user_ns, kernel)

    def has(self, cap: int) -> bool:
        """Whether capability number `cap` is in the effective set."""
        return bool(self.effective >> cap & 1)

    def satisfies(self, alternatives: tuple[int, ...]) -> bool:
        """Whether the process holds any one of `alternatives`."""
        return any(self.has(c) for c in alternatives)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _bracketed_word(text: str) -> str | None:
    """The first ``[word]`` of `text` (word characters only), as in the lockdown file
    ("none [integrity] confidentiality")."""
    start = text.find("[")
    while start >= 0:
        end = text.find("]", start + 1)
        if end < 0:
            return None
        word = text[start + 1:end]
        if word and (word.replace("_", "a").isalnum()):
            return word
        start = text.find("[", start + 1)
    return None


def read_privileges() -> Privileges:
    """Read the process's privileges now (capabilities can change: never cached)."""
    eff, seccomp = 0, None
    status = _read("/proc/self/status") or ""
    for line in status.splitlines():
        key, _, value = line.partition(":")
        try:
            if key == "CapEff":
                eff = int(value.strip(), 16)
            elif key == "Seccomp":
                seccomp = int(value.strip())
        except ValueError:
            pass
    sysctl = _read("/proc/sys/kernel/unprivileged_bpf_disabled")
    try:
        unpriv = int(sysctl.strip()) if sysctl is not None else None
    except ValueError:
        unpriv = None
    lockdown = None
    text = _read("/sys/kernel/security/lockdown")
    if text is not None:
        lockdown = _bracketed_word(text)
    try:
        init_ns = os.stat("/proc/self/ns/user").st_ino == _INIT_USER_NS_INO
    except OSError:
        init_ns = True  # cannot tell: assume the common case
    return Privileges(eff, os.geteuid(), unpriv, lockdown, seccomp, init_ns, kernel_version())


def required_capabilities(
    cmd: int | str | None,
    priv: Privileges,
    *,
    prog_type: int | None = None,
    map_type: int | None = None,
) -> list[tuple[int, ...]]:
    """What `cmd` (a `Cmd`, `PERF_EVENT_OPEN`, or None for "some bpf() command") needs:
    a list of requirements, each satisfied by any one capability of its tuple."""
    sysadmin_only = priv.kernel < (5, 8)  # no CAP_BPF / CAP_PERFMON yet
    bpf = (CAP_SYS_ADMIN,) if sysadmin_only else (CAP_BPF, CAP_SYS_ADMIN)
    perfmon = (CAP_SYS_ADMIN,) if sysadmin_only else (CAP_PERFMON, CAP_SYS_ADMIN)
    net = (CAP_NET_ADMIN, CAP_SYS_ADMIN)
    unpriv_off = priv.unprivileged_bpf_disabled != 0  # unknown counts as disabled
    need: list[tuple[int, ...]] = []
    if cmd == PERF_EVENT_OPEN:
        return [perfmon]
    if cmd == _t.BPF_MAP_CREATE:
        if map_type in _NET_ADMIN_MAPS:
            need.append(net)
        if map_type not in _UNPRIV_MAPS or unpriv_off:
            need.insert(0, bpf)
        return need
    if cmd == _t.BPF_PROG_LOAD:
        if prog_type not in _UNPRIV_PROGS or unpriv_off:
            need.append(bpf)
        if prog_type in _NET_ADMIN_PROGS:
            need.append(net)
        if prog_type in _PERFMON_PROGS:
            need.append(perfmon)
        return need
    if cmd in _SYS_ADMIN_CMDS:
        return [(CAP_SYS_ADMIN,)]
    if cmd in _NO_CAP_CMDS:
        return []
    if cmd == _t.BPF_PROG_QUERY:
        return [net]
    if prog_type is not None:  # attaching: what the program itself needs
        return required_capabilities(_t.BPF_PROG_LOAD, priv, prog_type=prog_type)
    return [bpf]


def _cmd_of(what: str) -> int | None:
    """The command named as ``bpf(BPF_<NAME>)`` in `what`, if any."""
    start = what.find("bpf(BPF_")
    while start >= 0:
        rest = what[start + 8:]
        name = rest[:len(rest) - len(rest.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ_"))]
        if name and rest[len(name):len(name) + 1] == ")":
            try:
                return int(_t.Cmd[name])  # types_cmd.py, on an EPERM only
            except KeyError:
                return None
        start = what.find("bpf(BPF_", start + 1)
    return None


def _alternatives(need: tuple[int, ...]) -> str:
    first, *rest = need
    name = _CAP_NAMES.get(first, f"capability {first}")
    return f"{name} (or {' or '.join(_CAP_NAMES[c] for c in rest)})" if rest else name


def _held(priv: Privileges) -> str:
    held = [_CAP_NAMES[c] for c in _BPF_CAPS if priv.has(c)]
    return ", ".join(held) if held else "none of CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, " \
                                         "CAP_SYS_ADMIN"


def _policy_causes(priv: Privileges) -> str:
    causes = []
    if priv.seccomp == 2:
        causes.append("a seccomp filter is active (Seccomp: 2 in /proc/self/status; "
                      "container runtimes' default profiles refuse bpf())")
    if priv.lockdown in ("integrity", "confidentiality"):
        causes.append(f"kernel lockdown is in {priv.lockdown} mode")
    causes.append("a security module (SELinux, AppArmor, a BPF LSM program) or the "
                  "kernel's build refuses it")
    return "; ".join(causes)


def eperm_error(
    what: str,
    *,
    err: int = _errno.EPERM,
    cmd: int | str | None = None,
    prog_type: int | None = None,
    map_type: int | None = None,
    obj: str | None = None,
    feature: str | None = None,
    policy_message: str | None = None,
    privileges: Privileges | None = None,
) -> SyscallError:
    """The exception for an EPERM (or a permission EACCES) from `what`.

    `cmd` is the bpf command (inferred from a ``bpf(BPF_...)`` in `what` when None),
    `prog_type`/`map_type` what it was about, `obj` the object as a user knows it
    ("program 'dump_elems' (tracing, iter/bpf_map_elem)"), `feature` the
    `NotSupportedError.feature` of a policy refusal. `policy_message` replaces the
    message of a policy refusal; ``{held}`` in it becomes the capabilities held.

    Returns `PermissionError` naming the missing capability (or the user namespace, or
    RLIMIT_MEMLOCK on kernels that charge it), else `KernelPolicyError`.
    """
    # made on an EPERM only: importing this module (ebpf.features does) makes neither
    from ..errors import KernelPolicyError, PermissionError

    priv = privileges if privileges is not None else read_privileges()
    if cmd is None:
        cmd = _cmd_of(what)
    base = f"{what}: {os.strerror(err)}"
    need = list(dict.fromkeys(required_capabilities(cmd, priv, prog_type=prog_type,
                                                    map_type=map_type)))
    if not priv.init_user_ns and need:
        wanted = " and ".join(_alternatives(n) for n in need)
        return PermissionError(err, (
            f"{base}; the process runs in a user namespace other than the initial one, "
            f"where its capabilities do not count for bpf(): it needs {wanted} in the "
            "initial user namespace (or a BPF token)"))
    missing = [n for n in need if not priv.satisfies(n)]
    if missing:
        names = " and ".join(_alternatives(n) for n in missing)
        msg = f"{base}; needs {names}; the process (uid {priv.euid}) has {_held(priv)}"
        bpf_cap = CAP_BPF if priv.kernel >= (5, 8) else CAP_SYS_ADMIN
        by_sysctl = (cmd == _t.BPF_MAP_CREATE and map_type in _UNPRIV_MAPS) or (
            cmd == _t.BPF_PROG_LOAD and prog_type in _UNPRIV_PROGS) or cmd is None
        if priv.unprivileged_bpf_disabled and by_sysctl and any(
                n[0] == bpf_cap for n in missing):
            msg += (f"; kernel.unprivileged_bpf_disabled is {priv.unprivileged_bpf_disabled}, "
                    f"so bpf() needs {_CAP_NAMES[bpf_cap]} even for socket filters and "
                    "array/hash maps")
        return PermissionError(err, msg)
    from . import rlimit  # circular: rlimit imports this module

    memlock = rlimit.memlock_note() if cmd in (_t.BPF_MAP_CREATE, _t.BPF_PROG_LOAD,
                                               _t.BPF_BTF_LOAD, None) else ""
    if memlock:
        return PermissionError(err, f"{base}; {memlock}")
    held = _held(priv)
    if policy_message is not None:
        message = policy_message.replace("{held}", held)
    else:
        subject = obj or what
        code = _errno.errorcode.get(err, str(err))
        message = (f"{subject}: the running kernel refused it by policy ({code} although "
                   f"the process has {held}); no capability is missing: "
                   f"{_policy_causes(priv)}")
    return KernelPolicyError(feature or (obj or what), message, err)
