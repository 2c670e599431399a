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

The table is plain data here; `SecFlags`, `AttachKind` and `SectionDef` are made on
first use (`_sectiondef.py`), and the object parser reads a program's types through
`_program_types` without them; the target parsers load on first use too (`_targets.py`:
process start).
"""

from __future__ import annotations

import functools

import ebpf._lazyattr as _lazyattr
from ebpf._sys.consts import BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import TypeAlias

    from ebpf._sys.types import AttachType, ProgramType

    from ._section_patterns import SECTION_TABLE as SECTION_TABLE
    from ._section_patterns import SectionPattern as SectionPattern
    from ._sectiondef import AttachKind as AttachKind
    from ._sectiondef import SecFlags as SecFlags
    from ._sectiondef import SectionDef as SectionDef
    from ._targets import parse_kprobe_target as parse_kprobe_target
    from ._targets import parse_tracepoint_target as parse_tracepoint_target
    from ._targets import parse_uprobe_target as parse_uprobe_target
    from ._targets import parse_usdt_target as parse_usdt_target

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

# `SecFlags` values, as the table's plain ints
_EXP_OPT = 1  # EXP_ATTACH_OPT
_ATT = 2  # ATTACHABLE
_ATT_OPT = _ATT | _EXP_OPT  # ATTACHABLE_OPT
_B = 4  # ATTACH_BTF
_S = 8  # SLEEPABLE
_FRAGS = 16  # XDP_FRAGS
_USDT = 32  # USDT

if TYPE_CHECKING:
    # pattern, program and attach type member names, SecFlags value, AttachKind value
    Row: TypeAlias = tuple[str, str, str | None, int, str]


#: The section-name patterns libbpf 1.6 knows (and the sleepable tracepoints added
#: after it), in the order they are tried, as plain tuples: (pattern, program type and
#: attach type member names, `SecFlags` value, `AttachKind` value); `SECTION_TABLE`
#: holds them as `SectionPattern`s
ROWS: tuple[Row, ...] = (
    ("socket", "SOCKET_FILTER", None, 0, "none"),
    ("sk_reuseport/migrate", "SK_REUSEPORT", "SK_REUSEPORT_SELECT_OR_MIGRATE", _ATT, "none"),
    ("sk_reuseport", "SK_REUSEPORT", "SK_REUSEPORT_SELECT", _ATT, "none"),
    ("kprobe+", "KPROBE", None, 0, "kprobe"),
    ("uprobe+", "KPROBE", None, 0, "uprobe"),
    ("uprobe.s+", "KPROBE", None, _S, "uprobe"),
    ("kretprobe+", "KPROBE", None, 0, "kprobe"),
    ("uretprobe+", "KPROBE", None, 0, "uprobe"),
    ("uretprobe.s+", "KPROBE", None, _S, "uprobe"),
    ("kprobe.multi+", "KPROBE", "TRACE_KPROBE_MULTI", 0, "kprobe_multi"),
    ("kretprobe.multi+", "KPROBE", "TRACE_KPROBE_MULTI", 0, "kprobe_multi"),
    ("kprobe.session+", "KPROBE", "TRACE_KPROBE_SESSION", 0, "kprobe_session"),
    ("uprobe.multi+", "KPROBE", "TRACE_UPROBE_MULTI", 0, "uprobe_multi"),
    ("uretprobe.multi+", "KPROBE", "TRACE_UPROBE_MULTI", 0, "uprobe_multi"),
    ("uprobe.session+", "KPROBE", "TRACE_UPROBE_SESSION", 0, "uprobe_multi"),
    ("uprobe.multi.s+", "KPROBE", "TRACE_UPROBE_MULTI", _S, "uprobe_multi"),
    ("uretprobe.multi.s+", "KPROBE", "TRACE_UPROBE_MULTI", _S, "uprobe_multi"),
    ("uprobe.session.s+", "KPROBE", "TRACE_UPROBE_SESSION", _S, "uprobe_multi"),
    ("ksyscall+", "KPROBE", None, 0, "ksyscall"),
    ("kretsyscall+", "KPROBE", None, 0, "ksyscall"),
    ("usdt+", "KPROBE", None, _USDT, "usdt"),
    ("usdt.s+", "KPROBE", None, _USDT | _S, "usdt"),
    # tc: "tc/ingress" and "tcx/ingress" both mean a tcx link (6.6); the bare
    # names are for filters and actions attached through netlink
    ("tc/ingress", "SCHED_CLS", "TCX_INGRESS", 0, "none"),
    ("tc/egress", "SCHED_CLS", "TCX_EGRESS", 0, "none"),
    ("tcx/ingress", "SCHED_CLS", "TCX_INGRESS", 0, "none"),
    ("tcx/egress", "SCHED_CLS", "TCX_EGRESS", 0, "none"),
    ("tc", "SCHED_CLS", None, 0, "none"),
    ("classifier", "SCHED_CLS", None, 0, "none"),
    ("action", "SCHED_ACT", None, 0, "none"),
    ("netkit/primary", "SCHED_CLS", "NETKIT_PRIMARY", 0, "none"),
    ("netkit/peer", "SCHED_CLS", "NETKIT_PEER", 0, "none"),
    ("tracepoint+", "TRACEPOINT", None, 0, "tracepoint"),
    ("tp+", "TRACEPOINT", None, 0, "tracepoint"),
    ("tracepoint.s+", "TRACEPOINT", None, _S, "tracepoint"),
    ("tp.s+", "TRACEPOINT", None, _S, "tracepoint"),
    ("raw_tracepoint+", "RAW_TRACEPOINT", None, 0, "raw_tracepoint"),
    ("raw_tp+", "RAW_TRACEPOINT", None, 0, "raw_tracepoint"),
    ("raw_tracepoint.s+", "RAW_TRACEPOINT", None, _S, "raw_tracepoint"),
    ("raw_tp.s+", "RAW_TRACEPOINT", None, _S, "raw_tracepoint"),
    ("raw_tracepoint.w+", "RAW_TRACEPOINT_WRITABLE", None, 0, "raw_tracepoint"),
    ("raw_tp.w+", "RAW_TRACEPOINT_WRITABLE", None, 0, "raw_tracepoint"),
    ("tp_btf+", "TRACING", "TRACE_RAW_TP", _B, "tracing"),
    ("tp_btf.s+", "TRACING", "TRACE_RAW_TP", _B | _S, "tracing"),
    ("fentry+", "TRACING", "TRACE_FENTRY", _B, "tracing"),
    ("fmod_ret+", "TRACING", "MODIFY_RETURN", _B, "tracing"),
    ("fexit+", "TRACING", "TRACE_FEXIT", _B, "tracing"),
    ("fentry.s+", "TRACING", "TRACE_FENTRY", _B | _S, "tracing"),
    ("fmod_ret.s+", "TRACING", "MODIFY_RETURN", _B | _S, "tracing"),
    ("fexit.s+", "TRACING", "TRACE_FEXIT", _B | _S, "tracing"),
    ("freplace+", "EXT", None, _B, "tracing"),
    ("lsm+", "LSM", "LSM_MAC", _B, "lsm"),
    ("lsm.s+", "LSM", "LSM_MAC", _B | _S, "lsm"),
    ("lsm_cgroup+", "LSM", "LSM_CGROUP", _B, "none"),
    ("iter+", "TRACING", "TRACE_ITER", _B, "iter"),
    ("iter.s+", "TRACING", "TRACE_ITER", _B | _S, "iter"),
    ("syscall", "SYSCALL", None, _S, "none"),
    ("xdp.frags/devmap", "XDP", "XDP_DEVMAP", _FRAGS, "none"),
    ("xdp/devmap", "XDP", "XDP_DEVMAP", _ATT, "none"),
    ("xdp.frags/cpumap", "XDP", "XDP_CPUMAP", _FRAGS, "none"),
    ("xdp/cpumap", "XDP", "XDP_CPUMAP", _ATT, "none"),
    ("xdp.frags", "XDP", "XDP", _FRAGS, "none"),
    ("xdp", "XDP", "XDP", _ATT_OPT, "none"),
    ("perf_event", "PERF_EVENT", None, 0, "none"),
    ("lwt_in", "LWT_IN", None, 0, "none"),
    ("lwt_out", "LWT_OUT", None, 0, "none"),
    ("lwt_xmit", "LWT_XMIT", None, 0, "none"),
    ("lwt_seg6local", "LWT_SEG6LOCAL", None, 0, "none"),
    ("sockops", "SOCK_OPS", "CGROUP_SOCK_OPS", _ATT_OPT, "none"),
    ("sk_skb/stream_parser", "SK_SKB", "SK_SKB_STREAM_PARSER", _ATT_OPT, "none"),
    ("sk_skb/stream_verdict", "SK_SKB", "SK_SKB_STREAM_VERDICT", _ATT_OPT, "none"),
    ("sk_skb/verdict", "SK_SKB", "SK_SKB_VERDICT", _ATT_OPT, "none"),
    ("sk_skb", "SK_SKB", None, 0, "none"),
    ("sk_msg", "SK_MSG", "SK_MSG_VERDICT", _ATT_OPT, "none"),
    ("lirc_mode2", "LIRC_MODE2", "LIRC_MODE2", _ATT_OPT, "none"),
    ("flow_dissector", "FLOW_DISSECTOR", "FLOW_DISSECTOR", _ATT_OPT, "none"),
    ("cgroup_skb/ingress", "CGROUP_SKB", "CGROUP_INET_INGRESS", _ATT_OPT, "none"),
    ("cgroup_skb/egress", "CGROUP_SKB", "CGROUP_INET_EGRESS", _ATT_OPT, "none"),
    ("cgroup/skb", "CGROUP_SKB", None, 0, "none"),
    ("cgroup/sock_create", "CGROUP_SOCK", "CGROUP_INET_SOCK_CREATE", _ATT, "none"),
    ("cgroup/sock_release", "CGROUP_SOCK", "CGROUP_INET_SOCK_RELEASE", _ATT, "none"),
    ("cgroup/sock", "CGROUP_SOCK", "CGROUP_INET_SOCK_CREATE", _ATT_OPT, "none"),
    ("cgroup/post_bind4", "CGROUP_SOCK", "CGROUP_INET4_POST_BIND", _ATT, "none"),
    ("cgroup/post_bind6", "CGROUP_SOCK", "CGROUP_INET6_POST_BIND", _ATT, "none"),
    ("cgroup/bind4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_BIND", _ATT, "none"),
    ("cgroup/bind6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_BIND", _ATT, "none"),
    ("cgroup/connect4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_CONNECT", _ATT, "none"),
    ("cgroup/connect6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_CONNECT", _ATT, "none"),
    ("cgroup/connect_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_CONNECT", _ATT, "none"),
    ("cgroup/sendmsg4", "CGROUP_SOCK_ADDR", "CGROUP_UDP4_SENDMSG", _ATT, "none"),
    ("cgroup/sendmsg6", "CGROUP_SOCK_ADDR", "CGROUP_UDP6_SENDMSG", _ATT, "none"),
    ("cgroup/sendmsg_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_SENDMSG", _ATT, "none"),
    ("cgroup/recvmsg4", "CGROUP_SOCK_ADDR", "CGROUP_UDP4_RECVMSG", _ATT, "none"),
    ("cgroup/recvmsg6", "CGROUP_SOCK_ADDR", "CGROUP_UDP6_RECVMSG", _ATT, "none"),
    ("cgroup/recvmsg_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_RECVMSG", _ATT, "none"),
    ("cgroup/getpeername4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_GETPEERNAME", _ATT, "none"),
    ("cgroup/getpeername6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_GETPEERNAME", _ATT, "none"),
    ("cgroup/getpeername_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_GETPEERNAME", _ATT, "none"),
    ("cgroup/getsockname4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_GETSOCKNAME", _ATT, "none"),
    ("cgroup/getsockname6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_GETSOCKNAME", _ATT, "none"),
    ("cgroup/getsockname_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_GETSOCKNAME", _ATT, "none"),
    ("cgroup/sysctl", "CGROUP_SYSCTL", "CGROUP_SYSCTL", _ATT, "none"),
    ("cgroup/getsockopt", "CGROUP_SOCKOPT", "CGROUP_GETSOCKOPT", _ATT, "none"),
    ("cgroup/setsockopt", "CGROUP_SOCKOPT", "CGROUP_SETSOCKOPT", _ATT, "none"),
    ("cgroup/dev", "CGROUP_DEVICE", "CGROUP_DEVICE", _ATT_OPT, "none"),
    ("struct_ops+", "STRUCT_OPS", None, 0, "none"),
    ("struct_ops.s+", "STRUCT_OPS", None, _S, "none"),
    ("sk_lookup", "SK_LOOKUP", "SK_LOOKUP", _ATT, "none"),
    ("netfilter", "NETFILTER", "NETFILTER", 0, "none"),
)


def _prog_flags(flags: int) -> int:
    """The ``BPF_PROG_LOAD`` flags that a pattern's `SecFlags` imply."""
    out = 0
    if flags & _S:
        out |= BPF_F_SLEEPABLE
    if flags & _FRAGS:
        out |= BPF_F_XDP_HAS_FRAGS
    return out


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


