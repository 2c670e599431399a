"""Why the kernel refused to load a program: the typed error of a failed BPF_PROG_LOAD
(verifier log and the C source line it failed at, missing capability or policy, a program
type the kernel lacks). A module of its own that `ebpf.programs` imports only when a load
fails, so that a load that succeeds does not unmarshal it (process start, issue 15)."""

from __future__ import annotations

import errno as _errno
import os

from ._sys import syscall as _syscall
from ._sys.syscall import from_errno
from ._sys.types import BPF_PROG_LOAD as _BPF_PROG_LOAD
from ._sys.types import AttachType, ProgramType
from .errors import NotSupportedError, SyscallError, VerifierError

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from .spec.programs import ProgramSpec

# a verifier log line of an instruction ("12: (85) call ...")
_INSN_LINE = r"^(\d+): \([0-9a-f]{2}\)"

# program types whose load takes a BPF trampoline
_TRAMPOLINE_ATTACH = frozenset((AttachType.TRACE_FENTRY, AttachType.TRACE_FEXIT,
                                AttachType.MODIFY_RETURN, AttachType.LSM_MAC))
_TRAMPOLINE_KIND: dict[int, str] = {
    AttachType.TRACE_FENTRY: "fentry", AttachType.TRACE_FEXIT: "fexit",
    AttachType.MODIFY_RETURN: "fmod_ret", AttachType.LSM_MAC: "lsm",
    AttachType.LSM_CGROUP: "lsm_cgroup"}
_TRAMPOLINE_REFUSED = (
    "this kernel refuses trampoline programs (fentry/fexit/fmod_ret/lsm/freplace): "
    "BPF_PROG_LOAD of {what} program {name!r} was refused by policy (EPERM although the "
    "process has {{held}}); load it on a kernel with BPF trampoline support, or use a "
    "kprobe, raw tracepoint or tp_btf program instead"
)


def load_error(err: int, first_err: int, spec: ProgramSpec, ptype: ProgramType,
               line_info: list[tuple[int, Any]], core_results: list[Any],
               log: str) -> Exception:
    """The error of a BPF_PROG_LOAD that failed with `err` (`first_err`: of the first
    attempt, without a log), `log` the verifier log of the last attempt; `line_info`
    (slot, line record) and `core_results` of the program as loaded explain it."""
    name = spec.name or "<unnamed>"
    if err in (_errno.EAGAIN, _errno.EINTR):  # still interrupted after the retries
        return _syscall.interrupted_error(err, f"bpf(BPF_PROG_LOAD) of program {name!r}")
    if err == _errno.EPERM:  # a missing capability, or the kernel's policy
        policy, feature = None, None
        if is_trampoline(spec, ptype):
            kind = {ProgramType.EXT: "freplace", ProgramType.STRUCT_OPS: "struct_ops"}.get(
                ptype) or _TRAMPOLINE_KIND.get(spec.attach_type or 0, "lsm")
            policy = _TRAMPOLINE_REFUSED.format(what=kind, name=name)
            feature = "trampoline programs"
        from ._sys import caps as _caps  # on an EPERM only (process start)

        return _caps.eperm_error(f"bpf(BPF_PROG_LOAD) of program {name!r}",
                                 cmd=_BPF_PROG_LOAD, prog_type=ptype, obj=describe(spec, ptype),
                                 feature=feature, policy_message=policy)
    if log.strip():
        exc = VerifierError(err, name, log, source_line(log, line_info))
        if core_results:
            from .btf.core import explain_poison  # CO-RE only to explain a poisoned instruction

            why = explain_poison(log, core_results)
            if why:  # a reachable instruction whose CO-RE relocation failed
                exc.summary = f"{why}\n{exc.summary}"
                exc.strerror = f"program {name!r} rejected by the verifier:\n{exc.summary}"
                exc.args = (err, exc.strerror)
        return exc
    if err in (_errno.EOPNOTSUPP, 524) or (err == _errno.EINVAL and first_err == _errno.EINVAL
                                           and not log):
        what = f"program type {getattr(ptype, 'name', ptype)}"
        if spec.attach_type is not None:
            what += f" with attach type {getattr(spec.attach_type, 'name', spec.attach_type)}"
        if err == _errno.EINVAL:
            return SyscallError(err, f"bpf(BPF_PROG_LOAD) of program {name!r}: {os.strerror(err)} "
                                f"(does this kernel support {what}?)")
        return NotSupportedError(what, errno=err)
    return from_errno(err, f"bpf(BPF_PROG_LOAD) of program {name!r}")


def describe(spec: ProgramSpec, ptype: ProgramType) -> str:
    """How a user knows the program: "program 'dump_elems' (tracing, iter/bpf_map_elem)"."""
    where = spec.section
    if not where and spec.attach_type is not None:
        where = getattr(spec.attach_type, "name", str(spec.attach_type)).lower()
        if spec.attach_to:
            where += f" {spec.attach_to}"
    kind = getattr(ptype, "name", str(ptype)).lower()
    return f"program {spec.name or '<unnamed>'!r} ({kind}{', ' + where if where else ''})"


def is_trampoline(spec: ProgramSpec, ptype: ProgramType) -> bool:
    """Whether loading the program takes a BPF trampoline."""
    if ptype in (ProgramType.EXT, ProgramType.LSM, ProgramType.STRUCT_OPS):
        return True
    return ptype == ProgramType.TRACING and spec.attach_type in _TRAMPOLINE_ATTACH


def source_line(log: str, line_info: list[tuple[int, Any]]) -> str | None:
    """``file:line: text`` of the instruction the verifier failed at, from line info."""
    if not line_info:
        return None
    import re  # on a verifier failure only (process start)

    index = None
    for ln in reversed(log.splitlines()):
        m = re.match(_INSN_LINE, ln)
        if m:
            index = int(m.group(1))
            break
    if index is None:
        return None
    best = None
    for slot, line in line_info:  # sorted by slot; the last one at or before wins
        if slot > index:
            break
        best = line
    if best is None:
        return None
    text = str(getattr(best, "line_text", "") or "").strip()
    file_name = str(getattr(best, "file_name", "") or "")
    lineno = getattr(best, "line", 0)
    where = f"{file_name}:{lineno}" if file_name else f"line {lineno}"
    return f"{where}: {text}" if text else where
