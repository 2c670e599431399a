"""Programs the kernel already holds: pinning one on a bpffs (`Program.pin`), opening
one by pin path, id or fd (`Program.open_pinned`, `Program.from_id`), and reading back
a loaded program's identity and BTF (BPF_OBJ_GET_INFO_BY_FD). A module of its own that
`ebpf.programs` loads on first use, so that loading a program does not unmarshal it
(process start, issue 15)."""

from __future__ import annotations

import contextlib
import errno as _errno
import os

from ._sys import ops
from ._sys import prog as _prog
from ._sys import validate as _validate
from ._sys.fd import FD
from ._sys.fd import hold as _hold
from ._sys.types import ProgramType
from .errors import InvalidArgumentError, KeyNotFoundError, SyscallError

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from ._sys.types import ProgInfo as _ProgInfo
    from .btf import Spec as BTFSpec
    from .programs import Program
    from .spec.protocols import LoadedProgram

__all__ = ["fill_identity", "from_fd", "from_id", "open_pinned", "pin", "program_btf", "raw_info"]


def raw_info(fd: int) -> _ProgInfo:
    """The kernel's `bpf_prog_info` of the program `fd` (without its arrays)."""
    from ._sys.types import ProgInfo  # types_misc.py on first use: process start

    info = ProgInfo()
    ops.obj_get_info(fd, info)
    return info


def _cstr(raw: Any) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


def from_fd(cls: type[Program], fd: FD, pinned: str | None = None) -> Program:
    """A `cls` owning `fd`, its name and type read back from the kernel."""
    prog = cls.__new__(cls)
    prog._fd = fd
    prog.spec = None
    prog._pinned = pinned
    prog.verifier_log = ""
    try:
        raw = raw_info(fd.fileno())
    except BaseException:
        fd.close()
        raise
    prog._id = int(raw.id)
    prog._tag = bytes(raw.tag).hex()
    prog._name = _cstr(raw.name)
    fd.kind = f"program {prog._name!r}" if prog._name else "program"  # (programs._kind)
    try:
        prog._type = ProgramType(raw.type)
    except ValueError:  # a type newer than this library
        prog._type = raw.type
    return prog


def open_pinned(cls: type[Program], path: str | os.PathLike[str]) -> Program:
    """`Program.open_pinned`."""
    p = _validate.path(path, "pin path")
    fd = FD(ops.obj_get(p), "program")
    kind = _validate.fd_kind(fd.fileno())
    if kind != "program":
        fd.close()
        raise InvalidArgumentError(f"{p!r} is not a pinned program (it is a {kind})")
    return from_fd(cls, fd, p)


def from_id(cls: type[Program], prog_id: int) -> Program:
    """`Program.from_id`."""
    try:
        fd = _prog.prog_get_fd_by_id(prog_id)
    except SyscallError as e:
        if e.errno == _errno.ENOENT:
            raise KeyNotFoundError(f"no program with id {prog_id}") from None
        raise
    return from_fd(cls, FD(fd, "program"))


def fill_identity(prog: Program) -> None:
    """Read `prog`'s id and tag back from the kernel."""
    with prog.fd.hold() as fd:
        raw = raw_info(fd)
    prog._id = int(raw.id)
    prog._tag = bytes(raw.tag).hex()


def pin(prog: Program, path: str | os.PathLike[str]) -> None:
    """`Program.pin`."""
    path = _validate.path(path, "pin path")
    try:
        with prog.fd.hold() as fd:
            ops.obj_pin(fd, path)
    except SyscallError as e:
        if e.errno == _errno.EPERM:
            parent = os.path.dirname(os.path.abspath(path))
            with contextlib.suppress(OSError):
                if not _prog.is_bpffs(parent):
                    raise InvalidArgumentError(
                        f"cannot pin at {path!r}: {parent!r} is not on a bpf filesystem "
                        "(mount one with `mount -t bpf bpf /sys/fs/bpf`)") from None
        raise
    prog._pinned = path


def program_btf(prog: LoadedProgram) -> BTFSpec:
    """The BTF a loaded program carries (for freplace / fentry on BPF programs)."""
    from .btf import Spec  # BTF code on first use: programs without BTF never load it

    with _hold(prog):
        raw = raw_info(prog.fileno())
    if not raw.btf_id:
        raise InvalidArgumentError(f"program {prog.name!r} has no BTF; cannot attach to it by name")
    return Spec(ops.btf_get_data(raw.btf_id))
