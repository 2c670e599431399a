"""libbpf-style auto-attach: attach a program where its ELF section name says.

``SEC("tracepoint/sched/sched_process_exec")``, ``SEC("kprobe/do_unlinkat")``,
``SEC("uprobe/libc.so.6:getaddrinfo")``, ``SEC("usdt/./app:myprov:myprobe")``,
``SEC("fentry/do_unlinkat")``, ``SEC("iter/task")``, ... fully describe their
target; `attach_program` attaches such programs and returns None for the rest
(networking programs, a bare ``SEC("kprobe")``, ...), like libbpf's skeleton
``attach()``. `Program.attach()` and `Collection.attach_all()` call it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..elf.sections import (
    AttachKind,
    lookup_section,
    parse_kprobe_target,
    parse_tracepoint_target,
    parse_uprobe_target,
    parse_usdt_target,
)
from ..errors import InvalidArgumentError
from .kprobe import kprobe, kprobe_multi, kretprobe, ksyscall
from .tracing import raw_tracepoint, tracepoint, tracing
from .uprobe import uprobe, uprobe_multi
from .usdt import usdt

if TYPE_CHECKING:
    from ..programs import Program, ProgramSpec
    from .base import Link

__all__ = ["attach_program"]

_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|\d+)")


def attach_program(program: Program, spec: ProgramSpec | None = None) -> Link | None:
    """Attach `program` to the target its section name describes (libbpf's
    conventions); None when the section does not name one.

    The section comes from `spec` (default: the spec the program was loaded
    from, `program.spec`). Raises what the individual attach function raises
    (e.g. NotSupportedError for kprobes on a kernel without them).
    """
    if spec is None:
        spec = getattr(program, "spec", None)
    section = getattr(spec, "section", "") if spec is not None else ""
    if not section:
        return None
    sdef = lookup_section(section)
    if sdef is None or not sdef.auto_attach:
        return None
    target = sdef.attach_to
    kind = sdef.kind
    # (the package's attributes named like these modules are the functions)
    from .iter import iter as attach_iter

    if kind is AttachKind.TRACEPOINT:
        assert target is not None
        group, name = parse_tracepoint_target(target)
        return tracepoint(program, group, name)
    if kind is AttachKind.RAW_TRACEPOINT:
        return raw_tracepoint(program, target)
    if kind in (AttachKind.TRACING, AttachKind.LSM):
        return tracing(program)
    if kind is AttachKind.ITER:
        return attach_iter(program)
    if kind is AttachKind.KPROBE:
        assert target is not None
        func, offset = parse_kprobe_target(target, retprobe=sdef.retprobe)
        if sdef.retprobe:
            return kretprobe(program, func)
        return kprobe(program, func, offset)
    if kind is AttachKind.KSYSCALL:
        assert target is not None
        return ksyscall(program, target, retprobe=sdef.retprobe)
    if kind in (AttachKind.KPROBE_MULTI, AttachKind.KPROBE_SESSION):
        assert target is not None
        return kprobe_multi(program, pattern=target, retprobe=sdef.retprobe,
                                    session=kind is AttachKind.KPROBE_SESSION)
    if kind is AttachKind.UPROBE:
        assert target is not None
        binary, func, offset = parse_uprobe_target(target, retprobe=sdef.retprobe)
        if _NUMBER.fullmatch(func):  # "uprobe/binary:0x1234": a raw file offset
            return uprobe(program, binary, None, int(func, 0), retprobe=sdef.retprobe)
        return uprobe(program, binary, func, offset or None, retprobe=sdef.retprobe)
    if kind is AttachKind.UPROBE_MULTI:
        assert target is not None
        binary, sep, pattern = target.partition(":")
        if not sep or not binary or not pattern:
            raise InvalidArgumentError(f"invalid uprobe.multi target {target!r}, expected "
                                       "<binary>:<pattern>")
        return uprobe_multi(program, binary, pattern=pattern, retprobe=sdef.retprobe,
                            session=sdef.session)
    if kind is AttachKind.USDT:
        assert target is not None
        path, provider, name = parse_usdt_target(target)
        return usdt(program, path, provider, name)
    return None
