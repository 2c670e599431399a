"""What a program's ELF section name says: ``SEC("kprobe/do_unlinkat")`` -> program type.

`lookup_section` maps a program's section name to a `SectionDef`: the program
type, the expected attach type, the attach target written in the name, the
load flags and whether the program can be attached automatically. The naming
convention is libbpf's, so objects written for libbpf load here the same way:
the table holds the names libbpf 1.6 knows (and the sleepable tracepoints
``tp.s``/``tracepoint.s``, ``raw_tp.s``/``raw_tracepoint.s`` and ``tp_btf.s``
libbpf added after it), tried in libbpf's order, the first match winning. A pattern

- ``name`` matches that name only;
- ``name+`` matches ``name`` alone or ``name/<target>``; the part after the
  slash is the attach target (``kprobe/do_unlinkat`` -> ``do_unlinkat``).

A leading ``?`` (``SEC("?xdp")``) marks a program that is not loaded by
default: it is stripped before matching and reported as ``autoload=False``.
Unknown names give None; the caller decides what to do with them.

Helpers parse the attach targets the auto-attachers understand:
`parse_kprobe_target`, `parse_uprobe_target`, `parse_usdt_target` and
`parse_tracepoint_target`.
"""

from __future__ import annotations

import functools

from ebpf._sys.consts import BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS
from ebpf._sys.fastclass import FrozenRecord
from ebpf.errors import InvalidArgumentError

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from enum import Enum, IntFlag
    from typing import Any, TypeAlias

    from ebpf._sys.types import AttachType, ProgramType

    from ._section_patterns import SECTION_TABLE as SECTION_TABLE
    from ._section_patterns import SectionPattern as SectionPattern
else:
    # the same stdlib classes, made at a fraction of the cost (process start)
    from ebpf._sys.fastclass import Enum, IntFlag

__all__ = [
    "SECTION_TABLE",
    "AttachKind",
    "SecFlags",
    "SectionDef",
    "SectionPattern",
    "lookup_section",
    "parse_kprobe_target",
    "parse_tracepoint_target",
    "parse_uprobe_target",
    "parse_usdt_target",
]


class SecFlags(IntFlag):
    """Properties of a section-name pattern."""

    NONE = 0
    #: loading may go on without the expected attach type on a kernel that
    #: refuses it (older kernels load such programs without one)
    EXP_ATTACH_OPT = 1
    #: a program type that BPF_PROG_ATTACH attaches (kept for reference; nothing here uses it)
    ATTACHABLE = 2
    ATTACHABLE_OPT = ATTACHABLE | EXP_ATTACH_OPT
    #: the name's target is looked up in BTF: a kernel function, tracepoint,
    #: LSM hook or another program
    ATTACH_BTF = 4
    #: loaded with ``BPF_F_SLEEPABLE``
    SLEEPABLE = 8
    #: loaded with ``BPF_F_XDP_HAS_FRAGS``: the program sees multi-buffer packets
    XDP_FRAGS = 16
    #: a USDT probe: uprobes on the note's addresses (one uprobe_multi link where possible)
    USDT = 32


class AttachKind(Enum):
    """Which automatic attacher, if any, takes a section's programs."""

    #: none: the hook needs something the name cannot say (an interface, a
    #: cgroup, a socket; struct_ops attach through their map)
    NONE = "none"
    KPROBE = "kprobe"
    KSYSCALL = "ksyscall"
    KPROBE_MULTI = "kprobe_multi"
    KPROBE_SESSION = "kprobe_session"
    UPROBE = "uprobe"
    UPROBE_MULTI = "uprobe_multi"
    USDT = "usdt"
    TRACEPOINT = "tracepoint"
    RAW_TRACEPOINT = "raw_tracepoint"
    #: fentry/fexit/fmod_ret/tp_btf/freplace: one tracing link to the target named
    TRACING = "tracing"
    LSM = "lsm"
    ITER = "iter"


_F = SecFlags
_K = AttachKind
_S = _F.SLEEPABLE
_B = _F.ATTACH_BTF


if TYPE_CHECKING:
    Row: TypeAlias = tuple[str, str, str | None, SecFlags, AttachKind]


def _p(pattern: str, ptype: str, atype: str | None, flags: SecFlags = _F.NONE,
       kind: AttachKind = _K.NONE) -> Row:
    return pattern, ptype, atype, flags, kind


