"""Probe what the running kernel supports: program, map and link types, helpers per
program type, BTF kinds and miscellaneous features.

Every probe asks the kernel directly (loads a two-instruction program, creates a
one-element map, loads a tiny BTF blob, ...) the way libbpf and bpftool do, and
is cached for the life of the process. `have_*` return a bool; `require_*` raise
`NotSupportedError` naming what is missing. A probe that cannot be answered for
lack of privilege raises `ebpf.errors.PermissionError`.

```python
from ebpf import features, MapType, ProgramType, HelperFunc
features.have_map_type(MapType.RINGBUF)
features.have_helper(ProgramType.XDP, HelperFunc.redirect_map)
features.require_program_type(ProgramType.SK_LOOKUP)
print(features.format_text(features.probe_all()))   # like `bpftool feature probe`
```
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from functools import cache
from typing import Any

from . import btf as _btf
from ._sys import caps as _caps
from ._sys import ops as _ops
from ._sys.syscall import bpf as _bpf
from ._sys.syscall import bpf_errno as _bpf_errno
from ._sys.syscall import from_errno
from ._sys.types import (
    BPF_BTF_LOAD,
    BPF_F_LINK,
    BPF_F_MMAPABLE,
    BPF_F_NO_PREALLOC,
    BPF_F_VTYPE_BTF_OBJ_FD,
    BPF_LINK_CREATE,
    BPF_MAP_CREATE,
    BPF_MAP_LOOKUP_BATCH,
    BPF_PROG_LOAD,
    BPF_RAW_TRACEPOINT_OPEN,
    BPF_TOKEN_CREATE,
    AttachType,
    HelperFunc,
    LinkCreateAttr,
    LinkType,
    MapBatchAttr,
    MapCreateAttr,
    MapType,
    ProgLoadAttr,
    ProgramType,
    RawTracepointOpenAttr,
    TokenCreateAttr,
)
from .btf import Enum, Func, load_kernel_spec
from .btf import kernel as _btf_kernel
from .btf.types import Kind as BTFKind
from .errors import (
    BTFError,
    InvalidArgumentError,
    KeyNotFoundError,
    NotSupportedError,
    SyscallError,
)

__all__ = [
    "MISC_FEATURES",
    "format_text",
    "have_attach_type",
    "have_bounded_loops",
    "have_btf_kind",
    "have_helper",
    "have_iter_target",
    "have_large_insn_limit",
    "have_link_type",
    "have_map_type",
    "have_misc",
    "have_multi_attach",
    "have_program_type",
    "have_ringbuf",
    "have_v2_isa",
    "have_v3_isa",
    "have_v4_isa",
    "probe_all",
    "require_attach_type",
    "require_btf_kind",
    "require_helper",
    "require_link_type",
    "require_map_type",
    "require_misc",
    "require_program_type",
    "require_struct_ops",
]

_ENOTSUPP = 524  # kernel-internal "operation not supported"
_BPF_F_SLEEPABLE = 1 << 4


def _name(e: Any) -> str:
    return str(e.name).removesuffix("_DEPRECATED").lower()


# -- raw instructions (8 bytes each) -------------------------------------------------------

def _insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", op, (src << 4) | dst, off, imm)


_MOV64_IMM = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K
_MOV64_REG = 0xBF  # BPF_ALU64 | BPF_MOV | BPF_X
_SUB64_IMM = 0x17
_CALL = 0x85
_EXIT = 0x95
_JNE_IMM = 0x55
_JLT_IMM = 0xA5  # BPF_JMP | BPF_JLT | BPF_K (v2 ISA)
_JLT32_IMM = 0xA6  # BPF_JMP32 | BPF_JLT | BPF_K (v3 ISA)

_RET0 = _insn(_MOV64_IMM, 0, imm=0) + _insn(_EXIT)
_RET1 = _insn(_MOV64_IMM, 0, imm=1) + _insn(_EXIT)  # "allow": in range for every hook


# -- program loading --------------------------------------------------------------------------

def _kernel_version() -> int:
    """LINUX_VERSION_CODE of the running kernel (only old kernels check it for kprobes)."""
    rel = os.uname().release
    nums: list[int] = []
    for part in rel.split("-")[0].split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        nums.append(int(digits) if digits else 0)
    while len(nums) < 3:
        nums.append(0)
    return (nums[0] << 16) + (nums[1] << 8) + min(nums[2], 255)


def _load(prog_type: int, insns: bytes, *, expected_attach_type: int = 0,
          attach_btf_id: int = 0, prog_flags: int = 0, log: bool = False) -> tuple[int, str]:
    """BPF_PROG_LOAD: (fd or -errno, verifier log). The caller closes the fd."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    logbuf = ctypes.create_string_buffer(4096) if log else None
    attr = ProgLoadAttr(prog_type=prog_type, insn_cnt=len(insns) // 8,
                        insns=ctypes.addressof(code), license=ctypes.addressof(lic),
                        expected_attach_type=expected_attach_type,
                        attach_btf_id=attach_btf_id, prog_flags=prog_flags)
    if prog_type == ProgramType.KPROBE:
        attr.kern_version = _kernel_version()
    if logbuf is not None:
        attr.log_level, attr.log_size, attr.log_buf = 1, 4096, ctypes.addressof(logbuf)
    ret = -errno.EAGAIN
    for _ in range(5):  # BPF_PROG_LOAD may fail spuriously with EAGAIN
        ret = _bpf_errno(BPF_PROG_LOAD, attr)
        if ret != -errno.EAGAIN:
            break
    text = logbuf.value.decode(errors="replace") if logbuf is not None else ""
    return ret, text


