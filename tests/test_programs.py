"""Programs against the real kernel: load, test_run, verifier errors, pin, info, stats."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import pathlib
import re
import struct
from collections.abc import Iterator

import pytest
from conftest import need_tool
from kernelmatrix import kernel_version, requires

import ebpf
from ebpf import asm, btf
from ebpf._sys.fd import FD
from ebpf._sys.syscall import bpf
from ebpf._sys.types import Cmd, MapCreateAttr, MapElemAttr, MapType
from ebpf.errors import (
    ClosedError,
    InvalidArgumentError,
    KeyNotFoundError,
    NotSupportedError,
    SyscallError,
    VerifierError,
)
from ebpf.programs import Program, ProgramFlags, ProgramSpec, TestRunResult, enable_stats

pytestmark = pytest.mark.kernel

P = ebpf.ProgramType
XDP_PASS = 2


def spec_of(insns: list[asm.Instruction], ptype: ebpf.ProgramType = P.SOCKET_FILTER,
            name: str = "test", **kw: object) -> ProgramSpec:
    return ProgramSpec(name=name, type=ptype, license="GPL", instructions=insns, **kw)  # type: ignore[arg-type]


def ret(value: int) -> list[asm.Instruction]:
    return [asm.mov_imm(asm.R0, value), asm.exit()]


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def cloexec(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def array_map(value: bytes) -> FD:
    """A one-entry BPF array map holding `value` (made with raw bpf(2), independent of
    ebpf.maps)."""
    attr = MapCreateAttr(map_type=MapType.ARRAY, key_size=4, value_size=len(value),
                         max_entries=1)
    fd = FD(bpf(Cmd.MAP_CREATE, attr), "map")
    key = ctypes.c_uint32(0)
    val = ctypes.create_string_buffer(value, len(value))
    elem = MapElemAttr(map_fd=fd.fileno(), key=ctypes.addressof(key))
    elem.value = ctypes.addressof(val)
    bpf(Cmd.MAP_UPDATE_ELEM, elem)
    return fd


@pytest.fixture
def prog() -> Iterator[Program]:
    with Program(spec_of(ret(1), name="ret_one")) as p:
        yield p


# -- load and test_run ------------------------------------------------------------


def test_socket_filter_test_run(prog: Program) -> None:
    data = bytes(range(64))
    res = prog.test_run(data=data)
    assert isinstance(res, TestRunResult)
    assert res.retval == 1
    # the kernel hands non-L2 programs the packet after the Ethernet header and
    # returns that header's MAC addresses zeroed
    assert len(res.data) == len(data) and res.data[14:] == data[14:]
    assert res.ctx is None
    assert res.duration_ns >= 0
    assert prog.type == P.SOCKET_FILTER
    assert prog.name == "ret_one"


def test_api_shape_from_design() -> None:
    p = ebpf.Program(ebpf.ProgramSpec(
        type=ebpf.ProgramType.SOCKET_FILTER, license="GPL",
        instructions=[asm.mov_imm(asm.R0, 1), asm.exit()]))
    with p:
        assert p.test_run(data=b"\0" * 64).retval == 1
    assert p.closed
    p.close()  # idempotent
    with pytest.raises(ValueError):
        p.fileno()


def test_socket_filter_reads_packet() -> None:
    # r6 = ctx; r0 = packet byte 5 (legacy LD_ABS, which counts from the network header,
    # i.e. after the 14-byte Ethernet header of the test packet) + 1
    insns = [asm.mov_reg(asm.R6, asm.R1), asm.load_abs(5, asm.B), asm.add_imm(asm.R0, 1),
             asm.exit()]
    with Program(spec_of(insns)) as p:
        assert p.test_run(data=bytes(range(100, 164))).retval == 100 + 14 + 5 + 1


def test_xdp_rewrites_packet() -> None:
    insns = asm.assemble([
        asm.load_mem(asm.R2, asm.R1, 0, asm.W),   # data
        asm.load_mem(asm.R3, asm.R1, 4, asm.W),   # data_end
        asm.mov_reg(asm.R4, asm.R2),
        asm.add_imm(asm.R4, 2),
        asm.jgt_reg(asm.R4, asm.R3, "out"),
        asm.store_imm(asm.R2, 0, 0xAB, asm.B),
        asm.store_imm(asm.R2, 1, 0xCD, asm.B),
        asm.label("out"),
        asm.mov_imm(asm.R0, XDP_PASS),
        asm.exit(),
    ])
    with Program(spec_of(insns, P.XDP, "xdp_rewrite")) as p:
        res = p.test_run(data=b"\0" * 64, repeat=3)
    assert res.retval == XDP_PASS
    assert res.data == b"\xab\xcd" + b"\0" * 62


def test_xdp_output_buffer_grows() -> None:
    # bpf_xdp_adjust_tail(ctx, +200): the output is larger than a too-small buffer
    insns = [asm.mov_imm(asm.R2, 200), asm.call("xdp_adjust_tail"),
             asm.mov_imm(asm.R0, XDP_PASS), asm.exit()]
    with Program(spec_of(insns, P.XDP, "xdp_grow")) as p:
        res = p.test_run(data=b"\x11" * 64, data_out_size=64)
        assert res.retval == XDP_PASS
        assert len(res.data) == 264
        assert res.data[:64] == b"\x11" * 64
        # the default headroom covers it without a retry as well
        assert len(p.test_run(data=b"\x11" * 64).data) == 264


def test_sched_cls_data_and_ctx() -> None:
    skb = btf.load_kernel_spec().type_by_name("__sk_buff", btf.Struct)
    mark_off = skb.member("mark").offset_bits // 8
    len_off = skb.member("len").offset_bits // 8
    insns = [
        asm.load_mem(asm.R2, asm.R1, mark_off, asm.W),
        asm.load_mem(asm.R0, asm.R1, len_off, asm.W),
        asm.add_reg(asm.R0, asm.R2),               # r0 = skb->len + skb->mark
        asm.mov_imm(asm.R3, 42),
        # skb->mark = 42, with a register store: BPF_ST into the context is refused
        # before Linux 6.4 ("BPF_ST stores into R1 ctx is not allowed")
        asm.store_mem(asm.R1, mark_off, asm.R3, asm.W),
        asm.exit(),
    ]
    ctx = bytearray(skb.size)
    struct.pack_into("<I", ctx, mark_off, 1000)
    with Program(spec_of(insns, P.SCHED_CLS, "tc_prog")) as p:
        res = p.test_run(data=b"\xee" * 100, ctx=ctx)
    assert res.retval == 1100
    assert res.data == b"\xee" * 100
    assert res.ctx is not None and len(res.ctx) == skb.size
    assert struct.unpack_from("<I", res.ctx, mark_off)[0] == 42


def test_syscall_program_ctx_written_back() -> None:
    insns = [asm.load_mem(asm.R2, asm.R1, 0, asm.W), asm.add_imm(asm.R2, 1),
             asm.store_mem(asm.R1, 4, asm.R2, asm.W), asm.mov_imm(asm.R0, 7), asm.exit()]
    spec = spec_of(insns, P.SYSCALL, "sys", flags=ProgramFlags.SLEEPABLE)
    with Program(spec) as p:
        res = p.test_run(ctx=struct.pack("<II", 41, 0))
    assert res.retval == 7
    assert res.ctx == struct.pack("<II", 41, 42)


def test_test_run_not_supported() -> None:
    spec = spec_of(ret(1), P.CGROUP_DEVICE, attach_type=ebpf.AttachType.CGROUP_DEVICE)
    with Program(spec) as p, pytest.raises(NotSupportedError, match="CGROUP_DEVICE"):
        p.test_run(ctx=b"\0" * 12)


def test_test_run_bad_input() -> None:
    with Program(spec_of(ret(2), P.XDP)) as p:
        with pytest.raises(SyscallError) as ei:
            p.test_run(data=b"\0" * 4)  # shorter than an Ethernet header
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(InvalidArgumentError):
            p.test_run(data=b"\0" * 64, repeat=-1)


def test_labels_bpf_to_bpf_call() -> None:
    insns = asm.assemble([
        asm.mov_imm(asm.R1, 20),
        asm.call_func("double"),
        asm.add_imm(asm.R0, 2),
        asm.exit(),
        asm.label("double"),
        asm.mov_reg(asm.R0, asm.R1),
        asm.add_reg(asm.R0, asm.R1),
        asm.exit(),
    ])
    with Program(spec_of(insns)) as p:
        assert p.test_run(data=b"\0" * 64).retval == 42


@requires("kfuncs bpf_rcu_read_lock/unlock for every program type", min_kernel="6.2")
def test_kfunc_reference_resolved() -> None:
    insns = [asm.call_kfunc("bpf_rcu_read_lock"), asm.call_kfunc("bpf_rcu_read_unlock"),
             *ret(3)]
    spec = spec_of(insns, P.SYSCALL, "kfunc", flags=ProgramFlags.SLEEPABLE)
    kernel = btf.load_kernel_spec()
    if not kernel.ids_by_name("bpf_rcu_read_lock"):
        pytest.skip("the kernel's BTF has no kfunc bpf_rcu_read_lock")
    with Program(spec) as p:
        assert p.test_run(ctx=b"\0" * 8).retval == 3
        assert p.info().instructions()[0].is_kfunc_call


def test_kfunc_reference_unknown() -> None:
    with pytest.raises(KeyNotFoundError, match="no_such_kfunc"):
        Program(spec_of([asm.call_kfunc("no_such_kfunc"), *ret(0)], P.SYSCALL))


# -- map references -------------------------------------------------------------------


def test_map_fd_and_value_references() -> None:
    value = struct.pack("<QQ", 111, 222)
    with array_map(value) as m:
        by_fd = [
            # r0 = bpf_map_lookup_elem(&m, &key0)->second
            asm.store_imm(asm.R10, -4, 0, asm.W),
            asm.mov_reg(asm.R2, asm.R10),
            asm.add_imm(asm.R2, -4),
            asm.ld_map_fd(asm.R1, "values"),
            asm.call("map_lookup_elem"),
            asm.jeq_imm(asm.R0, 0, "miss"),
            asm.load_mem(asm.R0, asm.R0, 8, asm.DW),
            asm.exit(),
            asm.label("miss"),
            *ret(0),
        ]
        with Program(spec_of(asm.assemble(by_fd)), maps={"values": m}) as p:
            assert p.test_run(data=b"\0" * 64).retval == 222
            assert len(p.info().map_ids) == 1
        direct = [asm.ld_map_value(asm.R1, "values", 8), asm.load_mem(asm.R0, asm.R1, 0, asm.DW),
                  asm.exit()]
        with Program(spec_of(direct), maps={"values": m}) as p:
            assert p.test_run(data=b"\0" * 64).retval == 222
        with pytest.raises(KeyNotFoundError, match="'nope'") as ei:
            Program(spec_of([asm.ld_map_fd(asm.R1, "nope"), *ret(0)]), maps={"values": m})
        assert "values" in str(ei.value)
        with pytest.raises(KeyNotFoundError, match="'values'"):
            Program(spec_of(direct))


def test_the_maps_given_are_held_for_the_load() -> None:
    """Every map given is held while the program loads (a closed one, referenced or
    not, raises ClosedError); a referenced map without an `FD` gives its `fileno()`."""
    value = struct.pack("<QQ", 111, 222)
    code = [asm.ld_map_value(asm.R1, "values", 8), asm.load_mem(asm.R0, asm.R1, 0, asm.DW),
            asm.exit()]

    class Raw:  # (a foreign object with only a descriptor number)
        def __init__(self, fd: int) -> None:
            self.fd = fd

        def fileno(self) -> int:
            return self.fd

    with array_map(value) as m, array_map(value) as closed:
        closed.close()
        with pytest.raises(ClosedError, match="map is closed"):
            Program(spec_of(code), maps={"values": m, "unused": closed})
        users: list[int] = []
        real_release = FD.release

        def release(fd: FD) -> None:
            if fd is m:
                users.append(len(fd._users))
            real_release(fd)

        spec = spec_of(code)
        for _ in range(2):  # (the first load and a reload)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(FD, "release", release)
                with Program(spec, maps={"values": m, "raw": Raw(m.fileno())}) as p:
                    assert p.test_run(data=b"\0" * 64).retval == 222
            assert users == [1] and not m._users
            users.clear()
        with Program(spec, maps={"values": Raw(m.fileno())}) as p:
            assert p.test_run(data=b"\0" * 64).retval == 222


# -- verifier errors and the log ---------------------------------------------------------


# The verifier's first line: "0: R1=ctx() R10=fp0" since 6.7, which leaves out the
# default "(off=0,imm=0)" that 6.1 prints ("(id=0,off=0,imm=0)" before 5.19).
FIRST_LOG_LINE = re.compile(r"0: R1=ctx\([a-z0-9=,]*\) R10=fp0\n")


def test_verifier_error() -> None:
    spec = spec_of([asm.mov_imm(asm.R1, 0), asm.exit()], name="bad_prog")
    with pytest.raises(VerifierError) as ei:
        Program(spec)
    err = ei.value
    assert err.errno == errno.EACCES
    assert err.program == "bad_prog"
    assert "R0 !read_ok" in err.summary
    assert "1: (95) exit" in err.summary
    assert "processed" not in err.summary
    assert FIRST_LOG_LINE.match(err.log)
    assert "processed 2 insns" in err.log
    assert "R0 !read_ok" in str(err) and "bad_prog" in str(err)
    assert err.source_line is None  # no line info
    assert isinstance(err, ebpf.Error) and isinstance(err, OSError)


def test_verifier_error_invalid_memory_access() -> None:
    insns = [asm.mov_imm(asm.R1, 0), asm.load_mem(asm.R0, asm.R1, 0, asm.DW), asm.exit()]
    with pytest.raises(VerifierError) as ei:
        Program(spec_of(insns))
    assert "R1 invalid mem access 'scalar'" in ei.value.summary
    assert "1: (79) r0 = *(u64 *)(r1 +0)" in ei.value.summary


def long_failing_program(n: int) -> list[asm.Instruction]:
    # n register moves, then an exit without r0: the log lists every instruction
    return [asm.mov_imm(asm.R1 + i % 5, i) for i in range(n)] + [asm.exit()]


def test_log_grows_past_initial_buffer() -> None:
    with pytest.raises(VerifierError) as ei:
        Program(spec_of(long_failing_program(400)), log_size=256)
    log = ei.value.log
    assert len(log) > 4096
    assert FIRST_LOG_LINE.match(log)  # the beginning is there...
    assert "399: (b7) r5 = 399" in log          # ...every instruction...
    assert "R0 !read_ok" in ei.value.summary      # ...and the end


def test_log_larger_than_default_buffer() -> None:
    with pytest.raises(VerifierError) as ei:
        Program(spec_of(long_failing_program(5000)))
    log = ei.value.log
    assert len(log) > ebpf.programs.DEFAULT_LOG_SIZE
    assert FIRST_LOG_LINE.match(log)
    assert "4999: (b7) r5 = 4999" in log
    assert "R0 !read_ok" in log


def test_log_on_success() -> None:
    insns = [asm.mov_imm(asm.R1 + i % 5, i) for i in range(300)] + ret(0)
    # level 1 keeps only the statistics of an accepted program; level 2 lists every
    # instruction, so the log outgrows the 128-byte buffer many times over
    with Program(spec_of(insns), log_level=2, log_size=128) as p:
        assert len(p.verifier_log) > 128 * 16
        assert "299: (b7) r5 = 299" in p.verifier_log
        assert "processed 302 insns" in p.verifier_log
    with Program(spec_of(insns), log_level=1) as p:
        assert p.verifier_log.startswith("processed 302 insns")
    with Program(spec_of(ret(0))) as p:
        assert p.verifier_log == ""
    with Program(spec_of(ret(0)), log_level=4) as p:  # BPF_LOG_STATS
        assert "processed 2 insns" in p.verifier_log


def test_bad_spec() -> None:
    with pytest.raises(InvalidArgumentError, match="type"):
        Program(ProgramSpec(instructions=ret(0)))
    with pytest.raises(InvalidArgumentError, match="no instructions"):
        Program(spec_of([]))
    with pytest.raises(InvalidArgumentError, match="log_size"):
        Program(spec_of(ret(0)), log_size=0)
    with pytest.raises(asm.AsmError, match="nowhere"):
        Program(spec_of([asm.ja("nowhere"), *ret(0)]))


def test_gpl_only_helper_without_license() -> None:
    # bpf_ktime_get_coarse_ns is not GPL-only, bpf_get_current_task_btf... keep it simple:
    insns = [asm.call("ktime_get_ns"), asm.exit()]
    with Program(ProgramSpec(type=P.SOCKET_FILTER, license="GPL", instructions=insns)) as p:
        assert p.info().gpl_compatible
    with Program(ProgramSpec(type=P.SOCKET_FILTER, license="Proprietary",
                             instructions=insns)) as p:
        assert not p.info().gpl_compatible


# -- trampolines ----------------------------------------------------------------------


def test_fentry_on_kernel_function() -> None:
    kernel = btf.load_kernel_spec()
    target = kernel.type_by_name("do_unlinkat", btf.Func)
    tid = kernel.type_id(target)
    spec = spec_of(ret(0), P.TRACING, "fentry_test", attach_type=ebpf.AttachType.TRACE_FENTRY,
                   attach_btf_id=tid)
    try:
        p = Program(spec)
    except NotSupportedError as e:
        # this VM's kernel: EPERM at load for every trampoline program
        assert str(e).startswith(
            "this kernel refuses trampoline programs (fentry/fexit/fmod_ret/lsm/freplace)")
        assert e.errno == errno.EPERM
        assert "of fentry program 'fentry_test'" in str(e)
        return
    with p:  # a kernel with BPF trampolines
        assert p.info().attach_btf_id == tid


def test_attach_to_resolves_kernel_btf() -> None:
    kernel = btf.load_kernel_spec()
    want = kernel.type_id(kernel.type_by_name("btf_trace_sched_switch", btf.Typedef))
    spec = spec_of(ret(0), P.TRACING, "tp_btf", attach_type=ebpf.AttachType.TRACE_RAW_TP,
                   attach_to="sched_switch")
    with Program(spec) as p:
        assert p.info().attach_btf_id == want
    spec.attach_to = "no_such_tracepoint"
    with pytest.raises(KeyNotFoundError, match="btf_trace_no_such_tracepoint"):
        Program(spec)


def test_freplace_needs_attach_prog() -> None:
    with pytest.raises(InvalidArgumentError, match="attach_prog"):
        Program(spec_of(ret(0), P.EXT, attach_to="some_func"))


# -- identity, info, ids ------------------------------------------------------------------


def test_name_truncated_and_sanitized() -> None:
    with Program(spec_of(ret(0), name="a-very_long.program-name")) as p:
        assert p.name == "a-very_long.program-name"
        assert p.info().name == "avery_long.prog"
        with Program.from_id(p.id) as again:
            assert again.name == "avery_long.prog"


def test_info(prog: Program) -> None:
    info = prog.info()
    assert info.type == P.SOCKET_FILTER
    assert info.name == "ret_one"
    assert info.id == prog.id > 0
    assert info.tag == prog.tag and len(prog.tag) == 16
    assert info.instructions() == ret(1)
    assert len(info.xlated) == 16
    assert info.map_ids == ()
    assert info.created_by_uid == os.geteuid()
    assert info.load_time_ns > 0
    assert info.verified_insns == 2
    with open("/proc/sys/net/core/bpf_jit_enable") as f:
        if f.read().strip() != "0":
            assert len(info.jited) > 0 and len(info.jited_ksyms) == 1
    assert ebpf.programs.ProgInfo is ebpf.programs.ProgramInfo


def test_xlated_count_with_ld_imm64() -> None:
    insns = [asm.ld_imm64(asm.R0, 1 << 40), asm.rsh_imm(asm.R0, 40), asm.exit()]
    with Program(spec_of(insns)) as p:
        xl = p.info().instructions()
        assert len(xl) == 3 and xl[0].imm == 1 << 40
        assert len(p.info().xlated) == 4 * 8
        assert p.test_run(data=b"\0" * 64).retval == 1


def test_tag_depends_on_code_only() -> None:
    with Program(spec_of(ret(5), name="a")) as a, Program(spec_of(ret(5), name="b")) as b, \
            Program(spec_of(ret(6))) as c:
        assert a.tag == b.tag != c.tag
        assert a.id != b.id


def test_from_id(prog: Program) -> None:
    with Program.from_id(prog.id) as other:
        assert other.id == prog.id
        assert other.tag == prog.tag
        assert other.type == P.SOCKET_FILTER
        assert other.name == "ret_one"
        assert other.fileno() != prog.fileno()
        assert other.test_run(data=b"\0" * 64).retval == 1
    with pytest.raises(KeyNotFoundError, match="no program with id"):
        Program.from_id(0xFFFF_FFF0)


def test_program_ids(prog: Program) -> None:
    ids = list(ebpf.programs.program_ids())
    assert prog.id in ids
    assert ids == sorted(ids)


def test_clone(prog: Program) -> None:
    with prog.clone() as c:
        assert c.id == prog.id and c.fileno() != prog.fileno()
        assert cloexec(c.fileno())
    assert not prog.closed


def test_spec_copy_is_independent() -> None:
    spec = spec_of(ret(1), name="orig", section="socket")
    dup = spec.copy()
    dup.instructions[0].imm = 9
    dup.name = "copy"
    assert spec.instructions == ret(1) and spec.name == "orig"
    assert dup.section == "socket"
    with Program(dup) as p:
        assert p.test_run(data=b"\0" * 64).retval == 9


# -- pinning ------------------------------------------------------------------------


def test_pin_and_open_pinned(prog: Program, pin_dir: str) -> None:
    path = os.path.join(pin_dir, "prog")
    prog.pin(path)
    assert prog.pinned_path == path
    assert os.path.exists(path)
    with Program.open_pinned(path) as p:
        assert p.id == prog.id
        assert p.type == P.SOCKET_FILTER
        assert p.name == "ret_one"
        assert p.pinned_path == path
        assert cloexec(p.fileno())
        assert p.test_run(data=b"\0" * 64).retval == 1
    with pytest.raises(SyscallError) as ei:
        prog.pin(path)
    assert ei.value.errno == errno.EEXIST
    prog.unpin()
    assert not os.path.exists(path)
    assert prog.pinned_path is None
    prog.unpin()  # no-op
    with pytest.raises(SyscallError) as ei:
        Program.open_pinned(path)
    assert ei.value.errno == errno.ENOENT


def test_pinned_program_outlives_fd(pin_dir: str) -> None:
    path = os.path.join(pin_dir, "survivor")
    with Program(spec_of(ret(7))) as p:
        p.pin(path)
        prog_id = p.id
    with Program.open_pinned(path) as p:
        assert p.id == prog_id and p.test_run(data=b"\0" * 64).retval == 7
        p.unpin()


def test_pin_outside_bpffs(prog: Program, tmp_path: object) -> None:
    with pytest.raises(InvalidArgumentError, match="not on a bpf filesystem"):
        prog.pin(os.path.join(str(tmp_path), "prog"))


def test_open_pinned_map_is_refused(pin_dir: str) -> None:
    path = os.path.join(pin_dir, "map")
    with array_map(b"\0" * 8) as m:
        from ebpf._sys import ops

        ops.obj_pin(m.fileno(), path)
    before = open_fds()
    with pytest.raises(InvalidArgumentError, match="not a pinned program"):
        Program.open_pinned(path)
    assert open_fds() == before


# -- stats, fds ---------------------------------------------------------------------------


def test_enable_stats(prog: Program) -> None:
    with open("/proc/sys/kernel/bpf_stats_enabled") as f:
        globally_on = f.read().strip() != "0"
    start = prog.info().run_cnt
    prog.test_run(data=b"\0" * 64, repeat=3)
    if not globally_on:
        assert prog.info().run_cnt == start
    with enable_stats() as stats:
        assert cloexec(stats.fileno())
        before = prog.info().run_cnt
        prog.test_run(data=b"\0" * 64, repeat=5)
        info = prog.info()
        assert info.run_cnt == before + 5
        assert info.run_time_ns > 0
    assert stats.fd.closed


def test_fds_are_cloexec(prog: Program) -> None:
    assert cloexec(prog.fileno())
    with Program.from_id(prog.id) as p:
        assert cloexec(p.fileno())


def test_no_fd_leaks(pin_dir: str) -> None:
    def cycle() -> None:
        with Program(spec_of(ret(1))) as p:
            p.test_run(data=b"\0" * 64)
            p.info()
            with Program.from_id(p.id):
                pass
            p.pin(os.path.join(pin_dir, "x"))
            with Program.open_pinned(os.path.join(pin_dir, "x")):
                pass
            p.unpin()
        with pytest.raises(VerifierError):
            Program(spec_of([asm.exit()]))
        with pytest.raises(KeyNotFoundError):
            Program.from_id(0xFFFF_FFF0)
        with enable_stats():
            pass
        with array_map(b"\0" * 8) as m:
            Program(spec_of([asm.ld_map_fd(asm.R1, "m"), *ret(0)]), maps={"m": m}).close()

    cycle()  # warm caches (kernel BTF, ...)
    before = open_fds()
    for _ in range(5):
        cycle()
    assert open_fds() == before


def test_forgotten_program_warns() -> None:
    p = Program(spec_of(ret(0)))
    fd = p.fileno()
    with pytest.warns(ResourceWarning):
        del p
        import gc

        gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_counter_in_ebpf_map() -> None:
    # an atomic counter in an ebpf.Map, bumped by every run of the program
    spec = ebpf.MapSpec(name="counter", type=ebpf.MapType.ARRAY, key_size=4, value_size=8,
                        max_entries=1)
    with ebpf.Map(spec) as counter:
        insns = asm.assemble([
            asm.store_imm(asm.R10, -4, 0, asm.W),
            asm.mov_reg(asm.R2, asm.R10),
            asm.add_imm(asm.R2, -4),
            asm.ld_map_fd(asm.R1, "counter"),
            asm.call("map_lookup_elem"),
            asm.jeq_imm(asm.R0, 0, "out"),
            asm.mov_imm(asm.R1, 1),
            asm.atomic_add(asm.R0, 0, asm.R1, asm.DW),
            asm.label("out"),
            *ret(0),
        ])
        with Program(spec_of(insns, name="count"), maps={"counter": counter}) as p:
            p.test_run(data=b"\0" * 64, repeat=10)
            assert p.info().map_ids == (counter.info().id,)
        assert bytes(counter[0]) == struct.pack("<Q", 10)


# -- BTF func/line info (programs from clang) -------------------------------------------

BAD_DEREF_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char _license[] SEC("license") = "GPL";

SEC("socket")
int bad_deref(struct __sk_buff *skb)
{
	int *p = (int *)(long)skb->len;
	return *p + 1; /* the verifier refuses this */
}
"""


