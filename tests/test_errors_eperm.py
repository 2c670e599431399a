"""EPERM tells the truth: a missing capability is `ebpf.PermissionError` naming exactly
that capability; a refusal although the process holds every capability is
`ebpf.KernelPolicyError` naming the object. RLIMIT_MEMLOCK is only touched on kernels
that charge it.

Privileges are dropped in child processes (capset(2) through ctypes, a user namespace,
a seccomp filter), so the kernel itself does the refusing.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import pickle
import resource
import subprocess
import sys
import textwrap

import pytest
from bpfbuild import compile_bpf
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf._sys import caps, rlimit, syscall

CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 12, 21, 38, 39
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in the child: imports everything first (a child that drops privileges may not
# be able to import afterwards), applies SETUP, then runs each operation and prints
# [exception class, message, is builtins.PermissionError, errno] or ["ok", repr].
CHILD = r'''
import builtins, ctypes, json, os, sys
import ebpf, ebpf.maps, ebpf.programs, ebpf.features
from ebpf import asm
libc = ctypes.CDLL(None, use_errno=True)

def drop_caps(*caps):
    class Hdr(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]
    hdr, data = Hdr(0x20080522, 0), (Data * 2)()      # _LINUX_CAPABILITY_VERSION_3
    assert libc.capget(ctypes.byref(hdr), data) == 0
    for cap in caps:
        data[cap // 32].effective &= ~(1 << cap % 32)
        data[cap // 32].permitted &= ~(1 << cap % 32)
    assert libc.capset(ctypes.byref(hdr), data) == 0, ctypes.get_errno()

def seccomp_refuse_bpf(*cmds):
    """A seccomp filter: bpf(cmd, ...) for `cmds` fails with EPERM, all else is allowed."""
    class Insn(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                    ("k", ctypes.c_uint32)]
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Insn))]
    LD_ABS_W, JEQ_K, RET_K = 0x20, 0x15, 0x06
    allow, deny = Insn(RET_K, 0, 0, 0x7FFF0000), Insn(RET_K, 0, 0, 0x00050000 | 1)
    n = len(cmds)
    insns = [Insn(LD_ABS_W, 0, 0, 0),                        # seccomp_data.nr
             Insn(JEQ_K, 0, n + 1, ebpf._sys.syscall.NR_BPF),
             Insn(LD_ABS_W, 0, 0, 16)]                       # low half of args[0]
    insns += [Insn(JEQ_K, n - i, 0, c) for i, c in enumerate(cmds)]
    insns += [allow, deny]
    arr = (Insn * len(insns))(*insns)
    prog = Prog(len(insns), arr)
    assert libc.prctl(38, 1, 0, 0, 0) == 0                   # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.byref(prog), 0, 0) == 0, ctypes.get_errno()

def new_user_namespace():
    assert libc.unshare(0x10000000) == 0, ctypes.get_errno()  # CLONE_NEWUSER

def prog(ptype, name="p"):
    return lambda: ebpf.Program(ebpf.ProgramSpec(
        name=name, type=ptype, license="GPL", instructions=[asm.mov_imm(asm.R0, 0), asm.exit()]))

def map_(mtype, name="m", **kw):
    kw.setdefault("key_size", 4); kw.setdefault("value_size", 4)
    return lambda: ebpf.Map(ebpf.MapSpec(type=mtype, max_entries=1, name=name, **kw))

P, M = ebpf.ProgramType, ebpf.MapType
SETUP
out = {}
for what, fn in OPS.items():
    try:
        out[what] = ["ok", repr(fn())]
    except Exception as e:
        out[what] = [type(e).__qualname__, str(e), isinstance(e, builtins.PermissionError),
                     getattr(e, "errno", None)]
print(json.dumps(out))
'''


def run_child(setup: str, ops: str) -> dict[str, list[object]]:
    code = CHILD.replace("SETUP", textwrap.dedent(setup)).replace(
        "OPS", "{" + textwrap.dedent(ops) + "}")
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env, cwd="/", check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    result: dict[str, list[object]] = json.loads(r.stdout)
    return result


def assert_missing(result: list[object], needs: str) -> None:
    """A PermissionError (also the built-in one) that names exactly `needs`."""
    kind, message, builtin, err = result
    assert kind == "PermissionError", result
    assert builtin is True and err == errno.EPERM
    assert f"; needs {needs}; the process (uid 0) has " in str(message), message


# -- missing capabilities ---------------------------------------------------------------------


def test_missing_cap_bpf_is_named_alone() -> None:
    r = run_child("drop_caps(CAP_BPF, CAP_SYS_ADMIN)".replace("CAP_BPF", str(CAP_BPF))
                  .replace("CAP_SYS_ADMIN", str(CAP_SYS_ADMIN)), """
        "tracepoint": prog(P.TRACEPOINT),
        "lru_map": map_(M.LRU_HASH),
        "btf": lambda: ebpf.btf.Handle(__import__("ebpf.btf").btf.Builder().marshal()),
    """)
    # the process keeps CAP_PERFMON: only CAP_BPF is missing for a tracepoint program
    assert_missing(r["tracepoint"], "CAP_BPF (or CAP_SYS_ADMIN)")
    assert_missing(r["lru_map"], "CAP_BPF (or CAP_SYS_ADMIN)")
    assert_missing(r["btf"], "CAP_BPF (or CAP_SYS_ADMIN)")
    assert "has CAP_PERFMON, CAP_NET_ADMIN" in str(r["tracepoint"][1])


def test_missing_cap_perfmon_for_tracing_types() -> None:
    r = run_child(f"drop_caps({CAP_PERFMON}, {CAP_SYS_ADMIN})", """
        "tracepoint": prog(P.TRACEPOINT),
        "raw_tracepoint": prog(P.RAW_TRACEPOINT),
        "socket_filter": lambda: prog(P.SOCKET_FILTER)().close(),
    """)
    assert_missing(r["tracepoint"], "CAP_PERFMON (or CAP_SYS_ADMIN)")
    assert_missing(r["raw_tracepoint"], "CAP_PERFMON (or CAP_SYS_ADMIN)")
    assert r["socket_filter"] == ["ok", "None"]  # CAP_BPF is enough there


def test_missing_cap_net_admin_for_network_types() -> None:
    r = run_child(f"drop_caps({CAP_NET_ADMIN}, {CAP_SYS_ADMIN})", """
        "xdp": prog(P.XDP),
        "sched_cls": prog(P.SCHED_CLS),
        "devmap": map_(M.DEVMAP),
        "probe": lambda: ebpf.features.have_program_type(P.XDP),
        "tracepoint": lambda: prog(P.TRACEPOINT)().close(),
    """)
    assert_missing(r["xdp"], "CAP_NET_ADMIN (or CAP_SYS_ADMIN)")
    assert_missing(r["sched_cls"], "CAP_NET_ADMIN (or CAP_SYS_ADMIN)")
    assert_missing(r["devmap"], "CAP_NET_ADMIN (or CAP_SYS_ADMIN)")
    # a probe that cannot answer says why instead of answering False
    assert_missing(r["probe"], "CAP_NET_ADMIN (or CAP_SYS_ADMIN)")
    assert r["tracepoint"] == ["ok", "None"]


def test_missing_cap_sys_admin_for_id_commands() -> None:
    r = run_child(f"drop_caps({CAP_SYS_ADMIN})", """
        "ids": lambda: list(ebpf.programs.program_ids()),
        "tracepoint": lambda: prog(P.TRACEPOINT)().close(),
        "xdp": lambda: prog(P.XDP)().close(),
    """)
    assert_missing(r["ids"], "CAP_SYS_ADMIN")
    assert r["tracepoint"] == r["xdp"] == ["ok", "None"]  # CAP_BPF + PERFMON/NET_ADMIN do


def test_several_missing_capabilities_are_all_named() -> None:
    r = run_child(f"drop_caps({CAP_BPF}, {CAP_PERFMON}, {CAP_SYS_ADMIN})", """
        "kprobe": prog(P.KPROBE),
    """)
    assert_missing(r["kprobe"], "CAP_BPF (or CAP_SYS_ADMIN) and CAP_PERFMON (or CAP_SYS_ADMIN)")


def test_user_namespace_capabilities_do_not_count() -> None:
    r = run_child("new_user_namespace()", """
        "lru_map": map_(M.LRU_HASH),
    """)
    kind, message, builtin, err = r["lru_map"]
    assert kind == "PermissionError" and builtin is True and err == errno.EPERM
    assert "runs in a user namespace other than the initial one" in str(message)
    assert "it needs CAP_BPF (or CAP_SYS_ADMIN) in the initial user namespace" in str(message)


# -- refused by policy although privileged ----------------------------------------------------


def test_seccomp_refusal_is_kernel_policy_error() -> None:
    r = run_child("seccomp_refuse_bpf(0, 5)", """
        "program": prog(P.SOCKET_FILTER, "blocked_prog"),
        "map": map_(M.HASH, "blocked_map"),
        "probe": lambda: ebpf.features.have_map_type(M.LRU_HASH),
    """)
    kind, message, builtin, err = r["program"]
    assert kind == "KernelPolicyError" and builtin is False and err == errno.EPERM
    assert str(message).startswith(
        "program 'blocked_prog' (socket_filter): the running kernel refused it by policy "
        "(EPERM although the process has CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN)")
    assert "a seccomp filter is active" in str(message)
    kind, message, _, err = r["map"]
    assert kind == "KernelPolicyError" and err == errno.EPERM
    assert str(message).startswith("map 'blocked_map' (hash): the running kernel refused it "
                                   "by policy (EPERM although the process has CAP_BPF")
    assert r["probe"] == ["ok", "False"]  # privileged and refused: the feature is unavailable


def test_kernel_policy_error_is_a_not_supported_error() -> None:
    assert issubclass(ebpf.KernelPolicyError, ebpf.NotSupportedError)
    assert issubclass(ebpf.KernelPolicyError, OSError)
    assert not issubclass(ebpf.KernelPolicyError, PermissionError)
    e = ebpf.KernelPolicyError("iterator target bpf_map_elem", "refused")
    assert (e.errno, e.feature, str(e)) == (errno.EPERM, "iterator target bpf_map_elem",
                                            "refused")


def test_iterator_target_refused_by_policy_names_the_program() -> None:
    """Some builds refuse `iter/bpf_map_elem` even to root (this host's 6.18); others
    load it (the matrix's 6.1 and 6.12). Either it loads, or the error says why."""
    obj = compile_bpf("link_tracing", extra_flags=[f"-I{vmlinux_include_dir()}"])
    spec = ebpf.load_collection_spec(str(obj))
    try:
        coll = ebpf.Collection(spec, programs=["dump_elems"])
    except ebpf.KernelPolicyError as e:
        assert e.errno == errno.EPERM
        assert str(e).startswith(
            "program 'dump_elems' (tracing, iter/bpf_map_elem): the running kernel refused "
            "it by policy (EPERM although the process has CAP_BPF, CAP_PERFMON")
        assert not ebpf.features.have_iter_target("bpf_map_elem")
    else:
        with coll:
            assert coll.programs["dump_elems"].fileno() >= 0


# -- the requirements the classifier knows ----------------------------------------------------


def _priv(*held: int, kernel: tuple[int, int] = (6, 18), unpriv: int = 2) -> caps.Privileges:
    mask = sum(1 << c for c in held)
    return caps.Privileges(mask, 1000, unpriv, None, 0, True, kernel)


def test_privileges_are_values() -> None:
    """Privileges (a FrozenRecord) compare, hash, print and pickle by their fields and
    refuse assignment like a frozen dataclass."""
    a, b = _priv(CAP_BPF), _priv(CAP_BPF)
    assert a == b and hash(a) == hash(b) and a != _priv(CAP_SYS_ADMIN)
    assert pickle.loads(pickle.dumps(a)) == a
    assert repr(a) == (f"Privileges(effective={1 << CAP_BPF}, euid=1000, "
                       "unprivileged_bpf_disabled=2, lockdown=None, seccomp=0, "
                       "init_user_ns=True, kernel=(6, 18))")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'euid'"):
        a.euid = 0  # type: ignore[misc]


def test_unprivileged_types_need_cap_bpf_only_when_the_sysctl_says_so() -> None:
    C = ebpf._sys.types.Cmd
    assert caps.required_capabilities(C.MAP_CREATE, _priv(unpriv=0),
                                      map_type=ebpf.MapType.HASH) == []
    assert caps.required_capabilities(C.MAP_CREATE, _priv(unpriv=1),
                                      map_type=ebpf.MapType.HASH) == [(CAP_BPF, CAP_SYS_ADMIN)]
    e = caps.eperm_error("bpf(BPF_PROG_LOAD)", prog_type=ebpf.ProgramType.SOCKET_FILTER,
                         privileges=_priv(unpriv=2))
    assert isinstance(e, ebpf.PermissionError)
    assert "kernel.unprivileged_bpf_disabled is 2" in str(e)
    assert "(uid 1000) has none of CAP_BPF" in str(e)


def test_before_5_8_cap_sys_admin_stands_for_bpf_and_perfmon() -> None:
    e = caps.eperm_error("bpf(BPF_PROG_LOAD)", prog_type=ebpf.ProgramType.KPROBE,
                         privileges=_priv(CAP_BPF, CAP_PERFMON, kernel=(5, 4)))
    assert isinstance(e, ebpf.PermissionError)
    assert "; needs CAP_SYS_ADMIN and CAP_SYS_ADMIN;" not in str(e)
    assert "; needs CAP_SYS_ADMIN;" in str(e)


# -- RLIMIT_MEMLOCK ---------------------------------------------------------------------------


def test_memlock_plan() -> None:
    inf = rlimit.INFINITY
    assert inf == resource.RLIM_INFINITY  # spelt out: rlimit imports resource on use only
    assert rlimit.plan(False, 65536, 65536, True) is None      # memcg-charged kernel
    assert rlimit.plan(None, 65536, 65536, True) is None       # unknown: leave it
    assert rlimit.plan(True, inf, inf, False) is None
    assert rlimit.plan(True, 65536, 65536, True) == (inf, inf)  # CAP_SYS_RESOURCE
    assert rlimit.plan(True, 65536, inf, False) == (inf, inf)
    assert rlimit.plan(True, 65536, 1 << 20, False) == (1 << 20, 1 << 20)
    assert rlimit.plan(True, 65536, 65536, False) is None       # cannot: say so in errors


def test_memlock_message() -> None:
    assert rlimit.describe(False, 65536) == ""
    assert rlimit.describe(True, rlimit.INFINITY) == ""
    text = rlimit.describe(True, 65536, "setrlimit: [Errno 1] Operation not permitted")
    assert text.startswith("this kernel (before Linux 5.11) charges BPF memory to "
                           "RLIMIT_MEMLOCK, which is 64 KiB and could not be raised "
                           "(setrlimit: [Errno 1] Operation not permitted); raise it")
    assert "CAP_SYS_RESOURCE" in text


def test_this_kernel_does_not_charge_memlock() -> None:
    """5.11+ (host and matrix): memcg accounting; the probe agrees with the version."""
    before = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    assert rlimit.probe_memlock_charging() is False
    assert resource.getrlimit(resource.RLIMIT_MEMLOCK) == before  # restored
    assert rlimit.kernel_charges_memlock() is False
    assert rlimit.memlock_note() == ""


def test_a_low_memlock_limit_is_left_alone_where_it_does_not_matter() -> None:
    r = run_child("import resource; resource.setrlimit(resource.RLIMIT_MEMLOCK, "
                  "(65536, 65536))", """
        "big": lambda: map_(M.ARRAY, "big", value_size=4096)().close(),
        "limit": lambda: resource.getrlimit(resource.RLIMIT_MEMLOCK),
    """)
    assert r["big"] == ["ok", "None"]
    assert r["limit"] == ["ok", "(65536, 65536)"]


@pytest.mark.parametrize("err", [errno.EPERM])
def test_from_errno_eperm_goes_through_the_classifier(err: int) -> None:
    e = syscall.from_errno(err, "bpf(BPF_MAP_GET_NEXT_ID)")
    # this process holds CAP_SYS_ADMIN, which the command needs: a policy refusal
    assert isinstance(e, ebpf.KernelPolicyError)
    assert str(e).startswith("bpf(BPF_MAP_GET_NEXT_ID): the running kernel refused it by "
                             "policy (EPERM although the process has CAP_BPF")


# -- map element operations: EPERM is the access mode ----------------------------------------


def test_map_access_modes_are_named(pin_dir: str) -> None:
    spec = ebpf.MapSpec(type=ebpf.MapType.HASH, key_size=4, value_size=4, max_entries=4,
                        name="ro_user", flags=ebpf.MapFlags.RDONLY)
    with ebpf.Map(spec) as m:
        with pytest.raises(ebpf.PermissionError) as ei:
            m[1] = 1
        assert str(ei.value).startswith("update in HASH map 'ro_user': the map was created "
                                        "read-only for user space (BPF_F_RDONLY)")
    spec = ebpf.MapSpec(type=ebpf.MapType.HASH, key_size=4, value_size=4, max_entries=4,
                        name="wo_user", flags=ebpf.MapFlags.WRONLY)
    with ebpf.Map(spec) as m:
        m[1] = 1
        with pytest.raises(ebpf.PermissionError) as ei:
            m[1]
        assert str(ei.value).startswith("lookup in HASH map 'wo_user': the map was created "
                                        "write-only for user space (BPF_F_WRONLY)")
    spec = ebpf.MapSpec(type=ebpf.MapType.HASH, key_size=4, value_size=4, max_entries=4,
                        name="pinned")
    path = os.path.join(pin_dir, "pinned")
    with ebpf.Map(spec) as m:
        m.pin(path)
        with ebpf.Map.open_pinned(path, read_only=True) as ro:
            with pytest.raises(ebpf.PermissionError) as ei:
                ro[1] = 2
            assert str(ei.value).startswith(
                "update in HASH map 'pinned': this descriptor of the map is read-only")
        m.freeze()
        with pytest.raises(ebpf.PermissionError) as ei:
            m[1] = 2
        assert str(ei.value).startswith("update in HASH map 'pinned': the map is frozen")
        m.unpin()


def test_enomem_mentions_memlock_only_where_it_is_charged() -> None:
    e = syscall.from_errno(errno.ENOMEM, "bpf(BPF_MAP_CREATE)")
    assert type(e) is ebpf.SyscallError
    assert str(e) == "bpf(BPF_MAP_CREATE): Cannot allocate memory (ENOMEM)"  # 5.11+: memcg