# What each program type needs to load a trivial program, like libbpf's probes:
# (expected_attach_type, attach_btf_id, prog_flags, expected -errno, log message)
_PROG_SETUP: dict[int, tuple[int, int, int, int, str]] = {
    ProgramType.CGROUP_SOCK_ADDR: (AttachType.CGROUP_INET4_CONNECT, 0, 0, 0, ""),
    ProgramType.CGROUP_SOCKOPT: (AttachType.CGROUP_GETSOCKOPT, 0, 0, 0, ""),
    ProgramType.SK_LOOKUP: (AttachType.SK_LOOKUP, 0, 0, 0, ""),
    ProgramType.LIRC_MODE2: (AttachType.LIRC_MODE2, 0, 0, 0, ""),
    ProgramType.NETFILTER: (AttachType.NETFILTER, 0, 0, 0, ""),
    ProgramType.SYSCALL: (0, 0, _BPF_F_SLEEPABLE, 0, ""),
    # Attaching to type id 1 (never a function) gets past the type check into the
    # verifier, which names the problem: the type exists.
    ProgramType.TRACING: (AttachType.TRACE_FENTRY, 1, 0, -errno.EINVAL,
                          "attach_btf_id 1 is not a function"),
    ProgramType.LSM: (AttachType.LSM_MAC, 1, 0, -errno.EINVAL,
                      "attach_btf_id 1 is not a function"),
    ProgramType.EXT: (0, 1, 0, -errno.EINVAL, "Cannot replace kernel functions"),
    ProgramType.STRUCT_OPS: (0, 0, 0, -_ENOTSUPP, ""),
}
# Helper availability cannot be probed with a trivial program for these types.
_HELPER_UNPROBEABLE = frozenset({ProgramType.TRACING, ProgramType.EXT, ProgramType.LSM,
                                 ProgramType.STRUCT_OPS})
# Helpers that print a warning to the kernel log when merely probed; bpftool skips them.
_NOISY_HELPERS = frozenset({HelperFunc.trace_printk, HelperFunc.trace_vprintk,
                            HelperFunc.probe_write_user})


def _probe_prog(prog_type: int, insns: bytes, log: bool) -> tuple[int, str]:
    eat, btf_id, flags, _, exp_msg = _PROG_SETUP.get(prog_type, (0, 0, 0, 0, ""))
    ret, text = _load(prog_type, insns, expected_attach_type=eat, attach_btf_id=btf_id,
                      prog_flags=flags, log=log or bool(exp_msg))
    return ret, text


def _check_eperm(what: str, *, cmd: int = BPF_PROG_LOAD, prog_type: int | None = None,
                 map_type: int | None = None) -> None:
    """After a probe's EPERM: raise `PermissionError` naming the missing capability (the
    probe cannot answer); return when the process has what it needs and the kernel
    refused by policy (the feature is unavailable: the probe says False)."""
    exc = _caps.eperm_error(f"probing {what}", cmd=cmd, prog_type=prog_type,
                            map_type=map_type)
    from .errors import KernelPolicyError  # on an EPERM only (process start)
    if not isinstance(exc, KernelPolicyError):
        raise exc


@cache
def have_program_type(prog_type: ProgramType) -> bool:
    """Whether programs of `prog_type` can be loaded (a program that only returns 0)."""
    pt = ProgramType(prog_type)
    if pt == ProgramType.UNSPEC:
        return False
    exp_err, exp_msg = _PROG_SETUP.get(pt, (0, 0, 0, 0, ""))[3:]
    ret, text = _probe_prog(pt, _RET0, log=False)
    if ret >= 0:
        os.close(ret)
        return exp_err == 0
    if exp_err:
        return ret == exp_err and (not exp_msg or exp_msg in text)
    if ret == -errno.EPERM:
        _check_eperm(f"program type {pt.name}", prog_type=pt)
        return False  # privileged, yet refused for this type (lockdown, LSM, ...)
    return False


@cache
def have_attach_type(prog_type: ProgramType, attach_type: AttachType) -> bool:
    """Whether `prog_type` programs load with expected attach type `attach_type`.

    For the program types that take an expected attach type without a BTF target
    (cgroup hooks, sk_lookup, netfilter, ...): e.g. CGROUP_SOCK_ADDR with
    CGROUP_UNIX_CONNECT (Linux 6.7). Types that need a BTF target (TRACING, LSM, EXT)
    cannot be probed this way: InvalidArgumentError.
    """
    pt, at = ProgramType(prog_type), AttachType(attach_type)
    if pt in (ProgramType.TRACING, ProgramType.LSM, ProgramType.EXT, ProgramType.STRUCT_OPS):
        raise InvalidArgumentError(
            f"attach types of {pt.name} programs need a BTF target and cannot be probed")
    return _load_ok(pt, _RET1, expected_attach_type=at, what=f"attach type {at.name}")


@cache
def _probe_helper(prog_type: ProgramType, helper: HelperFunc) -> tuple[bool, str]:
    """(available, verifier log) for calling `helper` from a `prog_type` program."""
    insns = _insn(_CALL, imm=int(helper)) + _insn(_EXIT)
    ret, text = _probe_prog(prog_type, insns, log=True)
    if ret >= 0:
        os.close(ret)
        return True, text
    if ret == -errno.EPERM:
        _check_eperm(f"helper {helper.name}", prog_type=prog_type)
    # "invalid func": unknown helper id; "unknown func" (older kernels) and "program of
    # this type cannot use helper" (6.x): known helper, not for this program type.
    # Any other complaint is about the (missing) arguments: the helper is there.
    for msg in ("invalid func ", "unknown func ", "program of this type cannot use helper "):
        if msg in text:
            return False, text
    return True, text