def compile_c(tmp_path: pathlib.Path, name: str, source: str) -> pathlib.Path:
    import subprocess

    from bpfbuild import BASE_FLAGS, CLANG

    need_tool(CLANG)
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    obj = tmp_path / f"{name}.o"
    subprocess.run([CLANG, *BASE_FLAGS, "-target", "bpf", str(src), "-o", str(obj)],
                   check=True, capture_output=True)
    return obj


def test_verifier_error_source_line(tmp_path: pathlib.Path) -> None:
    obj = compile_c(tmp_path, "bad_deref", BAD_DEREF_C)
    spec = ebpf.load_collection_spec(str(obj)).programs["bad_deref"]
    assert spec.btf is not None
    with pytest.raises(VerifierError) as ei:
        Program(spec)
    err = ei.value
    assert "invalid mem access 'scalar'" in err.summary
    assert err.source_line is not None
    assert err.source_line == (
        f"{tmp_path}/bad_deref.c:11: return *p + 1; /* the verifier refuses this */")
    # the kernel got the line info too: it annotates the log with the source
    assert "; return *p + 1;" in err.log


def test_func_and_line_info_loaded() -> None:
    from bpfbuild import compile_bpf

    coll = ebpf.load_collection_spec(str(compile_bpf("loader_calls")))
    spec = coll.programs["check_calls"]  # bpf_loop callbacks need BTF func info
    funcs = [i.meta["func"] for i in spec.instructions if i.meta and "func" in i.meta]
    lines = [i for i in spec.instructions if i.meta and "line" in i.meta]
    with Program(spec) as p:
        assert p.test_run(ctx=b"").retval == 0
        info = p.info()
        assert info.btf_id > 0
        assert info.nr_func_info == len(funcs) >= 3
        assert 0 < info.nr_line_info <= len(lines)