#: The section-name patterns libbpf 1.6 knows (and the sleepable tracepoints added
#: after it), in the order they are tried, as plain tuples: `SECTION_TABLE` holds them
#: as `SectionPattern`s (pattern, program type and attach type member names, flags, kind)
ROWS: tuple[Row, ...] = (
    _p("socket", "SOCKET_FILTER", None),
    _p("sk_reuseport/migrate", "SK_REUSEPORT", "SK_REUSEPORT_SELECT_OR_MIGRATE", _F.ATTACHABLE),
    _p("sk_reuseport", "SK_REUSEPORT", "SK_REUSEPORT_SELECT", _F.ATTACHABLE),
    _p("kprobe+", "KPROBE", None, kind=_K.KPROBE),
    _p("uprobe+", "KPROBE", None, kind=_K.UPROBE),
    _p("uprobe.s+", "KPROBE", None, _S, _K.UPROBE),
    _p("kretprobe+", "KPROBE", None, kind=_K.KPROBE),
    _p("uretprobe+", "KPROBE", None, kind=_K.UPROBE),
    _p("uretprobe.s+", "KPROBE", None, _S, _K.UPROBE),
    _p("kprobe.multi+", "KPROBE", "TRACE_KPROBE_MULTI", kind=_K.KPROBE_MULTI),
    _p("kretprobe.multi+", "KPROBE", "TRACE_KPROBE_MULTI", kind=_K.KPROBE_MULTI),
    _p("kprobe.session+", "KPROBE", "TRACE_KPROBE_SESSION", kind=_K.KPROBE_SESSION),
    _p("uprobe.multi+", "KPROBE", "TRACE_UPROBE_MULTI", kind=_K.UPROBE_MULTI),
    _p("uretprobe.multi+", "KPROBE", "TRACE_UPROBE_MULTI", kind=_K.UPROBE_MULTI),
    _p("uprobe.session+", "KPROBE", "TRACE_UPROBE_SESSION", kind=_K.UPROBE_MULTI),
    _p("uprobe.multi.s+", "KPROBE", "TRACE_UPROBE_MULTI", _S, _K.UPROBE_MULTI),
    _p("uretprobe.multi.s+", "KPROBE", "TRACE_UPROBE_MULTI", _S, _K.UPROBE_MULTI),
    _p("uprobe.session.s+", "KPROBE", "TRACE_UPROBE_SESSION", _S, _K.UPROBE_MULTI),
    _p("ksyscall+", "KPROBE", None, kind=_K.KSYSCALL),
    _p("kretsyscall+", "KPROBE", None, kind=_K.KSYSCALL),
    _p("usdt+", "KPROBE", None, _F.USDT, _K.USDT),
    _p("usdt.s+", "KPROBE", None, _F.USDT | _S, _K.USDT),
    # tc: "tc/ingress" and "tcx/ingress" both mean a tcx link (6.6); the bare
    # names are for filters and actions attached through netlink
    _p("tc/ingress", "SCHED_CLS", "TCX_INGRESS"),
    _p("tc/egress", "SCHED_CLS", "TCX_EGRESS"),
    _p("tcx/ingress", "SCHED_CLS", "TCX_INGRESS"),
    _p("tcx/egress", "SCHED_CLS", "TCX_EGRESS"),
    _p("tc", "SCHED_CLS", None),
    _p("classifier", "SCHED_CLS", None),
    _p("action", "SCHED_ACT", None),
    _p("netkit/primary", "SCHED_CLS", "NETKIT_PRIMARY"),
    _p("netkit/peer", "SCHED_CLS", "NETKIT_PEER"),
    _p("tracepoint+", "TRACEPOINT", None, kind=_K.TRACEPOINT),
    _p("tp+", "TRACEPOINT", None, kind=_K.TRACEPOINT),
    _p("tracepoint.s+", "TRACEPOINT", None, _S, _K.TRACEPOINT),
    _p("tp.s+", "TRACEPOINT", None, _S, _K.TRACEPOINT),
    _p("raw_tracepoint+", "RAW_TRACEPOINT", None, kind=_K.RAW_TRACEPOINT),
    _p("raw_tp+", "RAW_TRACEPOINT", None, kind=_K.RAW_TRACEPOINT),
    _p("raw_tracepoint.s+", "RAW_TRACEPOINT", None, _S, _K.RAW_TRACEPOINT),
    _p("raw_tp.s+", "RAW_TRACEPOINT", None, _S, _K.RAW_TRACEPOINT),
    _p("raw_tracepoint.w+", "RAW_TRACEPOINT_WRITABLE", None, kind=_K.RAW_TRACEPOINT),
    _p("raw_tp.w+", "RAW_TRACEPOINT_WRITABLE", None, kind=_K.RAW_TRACEPOINT),
    _p("tp_btf+", "TRACING", "TRACE_RAW_TP", _B, _K.TRACING),
    _p("tp_btf.s+", "TRACING", "TRACE_RAW_TP", _B | _S, _K.TRACING),
    _p("fentry+", "TRACING", "TRACE_FENTRY", _B, _K.TRACING),
    _p("fmod_ret+", "TRACING", "MODIFY_RETURN", _B, _K.TRACING),
    _p("fexit+", "TRACING", "TRACE_FEXIT", _B, _K.TRACING),
    _p("fentry.s+", "TRACING", "TRACE_FENTRY", _B | _S, _K.TRACING),
    _p("fmod_ret.s+", "TRACING", "MODIFY_RETURN", _B | _S, _K.TRACING),
    _p("fexit.s+", "TRACING", "TRACE_FEXIT", _B | _S, _K.TRACING),
    _p("freplace+", "EXT", None, _B, _K.TRACING),
    _p("lsm+", "LSM", "LSM_MAC", _B, _K.LSM),
    _p("lsm.s+", "LSM", "LSM_MAC", _B | _S, _K.LSM),
    _p("lsm_cgroup+", "LSM", "LSM_CGROUP", _B),
    _p("iter+", "TRACING", "TRACE_ITER", _B, _K.ITER),
    _p("iter.s+", "TRACING", "TRACE_ITER", _B | _S, _K.ITER),
    _p("syscall", "SYSCALL", None, _S),
    _p("xdp.frags/devmap", "XDP", "XDP_DEVMAP", _F.XDP_FRAGS),
    _p("xdp/devmap", "XDP", "XDP_DEVMAP", _F.ATTACHABLE),
    _p("xdp.frags/cpumap", "XDP", "XDP_CPUMAP", _F.XDP_FRAGS),
    _p("xdp/cpumap", "XDP", "XDP_CPUMAP", _F.ATTACHABLE),
    _p("xdp.frags", "XDP", "XDP", _F.XDP_FRAGS),
    _p("xdp", "XDP", "XDP", _F.ATTACHABLE_OPT),
    _p("perf_event", "PERF_EVENT", None),
    _p("lwt_in", "LWT_IN", None),
    _p("lwt_out", "LWT_OUT", None),
    _p("lwt_xmit", "LWT_XMIT", None),
    _p("lwt_seg6local", "LWT_SEG6LOCAL", None),
    _p("sockops", "SOCK_OPS", "CGROUP_SOCK_OPS", _F.ATTACHABLE_OPT),
    _p("sk_skb/stream_parser", "SK_SKB", "SK_SKB_STREAM_PARSER", _F.ATTACHABLE_OPT),
    _p("sk_skb/stream_verdict", "SK_SKB", "SK_SKB_STREAM_VERDICT", _F.ATTACHABLE_OPT),
    _p("sk_skb/verdict", "SK_SKB", "SK_SKB_VERDICT", _F.ATTACHABLE_OPT),
    _p("sk_skb", "SK_SKB", None),
    _p("sk_msg", "SK_MSG", "SK_MSG_VERDICT", _F.ATTACHABLE_OPT),
    _p("lirc_mode2", "LIRC_MODE2", "LIRC_MODE2", _F.ATTACHABLE_OPT),
    _p("flow_dissector", "FLOW_DISSECTOR", "FLOW_DISSECTOR", _F.ATTACHABLE_OPT),
    _p("cgroup_skb/ingress", "CGROUP_SKB", "CGROUP_INET_INGRESS", _F.ATTACHABLE_OPT),
    _p("cgroup_skb/egress", "CGROUP_SKB", "CGROUP_INET_EGRESS", _F.ATTACHABLE_OPT),
    _p("cgroup/skb", "CGROUP_SKB", None),
    _p("cgroup/sock_create", "CGROUP_SOCK", "CGROUP_INET_SOCK_CREATE", _F.ATTACHABLE),
    _p("cgroup/sock_release", "CGROUP_SOCK", "CGROUP_INET_SOCK_RELEASE", _F.ATTACHABLE),
    _p("cgroup/sock", "CGROUP_SOCK", "CGROUP_INET_SOCK_CREATE", _F.ATTACHABLE_OPT),
    _p("cgroup/post_bind4", "CGROUP_SOCK", "CGROUP_INET4_POST_BIND", _F.ATTACHABLE),
    _p("cgroup/post_bind6", "CGROUP_SOCK", "CGROUP_INET6_POST_BIND", _F.ATTACHABLE),
    _p("cgroup/bind4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_BIND", _F.ATTACHABLE),
    _p("cgroup/bind6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_BIND", _F.ATTACHABLE),
    _p("cgroup/connect4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_CONNECT", _F.ATTACHABLE),
    _p("cgroup/connect6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_CONNECT", _F.ATTACHABLE),
    _p("cgroup/connect_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_CONNECT", _F.ATTACHABLE),
    _p("cgroup/sendmsg4", "CGROUP_SOCK_ADDR", "CGROUP_UDP4_SENDMSG", _F.ATTACHABLE),
    _p("cgroup/sendmsg6", "CGROUP_SOCK_ADDR", "CGROUP_UDP6_SENDMSG", _F.ATTACHABLE),
    _p("cgroup/sendmsg_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_SENDMSG", _F.ATTACHABLE),
    _p("cgroup/recvmsg4", "CGROUP_SOCK_ADDR", "CGROUP_UDP4_RECVMSG", _F.ATTACHABLE),
    _p("cgroup/recvmsg6", "CGROUP_SOCK_ADDR", "CGROUP_UDP6_RECVMSG", _F.ATTACHABLE),
    _p("cgroup/recvmsg_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_RECVMSG", _F.ATTACHABLE),
    _p("cgroup/getpeername4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_GETPEERNAME", _F.ATTACHABLE),
    _p("cgroup/getpeername6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_GETPEERNAME", _F.ATTACHABLE),
    _p("cgroup/getpeername_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_GETPEERNAME", _F.ATTACHABLE),
    _p("cgroup/getsockname4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_GETSOCKNAME", _F.ATTACHABLE),
    _p("cgroup/getsockname6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_GETSOCKNAME", _F.ATTACHABLE),
    _p("cgroup/getsockname_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_GETSOCKNAME", _F.ATTACHABLE),
    _p("cgroup/sysctl", "CGROUP_SYSCTL", "CGROUP_SYSCTL", _F.ATTACHABLE),
    _p("cgroup/getsockopt", "CGROUP_SOCKOPT", "CGROUP_GETSOCKOPT", _F.ATTACHABLE),
    _p("cgroup/setsockopt", "CGROUP_SOCKOPT", "CGROUP_SETSOCKOPT", _F.ATTACHABLE),
    _p("cgroup/dev", "CGROUP_DEVICE", "CGROUP_DEVICE", _F.ATTACHABLE_OPT),
    _p("struct_ops+", "STRUCT_OPS", None),
    _p("struct_ops.s+", "STRUCT_OPS", None, _S),
    _p("sk_lookup", "SK_LOOKUP", "SK_LOOKUP", _F.ATTACHABLE),
    _p("netfilter", "NETFILTER", "NETFILTER"),
)

