"""Tests for ebpf.elf.sections: libbpf's SEC() name table."""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import pickle

import pytest
from conftest import need_tool
from hypothesis import given, settings
from hypothesis import strategies as st

from ebpf._sys.consts import BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS
from ebpf._sys.types import AttachType as A
from ebpf._sys.types import ProgramType as P
from ebpf.elf import (
    SECTION_TABLE,
    AttachKind,
    SecFlags,
    SectionDef,
    lookup_section,
    parse_kprobe_target,
    parse_tracepoint_target,
    parse_uprobe_target,
    parse_usdt_target,
)
from ebpf.errors import InvalidArgumentError

K = AttachKind


@dataclasses.dataclass(frozen=True)
class Row:
    """Expected behaviour of one table entry, written out independently of the table."""

    pattern: str
    ptype: P
    atype: A | None
    kind: AttachKind = K.NONE
    sleepable: bool = False
    frags: bool = False
    btf: bool = False
    multi: bool = False
    ret: bool = False
    usdt: bool = False
    session: bool = False
    opt: bool = False  # expected attach type optional
    example: str = "x"  # extras used to test "pattern/<example>"


ROWS = [
    Row("socket", P.SOCKET_FILTER, None),
    Row("sk_reuseport/migrate", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE),
    Row("sk_reuseport", P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT),
    Row("kprobe+", P.KPROBE, None, K.KPROBE, example="do_unlinkat"),
    Row("uprobe+", P.KPROBE, None, K.UPROBE, example="/usr/lib/libc.so.6:malloc"),
    Row("uprobe.s+", P.KPROBE, None, K.UPROBE, sleepable=True, example="libc.so.6:free+8"),
    Row("kretprobe+", P.KPROBE, None, K.KPROBE, ret=True, example="do_unlinkat"),
    Row("uretprobe+", P.KPROBE, None, K.UPROBE, ret=True, example="libc.so.6:malloc"),
    Row("uretprobe.s+", P.KPROBE, None, K.UPROBE, sleepable=True, ret=True,
        example="libc.so.6:malloc"),
    Row("kprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI, K.KPROBE_MULTI, multi=True,
        example="vfs_*"),
    Row("kretprobe.multi+", P.KPROBE, A.TRACE_KPROBE_MULTI, K.KPROBE_MULTI, multi=True,
        ret=True, example="vfs_*"),
    Row("kprobe.session+", P.KPROBE, A.TRACE_KPROBE_SESSION, K.KPROBE_SESSION, multi=True,
        session=True, example="do_*"),
    Row("uprobe.multi+", P.KPROBE, A.TRACE_UPROBE_MULTI, K.UPROBE_MULTI, multi=True,
        example="/bin/bash:readline*"),
    Row("uretprobe.multi+", P.KPROBE, A.TRACE_UPROBE_MULTI, K.UPROBE_MULTI, multi=True,
        ret=True, example="/bin/bash:readline"),
    Row("uprobe.session+", P.KPROBE, A.TRACE_UPROBE_SESSION, K.UPROBE_MULTI, multi=True,
        session=True, example="/bin/bash:readline"),
    Row("uprobe.multi.s+", P.KPROBE, A.TRACE_UPROBE_MULTI, K.UPROBE_MULTI, multi=True,
        sleepable=True, example="/bin/bash:readline"),
    Row("uretprobe.multi.s+", P.KPROBE, A.TRACE_UPROBE_MULTI, K.UPROBE_MULTI, multi=True,
        sleepable=True, ret=True, example="/bin/bash:readline"),
    Row("uprobe.session.s+", P.KPROBE, A.TRACE_UPROBE_SESSION, K.UPROBE_MULTI, multi=True,
        sleepable=True, session=True, example="/bin/bash:readline"),
    Row("ksyscall+", P.KPROBE, None, K.KSYSCALL, example="openat"),
    Row("kretsyscall+", P.KPROBE, None, K.KSYSCALL, ret=True, example="openat"),
    Row("usdt+", P.KPROBE, None, K.USDT, usdt=True, example="/usr/bin/python3:python:gc__start"),
    Row("usdt.s+", P.KPROBE, None, K.USDT, usdt=True, sleepable=True,
        example="libc.so.6:libc:setjmp"),
    Row("tc/ingress", P.SCHED_CLS, A.TCX_INGRESS),
    Row("tc/egress", P.SCHED_CLS, A.TCX_EGRESS),
    Row("tcx/ingress", P.SCHED_CLS, A.TCX_INGRESS),
    Row("tcx/egress", P.SCHED_CLS, A.TCX_EGRESS),
    Row("tc", P.SCHED_CLS, None),
    Row("classifier", P.SCHED_CLS, None),
    Row("action", P.SCHED_ACT, None),
    Row("netkit/primary", P.SCHED_CLS, A.NETKIT_PRIMARY),
    Row("netkit/peer", P.SCHED_CLS, A.NETKIT_PEER),
    Row("tracepoint+", P.TRACEPOINT, None, K.TRACEPOINT, example="syscalls/sys_enter_openat"),
    Row("tp+", P.TRACEPOINT, None, K.TRACEPOINT, example="sched/sched_switch"),
    Row("tracepoint.s+", P.TRACEPOINT, None, K.TRACEPOINT, sleepable=True,
        example="syscalls/sys_enter_getcwd"),
    Row("tp.s+", P.TRACEPOINT, None, K.TRACEPOINT, sleepable=True,
        example="syscalls/sys_exit_getcwd"),
    Row("raw_tracepoint+", P.RAW_TRACEPOINT, None, K.RAW_TRACEPOINT, example="sched_switch"),
    Row("raw_tp+", P.RAW_TRACEPOINT, None, K.RAW_TRACEPOINT, example="sys_enter"),
    Row("raw_tracepoint.s+", P.RAW_TRACEPOINT, None, K.RAW_TRACEPOINT, sleepable=True,
        example="sys_enter"),
    Row("raw_tp.s+", P.RAW_TRACEPOINT, None, K.RAW_TRACEPOINT, sleepable=True,
        example="sys_exit"),
    Row("raw_tracepoint.w+", P.RAW_TRACEPOINT_WRITABLE, None, K.RAW_TRACEPOINT,
        example="bpf_test_finish"),
    Row("raw_tp.w+", P.RAW_TRACEPOINT_WRITABLE, None, K.RAW_TRACEPOINT,
        example="bpf_test_finish"),
    Row("tp_btf+", P.TRACING, A.TRACE_RAW_TP, K.TRACING, btf=True, example="sched_switch"),
    Row("tp_btf.s+", P.TRACING, A.TRACE_RAW_TP, K.TRACING, btf=True, sleepable=True,
        example="sys_enter"),
    Row("fentry+", P.TRACING, A.TRACE_FENTRY, K.TRACING, btf=True, example="do_unlinkat"),
    Row("fmod_ret+", P.TRACING, A.MODIFY_RETURN, K.TRACING, btf=True,
        example="bpf_modify_return_test"),
    Row("fexit+", P.TRACING, A.TRACE_FEXIT, K.TRACING, btf=True, example="do_unlinkat"),
    Row("fentry.s+", P.TRACING, A.TRACE_FENTRY, K.TRACING, btf=True, sleepable=True,
        example="__x64_sys_getpgid"),
    Row("fmod_ret.s+", P.TRACING, A.MODIFY_RETURN, K.TRACING, btf=True, sleepable=True,
        example="bpf_fentry_test1"),
    Row("fexit.s+", P.TRACING, A.TRACE_FEXIT, K.TRACING, btf=True, sleepable=True,
        example="__x64_sys_getpgid"),
    Row("freplace+", P.EXT, None, K.TRACING, btf=True, example="get_constant"),
    Row("lsm+", P.LSM, A.LSM_MAC, K.LSM, btf=True, example="file_open"),
    Row("lsm.s+", P.LSM, A.LSM_MAC, K.LSM, btf=True, sleepable=True,
        example="bprm_committed_creds"),
    Row("lsm_cgroup+", P.LSM, A.LSM_CGROUP, K.NONE, btf=True, example="socket_bind"),
    Row("iter+", P.TRACING, A.TRACE_ITER, K.ITER, btf=True, example="task"),
    Row("iter.s+", P.TRACING, A.TRACE_ITER, K.ITER, btf=True, sleepable=True, example="task_vma"),
    Row("syscall", P.SYSCALL, None, sleepable=True),
    Row("xdp.frags/devmap", P.XDP, A.XDP_DEVMAP, frags=True),
    Row("xdp/devmap", P.XDP, A.XDP_DEVMAP),
    Row("xdp.frags/cpumap", P.XDP, A.XDP_CPUMAP, frags=True),
    Row("xdp/cpumap", P.XDP, A.XDP_CPUMAP),
    Row("xdp.frags", P.XDP, A.XDP, frags=True),
    Row("xdp", P.XDP, A.XDP, opt=True),
    Row("perf_event", P.PERF_EVENT, None),
    Row("lwt_in", P.LWT_IN, None),
    Row("lwt_out", P.LWT_OUT, None),
    Row("lwt_xmit", P.LWT_XMIT, None),
    Row("lwt_seg6local", P.LWT_SEG6LOCAL, None),
    Row("sockops", P.SOCK_OPS, A.CGROUP_SOCK_OPS, opt=True),
    Row("sk_skb/stream_parser", P.SK_SKB, A.SK_SKB_STREAM_PARSER, opt=True),
    Row("sk_skb/stream_verdict", P.SK_SKB, A.SK_SKB_STREAM_VERDICT, opt=True),
    Row("sk_skb/verdict", P.SK_SKB, A.SK_SKB_VERDICT, opt=True),
    Row("sk_skb", P.SK_SKB, None),
    Row("sk_msg", P.SK_MSG, A.SK_MSG_VERDICT, opt=True),
    Row("lirc_mode2", P.LIRC_MODE2, A.LIRC_MODE2, opt=True),
    Row("flow_dissector", P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, opt=True),
    Row("cgroup_skb/ingress", P.CGROUP_SKB, A.CGROUP_INET_INGRESS, opt=True),
    Row("cgroup_skb/egress", P.CGROUP_SKB, A.CGROUP_INET_EGRESS, opt=True),
    Row("cgroup/skb", P.CGROUP_SKB, None),
    Row("cgroup/sock_create", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE),
    Row("cgroup/sock_release", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE),
    Row("cgroup/sock", P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, opt=True),
    Row("cgroup/post_bind4", P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND),
    Row("cgroup/post_bind6", P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND),
    Row("cgroup/bind4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND),
    Row("cgroup/bind6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND),
    Row("cgroup/connect4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT),
    Row("cgroup/connect6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_CONNECT),
    Row("cgroup/connect_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_CONNECT),
    Row("cgroup/sendmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG),
    Row("cgroup/sendmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG),
    Row("cgroup/sendmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_SENDMSG),
    Row("cgroup/recvmsg4", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG),
    Row("cgroup/recvmsg6", P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_RECVMSG),
    Row("cgroup/recvmsg_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_RECVMSG),
    Row("cgroup/getpeername4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME),
    Row("cgroup/getpeername6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETPEERNAME),
    Row("cgroup/getpeername_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETPEERNAME),
    Row("cgroup/getsockname4", P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETSOCKNAME),
    Row("cgroup/getsockname6", P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETSOCKNAME),
    Row("cgroup/getsockname_unix", P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETSOCKNAME),
    Row("cgroup/sysctl", P.CGROUP_SYSCTL, A.CGROUP_SYSCTL),
    Row("cgroup/getsockopt", P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT),
    Row("cgroup/setsockopt", P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT),
    Row("cgroup/dev", P.CGROUP_DEVICE, A.CGROUP_DEVICE, opt=True),
    Row("struct_ops+", P.STRUCT_OPS, None, example="tcp_ca_init"),
    Row("struct_ops.s+", P.STRUCT_OPS, None, sleepable=True, example="test_1"),
    Row("sk_lookup", P.SK_LOOKUP, A.SK_LOOKUP),
    Row("netfilter", P.NETFILTER, A.NETFILTER),
]
ROW_IDS = [r.pattern for r in ROWS]


def test_table_is_libbpf_1_6() -> None:
    # libbpf 1.5's 101 names, 1.6's uprobe.session[.s], and the sleepable tracepoints
    # (tp.s, tracepoint.s, raw_tp.s, raw_tracepoint.s, tp_btf.s) libbpf added next
    assert [e.pattern for e in SECTION_TABLE] == ROW_IDS
    assert len(SECTION_TABLE) == 108


def _check(d: SectionDef | None, row: Row, name: str, extras: str | None) -> None:
    assert d is not None, name
    assert d.section == name
    assert d.pattern == row.pattern
    assert d.program_type == row.ptype and isinstance(d.program_type, P)
    assert d.attach_type == row.atype
    if row.atype is not None:
        assert isinstance(d.attach_type, A)
    assert d.attach_to == extras
    assert d.kind is row.kind
    assert d.sleepable == row.sleepable
    assert d.xdp_frags == row.frags
    assert d.attach_btf == row.btf
    assert d.multi == row.multi
    assert d.retprobe == row.ret
    assert d.usdt == row.usdt
    assert d.session == row.session
    assert d.attach_type_optional == row.opt
    assert d.autoload
    want_flags = (BPF_F_SLEEPABLE if row.sleepable else 0) | (
        BPF_F_XDP_HAS_FRAGS if row.frags else 0)
    assert d.prog_flags == want_flags


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_row(row: Row) -> None:
    if row.pattern.endswith("+"):
        base = row.pattern[:-1]
        bare = lookup_section(base)
        _check(bare, row, base, None)
        assert bare is not None
        # libbpf auto-attaches fentry/lsm/iter by BTF even without a target in the
        # name; the other attachers need one.
        assert bare.auto_attach == (row.kind in (K.TRACING, K.LSM, K.ITER))
        full = f"{base}/{row.example}"
        d = lookup_section(full)
        _check(d, row, full, row.example)
        assert d is not None and d.auto_attach == (row.kind is not K.NONE)
        # "type+" needs a '/' separator: "kprobeX" is not "kprobe"
        other = lookup_section(base + "Z")
        assert other is None or other.pattern != row.pattern
    else:
        d = lookup_section(row.pattern)
        _check(d, row, row.pattern, None)
        assert d is not None and not d.auto_attach
        # exact entries take no extras
        other = lookup_section(row.pattern + "/extra")
        assert other is None or other.pattern != row.pattern


def test_question_mark_disables_autoload() -> None:
    d = lookup_section("?kprobe/do_unlinkat")
    assert d is not None
    assert not d.autoload
    assert d.section == "kprobe/do_unlinkat" and d.attach_to == "do_unlinkat"
    assert d.program_type == P.KPROBE
    x = lookup_section("?xdp")
    assert x is not None and not x.autoload and x.program_type == P.XDP
    assert lookup_section("??xdp") is None
    assert lookup_section("?") is None


@pytest.mark.parametrize("name", [
    "", "seccomp", "kprobe.foo", "xdp/foo", "xdp.frags/foo", "tcx", "tcx/ingress/x",
    "tc/ingress2", "cgroup", "cgroup/", "cgroup/foo", "cgroup_skb", "sk_skb/verdict/x",
    "socket1", "socket/x", "license", ".maps", ".text", "maps", "Kprobe/x", " kprobe/x",
    "netkit", "uprobe.sessions/x", "tp.sx", "struct_opsx", "lsm_cgroupx/y", "sk_reuseport/other",
])
def test_unknown_sections(name: str) -> None:
    assert lookup_section(name) is None


@pytest.mark.parametrize(("name", "pattern", "extras"), [
    # first match wins, in libbpf's order
    ("tc/ingress", "tc/ingress", None),
    ("xdp.frags/devmap", "xdp.frags/devmap", None),
    ("uprobe.multi.s/x:y", "uprobe.multi.s+", "x:y"),
    ("uretprobe.multi.s/x:y", "uretprobe.multi.s+", "x:y"),
    ("raw_tp.w/x", "raw_tp.w+", "x"),
    ("tp.s/syscalls/sys_enter_getcwd", "tp.s+", "syscalls/sys_enter_getcwd"),
    ("uprobe.session.s/x:y", "uprobe.session.s+", "x:y"),
    ("sk_skb/verdict", "sk_skb/verdict", None),
    ("kprobe/", "kprobe+", ""),  # libbpf accepts an empty target
    ("tp/a/b/c", "tp+", "a/b/c"),
    ("uprobe//bin/true:main", "uprobe+", "/bin/true:main"),
    ("fentry/bpf_prog_123", "fentry+", "bpf_prog_123"),
    ("struct_ops/tcp_ca", "struct_ops+", "tcp_ca"),
])
def test_match_order_and_extras(name: str, pattern: str, extras: str | None) -> None:
    d = lookup_section(name)
    assert d is not None and d.pattern == pattern and d.attach_to == extras


def test_results_are_cached_and_immutable() -> None:
    a = lookup_section("kprobe/x")
    assert a is lookup_section("kprobe/x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.attach_to = "y"  # type: ignore[misc, union-attr]


def test_section_defs_are_values() -> None:
    """A SectionDef (an ebpf._sys.fastclass.FrozenRecord) compares, hashes, prints and
    pickles by its fields, like a frozen dataclass, and refuses deletion too."""
    a, b = lookup_section("kprobe/x"), lookup_section("?kprobe/x")
    assert a is not None and b is not None
    assert a != b and b.autoload is False
    copy = pickle.loads(pickle.dumps(a))
    assert copy == a and copy is not a and hash(copy) == hash(a) and len({a, copy, b}) == 2
    assert repr(a).startswith("SectionDef(section='kprobe/x', pattern='kprobe+', ")
    assert repr(a).endswith(", autoload=True)") and (a == "kprobe/x") is False
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'kind'"):
        del a.kind  # type: ignore[misc]
    assert not hasattr(a, "__dict__")


def test_flag_values_match_libbpf() -> None:
    values = [int(f) for f in (SecFlags.EXP_ATTACH_OPT, SecFlags.ATTACHABLE,
                               SecFlags.ATTACHABLE_OPT, SecFlags.ATTACH_BTF, SecFlags.SLEEPABLE,
                               SecFlags.XDP_FRAGS, SecFlags.USDT)]
    assert values == [1, 2, 3, 4, 8, 16, 32]


# --- attach target parsing -------------------------------------------------


def test_parse_kprobe_target() -> None:
    assert parse_kprobe_target("do_unlinkat") == ("do_unlinkat", 0)
    assert parse_kprobe_target("tcp_v4_connect+0x10") == ("tcp_v4_connect", 16)
    assert parse_kprobe_target("f.cold+8") == ("f.cold", 8)
    assert parse_kprobe_target("f+010") == ("f", 8)
    for bad in ("", "+1", "f+", "f+x", "f-1", "f g", "f+1x"):
        with pytest.raises(InvalidArgumentError):
            parse_kprobe_target(bad)
    with pytest.raises(InvalidArgumentError, match="no offset"):
        parse_kprobe_target("f+4", retprobe=True)
    assert parse_kprobe_target("f+0", retprobe=True) == ("f", 0)


def test_parse_uprobe_target() -> None:
    assert parse_uprobe_target("libc.so.6:malloc") == ("libc.so.6", "malloc", 0)
    assert parse_uprobe_target("/usr/lib/libc.so.6:malloc+0x20") == (
        "/usr/lib/libc.so.6", "malloc", 0x20)
    # an offset that is not a whole number stays part of the function name (as in libbpf)
    assert parse_uprobe_target("/bin/x:operator+") == ("/bin/x", "operator+", 0)
    assert parse_uprobe_target("/bin/x:a+b") == ("/bin/x", "a+b", 0)
    assert parse_uprobe_target("/bin/x:f:g") == ("/bin/x", "f:g", 0)
    for bad in ("libc.so.6", ":malloc", "libc.so.6:", ""):
        with pytest.raises(InvalidArgumentError):
            parse_uprobe_target(bad)
    with pytest.raises(InvalidArgumentError, match="no offset"):
        parse_uprobe_target("libc.so.6:malloc+4", retprobe=True)


def test_parse_usdt_and_tracepoint_targets() -> None:
    assert parse_usdt_target("/usr/bin/python3:python:function__entry") == (
        "/usr/bin/python3", "python", "function__entry")
    for bad in ("a:b", "a:b:c:d", "::", "a::c"):
        with pytest.raises(InvalidArgumentError):
            parse_usdt_target(bad)
    assert parse_tracepoint_target("sched/sched_switch") == ("sched", "sched_switch")
    assert parse_tracepoint_target("a/b/c") == ("a", "b/c")
    for bad in ("sched", "/x", "x/", ""):
        with pytest.raises(InvalidArgumentError):
            parse_tracepoint_target(bad)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="abcdefgkprtsuxw./+?:_-0123456789", max_size=30))
def test_lookup_never_raises(name: str) -> None:
    d = lookup_section(name)
    if d is not None:
        assert d.autoload == (not name.startswith("?"))
        assert name.lstrip("?") == d.section or name[1:] == d.section


# --- cross-check with the system's libbpf (1.1) -------------------------------


def _libbpf() -> ctypes.CDLL | None:
    path = ctypes.util.find_library("bpf")
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    fn = lib.libbpf_prog_type_by_name
    fn.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
    fn.restype = ctypes.c_int
    lib.libbpf_set_print.argtypes = [ctypes.c_void_p]
    lib.libbpf_set_print.restype = ctypes.c_void_p
    lib.libbpf_set_print(None)
    return lib


def _names() -> list[str]:
    out = []
    for r in ROWS:
        if r.pattern.endswith("+"):
            out += [r.pattern[:-1], f"{r.pattern[:-1]}/{r.example}"]
        else:
            out.append(r.pattern)
    return out


def test_agrees_with_system_libbpf() -> None:
    lib = _libbpf()
    need_tool("libbpf.so (libbpf-dev)", present=lib is not None)
    assert lib is not None
    compared = 0
    for name in _names():
        ptype, atype = ctypes.c_int(), ctypes.c_int()
        if lib.libbpf_prog_type_by_name(name.encode(), ctypes.byref(ptype),
                                        ctypes.byref(atype)) != 0:
            continue  # newer than the installed libbpf
        d = lookup_section(name)
        assert d is not None, name
        if name.startswith("tc/") or name == "tc":
            continue  # libbpf 1.1 had tc/ingress as legacy "tc" + extras
        assert d.program_type == ptype.value, name
        assert (d.attach_type or 0) == atype.value, name
        compared += 1
    assert compared > 60