def handmade_btf(func_name: str, params: int) -> tuple[btf.Spec, btf.Func]:
    """A BTF spec with ``int func_name(int a, int b, ...)``."""
    from ebpf.btf.builder import Builder

    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    proto = btf.FuncProto(i32, [btf.FuncParam(f"a{n}", i32) for n in range(params)])
    b = Builder()
    b.add(btf.Func(func_name, proto, btf.Linkage.GLOBAL))
    spec = btf.Spec(b.marshal())
    return spec, spec.type_by_name(func_name, btf.Func)


def test_line_info_from_assembler_meta() -> None:
    from ebpf.btf.ext import LineInfo

    spec_btf, func = handmade_btf("handmade", 1)
    insns = [
        asm.mov_imm(asm.R1, 0),
        asm.load_mem(asm.R0, asm.R1, 0, asm.W),
        asm.exit(),
    ]
    insns[0].meta = {"func": func, "line": LineInfo("hand.c", "int x = 0;", 3, 2)}
    insns[1].meta = {"line": LineInfo("hand.c", "return *(int *)x;", 4, 2)}
    spec = spec_of(insns, P.SOCKET_FILTER, "handmade", btf=spec_btf)
    with pytest.raises(VerifierError) as ei:
        Program(spec)
    assert ei.value.source_line == "hand.c:4: return *(int *)x;"
    # the kernel got the line info too: it annotates the log with the line (and, since
    # Linux 6.4, its file and number)
    assert "; return *(int *)x;" in ei.value.log
    if kernel_version() >= (6, 4):
        assert "; return *(int *)x; @ hand.c:4" in ei.value.log
    # and loaded when correct: the kernel keeps the records
    insns[1] = asm.mov_imm(asm.R0, 5)
    insns[1].meta = {"line": LineInfo("hand.c", "return 5;", 4, 2)}
    with Program(spec_of(insns, P.SOCKET_FILTER, "handmade", btf=spec_btf)) as p:
        info = p.info()
        assert (info.nr_func_info, info.nr_line_info) == (1, 2)
        assert info.btf_id > 0
        assert p.test_run(data=b"\0" * 64).retval == 5


