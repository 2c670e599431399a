"""Tracepoints, raw tracepoints and BTF-based tracing programs.

- `tracepoint(prog, group, name)`: a TRACEPOINT program on a tracefs
  tracepoint (``syscalls/sys_enter_openat``), through a perf event;
- `raw_tracepoint(prog, name)`: a RAW_TRACEPOINT program (``sched_switch``);
- `tracing(prog)`: fentry, fexit, fmod_ret, tp_btf, LSM and freplace programs,
  attached to the target chosen when they were loaded (`ProgramSpec.attach_to`,
  `attach_prog`); freplace programs can be attached to another program.

>>> with ebpf.link.tracepoint(prog, "sched", "sched_process_exec"):   # doctest: +SKIP
...     subprocess.run(["true"])
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from .._sys import link as _link
from .._sys import ops as _ops
from .._sys import perf as _perf
from .._sys import probe as _probe
from .._sys import validate as _validate
from .._sys.fd import FD, hold, holds_first
from .._sys.types import AttachType, ProgramType
from ..btf import Func, Spec
from ..errors import InvalidArgumentError, KeyNotFoundError, NotSupportedError, SyscallError
from ._attach import attach_type_arg
from .base import Link
from .iter import iter as _iter
from .perf_event import PerfEventLink, attach_perf_event

if TYPE_CHECKING:
    from ..programs import Program

__all__ = ["lsm", "raw_tracepoint", "tracepoint", "tracing"]


def _program_spec(program: Program) -> Any:
    """The `ProgramSpec` a program was loaded from, when the `Program` kept it."""
    return getattr(program, "spec", None)


def _require_type(program: Program, what: str, *types: ProgramType) -> None:
    if program.type not in types:
        names = " or ".join(t.name for t in types)
        ptype = getattr(program.type, "name", str(program.type))
        raise InvalidArgumentError(
            f"{what} needs a {names} program; {program.name!r} is a {ptype} program")


def tracepoint(program: Program, group: str, name: str, *, cookie: int = 0) -> PerfEventLink:
    """Attach a TRACEPOINT program to tracepoint `group`/`name` (as listed under
    ``/sys/kernel/tracing/events``), e.g. ``("syscalls", "sys_enter_getpid")``.

    Needs tracefs mounted (the tracepoint's id is read from it): without it,
    raises NotSupportedError saying how to mount it. `cookie` is returned by
    bpf_get_attach_cookie in the program (Linux 5.15+).
    """
    _require_type(program, "tracepoint", ProgramType.TRACEPOINT)
    cookie = _validate.unsigned(cookie, "cookie", 64)
    pfd = _perf.open_tracepoint(group, name)
    return attach_perf_event(program, pfd, cookie=cookie,
                             description=f"tracepoint {group}/{name}")


@holds_first
def raw_tracepoint(program: Program, name: str | None = None, *, cookie: int = 0) -> Link:
    """Attach a RAW_TRACEPOINT (or RAW_TRACEPOINT_WRITABLE) program to the raw
    tracepoint `name` (``sched_switch``, ``sys_enter``, ...), by default the one
    its spec names. A BTF-enabled tp_btf program goes to `tracing` instead.
    A non-zero `cookie` needs Linux 6.10.
    """
    cookie = _validate.unsigned(cookie, "cookie", 64)
    if program.type == ProgramType.TRACING:
        return tracing(program, cookie=cookie)
    _require_type(program, "raw_tracepoint", ProgramType.RAW_TRACEPOINT,
                  ProgramType.RAW_TRACEPOINT_WRITABLE)
    if name is None:
        spec = _program_spec(program)
        name = getattr(spec, "attach_to", "") or None
        if name is None:
            raise InvalidArgumentError(
                f"raw_tracepoint: no tracepoint name given for program {program.name!r}")
    try:
        fd = _link.raw_tracepoint_open(program.fileno(), name, cookie)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            raise SyscallError(e.errno, f"raw tracepoint {name!r} does not exist") from None
        if cookie and e.errno in (errno.EINVAL, errno.E2BIG):
            raise NotSupportedError("BPF cookies on raw tracepoints", "needs Linux 6.10",
                                    e.errno) from None
        raise
    return Link(FD(fd, "link"), program)


def _btf_func_id(target: Program, func: str) -> int:
    """The BTF id of function `func` in the BTF the loaded program `target` carries."""
    info = target.info()
    if not info.btf_id:
        raise InvalidArgumentError(
            f"program {target.name!r} has no BTF: cannot find its function {func!r}")
    spec = Spec(_ops.btf_get_data(info.btf_id))
    try:
        return int(spec.type_id(spec.type_by_name(func, Func)))
    except KeyNotFoundError:
        raise KeyNotFoundError(
            f"program {target.name!r} has no function {func!r} in its BTF") from None


@holds_first
def tracing(
    program: Program,
    *,
    target: Program | None = None,
    target_function: str | None = None,
    attach_type: AttachType | None = None,
    cookie: int = 0,
) -> Link:
    """Attach a BTF-based program: fentry, fexit, fmod_ret, tp_btf (TRACING), lsm
    (LSM) or freplace (EXT).

    The target is the one the program was loaded for (`ProgramSpec.attach_to`
    and `attach_prog`). A freplace program can instead replace function
    `target_function` of another loaded program `target` (same signature),
    which is how one extension is attached to several programs. `cookie`
    (read with bpf_get_attach_cookie) needs BPF_LINK_CREATE with the program's
    attach type: it is taken from the program's spec, or give `attach_type`.
    Iterator programs are attached with `iter` instead.

    Kernels without BPF trampolines refuse these programs when they are
    loaded (NotSupportedError), before this function is reached.
    """
    ptype = program.type
    _require_type(program, "tracing", ProgramType.TRACING, ProgramType.LSM, ProgramType.EXT)
    cookie = _validate.unsigned(cookie, "cookie", 64)
    if attach_type is not None:
        attach_type = attach_type_arg(attach_type, "tracing")
    if attach_type is None:
        attach_type = getattr(_program_spec(program), "attach_type", None)
    if attach_type is None and ptype == ProgramType.LSM:
        attach_type = AttachType.LSM_MAC
    if attach_type == AttachType.TRACE_ITER:
        return _iter(program)
    if (target is None) != (target_function is None):
        raise InvalidArgumentError("give both target and target_function, or neither")
    if target is not None and target_function is not None:
        if ptype != ProgramType.EXT:
            raise InvalidArgumentError(
                "only freplace (EXT) programs can be attached to a new target; "
                f"{program.name!r} is a {ptype.name} program")
        btf_id = _btf_func_id(target, target_function)
        with hold(target):  # the target's number stays its own until the link exists
            fd = _probe.tracing_link_create(program.fileno(), 0, target_fd=target.fileno(),
                                            target_btf_id=btf_id, cookie=cookie)
        return Link(FD(fd, "link"), program)
    if cookie:
        if ptype == ProgramType.EXT:
            attach_type = AttachType(0)
        elif attach_type is None:
            raise InvalidArgumentError(
                f"a cookie needs the attach type of program {program.name!r}: pass attach_type=")
        try:
            fd = _probe.tracing_link_create(program.fileno(), int(attach_type), cookie=cookie)
        except SyscallError as e:
            if e.errno in (errno.EINVAL, errno.E2BIG):
                raise NotSupportedError("BPF cookies on tracing links",
                                        f"BPF_LINK_CREATE failed: {e}", e.errno) from None
            raise
        return Link(FD(fd, "link"), program)
    # No cookie: BPF_RAW_TRACEPOINT_OPEN without a name attaches any tracing, LSM
    # or extension program to its load-time target, on every kernel that has them.
    fd = _link.raw_tracepoint_open(program.fileno(), None)
    return Link(FD(fd, "link"), program)


@holds_first
def lsm(program: Program, *, cookie: int = 0) -> Link:
    """Attach an LSM program to the security hook it was loaded for (same as `tracing`)."""
    _require_type(program, "lsm", ProgramType.LSM)
    return tracing(program, cookie=cookie)
