"""Test runs of loaded programs (BPF_PROG_TEST_RUN): `Program.test_run` and its flags
`RunFlags`. A module of its own that `ebpf.programs` loads on first use, so that loading a
program does not unmarshal it (process start, issue 15)."""

from __future__ import annotations

import ctypes
import errno as _errno

from ._sys import consts
from ._sys import prog as _prog
from ._sys import validate as _validate
from ._sys.fastclass import IntFlag
from ._sys.syscall import from_errno
from ._sys.types import ProgramType, ProgTestRunAttr
from .errors import InvalidArgumentError, NotSupportedError, SyscallError

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from ._proginfo import TestRunResult
    from .programs import Program

__all__ = ["RunFlags", "test_run"]


class RunFlags(IntFlag):
    """`Program.test_run` flags (``BPF_F_TEST_*``); `cpu=` sets RUN_ON_CPU itself."""

    NONE = 0
    RUN_ON_CPU = consts.BPF_F_TEST_RUN_ON_CPU
    XDP_LIVE_FRAMES = consts.BPF_F_TEST_XDP_LIVE_FRAMES
    SKB_CHECKSUM_COMPLETE = consts.BPF_F_TEST_SKB_CHECKSUM_COMPLETE


def test_run(
    prog: Program,
    data: bytes | bytearray | memoryview | None,
    ctx: bytes | bytearray | memoryview | None,
    repeat: int,
    flags: int,
    cpu: int | None,
    batch_size: int,
    data_out_size: int | None,
) -> TestRunResult:
    """`prog.test_run(...)`: see `Program.test_run`."""
    for what, buf in (("data", data), ("ctx", ctx)):
        if buf is not None and not isinstance(buf, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(
                f"test_run {what} must be bytes-like, got {type(buf).__name__}")
    if data is not None and len(data) == 0:
        data = None  # the kernel wants no buffer rather than an empty one
    if ctx is not None and len(ctx) == 0:
        ctx = None
    attr = ProgTestRunAttr()
    repeat = _validate.put(attr, "repeat", repeat)
    if repeat <= 1:
        attr.repeat = 0
    _validate.put(attr, "flags", flags)
    _validate.put(attr, "batch_size", batch_size)
    if data_out_size is not None:
        data_out_size = _validate.integer(data_out_size, "data_out_size", 0,
                                          _validate.field_range(ProgTestRunAttr,
                                                                "data_size_out")[1])
    if cpu is not None:
        _validate.put(attr, "cpu", cpu)
        attr.flags |= consts.BPF_F_TEST_RUN_ON_CPU
    attr.prog_fd = prog.fileno()

    keep: list[Any] = []
    data_in = None
    if data is not None:
        data_in = (ctypes.c_char * len(data)).from_buffer_copy(data)
        keep.append(data_in)
        attr.data_in = ctypes.addressof(data_in)
        attr.data_size_in = len(data)
    ctx_in = None
    if ctx is not None:
        ctx_in = (ctypes.c_char * len(ctx)).from_buffer_copy(ctx)
        attr.ctx_in = ctypes.addressof(ctx_in)
        attr.ctx_size_in = len(ctx)
    # SYSCALL programs write their context back into ctx_in; raw tracepoints,
    # tracing programs and live XDP frames refuse output buffers
    live = bool(attr.flags & consts.BPF_F_TEST_XDP_LIVE_FRAMES)
    ctx_out_allowed = ctx is not None and not live and prog._type not in (
        ProgramType.SYSCALL, ProgramType.RAW_TRACEPOINT, ProgramType.TRACING)
    data_out_allowed = data is not None and not live

    data_cap = 0
    if data is not None:
        # never 0: the kernel reads data_size_out == 0 as "no limit"
        data_cap = max(data_out_size if data_out_size is not None else len(data) + 256, 1)
    ctx_cap = max(len(ctx), 1) if ctx is not None else 0
    for _ in range(8):
        data_out = ctx_out = None
        if data_out_allowed:
            data_out = ctypes.create_string_buffer(data_cap)
            attr.data_out = ctypes.addressof(data_out)
            attr.data_size_out = data_cap
        if ctx_out_allowed:
            ctx_out = ctypes.create_string_buffer(ctx_cap)
            attr.ctx_out = ctypes.addressof(ctx_out)
            attr.ctx_size_out = ctx_cap
        attr.duration = 0
        # held: a close() from another thread cannot free the number mid-call
        with prog.fd.hold() as attr.prog_fd:
            ret = _prog.prog_test_run(attr)
        if ret == -_errno.ENOSPC:
            grew = False
            if data_out is not None and attr.data_size_out > data_cap:
                data_cap, grew = int(attr.data_size_out), True
            if ctx_out is not None and attr.ctx_size_out > ctx_cap:
                ctx_cap, grew = int(attr.ctx_size_out), True
            if not grew:  # no size hint: double both
                data_cap, ctx_cap = data_cap * 2 + 256, ctx_cap * 2
            continue
        if ret < 0:
            raise _test_run_error(-ret, prog)
        out_data = b""
        if data_out is not None:
            out_data = data_out.raw[: min(int(attr.data_size_out), data_cap)]
        out_ctx: bytes | None = None
        if ctx_out is not None:
            out_ctx = ctx_out.raw[: min(int(attr.ctx_size_out), ctx_cap)]
        elif ctx_in is not None and prog._type == ProgramType.SYSCALL:
            out_ctx = ctx_in.raw[: attr.ctx_size_in]
        from ._proginfo import TestRunResult  # on first use: process start

        return TestRunResult(int(attr.retval), out_data, out_ctx, int(attr.duration))
    raise SyscallError(_errno.ENOSPC, "bpf(BPF_PROG_TEST_RUN): output keeps outgrowing "
                       f"its buffer ({data_cap} bytes of data, {ctx_cap} of context)")


def _test_run_error(err: int, prog: Program) -> Exception:
    type_name = getattr(prog.type, "name", str(prog.type))
    if err in (_errno.EOPNOTSUPP, 524):
        return NotSupportedError(f"BPF_PROG_TEST_RUN of {type_name} programs", errno=err)
    return from_errno(err, f"bpf(BPF_PROG_TEST_RUN) of {type_name} program {prog.name!r}")