def test_freplace_resolves_target_program_btf() -> None:
    from bpfbuild import compile_bpf

    coll = ebpf.load_collection_spec(str(compile_bpf("loader_calls")))
    with Program(coll.programs["check_calls"]) as target:
        spec_btf, func = handmade_btf("new_mul", 2)
        insns = [asm.mov_reg(asm.R0, asm.R1), asm.add_reg(asm.R0, asm.R2), asm.exit()]
        insns[0].meta = {"func": func}
        spec = spec_of(insns, P.EXT, "new_mul", btf=spec_btf, attach_prog=target,
                       attach_to="mul_global")
        try:
            p = Program(spec)
        except NotSupportedError as e:  # this VM: no trampolines
            assert not os.environ.get("KMATRIX_GUEST"), f"the matrix's kernels have them: {e}"
            assert str(e).startswith("this kernel refuses trampoline programs")
            assert "of freplace program 'new_mul'" in str(e)
        else:
            with p:
                target_btf = btf.Spec(target_btf_bytes(target))
                want = target_btf.type_id(target_btf.type_by_name("mul_global", btf.Func))
                assert p.info().attach_btf_id == want
        spec.attach_to = "no_such_function"
        with pytest.raises(KeyNotFoundError, match="no_such_function"):
            Program(spec)