@cache
def have_helper(prog_type: ProgramType, helper: HelperFunc) -> bool:
    """Whether programs of `prog_type` may call `helper`.

    False when the program type itself is unavailable. TRACING, EXT, LSM and
    STRUCT_OPS programs cannot be probed this way (neither can libbpf):
    InvalidArgumentError.
    """
    pt, h = ProgramType(prog_type), HelperFunc(helper)
    if pt in _HELPER_UNPROBEABLE:
        raise InvalidArgumentError(
            f"helper availability cannot be probed for {pt.name} programs")
    if not have_program_type(pt):
        return False
    return _probe_helper(pt, h)[0]


# -- maps -----------------------------------------------------------------------------------------

class _BTFWriter:
    """Just enough of a BTF encoder for the probes (hand-made blobs, like libbpf's)."""

    def __init__(self) -> None:
        self.types = bytearray()
        self.strings = bytearray(b"\0")
        self.count = 0

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, name: str, kind: int, vlen: int, size_or_type: int, *extra: int,
            kind_flag: int = 0) -> int:
        info = (kind_flag << 31) | (kind << 24) | vlen
        self.types += struct.pack("<III", self.s(name), info, size_or_type)
        for word in extra:
            self.types += struct.pack("<I", word & 0xFFFFFFFF)
        self.count += 1
        return self.count

    def int_(self, name: str = "int", size: int = 4, signed: bool = True) -> int:
        return self.add(name, BTFKind.INT, 0, size, ((1 if signed else 0) << 24) | size * 8)

    def blob(self) -> bytes:
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types),
                          len(self.types), len(self.strings))
        return hdr + bytes(self.types) + bytes(self.strings)


def _local_storage_btf() -> bytes:
    """int; struct bpf_spin_lock { int val; }; struct val { int cnt; struct bpf_spin_lock l; }"""
    w = _BTFWriter()
    i = w.int_()
    lock = w.add("bpf_spin_lock", BTFKind.STRUCT, 1, 4, w.s("val"), i, 0)
    w.add("val", BTFKind.STRUCT, 2, 8, w.s("cnt"), i, 0, w.s("l"), lock, 32)
    return w.blob()


def _create_map(attr: MapCreateAttr) -> int:
    return _bpf_errno(BPF_MAP_CREATE, attr)


@cache
def have_map_type(map_type: MapType) -> bool:
    """Whether maps of `map_type` can be created (one element, minimal sizes)."""
    mt = MapType(map_type)
    if mt == MapType.UNSPEC:
        return False
    attr = MapCreateAttr(map_type=mt, key_size=4, value_size=4, max_entries=1)
    fds: list[int] = []
    expect = 0
    try:
        if mt == MapType.STACK_TRACE:
            attr.value_size = 8
        elif mt == MapType.LPM_TRIE:
            attr.key_size, attr.value_size, attr.map_flags = 8, 8, BPF_F_NO_PREALLOC
        elif mt in (MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE):
            attr.key_size, attr.value_size, attr.max_entries = 16, 8, 0
        elif mt in (MapType.QUEUE, MapType.STACK, MapType.BLOOM_FILTER):
            attr.key_size = 0
        elif mt in (MapType.SK_STORAGE, MapType.INODE_STORAGE, MapType.TASK_STORAGE,
                    MapType.CGRP_STORAGE):
            btf_fd, _ = _ops.btf_load(_local_storage_btf())
            if btf_fd < 0:
                return False
            fds.append(btf_fd)
            attr.btf_fd, attr.btf_key_type_id, attr.btf_value_type_id = btf_fd, 1, 3
            attr.value_size, attr.max_entries, attr.map_flags = 8, 0, BPF_F_NO_PREALLOC
        elif mt in (MapType.RINGBUF, MapType.USER_RINGBUF):
            attr.key_size = attr.value_size = 0
            attr.max_entries = os.sysconf("SC_PAGE_SIZE")
        elif mt == MapType.ARENA:
            attr.key_size = attr.value_size = 0
            attr.map_flags = BPF_F_MMAPABLE
        elif mt == MapType.STRUCT_OPS:
            # type id 1 of vmlinux is no struct_ops type: ENOTSUPP means the map type exists
            attr.btf_vmlinux_value_type_id = 1
            expect = -_ENOTSUPP
        elif mt in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS):
            inner = _create_map(MapCreateAttr(map_type=MapType.HASH, key_size=4,
                                              value_size=4, max_entries=1))
            if inner < 0:
                return False
            fds.append(inner)
            attr.inner_map_fd = inner
        ret = _create_map(attr)
        if ret >= 0:
            fds.append(ret)
            return expect == 0
        if expect:
            return ret == expect
        if ret == -errno.EPERM:  # a missing capability raises; a policy refusal is False
            _check_eperm(f"map type {mt.name}", cmd=BPF_MAP_CREATE, map_type=mt)
        return False
    finally:
        for fd in fds:
            os.close(fd)


# -- BTF kinds ------------------------------------------------------------------------------------