# Kinds whose attacher skips a bare section name (e.g. SEC("kprobe")): the
# target must then be given at attach time.
_NEEDS_TARGET = frozenset({
    AttachKind.KPROBE, AttachKind.KSYSCALL, AttachKind.KPROBE_MULTI, AttachKind.KPROBE_SESSION,
    AttachKind.UPROBE, AttachKind.UPROBE_MULTI, AttachKind.USDT, AttachKind.TRACEPOINT,
    AttachKind.RAW_TRACEPOINT,
})
_RETPROBES = frozenset({
    "kretprobe+", "uretprobe+", "uretprobe.s+", "kretsyscall+", "kretprobe.multi+",
    "uretprobe.multi+", "uretprobe.multi.s+",
})
_MULTI = frozenset({AttachKind.KPROBE_MULTI, AttachKind.KPROBE_SESSION, AttachKind.UPROBE_MULTI})


class SectionDef(FrozenRecord):
    """What a program's section name says about it."""

    # a FrozenRecord, not a dataclass: `dataclasses` costs process start ~1 ms a class
    _FIELDS = ("section", "pattern", "program_type", "attach_type", "attach_to", "flags",
                 "kind", "autoload")
    __slots__ = _FIELDS

    #: the section name without a leading "?"
    section: str
    #: the table entry that matched, e.g. "kprobe+" or "cgroup/connect4"
    pattern: str
    program_type: ProgramType
    #: the expected attach type passed at load time, or None for none
    attach_type: AttachType | None
    #: the attach target written after "<prefix>/" (None for a bare name):
    #: "do_unlinkat", "sched/sched_switch", "libc.so.6:malloc", "task", ...
    attach_to: str | None
    #: the properties of the matching pattern
    flags: SecFlags
    #: which auto-attacher handles the program
    kind: AttachKind
    #: False when the name started with "?" (program not loaded by default)
    autoload: bool

    def __init__(self, section: str, pattern: str, program_type: ProgramType,
                 attach_type: AttachType | None, attach_to: str | None, flags: SecFlags,
                 kind: AttachKind, autoload: bool = True) -> None:
        self._init_fields(section, pattern, program_type, attach_type, attach_to, flags, kind,
                          autoload)

    @property
    def sleepable(self) -> bool:
        """The program may sleep (loaded with ``BPF_F_SLEEPABLE``)."""
        return bool(self.flags & SecFlags.SLEEPABLE)

    @property
    def xdp_frags(self) -> bool:
        """An XDP program for multi-buffer packets (``BPF_F_XDP_HAS_FRAGS``)."""
        return bool(self.flags & SecFlags.XDP_FRAGS)

    @property
    def attach_btf(self) -> bool:
        """The attach target is resolved to a BTF id at load time (fentry, lsm, iter, ...)."""
        return bool(self.flags & SecFlags.ATTACH_BTF)

    @property
    def attach_type_optional(self) -> bool:
        """The expected attach type may be dropped on kernels that reject it."""
        return bool(self.flags & SecFlags.EXP_ATTACH_OPT)

    @property
    def usdt(self) -> bool:
        """A USDT probe."""
        return bool(self.flags & SecFlags.USDT)

    @property
    def multi(self) -> bool:
        """Attached through a multi link (kprobe.multi, kprobe.session, uprobe.multi,
        uprobe.session)."""
        return self.kind in _MULTI

    @property
    def session(self) -> bool:
        """A session probe: one program run on entry and on return (kprobe.session,
        uprobe.session)."""
        return self.attach_type is not None and self.attach_type.name in (
            "TRACE_KPROBE_SESSION", "TRACE_UPROBE_SESSION")

    @property
    def retprobe(self) -> bool:
        """A return probe (kretprobe, uretprobe, kretsyscall and their multi forms)."""
        return self.pattern in _RETPROBES

    @property
    def auto_attach(self) -> bool:
        """libbpf would attach this program automatically (skeleton ``attach()``).

        True when the kind has an attacher and the name carries what it needs;
        a bare ``SEC("kprobe")`` or ``SEC("tp")`` is not auto-attached.
        """
        if self.kind is AttachKind.NONE:
            return False
        return self.attach_to is not None or self.kind not in _NEEDS_TARGET

    @property
    def prog_flags(self) -> int:
        """The ``BPF_PROG_LOAD`` flags the section implies."""
        flags = 0
        if self.flags & SecFlags.SLEEPABLE:
            flags |= BPF_F_SLEEPABLE
        if self.flags & SecFlags.XDP_FRAGS:
            flags |= BPF_F_XDP_HAS_FRAGS
        return flags