def _find(name: str) -> tuple[str, Row, str | None, bool] | None:
    """(the name without "?", the first row matching it, the attach target, autoload),
    or None."""
    autoload = True
    if name.startswith("?"):
        autoload = False
        name = name[1:]
    for row in ROWS:
        matched, extras = _match(row[0], name)
        if matched:
            return name, row, extras, autoload
    return None


@functools.lru_cache(maxsize=1024)
def lookup_section(name: str) -> SectionDef | None:
    """The `SectionDef` for a program section name, or None if libbpf does not know it."""
    found = _find(name)
    if found is None:
        return None
    section, (pattern, ptype, atype, flags, kind), extras, autoload = found
    # the uapi enums and the SectionDef classes on the first lookup (process start)
    from ebpf._sys.types import AttachType, ProgramType

    from ._sectiondef import AttachKind, SecFlags, SectionDef  # (the same: process start)

    return SectionDef(
        section=section,
        pattern=pattern,
        program_type=ProgramType[ptype],
        attach_type=AttachType[atype] if atype else None,
        attach_to=extras,
        flags=SecFlags(flags),
        kind=AttachKind(kind),
        autoload=autoload,
    )


def _program_types(name: str) -> tuple[ProgramType, AttachType | None, str | None, int,
                                      bool] | None:
    """What loading a program of section `name` needs of its `SectionDef`, without making
    one (process start): (program type, expected attach type, attach target, load flags,
    autoload), or None for a name libbpf does not know."""
    found = _find(name)
    if found is None:
        return None
    _, (_, ptype, atype, flags, _), extras, autoload = found
    # the uapi enums on the first lookup: `import ebpf.elf.sections` stays small; the
    # AttachType class only for a program that has one (process start)
    from ebpf._sys.types import ProgramType

    if atype:
        from ebpf._sys.types import AttachType  # its enum class on first use (as above)

        return ProgramType[ptype], AttachType[atype], extras, _prog_flags(flags), autoload
    return ProgramType[ptype], None, extras, _prog_flags(flags), autoload


# On first use (process start): the classes (see _sectiondef.py), the attach target
# parsers (see _targets.py) and the named tuples (see _section_patterns.py).
__getattr__ = _lazyattr.lazy_attributes(globals(), {
    **dict.fromkeys(("AttachKind", "SecFlags", "SectionDef"), "._sectiondef"),
    **dict.fromkeys(("parse_kprobe_target", "parse_tracepoint_target", "parse_uprobe_target",
                     "parse_usdt_target"), "._targets"),
    **dict.fromkeys(("SECTION_TABLE", "SectionPattern"), "._section_patterns")})