def _btf_kind_blob(kind: BTFKind) -> bytes | None:
    w = _BTFWriter()
    k = BTFKind
    if kind == k.INT:
        w.int_()
    elif kind == k.PTR:
        w.add("", k.PTR, 0, w.int_())
    elif kind == k.ARRAY:
        i = w.int_()
        w.add("", k.ARRAY, 0, 0, i, i, 2)
    elif kind in (k.STRUCT, k.UNION):
        i = w.int_()
        w.add("s", kind, 1, 4, w.s("a"), i, 0)
    elif kind == k.ENUM:
        w.add("e", k.ENUM, 1, 4, w.s("A"), 1)
    elif kind == k.FWD:
        w.add("f", k.FWD, 0, 0)
    elif kind == k.TYPEDEF:
        w.add("t", k.TYPEDEF, 0, w.int_())
    elif kind in (k.VOLATILE, k.CONST):
        w.add("", kind, 0, w.int_())
    elif kind == k.RESTRICT:
        w.add("", k.RESTRICT, 0, w.add("", k.PTR, 0, w.int_()))
    elif kind == k.FUNC_PROTO:
        i = w.int_()
        w.add("", k.FUNC_PROTO, 1, i, 0, i)
    elif kind == k.FUNC:
        i = w.int_()
        proto = w.add("", k.FUNC_PROTO, 1, i, w.s("a"), i)  # a FUNC's params need names
        w.add("f", k.FUNC, 1, proto)  # vlen carries the linkage: global
    elif kind == k.VAR:
        w.add("v", k.VAR, 0, w.int_(), 1)
    elif kind == k.DATASEC:
        v = w.add("v", k.VAR, 0, w.int_(), 1)
        w.add(".data", k.DATASEC, 1, 4, v, 0, 4)
    elif kind == k.FLOAT:
        w.add("float", k.FLOAT, 0, 4)
    elif kind == k.DECL_TAG:
        v = w.add("v", k.VAR, 0, w.int_(), 1)
        w.add("tag", k.DECL_TAG, 0, v, -1)
    elif kind == k.TYPE_TAG:
        tag = w.add("tag", k.TYPE_TAG, 0, w.int_())
        w.add("", k.PTR, 0, tag)
    elif kind == k.ENUM64:
        w.add("e", k.ENUM64, 1, 8, w.s("A"), 1, 1)
    else:
        return None
    return w.blob()


@cache
def have_btf_kind(kind: BTFKind) -> bool:
    """Whether BPF_BTF_LOAD accepts types of `kind` (an `ebpf.btf.Kind`)."""
    bk = BTFKind(kind)
    blob = _btf_kind_blob(bk)
    if blob is None:
        return False
    fd, _ = _ops.btf_load(blob)
    if fd >= 0:
        os.close(fd)
        return True
    if fd == -errno.EPERM:
        _check_eperm(f"BTF kind {bk.name}", cmd=BPF_BTF_LOAD)
    return False


# -- link types ------------------------------------------------------------------------------------

@cache
def _kernel_enum_values(enum_name: str) -> frozenset[str] | None:
    """Names in an enum of the kernel's BTF (None without kernel BTF)."""
    try:
        t = load_kernel_spec().type_by_name(enum_name, Enum)
    except Exception:
        return None
    return frozenset(v.name for v in t.values)


@cache
def _have_link_create() -> bool:
    attr = LinkCreateAttr(attach_type=0)
    attr.prog_fd = 0xFFFFFFFF
    return _bpf_errno(BPF_LINK_CREATE, attr) == -errno.EBADF


def _link_probe(prog_type: ProgramType, eat: int, attach_type: int, fill: Any,
                supported: tuple[int, ...]) -> bool:
    """Load a trivial `prog_type` program and try BPF_LINK_CREATE with a bogus target:
    an error from the attach code itself (`supported`) means the link type exists."""
    if not have_program_type(prog_type):
        return False
    fd, _ = _load(prog_type, _RET0, expected_attach_type=eat)
    if fd < 0:
        return False
    try:
        attr = LinkCreateAttr(attach_type=attach_type)
        attr.prog_fd = fd
        keep = fill(attr)
        ret = _bpf_errno(BPF_LINK_CREATE, attr)
        del keep
        if ret >= 0:
            os.close(ret)
            return True
        return -ret in supported
    finally:
        os.close(fd)


def _bad_target_fd(attr: LinkCreateAttr) -> None:
    attr.target_fd = 0xFFFFFFFF


def _bad_ifindex(attr: LinkCreateAttr) -> None:
    attr.target_ifindex = 0x7FFFFFFF


def _kprobe_multi_vprintk(attr: LinkCreateAttr) -> Any:
    name = ctypes.create_string_buffer(b"vprintk")
    syms = (ctypes.c_uint64 * 1)(ctypes.addressof(name))
    attr.kprobe_multi.cnt = 1
    attr.kprobe_multi.syms = ctypes.addressof(syms)
    return name, syms


def _uprobe_multi_root(attr: LinkCreateAttr) -> Any:
    path = ctypes.create_string_buffer(b"/")
    offsets = (ctypes.c_uint64 * 1)(0)
    attr.uprobe_multi.path = ctypes.addressof(path)
    attr.uprobe_multi.offsets = ctypes.addressof(offsets)
    attr.uprobe_multi.cnt = 1
    return path, offsets


def _netfilter_bad_pf(attr: LinkCreateAttr) -> None:
    attr.netfilter.pf = 255


def _raw_tp_probe() -> bool:
    if not have_program_type(ProgramType.RAW_TRACEPOINT):
        return False
    fd, _ = _load(ProgramType.RAW_TRACEPOINT, _RET0)
    if fd < 0:
        return False
    try:
        name = ctypes.create_string_buffer(b"ebpf_features_no_such_tracepoint")
        attr = RawTracepointOpenAttr(name=ctypes.addressof(name), prog_fd=fd)
        ret = _bpf_errno(BPF_RAW_TRACEPOINT_OPEN, attr)
        if ret >= 0:
            os.close(ret)
        return ret == -errno.ENOENT
    finally:
        os.close(fd)