def _match(pattern: str, name: str) -> tuple[bool, str | None]:
    """Whether `name` matches `pattern`, and the attach target it carries (None
    for a name without one)."""
    if pattern.endswith("+"):  # the name, alone or followed by "/<target>"
        base = pattern[:-1]
        if name == base:
            return True, None
        if name.startswith(base + "/"):
            return True, name[len(base) + 1:]
        return False, None
    if pattern.endswith("/"):  # a target is required (the 1.5 table has no such pattern)
        return (True, name[len(pattern):]) if name.startswith(pattern) else (False, None)
    return name == pattern, None


@functools.lru_cache(maxsize=1024)
def lookup_section(name: str) -> SectionDef | None:
    """The `SectionDef` for a program section name, or None if libbpf does not know it."""
    autoload = True
    if name.startswith("?"):
        autoload = False
        name = name[1:]
    # the uapi enums on the first lookup: `import ebpf.elf` stays small
    from ebpf._sys.types import AttachType, ProgramType

    for pattern, ptype, atype, flags, kind in ROWS:
        matched, extras = _match(pattern, name)
        if not matched:
            continue
        return SectionDef(
            section=name,
            pattern=pattern,
            program_type=ProgramType[ptype],
            attach_type=AttachType[atype] if atype else None,
            attach_to=extras,
            flags=flags,
            kind=kind,
            autoload=autoload,
        )
    return None