def target_btf_bytes(prog: Program) -> bytes:
    from ebpf._sys import ops

    return ops.btf_get_data(prog.info().btf_id)


# -- CO-RE ------------------------------------------------------------------------------

CORE_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "GPL";

struct task_struct { int pid; } __attribute__((preserve_access_index));

SEC("syscall")
int pid_offset(void *ctx)
{
	return bpf_core_field_offset(struct task_struct, pid);
}
"""


def test_core_relocation_against_kernel_and_override(tmp_path: pathlib.Path) -> None:
    obj = compile_c(tmp_path, "core_pid", CORE_C)
    spec = ebpf.load_collection_spec(str(obj)).programs["pid_offset"]
    assert any(i.meta and "core" in i.meta for i in spec.instructions)
    kernel = btf.load_kernel_spec()
    want = kernel.type_by_name("task_struct", btf.Struct).member("pid").offset_bits // 8
    with Program(spec) as p:
        assert p.test_run().retval == want
    # kernel_btf= relocates against another kernel's types instead
    from ebpf.btf.builder import Builder

    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    other = Builder()
    other.add(btf.Struct("task_struct", 128, [btf.Member("pad", btf.Array(i32, 31, i32)),
                                              btf.Member("pid", i32, 31 * 32)]))
    with Program(spec, kernel_btf=btf.Spec(other.marshal())) as p:
        assert p.test_run().retval == 124
    # the spec itself is left as compiled
    with Program(spec) as p:
        assert p.test_run().retval == want


def test_btf_the_kernel_refuses_falls_back_to_prototypes() -> None:
    from ebpf.btf.builder import Builder
    from ebpf.btf.ext import LineInfo

    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    b = Builder()
    b.add(btf.Func("fallback", btf.FuncProto(i32, [btf.FuncParam("ctx", i32)]),
                   btf.Linkage.GLOBAL))
    b.add(btf.Struct("broken", 4, [btf.Member("x", i32, 64)]))  # member past the end
    spec_btf = btf.Spec(b.marshal())
    insns = ret(3)
    insns[0].meta = {"func": spec_btf.type_by_name("fallback", btf.Func),
                     "line": LineInfo("f.c", "return 3;", 1, 1)}
    with Program(spec_of(insns, btf=spec_btf)) as p:
        info = p.info()
        assert (info.nr_func_info, info.nr_line_info) == (1, 1)
        assert p.test_run(data=b"\0" * 64).retval == 3


def test_edited_program_drops_mismatched_line_info() -> None:
    from ebpf.btf.ext import LineInfo

    spec_btf, func = handmade_btf("edited", 1)
    insns = [asm.mov_imm(asm.R0, 1), asm.mov_imm(asm.R0, 2), asm.exit()]
    insns[0].meta = {"func": func, "line": LineInfo("e.c", "a", 1, 1)}
    insns[1].meta = {"line": LineInfo("e.c", "b", 2, 1)}
    spec = spec_of(insns, btf=spec_btf)
    spec.instructions[0] = asm.mov_imm(asm.R0, 7)  # replaced: func and line info gone
    with Program(spec) as p:
        info = p.info()
        assert (info.nr_func_info, info.nr_line_info) == (0, 0)
        assert p.test_run(data=b"\0" * 64).retval == 2