def _link_probes() -> dict[LinkType, Any]:
    return {
        LinkType.RAW_TRACEPOINT: _raw_tp_probe,
        LinkType.TRACING: lambda: have_program_type(ProgramType.TRACING),
        LinkType.ITER: lambda: have_program_type(ProgramType.TRACING),
        LinkType.CGROUP: lambda: _link_probe(
            ProgramType.CGROUP_SKB, AttachType.CGROUP_INET_INGRESS,
            AttachType.CGROUP_INET_INGRESS, _bad_target_fd, (errno.EBADF,)),
        LinkType.NETNS: lambda: _link_probe(
            ProgramType.FLOW_DISSECTOR, AttachType.FLOW_DISSECTOR,
            AttachType.FLOW_DISSECTOR, _bad_target_fd, (errno.EBADF,)),
        LinkType.XDP: lambda: have_program_type(ProgramType.XDP),
        LinkType.PERF_EVENT: lambda: _link_probe(
            ProgramType.TRACEPOINT, 0, AttachType.PERF_EVENT, _bad_target_fd,
            (errno.EBADF,)),
        LinkType.KPROBE_MULTI: lambda: _link_probe(
            ProgramType.KPROBE, AttachType.TRACE_KPROBE_MULTI,
            AttachType.TRACE_KPROBE_MULTI, _kprobe_multi_vprintk, ()),
        LinkType.STRUCT_OPS: _struct_ops_links,
        LinkType.NETFILTER: lambda: _link_probe(
            ProgramType.NETFILTER, AttachType.NETFILTER, AttachType.NETFILTER,
            _netfilter_bad_pf, (errno.EAFNOSUPPORT, errno.EPROTO)),
        LinkType.TCX: lambda: _link_probe(
            ProgramType.SCHED_CLS, AttachType.TCX_INGRESS, AttachType.TCX_INGRESS,
            _bad_ifindex, (errno.ENODEV,)),
        LinkType.UPROBE_MULTI: lambda: _link_probe(
            ProgramType.KPROBE, AttachType.TRACE_UPROBE_MULTI,
            AttachType.TRACE_UPROBE_MULTI, _uprobe_multi_root, (errno.EBADF,)),
        LinkType.NETKIT: lambda: _link_probe(
            ProgramType.SCHED_CLS, AttachType.NETKIT_PRIMARY, AttachType.NETKIT_PRIMARY,
            _bad_ifindex, (errno.ENODEV,)),
        LinkType.SOCKMAP: lambda: _link_probe(
            ProgramType.SK_SKB, AttachType.SK_SKB_STREAM_VERDICT,
            AttachType.SK_SKB_STREAM_VERDICT, _bad_target_fd, (errno.EBADF,)),
    }


@cache
def have_link_type(link_type: LinkType) -> bool:
    """Whether bpf_links of `link_type` can be created (BPF_LINK_CREATE with a bogus
    target reaching the type's attach code; the kernel's BTF where no such probe
    exists). False when the program type the link needs is unavailable."""
    lt = LinkType(link_type)
    if lt == LinkType.UNSPEC or not _have_link_create():
        return False
    known = _kernel_enum_values("bpf_link_type")
    if known is not None and f"BPF_LINK_TYPE_{lt.name}" not in known:
        return False
    probe = _link_probes().get(lt)
    if probe is None:
        return known is not None
    return bool(probe())


# -- misc -----------------------------------------------------------------------------------------

def _load_ok(prog_type: int, insns: bytes, *, expected_attach_type: int = 0,
             what: str = "a program feature") -> bool:
    """Whether the program loads; EPERM raises when we may not load programs at all."""
    fd, _ = _load(prog_type, insns, expected_attach_type=expected_attach_type)
    if fd >= 0:
        os.close(fd)
        return True
    if fd == -errno.EPERM:
        _check_eperm(what, prog_type=prog_type)
    return False


def _probe_large_insn_limit() -> bool:
    return _load_ok(ProgramType.SCHED_CLS, _insn(_MOV64_IMM, 0, imm=1) * 4096 + _insn(_EXIT))


def _probe_bounded_loops() -> bool:
    return _load_ok(ProgramType.SOCKET_FILTER,
                    _insn(_MOV64_IMM, 0, imm=10) + _insn(_SUB64_IMM, 0, imm=1)
                    + _insn(_JNE_IMM, 0, off=-2, imm=0) + _insn(_EXIT))


def _probe_v2_isa() -> bool:
    return _load_ok(ProgramType.SOCKET_FILTER,
                    _insn(_MOV64_IMM, 0, imm=0) + _insn(_JLT_IMM, 0, off=1, imm=0)
                    + _insn(_MOV64_IMM, 0, imm=1) + _insn(_EXIT))


def _probe_v3_isa() -> bool:
    return _load_ok(ProgramType.SOCKET_FILTER,
                    _insn(_MOV64_IMM, 0, imm=0) + _insn(_JLT32_IMM, 0, off=1, imm=0)
                    + _insn(_MOV64_IMM, 0, imm=1) + _insn(_EXIT))


def _probe_v4_isa() -> bool:
    # movsx r0 = (s8)r1 (cpu v4: sign-extending moves, sdiv/smod, bswap, gotol)
    return _load_ok(ProgramType.SOCKET_FILTER,
                    _insn(_MOV64_IMM, 1, imm=-1) + _insn(_MOV64_REG, 0, 1, off=8)
                    + _insn(_EXIT))