def __getattr__(name: str) -> Any:
    if name in ("SECTION_TABLE", "SectionPattern"):
        # the named tuples on first use (process start): see _section_patterns.py
        from . import _section_patterns

        return getattr(_section_patterns, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------
# Attach targets


# Checked with string methods, not regular expressions: compiling one costs ~0.2 ms of
# process start, and these run only when attaching.
_FUNC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
_HEX = frozenset("0123456789abcdefABCDEF")
_DEC = frozenset("0123456789")
_OCT = frozenset("01234567")


def _c_int(text: str) -> int | None:
    """A whole C integer literal (decimal, 0x hex or 0 octal, optional sign), or None."""
    sign = -1 if text.startswith("-") else 1
    digits = text[1:] if text[:1] in ("+", "-") else text
    if digits[:2] in ("0x", "0X"):
        return sign * int(digits[2:], 16) if len(digits) > 2 and _HEX.issuperset(
            digits[2:]) else None
    if digits[:1] == "0":
        return sign * int(digits, 8) if _OCT.issuperset(digits) else None
    if digits and _DEC.issuperset(digits):
        return sign * int(digits, 10)
    return None


def parse_kprobe_target(target: str, *, retprobe: bool = False) -> tuple[str, int]:
    """``"func[+offset]"`` -> ``(func, offset)``, as libbpf reads ``SEC("kprobe/...")``.

    The function name is made of ``[a-zA-Z0-9_.]`` and the offset is a C
    integer literal. Stricter than libbpf, which ignores trailing garbage:
    anything else raises InvalidArgumentError. Return probes take no offset.
    """
    func, plus, rest = target.partition("+")
    if not func or not _FUNC_CHARS.issuperset(func):
        raise InvalidArgumentError(f"invalid kprobe target {target!r}, expected <func>[+<offset>]")
    off_text = rest if plus else None
    offset = 0
    if off_text is not None:
        value = _c_int(off_text)
        if value is None:
            raise InvalidArgumentError(f"invalid kprobe offset in {target!r}")
        offset = value
    if retprobe and offset:
        raise InvalidArgumentError(f"kretprobes take no offset: {target!r}")
    return func, offset


def parse_uprobe_target(target: str, *, retprobe: bool = False) -> tuple[str, str, int]:
    """``"binary:function[+offset]"`` -> ``(binary, function, offset)``, as libbpf reads it.

    A trailing ``+offset`` is taken only when it is a whole number; otherwise
    it stays part of the function name. Return probes take no offset.
    """
    binary, sep, func = target.partition(":")
    if not sep or not binary or not func or "\n" in func:
        raise InvalidArgumentError(
            f"invalid uprobe target {target!r}, expected <binary>:<function>[+<offset>]"
        )
    offset = 0
    plus = func.rfind("+")
    if plus >= 0:
        value = _c_int(func[plus + 1:])
        if value is not None:
            offset = value
            func = func[:plus]
    if retprobe and offset:
        raise InvalidArgumentError(f"uretprobes take no offset: {target!r}")
    return binary, func, offset


def parse_usdt_target(target: str) -> tuple[str, str, str]:
    """``"path:provider:name"`` -> ``(path, provider, name)``."""
    parts = target.split(":")
    if len(parts) != 3 or not all(parts):
        raise InvalidArgumentError(
            f"invalid USDT target {target!r}, expected <path>:<provider>:<name>"
        )
    return parts[0], parts[1], parts[2]


def parse_tracepoint_target(target: str) -> tuple[str, str]:
    """``"category/name"`` -> ``(category, name)``."""
    category, sep, name = target.partition("/")
    if not sep or not category or not name:
        raise InvalidArgumentError(
            f"invalid tracepoint target {target!r}, expected <category>/<name>"
        )
    return category, name