def _probe_map_batch() -> bool:
    fd = _create_map(MapCreateAttr(map_type=MapType.HASH, key_size=4, value_size=4,
                                   max_entries=1))
    if fd < 0:
        return False
    try:
        keys = ctypes.create_string_buffer(8)
        values = ctypes.create_string_buffer(8)
        tok = ctypes.create_string_buffer(8)
        attr = MapBatchAttr(out_batch=ctypes.addressof(tok), keys=ctypes.addressof(keys),
                            values=ctypes.addressof(values), count=1, map_fd=fd)
        return _bpf_errno(BPF_MAP_LOOKUP_BATCH, attr) in (0, -errno.ENOENT)
    finally:
        os.close(fd)


def _probe_mmapable() -> bool:
    fd = _create_map(MapCreateAttr(map_type=MapType.ARRAY, key_size=4, value_size=4,
                                   max_entries=1, map_flags=BPF_F_MMAPABLE))
    if fd >= 0:
        os.close(fd)
    return fd >= 0


def _probe_object_names() -> bool:
    attr = MapCreateAttr(map_type=MapType.ARRAY, key_size=4, value_size=4, max_entries=1)
    ctypes.memmove(ctypes.addressof(attr) + MapCreateAttr.map_name.offset, b"feature", 7)
    fd = _create_map(attr)
    if fd >= 0:
        os.close(fd)
    return fd >= 0


def _probe_kernel_btf() -> bool:
    return os.path.exists("/sys/kernel/btf/vmlinux")


MISC_FEATURES: dict[str, str] = {
    "large_insn_limit": "programs of more than 4096 instructions (5.2)",
    "bounded_loops": "bounded loops (5.3)",
    "v2_isa_extension": "v2 ISA: BPF_JLT/JLE/JSLT/JSLE (4.14)",
    "v3_isa_extension": "v3 ISA: 32-bit jumps (5.1)",
    "v4_isa_extension": "v4 ISA: sign extension, sdiv/smod, bswap, gotol (6.6)",
    "map_batch_ops": "BPF_MAP_*_BATCH commands (5.6)",
    "mmapable_maps": "BPF_F_MMAPABLE arrays (5.5)",
    "object_names": "map and program names (4.15)",
    "btf": "BPF_BTF_LOAD (4.18)",
    "kernel_btf": "the kernel's own BTF at /sys/kernel/btf/vmlinux (5.4)",
    "bpf_link": "BPF_LINK_CREATE (5.7)",
}

_MISC_PROBES: dict[str, Any] = {
    "large_insn_limit": _probe_large_insn_limit,
    "bounded_loops": _probe_bounded_loops,
    "v2_isa_extension": _probe_v2_isa,
    "v3_isa_extension": _probe_v3_isa,
    "v4_isa_extension": _probe_v4_isa,
    "map_batch_ops": _probe_map_batch,
    "mmapable_maps": _probe_mmapable,
    "object_names": _probe_object_names,
    "btf": lambda: have_btf_kind(BTFKind.INT),
    "kernel_btf": _probe_kernel_btf,
    "bpf_link": _have_link_create,
}


@cache
def have_misc(name: str) -> bool:
    """Whether the miscellaneous feature `name` (a key of MISC_FEATURES) is there."""
    probe = _MISC_PROBES.get(name)
    if probe is None:
        raise InvalidArgumentError(
            f"unknown feature {name!r} (known: {', '.join(sorted(_MISC_PROBES))})")
    return bool(probe())


def have_large_insn_limit() -> bool:
    """Whether programs may have up to 1M instructions (5.2; before: 4096)."""
    return have_misc("large_insn_limit")


def have_bounded_loops() -> bool:
    """Whether the verifier accepts bounded loops (backward jumps; 5.3)."""
    return have_misc("bounded_loops")


def have_v2_isa() -> bool:
    """Whether the kernel takes the v2 ISA (`-mcpu=v2`: unsigned jlt/jle/jslt/jsle; 4.14)."""
    return have_misc("v2_isa_extension")


def have_v3_isa() -> bool:
    """Whether the kernel takes the v3 ISA (`-mcpu=v3`: 32-bit jumps; 5.1)."""
    return have_misc("v3_isa_extension")


def have_v4_isa() -> bool:
    """Whether the kernel takes the v4 ISA (`-mcpu=v4`: sign-extending loads and moves,
    sdiv/smod, bswap, 32-bit-offset ja; 6.6)."""
    return have_misc("v4_isa_extension")


@cache
def have_bpf_token() -> bool:
    """Whether the kernel has BPF tokens (BPF_TOKEN_CREATE and BPF FS delegation
    options, 6.9): asked to make one from an invalid descriptor, it says EBADF (an
    older kernel: EINVAL, an unknown command)."""
    return _bpf_errno(BPF_TOKEN_CREATE, TokenCreateAttr(flags=0, bpffs_fd=2**32 - 1)) \
        == -errno.EBADF


def have_ringbuf() -> bool:
    """Whether BPF ring buffers (MapType.RINGBUF) exist (5.8)."""
    return have_map_type(MapType.RINGBUF)


# -- require_* -------------------------------------------------------------------------------------

def require_program_type(prog_type: ProgramType) -> None:
    """Raise NotSupportedError unless `prog_type` programs can be loaded."""
    if not have_program_type(prog_type):
        raise NotSupportedError(f"program type {_name(ProgramType(prog_type)).upper()}")


def require_attach_type(prog_type: ProgramType, attach_type: AttachType) -> None:
    """Raise NotSupportedError unless `prog_type` programs load for `attach_type`."""
    if not have_attach_type(prog_type, attach_type):
        raise NotSupportedError(f"attach type {AttachType(attach_type).name} for "
                                f"{ProgramType(prog_type).name} programs")


def require_map_type(map_type: MapType) -> None:
    """Raise NotSupportedError unless `map_type` maps can be created."""
    if not have_map_type(map_type):
        raise NotSupportedError(f"map type {_name(MapType(map_type)).upper()}")


def require_helper(prog_type: ProgramType, helper: HelperFunc) -> None:
    """Raise NotSupportedError unless `prog_type` programs may call `helper`."""
    if not have_helper(prog_type, helper):
        raise NotSupportedError(
            f"helper bpf_{HelperFunc(helper).name} for {ProgramType(prog_type).name} programs")


def require_btf_kind(kind: BTFKind) -> None:
    """Raise NotSupportedError unless the kernel accepts BTF of `kind`."""
    if not have_btf_kind(kind):
        raise NotSupportedError(f"BTF kind {BTFKind(kind).name}")


def require_link_type(link_type: LinkType) -> None:
    """Raise NotSupportedError unless bpf_links of `link_type` can be created."""
    if not have_link_type(link_type):
        raise NotSupportedError(f"link type {LinkType(link_type).name}")


def require_misc(name: str) -> None:
    """Raise NotSupportedError unless the miscellaneous feature `name` is there."""
    if not have_misc(name):
        raise NotSupportedError(MISC_FEATURES.get(name, name))


# -- everything ------------------------------------------------------------------------------------

def _unique(enum_cls: Any) -> list[Any]:
    seen: set[int] = set()
    out = []
    for e in enum_cls:
        if int(e) not in seen:
            seen.add(int(e))
            out.append(e)
    return out


def probe_all(*, helpers: bool = True) -> dict[str, Any]:
    """Every probe, as plain data (what `ebpf feature probe --json` prints):

    {"program_types": {"socket_filter": True, ...}, "map_types": {...},
     "helpers": {"socket_filter": ["bpf_map_lookup_elem", ...], ...},
     "link_types": {...}, "btf_kinds": {...}, "misc": {...}}

    Helper lists cover the program types that are available and probeable; like
    bpftool, helpers that write to the kernel log when probed (trace_printk,
    trace_vprintk, probe_write_user) are left out.
    """
    out: dict[str, Any] = {}
    prog_types = [p for p in _unique(ProgramType) if p != ProgramType.UNSPEC]
    out["program_types"] = {_name(p): have_program_type(p) for p in prog_types}
    out["map_types"] = {_name(m): have_map_type(m)
                        for m in _unique(MapType) if m != MapType.UNSPEC}
    if helpers:
        hl: dict[str, list[str]] = {}
        for p in prog_types:
            if p in _HELPER_UNPROBEABLE:
                continue
            if not have_program_type(p):
                hl[_name(p)] = []
                continue
            hl[_name(p)] = [f"bpf_{h.name}" for h in _unique(HelperFunc)
                            if h != HelperFunc.unspec and h not in _NOISY_HELPERS
                            and have_helper(p, h)]
        out["helpers"] = hl
    out["link_types"] = {_name(t): have_link_type(t)
                         for t in _unique(LinkType) if t != LinkType.UNSPEC}
    out["btf_kinds"] = {_name(k): have_btf_kind(k) for k in BTFKind if k != BTFKind.UNKN}
    out["misc"] = {name: have_misc(name) for name in MISC_FEATURES}
    return out


def format_text(result: dict[str, Any] | None = None) -> str:
    """`probe_all()` (or its result) as readable text, in the style of bpftool."""
    r = probe_all() if result is None else result
    lines: list[str] = []

    def avail(ok: bool) -> str:
        return "is available" if ok else "is NOT available"

    sections = [("program_types", "eBPF program_type"), ("map_types", "eBPF map_type"),
                ("link_types", "bpf_link type"), ("btf_kinds", "BTF kind")]
    for key, label in sections:
        if key not in r:
            continue
        lines.append(f"Scanning {key.replace('_', ' ')}...")
        lines.extend(f"{label} {name} {avail(ok)}" for name, ok in r[key].items())
        lines.append("")
    if "helpers" in r:
        lines.append("Scanning eBPF helper functions...")
        for prog, names in r["helpers"].items():
            lines.append(f"eBPF helpers supported for program type {prog}:")
            lines.extend(f"\t- {n}" for n in names)
        lines.append("")
    if "misc" in r:
        lines.append("Scanning miscellaneous eBPF features...")
        for name, ok in r["misc"].items():
            desc = MISC_FEATURES.get(name, name)
            lines.append(f"{desc} {avail(ok)}")
    return "\n".join(lines).rstrip() + "\n"


def _helper_log(prog_type: ProgramType, helper: HelperFunc) -> str:
    """The verifier log of a helper probe (for tests and debugging)."""
    return _probe_helper(ProgramType(prog_type), HelperFunc(helper))[1]


# -- struct_ops --------------------------------------------------------------------------------

_STRUCT_OPS_VALUE_PREFIX = _btf_kernel.STRUCT_OPS_VALUE_PREFIX


def require_struct_ops(type_name: str = "tcp_congestion_ops", *, link: bool = False) -> None:
    """Raise NotSupportedError (saying why) unless the kernel can take a BPF
    implementation of `type_name`: STRUCT_OPS programs and maps, and
    ``struct bpf_struct_ops_<type_name>`` in its BTF (vmlinux's, or that of a loaded
    module defining the type); with `link`, also struct_ops maps registered through a
    bpf_link (``.struct_ops.link``, 6.4+)."""
    require_program_type(ProgramType.STRUCT_OPS)
    require_map_type(MapType.STRUCT_OPS)
    found = _btf_kernel.find_struct_ops_type(type_name)
    if found is None:
        raise NotSupportedError(f"struct_ops type {type_name}",
                                f"struct {type_name} is not in the kernel's BTF (vmlinux or "
                                "a loaded module's)")
    if found.value is None:
        raise NotSupportedError(f"struct_ops type {type_name}",
                                f"no struct {_STRUCT_OPS_VALUE_PREFIX}{type_name} in the "
                                "kernel's BTF")
    if link and not _probe_struct_ops_link_map(_btf.sizeof(found.value), found.value_id,
                                               found.module):
        raise NotSupportedError("struct_ops bpf_links",
                                "BPF_F_LINK struct_ops maps need Linux 6.4+")


@cache
def _probe_struct_ops_link_map(vsize: int, vtype_id: int, module: str = "") -> bool:
    """Whether a BPF_F_LINK struct_ops map of this value type (of vmlinux's BTF, or of
    `module`'s) can be created."""
    w = _BTFWriter()
    w.int_()  # struct_ops map creation needs some BTF object: one int type
    btf_fd, _ = _ops.btf_load(w.blob())
    if btf_fd < 0:
        raise from_errno(-btf_fd, "bpf(BPF_BTF_LOAD)")
    module_btf = None
    try:
        if module:
            module_btf = _btf_kernel.open_module_btf(module)
        attr = MapCreateAttr(map_type=int(MapType.STRUCT_OPS), key_size=4, value_size=vsize,
                             max_entries=1, map_flags=BPF_F_LINK)
        attr.btf_fd = btf_fd
        attr.btf_vmlinux_value_type_id = vtype_id
        if module_btf is not None:  # a module's type (6.9+): its BTF object
            attr.value_type_btf_obj_fd = module_btf.fileno()
            attr.map_flags |= BPF_F_VTYPE_BTF_OBJ_FD
        try:
            os.close(_bpf(BPF_MAP_CREATE, attr))
        except SyscallError as e:
            if e.errno != errno.EINVAL:
                raise
            return False
        return True
    finally:
        os.close(btf_fd)
        if module_btf is not None:
            module_btf.close()


def _struct_ops_links() -> bool:
    """struct_ops bpf_links (6.4+): a BPF_F_LINK struct_ops map can be created."""
    try:
        require_struct_ops("tcp_congestion_ops", link=True)
    except (NotSupportedError, KeyNotFoundError, BTFError):
        return False
    return True


# -- attach targets -------------------------------------------------------------------------------

@cache
def have_iter_target(name: str) -> bool:
    """Whether BPF iterator programs for target `name` load ("task", "bpf_map",
    "bpf_map_elem", "tcp", ...; the part after `iter/` in a section name).

    False when the kernel lacks the target (no ``bpf_iter_<name>`` function in its
    BTF, or no kernel BTF at all) and when the kernel refuses the target by policy
    although the process is privileged (some builds refuse `bpf_map_elem` even to root).
    """
    if not isinstance(name, str) or not name or "\0" in name:
        raise InvalidArgumentError(f"iterator target must be a non-empty name, got {name!r}")
    try:
        target = load_kernel_spec().type_by_name(f"bpf_iter_{name}", Func)
    except (KeyNotFoundError, BTFError, OSError):
        return False
    btf_id = load_kernel_spec().type_id(target)
    fd, _ = _load(ProgramType.TRACING, _RET0, expected_attach_type=AttachType.TRACE_ITER,
                  attach_btf_id=btf_id)
    if fd >= 0:
        os.close(fd)
        return True
    if fd == -errno.EPERM:
        _check_eperm(f"iterator target {name}", prog_type=ProgramType.TRACING)
    return False


# The link types behind each multi-probe attach type, and how to probe them.
_MULTI_ATTACH = {
    AttachType.TRACE_KPROBE_MULTI: (LinkType.KPROBE_MULTI, _kprobe_multi_vprintk, ()),
    AttachType.TRACE_KPROBE_SESSION: (LinkType.KPROBE_MULTI, _kprobe_multi_vprintk, ()),
    AttachType.TRACE_UPROBE_MULTI: (LinkType.UPROBE_MULTI, _uprobe_multi_root,
                                    (errno.EBADF,)),
    AttachType.TRACE_UPROBE_SESSION: (LinkType.UPROBE_MULTI, _uprobe_multi_root,
                                      (errno.EBADF,)),
}


@cache
def have_multi_attach(attach_type: AttachType) -> bool:
    """Whether kprobe/uprobe multi links of `attach_type` can be created:
    TRACE_KPROBE_MULTI (5.18, CONFIG_FPROBE), TRACE_KPROBE_SESSION (6.10),
    TRACE_UPROBE_MULTI (6.6), TRACE_UPROBE_SESSION (6.13). Any other attach type:
    InvalidArgumentError."""
    try:
        at = AttachType(attach_type)
        link_type, fill, supported = _MULTI_ATTACH[at]
    except (ValueError, KeyError):
        raise InvalidArgumentError(
            f"not a kprobe/uprobe multi attach type: {attach_type!r} (one of "
            f"{', '.join(a.name for a in _MULTI_ATTACH)})") from None
    if not have_link_type(link_type):
        return False
    return _link_probe(ProgramType.KPROBE, at, at, fill, supported)
