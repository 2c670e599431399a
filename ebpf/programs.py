"""Programs: `ProgramSpec` (what to load) and `Program` (a loaded kernel program).

>>> import ebpf
>>> from ebpf import asm
>>> spec = ebpf.ProgramSpec(type=ebpf.ProgramType.SOCKET_FILTER, license="GPL",
...                         instructions=[asm.mov_imm(asm.R0, 1), asm.exit()])
>>> with ebpf.Program(spec) as prog:                       # doctest: +SKIP
...     prog.test_run(data=b"\\0" * 64).retval
1

Loading follows libbpf and cilium/ebpf: the first attempt carries no verifier
log (fast); when it fails the load is retried with a log that grows until the
whole log fits, and a rejection raises `ebpf.errors.VerifierError` with the
full log, a summary and, when the program has BTF line info, the C source line.
"""

from __future__ import annotations

import _thread  # (threading's RLock, without importing threading: process start)
import contextlib
import ctypes
import errno as _errno
import operator
import os
import struct
import weakref
from collections.abc import Mapping, Sequence
from itertools import chain

import ebpf._lazyattr as _lazyattr

from ._sys import consts
from ._sys import forking as _forking
from ._sys import log as _log
from ._sys import prog as _prog
from ._sys import validate as _validate
from ._sys.fd import FD
from ._sys.fd import fd_of as _fd_of
from ._sys.fd import release_all as _release_all
from ._sys.types import ProgLoadAttr, ProgramType
from .errors import (
    ClosedError,
    InvalidArgumentError,
    KeyNotFoundError,
    NotSupportedError,
)
from .spec import kernel_name
from .spec.programs import ProgramSpec

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from ._proginfo import EnabledStats, ProgramInfo, TestRunResult, enable_stats, program_ids
    from ._proginfo import ProgramInfo as ProgInfo  # (an alias, made on first use)
    from ._progrun import RunFlags
    from ._sys.types import AttachType as AttachType
    from .asm import Instruction
    from .btf import Spec as BTFSpec
    from .btf.builder import Builder
    from .btf.handle import Handle
    from .link import Link
    from .spec.flags import ProgramFlags
    from .spec.protocols import SupportsFileno

__all__ = [
    "DEFAULT_LOG_SIZE",
    "MAX_LOG_SIZE",
    "EnabledStats",
    "ProgInfo",
    "Program",
    "ProgramFlags",
    "ProgramInfo",
    "ProgramSpec",
    "ProgramType",
    "RunFlags",
    "SupportsFileno",
    "TestRunResult",
    "enable_stats",
    "program_ids",
]

DEFAULT_LOG_SIZE = 64 * 1024
"""The first verifier log buffer (bytes); it doubles until the log fits."""
MAX_LOG_SIZE = 0xFFFF_FFFF >> 2
"""The largest log buffer the kernel accepts (UINT32_MAX >> 2)."""

_MIN_LOG_SIZE = 128  # kernels before 6.4 refuse smaller log buffers
# sizeof(struct bpf_func_info), sizeof(struct bpf_line_info) (_sys.types.FuncInfo,
# LineInfo: ctypes classes a load need not make)
_FUNC_INFO_SIZE = 8
_LINE_INFO_SIZE = 16
# ld_imm64 sources a map reference may carry; MAP_VALUE keeps its offset
_MAP_SRCS = (0, consts.BPF_PSEUDO_MAP_FD, consts.BPF_PSEUDO_MAP_VALUE,
             consts.BPF_PSEUDO_MAP_IDX, consts.BPF_PSEUDO_MAP_IDX_VALUE)
_LD_IMM64 = 0x18
_CALL = 0x85

# the BTF name of an attach target, by attach type: (prefix, BTF kind name); keyed by
# the values, so that a load makes no AttachType class (process start)
_ATTACH_BTF_PREFIX: dict[int, tuple[str, str]] = {
    23: ("btf_trace_", "Typedef"),  # AttachType.TRACE_RAW_TP
    27: ("bpf_lsm_", "Func"),  # AttachType.LSM_MAC
    43: ("bpf_lsm_", "Func"),  # AttachType.LSM_CGROUP
    28: ("bpf_iter_", "Func"),  # AttachType.TRACE_ITER
}


# `ProgramInfo`, its alias `ProgInfo`, `TestRunResult`, `program_ids`, `EnabledStats`,
# `enable_stats` (`ebpf/_proginfo.py`) and `RunFlags` (`ebpf/_progrun.py`) load on first
# use: they are no part of loading a program (process start); so do `SupportsFileno` and
# `LoadedProgram` (typing.Protocols: a load imports no `typing`) and the enum classes
# `ProgramFlags` and `AttachType` (importable from here before).
__getattr__ = _lazyattr.lazy_attributes(globals(), {
    **dict.fromkeys(("ProgramInfo", "TestRunResult", "program_ids", "EnabledStats",
                     "enable_stats"), "._proginfo"),
    "ProgInfo": ("._proginfo", "ProgramInfo"), "RunFlags": "._progrun",
    "SupportsFileno": ".spec.protocols", "LoadedProgram": ".spec.protocols",
    "ProgramFlags": ".spec.flags", "AttachType": "._sys.types"})


class Program:
    """A program loaded into the kernel.

    ``Program(spec, maps=..., log_level=..., log_size=..., kernel_btf=...)``
    loads `spec`. `maps` resolves map references by name. `log_level` > 0
    requests a verifier log even on success (kept in `verifier_log`; 1 is
    the basic log, 2 verbose, 4 statistics only); the log buffer starts at
    `log_size` bytes and doubles until the log fits. `kernel_btf` replaces
    the running kernel's BTF as the target of CO-RE relocations.

    `btf_handle` is a BTF object already in the kernel holding `spec.btf` as
    `object_btf_blob` marshals it, e.g. the one the collection's maps were
    created with (`Collection` passes it): the program then refers to the same
    BTF object as the maps, which the verifier requires of kptr and graph types
    (``bpf_obj_new`` types, ``bpf_rb_root``/``bpf_list_head`` in map values). It
    is left open, and held for the load (closed by another thread meanwhile, its
    descriptor is released once the load is done). Without it (or when the
    func/line info need strings that object lacks) the program loads a BTF object
    of its own.

    Raises `VerifierError` when the verifier rejects the program,
    `ebpf.errors.PermissionError` without privilege, `NotSupportedError` for
    a program type or feature this kernel lacks, `KeyNotFoundError` for a map
    reference missing from `maps`.

    A `Program` owns one fd (`fd`); it is a context manager, `close()` is
    idempotent and the kernel frees the program once nothing (fd, pin, link)
    holds it.
    """

    def __init__(
        self,
        spec: ProgramSpec,
        *,
        maps: Mapping[str, SupportsFileno] | None = None,
        log_level: int = 0,
        log_size: int = DEFAULT_LOG_SIZE,
        kernel_btf: BTFSpec | None = None,
        btf_handle: Handle | None = None,
    ) -> None:
        self._fd: FD | None = None
        self._id = 0
        self._tag = ""
        self._pinned: str | None = None
        self.verifier_log = ""
        """The verifier log of the load when `log_level` > 0, else ""."""
        self._type, fields, fixed = _check_spec(spec)
        if btf_handle is not None:
            _check_btf_handle(btf_handle)
        self._name = spec.name
        self.spec: ProgramSpec | None = spec
        """The spec the program was loaded from (None when opened by id, pin or fd)."""
        # the maps' (and attach target's, BTF object's) numbers go into the instructions and
        # the attr: their fds are held until the load is done (`fd.hold`'s rule: another
        # thread's close() leaves the number to the load), the maps' as acquired for the code
        held: list[FD] = []
        fds: dict[str, int] = {}
        try:
            if maps is not None:
                for ref, m in maps.items():
                    f = _fd_of(m)
                    if f is not None:
                        fds[ref] = f.acquire()
                        held.append(f)
            if fields[10] is not None:  # (attach_prog, as checked)
                f = _fd_of(fields[10])
                if f is not None:
                    f.acquire()
                    held.append(f)
            if btf_handle is not None:  # (its number goes into the attr as well)
                btf_handle.fd.acquire()
                held.append(btf_handle.fd)
            fd, self.verifier_log = _load(spec, maps, fds, log_level, log_size, kernel_btf,
                                          btf_handle, (self._type, fields, fixed))
        finally:
            _release_all(held)
        self._fd = FD(fd, _kind(self._name))

    @classmethod
    def open_pinned(cls, path: str | os.PathLike[str]) -> Program:
        """Open the program pinned at `path` on a bpffs (BPF_OBJ_GET).

        Raises `InvalidArgumentError` when `path` holds another kind of object
        (a map, a link), `SyscallError` (ENOENT) when nothing is pinned there.
        """
        from ._progpin import open_pinned  # on first use: process start

        return open_pinned(cls, path)

    @classmethod
    def from_id(cls, prog_id: int) -> Program:
        """Open the loaded program with id `prog_id` (BPF_PROG_GET_FD_BY_ID).

        Raises `KeyNotFoundError` when no such program exists.
        """
        from ._progpin import from_id  # on first use: process start

        return from_id(cls, prog_id)

    # -- identity -------------------------------------------------------------

    @property
    def fd(self) -> FD:
        """The program's descriptor (raises ValueError once closed)."""
        if self._fd is None:
            raise ClosedError(f"{_kind(self._name)} is closed")
        if self._fd.closed:
            raise self._fd.closed_error()
        return self._fd

    def fileno(self) -> int:
        """The raw descriptor."""
        return self.fd.fileno()

    @property
    def name(self) -> str:
        """The name given in the spec (the kernel keeps at most 15 characters of it)."""
        return self._name

    @property
    def type(self) -> ProgramType:
        """The program type."""
        return self._type

    @property
    def id(self) -> int:
        """The kernel's id of the program (stable for its lifetime, see `from_id`)."""
        if not self._id:
            from ._progpin import fill_identity  # on first use: process start

            fill_identity(self)
        return self._id

    @property
    def tag(self) -> str:
        """The kernel's tag: a hash of the instructions, as 16 hex digits."""
        if not self._tag:
            from ._progpin import fill_identity  # on first use: process start

            fill_identity(self)
        return self._tag

    @property
    def pinned_path(self) -> str | None:
        """Where this object pinned the program, or None."""
        return self._pinned

    def __repr__(self) -> str:
        state = "closed" if self._fd is None or self._fd.closed else f"fd={self._fd.fileno()}"
        type_name = getattr(self._type, "name", str(self._type))
        return f"<Program {self._name!r} {type_name} {state}>"

    # -- kernel state ---------------------------------------------------------

    def info(self) -> ProgramInfo:
        """Ask the kernel about the program, including its xlated and jited code."""
        from ._proginfo import info  # on first use: process start
        from ._progpin import raw_info  # (as above)

        with self.fd.hold() as fd:
            return info(fd, raw_info(fd))

    def test_run(
        self,
        data: bytes | bytearray | memoryview | None = None,
        *,
        ctx: bytes | bytearray | memoryview | None = None,
        repeat: int = 1,
        flags: int = 0,
        cpu: int | None = None,
        batch_size: int = 0,
        data_out_size: int | None = None,
    ) -> TestRunResult:
        """Run the program once (or `repeat` times) on `data` and `ctx` (BPF_PROG_TEST_RUN).

        `data` is the packet for networking programs, `ctx` the context struct
        (``__sk_buff``, ``xdp_md``, raw tracepoint args, a SYSCALL program's
        argument block); empty ones count as not given. `cpu` runs it on that
        CPU (raw tracepoints only).
        The output buffer holds `data_out_size` bytes (default: the input plus
        256 bytes of headroom) and grows when the kernel says it is too small.
        Raises `NotSupportedError` when the program type cannot be test run.
        """
        from ._progrun import test_run  # on first use: process start

        return test_run(self, data, ctx, repeat, flags, cpu, batch_size, data_out_size)

    # -- pinning --------------------------------------------------------------

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the program at `path` on a bpffs so it outlives this process.

        The directory must exist and be on a bpf filesystem (mount one with
        ``mount -t bpf bpf /sys/fs/bpf``; the library never mounts anything).
        """
        from ._progpin import pin  # on first use: process start

        pin(self, path)

    def unpin(self) -> None:
        """Remove the pin this object made or was opened from (no-op when there is none)."""
        path, self._pinned = self._pinned, None
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def attach(self) -> Link | None:
        """Attach by section name, like libbpf's auto-attach: a section that fully
        names its target (``tracepoint/sched/sched_process_exec``,
        ``uprobe/libc.so.6:getaddrinfo``, ``fentry/do_unlinkat``, ...) gives a `Link`;
        a section that does not (bare ``kprobe``, ``xdp``, ``tc``) gives None."""
        # link sits above programs: the one call up (auto-attach)
        from .link.auto import attach_program

        return attach_program(self)

    # -- lifetime -------------------------------------------------------------

    def clone(self) -> Program:
        """Another `Program` for the same kernel program, with its own fd."""
        new = Program.__new__(Program)
        new._fd = self.fd.dup()
        new._id, new._tag, new._pinned = self._id, self._tag, None
        new._name, new._type, new.verifier_log = self._name, self._type, self.verifier_log
        return new

    def close(self) -> None:
        """Release the fd (idempotent); pins and links keep the program alive.

        Thread-safe: a test run or attach already in flight in another thread finishes
        on this program, later operations raise `ClosedError`."""
        if self._fd is not None:
            self._fd.close()

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._fd is None or self._fd.closed

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        """Refused with `NotPicklableError` (also by `copy.deepcopy`): pickle its spec
        (`spec`) and load it in the other process, or pin the program and open the pin
        there (`Program.open_pinned`)."""
        from ._sys.nopickle import refuse  # on a refusal only (process start)

        refuse(f"program {self.name!r}",
               "pickle its ProgramSpec (Program.spec) and load it in the other process, or pin it "
               "(Program.pin) and open the pin there (Program.open_pinned)")

    def __copy__(self) -> Program:
        """A shallow copy sharing the descriptor (what `copy.copy` always made)."""
        from ._sys.nopickle import shallow_copy  # on a copy only (process start)

        return shallow_copy(self)

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- loading ------------------------------------------------------------------

# What loads import on first use, kept once imported (`on_first_use`): programs without
# BTF never load the BTF code; a spec loaded once never needs the template check
_Handle = _lazyattr.on_first_use("ebpf.btf.handle", "Handle")
_BTFLoadError = _lazyattr.on_first_use("ebpf.btf.handle", "BTFLoadError")
_unchanged = _lazyattr.on_first_use("ebpf._progtrack", "unchanged")


class _Prepared:
    """A program's code and BTF records, ready for BPF_PROG_LOAD (a plain class, not a
    dataclass: `dataclasses` costs process start ~1 ms a class)."""

    __slots__ = ("code", "core_results", "func_info", "line_info", "template")

    def __init__(self, code: bytearray, func_info: list[tuple[int, Any]],
                 line_info: list[tuple[int, Any]], core_results: list[Any],
                 template: _Template | None = None) -> None:
        self.code = code
        self.func_info = func_info
        self.line_info = line_info
        self.core_results = core_results
        self.template = template


class _Template:
    """What loading a `ProgramSpec` computes that is the same from one load to the next
    (labels resolved, CO-RE applied, encoded, func/line info matched), kept on the spec
    with what it was computed from, so that the next load only fills in map fds and
    kernel symbols' BTF ids (issue 15: a template reloaded per endpoint)."""

    __slots__ = ("btf", "code", "core_results", "edits", "fixed", "func_info", "insns",
                 "kernel_refs", "key_indexes", "line_info", "maps", "meta_copies", "meta_keys",
                 "metas", "ready", "records", "target", "vmlinux_only")

    def __init__(
        self,
        code: bytes,  # map loads' fd 0, kernel symbols unresolved
        # (map name, byte offsets of its loads' fds), in the order of first reference
        maps: list[tuple[str, tuple[int, ...]]],
        kernel_refs: list[tuple[int, Instruction]],  # (slot, kfunc call or typed ksym load)
        func_info: list[tuple[int, Any]],
        line_info: list[tuple[int, Any]],
        core_results: list[Any],
        # what it was computed from: the load reuses it only when all of it is the same
        edits: int,  # _objcache.edits(): the instructions and line/CO-RE records are tracked
        btf: BTFSpec | None,
        target: Any,  # weakref to the CO-RE target, None without CO-RE relocations
        insns: list[Instruction],  # the spec's instructions (tracked)
        # their meta dicts (assigning another is a tracked edit) but those that count
        # their edits (`_objcache.CountingDict`: the ELF parser's)
        metas: list[dict[str, Any]],
        meta_copies: list[dict[str, Any]],  # copies of `metas` (their records are tracked)
        meta_keys: frozenset[str],  # every key of their meta dicts
        records: tuple[Any, ...] | None = None,  # _btf_records' (builder, func, line, views)
        key_indexes: dict[str, list[int]] | None = None,  # meta_key_indexes'
    ) -> None:
        self.code = code
        self.maps = maps
        self.kernel_refs = kernel_refs
        self.func_info = func_info
        self.line_info = line_info
        self.core_results = core_results
        self.edits = edits
        self.btf = btf
        self.target = target
        self.insns = insns
        self.metas = metas
        self.meta_copies = meta_copies
        self.meta_keys = meta_keys
        self.records = records
        self.key_indexes: dict[str, list[int]] = {} if key_indexes is None else key_indexes
        # `target` was the running kernel's and every relocation found its candidates in
        # vmlinux (whose BTF is the same until reboot): valid whichever modules are loaded
        # since, without listing them at each load
        self.vmlinux_only = False
        self.fixed: _Fixed | None = None  # the attr's part the spec's fields make
        self.ready: _Ready | None = None  # the whole attr, when a load needs no lookups

    # A deep copy or pickle of the spec holds untracked copies of the instructions, which
    # this template's snapshot would share: it starts without a template instead.
    def __deepcopy__(self, memo: dict[int, Any]) -> None:
        return None

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _no_template, ()


def _no_template() -> None:
    """What a pickled template loads as: none (computed again at the next load)."""
    return None


def _load(
    spec: ProgramSpec,
    maps: Mapping[str, SupportsFileno] | None,
    fds: Mapping[str, int],
    log_level: int,
    log_size: int,
    kernel_btf: BTFSpec | None,
    shared_btf: Handle | None = None,
    checked: tuple[ProgramType, tuple[Any, ...], _Fixed | None] | None = None,
) -> tuple[int, str]:
    """Load `spec`: the program fd and (when `log_level` > 0) the verifier log. `fds`:
    the numbers of `maps` the caller holds (the others' are asked for); `checked`:
    `_check_spec(spec)`, when the caller checked it already."""
    ptype, fields, fixed = _check_spec(spec) if checked is None else checked
    if ptype == ProgramType.UNSPEC:
        if spec.section:
            raise InvalidArgumentError(
                f"program {spec.name!r}: section {spec.section!r} is not a libbpf SEC() "
                "name, so the program type is unknown; set ProgramSpec.type")
        raise InvalidArgumentError("ProgramSpec.type is not set")
    if not spec.instructions:
        raise InvalidArgumentError(f"program {spec.name!r} has no instructions")
    if not (type(log_level) is int and 0 <= log_level <= 0xFFFF_FFFF):  # (else: the error)
        log_level = _validate.unsigned(log_level, "log_level", 32)
    if not (type(log_size) is int and 1 <= log_size <= MAX_LOG_SIZE):
        log_size = _validate.integer(log_size, "log_size", 1, MAX_LOG_SIZE)
    tpl = _valid_template(spec, kernel_btf)
    if tpl is not None and (ready := tpl.ready) is not None and ready.fixed is fixed and (
            not ready.btf_size or (shared_btf is not None
                                   and shared_btf.blob_size() == ready.btf_size)):
        # the attr of a load before: only the code's map fds and the BTF object differ
        attr = ProgLoadAttr.from_buffer_copy(ready.image)
        code = _patched_code(tpl, maps, fds, spec.name)
        view = ctypes.c_char.from_buffer(code)  # (holds `code` until the load is done)
        attr.insns = ctypes.addressof(view)
        if ready.btf_size and shared_btf is not None:
            attr.prog_btf_fd = shared_btf.fileno()
        return _load_with_log(attr, spec, ptype, tpl, log_level, log_size)
    modules = _ModuleBTFs()
    try:
        return _load_checked(spec, ptype, fields, fixed, tpl, maps, fds, log_level,
                             log_size, kernel_btf, modules, shared_btf)
    finally:
        modules.close()


def _load_checked(
    spec: ProgramSpec,
    ptype: ProgramType,
    fields: tuple[Any, ...],
    fixed: _Fixed | None,
    tpl: _Template | None,
    maps: Mapping[str, SupportsFileno] | None,
    fds: Mapping[str, int],
    log_level: int,
    log_size: int,
    kernel_btf: BTFSpec | None,
    modules: _ModuleBTFs,
    shared_btf: Handle | None = None,
) -> tuple[int, str]:
    """`_load` of a checked spec (`fields`: its fields `_check_spec` read, `fixed`: the
    attr they make, when a load made it before; `tpl`: its valid template, if any);
    `modules` holds the module BTF objects it refers to."""
    prep = _prepare(spec, tpl, maps, fds, kernel_btf, modules)
    keep: list[Any] = []
    if fixed is None:
        attr, fixed = _fixed_attr(fields, ptype, spec, modules, keep)
    else:  # the same fields as a load before: the attr they made, checks passed
        attr = ProgLoadAttr.from_buffer_copy(fixed.image)
    tpl = prep.template
    if fixed is not None and tpl is not None and tpl.fixed is not fixed:
        tpl.fixed = fixed  # (made from the fields alone: whichever template it was kept on)
    attr.insns = _address(prep.code, keep)
    attr.insn_cnt = len(prep.code) // 8
    modules.put_fd_array(attr, keep)

    btf_handle, records = _load_btf_info(spec, prep, attr, keep, shared_btf)
    if fixed is not None and tpl is not None and not tpl.kernel_refs:
        _keep_ready(tpl, fixed, attr, spec, btf_handle, shared_btf, records)
    try:
        return _load_with_log(attr, spec, ptype, prep, log_level, log_size)
    finally:
        if btf_handle is not None and btf_handle is not shared_btf:
            btf_handle.close()


class _Ready:
    """The whole BPF_PROG_LOAD attr of a template's load but for the code's address
    (`image`), kept on the template with the `_Fixed` it was made from: the next load
    of the same fields copies it when it uses no BTF object (`btf_size` 0) or an object
    BTF handle of `btf_size` bytes (the object's BTF its func/line info records were
    made for, as `_btf_records` found). It holds the records' buffers its addresses
    point at: those this very attr was made with (a thread loading a copy of the spec
    may have put others on the template meanwhile)."""

    __slots__ = ("btf_size", "fixed", "image", "records")

    def __init__(self, fixed: _Fixed, image: bytes, btf_size: int,
                 records: tuple[Any, ...] | None) -> None:
        self.fixed = fixed
        self.image = image
        self.btf_size = btf_size
        self.records = records


def _keep_ready(tpl: _Template, fixed: _Fixed, attr: ProgLoadAttr, spec: ProgramSpec,
                btf_handle: Handle | None, shared_btf: Handle | None,
                records: tuple[Any, ...] | None) -> None:
    """Keep `attr` (complete but for the log) on `tpl` for the next loads, when they
    can copy it (`_Ready`): it refers to no module's BTF, and to no BTF object but a
    shared one with the object's BTF (not one made for this load, not a fallback).
    `records`: the func/line info records `attr` points at (`_load_btf_info`'s)."""
    if btf_handle is None:
        if spec.btf is not None and (tpl.func_info or tpl.line_info):
            return  # loaded without the func/line info: the kernel refused the BTF
        size = 0
    elif btf_handle is shared_btf:
        size = btf_handle.blob_size()
    else:
        return
    image = ProgLoadAttr.from_buffer_copy(attr)
    image.insns = image.prog_btf_fd = 0  # (set at each load)
    tpl.ready = _Ready(fixed, bytes(image), size, records)


class _Fixed:
    """The part of a BPF_PROG_LOAD attr that a spec's fields alone make (program type,
    license, kernel version, flags, name, ifindex, expected attach type, attach BTF id),
    kept on the spec's template with those `fields` (`_FIELDS_OF`): a load whose spec
    holds these very objects copies `image`, the checks they passed holding for them.
    Not kept when it refers to a kernel object or depends on the running kernel."""

    __slots__ = ("fields", "image", "license", "ptype")

    def __init__(self, fields: tuple[Any, ...], ptype: ProgramType, image: bytes,
                 license: ctypes.Array[ctypes.c_char]) -> None:
        self.fields = fields
        self.ptype = ptype
        self.image = image
        self.license = license  # the buffer whose address `image` holds


# the ProgramSpec fields that `_check_spec` checks and `_fixed_attr` puts in the attr, read
# at once (the template's `_Fixed` compares them by identity)
_FIELDS_OF = operator.attrgetter("name", "license", "attach_to", "section", "type",
                                 "kernel_version", "flags", "ifindex", "attach_btf_id",
                                 "attach_type", "attach_prog")
_STR_FIELDS = ("name", "license", "attach_to", "section")
_INT_FIELDS = (("type", "prog_type"), ("kernel_version", "kern_version"),
               ("flags", "prog_flags"), ("ifindex", "prog_ifindex"),
               ("attach_btf_id", "attach_btf_id"))


def _fixed_attr(fields: tuple[Any, ...], ptype: ProgramType, spec: ProgramSpec,
                modules: _ModuleBTFs, keep: list[Any]) -> tuple[ProgLoadAttr, _Fixed | None]:
    """A BPF_PROG_LOAD attr holding what `fields` (`_FIELDS_OF(spec)`, checked) make, and
    that part to keep for the next loads (None when it cannot be kept)."""
    name, lic, attach_to, _, _, kver, flags, ifindex, attach_btf_id, attach_type, \
        attach_prog = fields
    attr = ProgLoadAttr()
    attr.prog_type = ptype
    license_buf = ctypes.create_string_buffer(lic.encode())
    keep.append(license_buf)
    attr.license = ctypes.addressof(license_buf)
    _validate.put(attr, "kern_version", _kernel_version(kver, ptype),
                  "ProgramSpec.kernel_version")
    _validate.put(attr, "prog_flags", flags, "ProgramSpec.flags")
    kname = kernel_name(name).encode("ascii")
    ctypes.memmove(attr.prog_name, kname, len(kname))
    _validate.put(attr, "prog_ifindex", ifindex, "ProgramSpec.ifindex")
    if attach_type is not None:
        _validate.put(attr, "expected_attach_type", attach_type, "ProgramSpec.attach_type")
    if attach_prog is not None:
        attr.attach_prog_fd = attach_prog.fileno()
    if ptype == ProgramType.STRUCT_OPS and not attach_btf_id and ":" in attach_to:
        from ._progtargets import struct_ops_target  # struct_ops programs only

        attr.attach_btf_id, attr.expected_attach_type, ops_module = struct_ops_target(spec)
        if ops_module:  # a struct_ops type a module defines: its BTF object
            attr.attach_btf_obj_fd = modules.fd(ops_module)
        return attr, None  # (looked up in the running kernel's BTF)
    looked_up = not _attach_btf_id_given(fields, ptype)
    attach_id, attach_module = _attach_btf_target(fields, ptype)
    _validate.put(attr, "attach_btf_id", attach_id, "ProgramSpec.attach_btf_id")
    if attach_module:  # a function or tracepoint of a module: its BTF object
        attr.attach_btf_obj_fd = modules.fd(attach_module)
    if looked_up or attach_prog is not None or (not kver and ptype == ProgramType.KPROBE):
        return attr, None  # (the running kernel's BTF or release, a kernel object's fd)
    return attr, _Fixed(fields, ptype, bytes(attr), license_buf)


def _check_btf_handle(handle: object) -> None:
    """Refuse a `btf_handle` that is not an open `ebpf.btf.Handle`."""
    if not isinstance(handle, _Handle()):
        raise InvalidArgumentError(
            f"btf_handle must be an ebpf.btf.Handle, got {type(handle).__name__}")
    if handle.closed:
        raise InvalidArgumentError("btf_handle is closed")


def _check_spec(spec: ProgramSpec) -> tuple[ProgramType, tuple[Any, ...], _Fixed | None]:
    """The program type of `spec` after checking the types and ranges of the fields that
    reach the kernel (InvalidArgumentError naming the ProgramSpec field), the fields
    checked (`_FIELDS_OF`) and, when they are the very objects a load made the fixed
    part of its attr from, that part (`_Fixed`)."""
    if not isinstance(spec, ProgramSpec):
        raise InvalidArgumentError(f"expected a ProgramSpec, got {type(spec).__name__}")
    fields: tuple[Any, ...] = _FIELDS_OF(spec)
    tpl: _Template | None = vars(spec).get("_programs_template")
    fixed = tpl.fixed if tpl is not None else None
    if fixed is not None and all(map(operator.is_, fields, fixed.fields)) \
            and type(spec.instructions) is list:
        return fixed.ptype, fields, fixed
    for fname, v in zip(_STR_FIELDS, fields, strict=False):
        if not isinstance(v, str):
            raise InvalidArgumentError(
                f"ProgramSpec.{fname} must be a str, got {type(v).__name__}")
    if "\0" in fields[1]:  # (the kernel would read the license only up to it)
        raise InvalidArgumentError(
            f"ProgramSpec.license {fields[1]!r} contains a NUL character: give the license "
            "string alone, e.g. 'GPL'")
    if not isinstance(spec.instructions, Sequence) or isinstance(spec.instructions, (str, bytes)):
        raise InvalidArgumentError("ProgramSpec.instructions must be a list of Instructions, "
                                   f"got {type(spec.instructions).__name__}")
    for (fname, afield), v in zip(_INT_FIELDS, fields[4:9], strict=True):
        lo, hi = _validate.field_range(ProgLoadAttr, afield)
        _validate.integer(v, f"ProgramSpec.{fname}", lo, hi)
    attach_type = fields[9]
    if attach_type is not None:
        lo, hi = _validate.field_range(ProgLoadAttr, "expected_attach_type")
        _validate.integer(attach_type, "ProgramSpec.attach_type", lo, hi)
    attach_prog = fields[10]
    if attach_prog is not None and not hasattr(attach_prog, "fileno"):
        raise InvalidArgumentError(
            "ProgramSpec.attach_prog must be a loaded ebpf.Program (the program to attach "
            f"to) or None, got {type(attach_prog).__name__} {attach_prog!r}")
    try:
        return ProgramType(fields[4]), fields, None
    except ValueError:
        raise InvalidArgumentError(
            f"ProgramSpec.type {int(fields[4])} is not a program type this library knows") \
            from None


def _load_with_log(
    attr: ProgLoadAttr,
    spec: ProgramSpec,
    ptype: ProgramType,
    prep: _Prepared | _Template,
    log_level: int,
    log_size: int,
) -> tuple[int, str]:
    """BPF_PROG_LOAD `attr` (retried with a log when refused, `log_level` 0); `prep`:
    the line info and CO-RE results a refusal is explained with."""
    if log_level == 0:
        fd = _prog.prog_load(attr)
        if fd >= 0:
            return fd, ""
        first_err = -fd
        level = 1  # retry with a log to say why
    else:
        first_err = 0
        level = log_level

    size = max(log_size, _MIN_LOG_SIZE)
    while True:
        buf = ctypes.create_string_buffer(size)
        attr.log_level = level
        attr.log_size = size
        attr.log_buf = ctypes.addressof(buf)
        attr.log_true_size = 0
        fd = _prog.prog_load(attr)
        if fd == -_errno.ENOSPC and size < MAX_LOG_SIZE:
            # the log did not fit: the kernel tells how big it is (6.4+) or we double
            need = int(attr.log_true_size)
            size = min(max(need + 1, size * 2) if need > size else size * 2, MAX_LOG_SIZE)
            continue
        log = buf.value.decode("utf-8", "replace")
        _log.debug("verifier log of program %r (%s):\n%s", spec.name,
                   "loaded" if fd >= 0 else f"refused, errno {-fd}", log)
        if fd >= 0:
            return fd, log if log_level else ""
        from ._progerrors import load_error  # on a refused load only (process start)

        raise load_error(-fd, first_err, spec, ptype, prep.line_info, prep.core_results, log)


def _kernel_version(kernel_version: int, ptype: ProgramType) -> int:
    if kernel_version or ptype != ProgramType.KPROBE:
        return kernel_version
    return _release_version(os.uname().release)


def _release_version(release: str) -> int:
    """KERNEL_VERSION(x, y, z) of a release string "x.y[.z]..." (the patch level capped
    at 255), 0 when it does not start with one."""
    numbers = []
    for part in release.split(".", 3)[:3]:
        digits = len(part) - len(part.lstrip("0123456789"))
        if not digits:
            break
        numbers.append(int(part[:digits]))
        if digits < len(part):  # "6.18-rc1": the version ends inside this part
            break
    if len(numbers) < 2:
        return 0
    major, minor, patch = numbers[0], numbers[1], numbers[2] if len(numbers) > 2 else 0
    return (major << 16) + (minor << 8) + min(patch, 255)


def _prepare(spec: ProgramSpec, tpl: _Template | None,
             maps: Mapping[str, SupportsFileno] | None, fds: Mapping[str, int],
             kernel_btf: BTFSpec | None, modules: _ModuleBTFs) -> _Prepared:
    """Resolve labels, map/kfunc/ksym references; collect func/line info; encode
    (`tpl`: `spec`'s valid template, if any; `fds`: as `_load`'s). Kernel symbols of
    modules open their BTF objects in `modules`."""
    if tpl is None:
        tpl = _make_template(spec, kernel_btf)
    code = _patched_code(tpl, maps, fds, spec.name)
    if tpl.kernel_refs:
        from ._progtargets import kernel_btf_id  # programs naming kfuncs or ksyms only
    for slot, ins in tpl.kernel_refs:
        ins = ins.copy()
        if ins.opcode == _LD_IMM64:
            module, btf_id = kernel_btf_id(ins.reference or "", ("Var", "Func"), spec.name)
            # the second slot's imm (the upper half) is the BTF object's fd, 0 for vmlinux
            ins.imm = (modules.fd(module) << 32 if module else 0) | btf_id
        else:
            module, ins.imm = kernel_btf_id(ins.reference or "", ("Func",), spec.name)
            # off: the index of the module's BTF fd in fd_array (0: vmlinux)
            ins.off = modules.index(module) if module else 0
        ins.reference = None
        code[slot * 8:slot * 8 + 8 * ins.size] = _encode_one(ins)
    return _Prepared(code, tpl.func_info, tpl.line_info, tpl.core_results, tpl)


def _patched_code(tpl: _Template, maps: Mapping[str, SupportsFileno] | None,
                  fds: Mapping[str, int], name: str) -> bytearray:
    """`tpl`'s code with the fds of `maps` in its map loads (`fds`: as `_load`'s)."""
    code = bytearray(tpl.code)
    pack_into = _FD_AT.pack_into
    for ref, offsets in tpl.maps:
        fd = fds.get(ref)
        if fd is None:
            m = maps.get(ref) if maps is not None else None
            if m is None:
                known = ", ".join(sorted(maps)) if maps else "none were given"
                raise KeyNotFoundError(
                    f"program {name!r} references map {ref!r}, which is not among the maps "
                    f"passed to Program (known: {known})")
            fd = m.fileno()
        for where in offsets:
            pack_into(code, where, fd)
    return code


_FD_AT = struct.Struct("<i")  # (also an instruction's imm)


def _encode_one(ins: Instruction) -> bytes:
    from .asm import encode  # asm on first load: `import ebpf.programs` stays small

    return encode([ins])


def _valid_template(spec: ProgramSpec, kernel_btf: BTFSpec | None) -> _Template | None:
    """The template of `spec`'s last load, if it was computed from what `spec` holds now
    (`_progtrack.unchanged`) and against the same CO-RE target."""
    tpl: _Template | None = vars(spec).get("_programs_template")
    if tpl is None or not _unchanged()(spec, tpl):
        return None
    if tpl.target is not None and not (tpl.vmlinux_only and kernel_btf is None) \
            and tpl.target() is not _core_target(kernel_btf):
        return None
    return tpl


def meta_key_indexes(spec: ProgramSpec, key: str) -> list[int]:
    """The indexes of `spec`'s instructions whose ``meta`` has `key` (known from the last
    load while nothing changed, else one pass over the instructions)."""
    tpl: _Template | None = vars(spec).get("_programs_template")
    insns = spec.instructions
    # only when the spec holds the template's own instructions (checked by identity): a
    # copy's are compared by value, ~8x the time of the pass (load_many of copies)
    if tpl is not None and insns and tpl.insns and insns[0] is tpl.insns[0]:
        if not _unchanged()(spec, tpl):
            return _meta_key_indexes(insns, key)
        if key not in tpl.meta_keys:
            return []
        found = tpl.key_indexes.get(key)
        if found is None:
            found = tpl.key_indexes[key] = _meta_key_indexes(tpl.insns, key)
        return found
    return _meta_key_indexes(insns, key)


def _meta_key_indexes(insns: Sequence[Any], key: str) -> list[int]:
    return [i for i, ins in enumerate(insns) if ins.meta and key in ins.meta]


def _make_template(spec: ProgramSpec, kernel_btf: BTFSpec | None) -> _Template:
    """Compute `spec`'s template and keep it on the spec when its inputs can be tracked."""
    from .asm import Instruction, assemble, encode  # asm on first load (as above)
    from .asm.link import resolvable  # asm on first load: `import ebpf.programs` stays small

    given = list(spec.instructions)
    # (an empty meta dict too: a key put in it later is an edit the next load must see)
    metas = [ins.meta for ins in given if isinstance(ins, Instruction)
             and (ins.meta or isinstance(ins.meta, dict))]
    # tracked first, then the count and the snapshot: an edit while computing (another
    # thread) makes the next load compute again; a spec loaded once keeps no template
    keep = "_programs_once" not in vars(spec)
    if keep:
        from ._progtrack import track  # not for `ebpf load`: its specs load once (process start)

        keep = track(given, metas)
    if keep:
        from ._objcache import CountingDict, edits  # (loaded by track)

        edits_before, meta_keys = edits(), frozenset(chain.from_iterable(metas))
        # (copies of the meta dicts that do not count their edits, to compare)
        metas = [m for m in metas if type(m) is not CountingDict]
        meta_copies = list(map(dict.copy, metas))
    else:  # (a template not kept: what it was computed from is never compared)
        edits_before, meta_copies, meta_keys = 0, metas, frozenset()
    insns = assemble(given)
    core_results, target, vmlinux_only = _apply_core(spec, insns, kernel_btf)
    map_refs: list[tuple[int, str]] = []
    kernel_refs: list[tuple[int, Instruction]] = []
    func_info: list[tuple[int, Any]] = []
    line_info: list[tuple[int, Any]] = []
    slot = 0
    for i, ins in enumerate(insns):
        ref = ins.reference
        if ref is not None and not resolvable(ins):
            if ins.opcode == _LD_IMM64 and ins.src in _MAP_SRCS:
                insns[i] = ins = _map_load(ins, 0)
                map_refs.append((slot * 8 + 4, ref))  # the first slot's imm
            elif (ins.opcode == _LD_IMM64 and ins.src == consts.BPF_PSEUDO_BTF_ID
                  and not ins.imm) or (ins.opcode == _CALL and not ins.imm
                                       and ins.src == consts.BPF_PSEUDO_KFUNC_CALL):
                kernel_refs.append((slot, ins))
        meta = ins.meta
        if meta:
            func = meta.get("func")
            if func is not None:
                func_info.append((slot, func))
            line = meta.get("line")
            if line is not None:
                line_info.append((slot, line))
        slot += ins.size
    code = encode(insns)
    by_map: dict[str, list[int]] = {}
    for where, ref in map_refs:
        by_map.setdefault(ref, []).append(where)
    if func_info or line_info:
        func_info, line_info = _match_subprogs(code, func_info, line_info, spec.btf)
    tpl = _Template(code, [(ref, tuple(offs)) for ref, offs in by_map.items()], kernel_refs,
                    func_info, line_info, core_results, edits_before, spec.btf, None, given,
                    metas, meta_copies, meta_keys)
    if target is not None:
        try:
            tpl.target = weakref.ref(target)
        except TypeError:  # a target that cannot be weakly referenced: not kept
            return tpl
        tpl.vmlinux_only = vmlinux_only
    if keep:
        vars(spec)["_programs_template"] = tpl  # dies with the spec (_objcache's rule)
    return tpl


def load_once(spec: ProgramSpec) -> None:
    """Say that `spec` is loaded at most once (what a one-shot command such as ``ebpf
    load`` knows): its load then keeps no template for a next one, and so does not make
    its instructions and line/CO-RE records count their edits (`_progtrack.track`: a class made
    per record type and every object's class swapped, ~0.25 ms of a small program's
    load). A later load of `spec` is prepared afresh. Copies of `spec` are not marked."""
    vars(spec)["_programs_once"] = True


def _match_subprogs(code: bytes, func_info: list[tuple[int, Any]],
                    line_info: list[tuple[int, Any]], btf_spec: BTFSpec | None = None,
                    ) -> tuple[list[tuple[int, Any]], list[tuple[int, Any]]]:
    """Drop func/line info the kernel would refuse because it does not match the
    program's subprograms (after instructions were edited): func info must start
    exactly every subprogram, line info must cover every subprogram start. The
    subprograms are what the code calls or takes the address of, and the exception
    callback the main function's BTF names (kernel 6.7+), which nothing calls."""
    starts = {0}
    opcodes = code[::8]  # (the second slot of a ld_imm64 has opcode 0)
    for opcode, pseudo in ((_CALL, consts.BPF_PSEUDO_CALL), (_LD_IMM64, consts.BPF_PSEUDO_FUNC)):
        slot = opcodes.find(opcode)
        while slot >= 0:  # only the calls and loads, not every instruction, in Python
            at = slot * 8
            if code[at + 1] >> 4 == pseudo:  # src_reg: the upper half of the regs byte
                starts.add(slot + _FD_AT.unpack_from(code, at + 4)[0] + 1)  # + imm
            slot = opcodes.find(opcode, slot + 1)
    if func_info and [s for s, _ in func_info] != sorted(starts):
        from ._progexcb import exception_callback_slot  # edited code only (process start)

        callback = exception_callback_slot(func_info, btf_spec)
        if callback is not None:
            starts.add(callback)
    if func_info and [s for s, _ in func_info] != sorted(starts):
        _log.warning("func info of %d functions does not match the program's %d "
                     "subprograms (instructions edited?): loading without func info",
                     len(func_info), len(starts))
        func_info = []
    line_slots = {s for s, _ in line_info}
    if line_info and not starts <= line_slots:
        line_info = []
    return func_info, line_info


def _core_target(kernel_btf: BTFSpec | None) -> Any:
    """The CO-RE target: `kernel_btf`, else the running kernel's BTF."""
    if kernel_btf is not None:
        return kernel_btf
    from .btf import core  # the CO-RE engine only for programs with CO-RE relocations

    return core.kernel_targets()


def _apply_core(spec: ProgramSpec, insns: list[Instruction],
                kernel_btf: BTFSpec | None) -> tuple[list[Any], Any, bool]:
    """Apply the CO-RE relocations in ``meta["core"]`` to `insns` (in place, on copies of
    the relocated instructions) against `kernel_btf` or the running kernel's BTF.

    Returns `ebpf.btf.core.CoreResult`s, used to explain a poisoned instruction, the
    target (None without relocations) and whether the target is the running kernel's
    and only its vmlinux BTF was consulted (no module's).
    """
    from .btf import core  # the CO-RE engine only for programs with CO-RE relocations

    relos: list[tuple[int, Any]] = []
    for i, ins in enumerate(insns):
        relo = ins.meta.get("core") if ins.meta else None
        if relo is None:
            continue
        insns[i] = ins.copy()  # relocate() patches in place; the spec stays untouched
        for r in relo if isinstance(relo, (list, tuple)) else (relo,):
            relos.append((i, r))
    if not relos:
        return [], None, False
    if spec.btf is None:
        raise InvalidArgumentError(
            f"program {spec.name!r} has CO-RE relocations but no BTF (ProgramSpec.btf)")
    targets: Any = _core_target(kernel_btf)
    # One candidate cache per (object BTF, target): reloading a spec reuses the lookups.
    # It lives on the object's BTF (it refers to its types), so it dies with the spec.
    caches = _attached(spec.btf, "_programs_core_caches")
    per_spec = caches.get("by_target")
    if per_spec is None:
        per_spec = caches.setdefault("by_target", weakref.WeakKeyDictionary())
    try:
        cache = per_spec.get(targets)
        if cache is None:
            if len(per_spec) >= _CORE_TARGETS_PER_SPEC:  # many one-off targets: bounded
                per_spec.clear()
            cache = per_spec[targets] = core.CoreCache()
    except TypeError:  # a target that cannot be weakly referenced: no reuse
        cache = core.CoreCache()
    results: list[Any] = core.relocate(insns, relos, spec.btf, targets, cache=cache)
    return results, targets, kernel_btf is None and cache.first_target_only()


_CORE_TARGETS_PER_SPEC = 8


def _map_load(ins: Instruction, fd: int) -> Instruction:
    """A copy of the map load `ins` loading the map whose fd is `fd`."""
    out = ins.copy()
    if ins.src in (consts.BPF_PSEUDO_MAP_VALUE, consts.BPF_PSEUDO_MAP_IDX_VALUE):
        offset = (ins.imm >> 32) & 0xFFFF_FFFF  # the value offset lives in the upper half
        out.src = consts.BPF_PSEUDO_MAP_VALUE
        out.imm = (offset << 32) | fd
    else:
        out.src = consts.BPF_PSEUDO_MAP_FD
        out.imm = fd
    return out


class _ModuleBTFs:
    """The kernel BTF objects of the modules one program load refers to (kfuncs,
    ksyms, its attach target), opened on first use and closed when the load is done.
    A kfunc call names its module by an index into the program's fd_array, where
    index 0 stands for vmlinux: the first module is at 1."""

    __slots__ = ("_handles",)

    def __init__(self) -> None:
        self._handles: dict[str, Handle] = {}

    def fd(self, module: str) -> int:
        """The fd of `module`'s BTF object (NotSupportedError when it has none)."""
        handle = self._handles.get(module)
        if handle is None:
            from .btf.kernel import open_module_btf  # only for module symbols

            handle = self._handles[module] = open_module_btf(module)
        return handle.fileno()

    def index(self, module: str) -> int:
        """`module`'s index in fd_array."""
        self.fd(module)
        return list(self._handles).index(module) + 1

    def put_fd_array(self, attr: ProgLoadAttr, keep: list[Any]) -> None:
        """Point `attr.fd_array` at the modules' fds (in index order), if any."""
        if self._handles:
            arr = (ctypes.c_int32 * (len(self._handles) + 1))(
                0, *(h.fileno() for h in self._handles.values()))
            keep.append(arr)
            attr.fd_array = ctypes.addressof(arr)

    def close(self) -> None:
        """Close every BTF object opened (the loaded program keeps what it uses)."""
        if self._handles:
            handles, self._handles = list(self._handles.values()), {}
            for h in handles:
                h.close()


def _attach_btf_id_given(fields: tuple[Any, ...], ptype: ProgramType) -> bool:
    """Whether the attach BTF id is the spec's `attach_btf_id` (0 without a target), not
    one that `attach_to` names (looked up in the kernel's or a program's BTF)."""
    attach_to, attach_btf_id = fields[2], fields[8]
    return bool(attach_btf_id or not attach_to
                or ptype not in (ProgramType.TRACING, ProgramType.LSM, ProgramType.EXT))


def _attach_btf_target(fields: tuple[Any, ...], ptype: ProgramType) -> tuple[int, str]:
    """(`spec.attach_btf_id`, "") or the BTF id `spec.attach_to` names and the module
    whose BTF has it ("" for vmlinux or `spec.attach_prog`'s BTF); `fields`: the spec's
    (`_FIELDS_OF`)."""
    prog_name, attach_to, attach_btf_id = fields[0], fields[2], fields[8]
    attach_type, attach_prog = fields[9], fields[10]
    if ptype == ProgramType.EXT and attach_prog is None:
        raise InvalidArgumentError(
            f"freplace program {prog_name!r} needs attach_prog (the program whose function "
            "it replaces) and attach_to (that function's name)")
    if attach_btf_id or not attach_to:
        return attach_btf_id, ""
    if ptype not in (ProgramType.TRACING, ProgramType.LSM, ProgramType.EXT):
        return 0, ""  # attach_to is for the link (a kprobe symbol, a tracepoint, ...)
    from . import btf  # BTF code on first use: programs without BTF never load it

    prefix, kind = "", "Func"
    if attach_type is not None:
        prefix, kind = _ATTACH_BTF_PREFIX.get(attach_type, ("", "Func"))
    target_name = prefix + attach_to
    if attach_prog is not None:
        from ._progpin import program_btf  # freplace / fentry on a program (process start)

        target = program_btf(attach_prog)
        where = f"the BTF of program {attach_prog.name!r}"
        target_name, kind = attach_to, "Func"
        try:
            return target.type_id(target.type_by_name(target_name, getattr(btf, kind))), ""
        except KeyNotFoundError:
            pass
    else:
        from .btf.kernel import find_kernel_type  # BTF code on first use (as above)

        where = "vmlinux BTF or the BTF of a loaded module"
        # "<module>:<function>" (as in SEC("fentry/nf_conntrack:nf_conntrack_find_get")):
        # only that module's BTF ("vmlinux:<function>": only vmlinux's)
        module, sep, name = attach_to.rpartition(":")
        if sep and module:
            target_name = prefix + name
            where = "vmlinux BTF" if module == "vmlinux" else \
                f"the BTF of module {module!r} (is it loaded?)"
        found = find_kernel_type(target_name, (getattr(btf, kind),), module or None)
        if found is not None:
            return found.type_id, found.module
    raise KeyNotFoundError(
        f"attach target {target_name!r} of program {prog_name!r} is not a "
        f"{kind} in {where}")


def _load_btf_info(spec: ProgramSpec, prep: _Prepared, attr: ProgLoadAttr,
                   keep: list[Any], shared: Handle | None = None,
                   ) -> tuple[Handle | None, tuple[Any, ...] | None]:
    """Load `spec.btf` (or take `shared`, the object's BTF already loaded) and point
    `attr` at func/line info records (put in `keep`); the BTF handle and the records
    (`_btf_records`'), both None when the load goes without BTF."""
    if spec.btf is None or not (prep.func_info or prep.line_info):
        return None, None
    btf_spec = spec.btf
    try:
        handle, records = _btf_records(prep, btf_spec, _cached_builder(btf_spec), shared)
    except _BTFLoadError() as e:  # BTFLoadError (looked up only on an exception)
        # the kernel refuses the object's BTF even prepared: fall back to just the
        # functions' prototypes, which is what func/line info needs (type ids, decl
        # tags such as arg:ctx and the exception callback's are lost: say so)
        _log.warning("program %r: the kernel refused the object's BTF (%s); loading "
                     "func/line info with the functions' prototypes only (type ids "
                     "and decl tags are not the object's)", spec.name, _last_line(e))
        try:
            handle, records = _btf_records(prep, btf_spec, None)
        except _BTFLoadError() as again:  # (as above)
            # the prototypes themselves are refused (e.g. a __naked function's
            # unnamed parameters): load without BTF, as libbpf does
            _log.warning("program %r: the kernel refused the functions' prototypes too "
                         "(%s); loading without BTF (no func/line info)", spec.name,
                         _last_line(again))
            return None, None
    except NotSupportedError:  # a kernel without BTF: load without func/line info
        _log.info("program %r: loaded without func/line info (the kernel has no BTF)",
                  spec.name)
        return None, None
    keep.append(records)  # (the records' buffers, until the load is done)
    attr.prog_btf_fd = handle.fileno()
    _, funcs, lines, func_view, line_view = records
    if funcs is not None:
        attr.func_info = ctypes.addressof(func_view)
        attr.func_info_cnt = len(funcs) // _FUNC_INFO_SIZE
        attr.func_info_rec_size = _FUNC_INFO_SIZE
    if lines is not None:
        attr.line_info = ctypes.addressof(line_view)
        attr.line_info_cnt = len(lines) // _LINE_INFO_SIZE
        attr.line_info_rec_size = _LINE_INFO_SIZE
    return handle, records


def _last_line(e: Exception) -> str:
    """The gist of a BTF load error: its message without the kernel log's head."""
    text = str(e).strip()
    head, _, _ = text.partition("\n")
    tail = text.rsplit("\n", 1)[-1]
    return head if head == tail else f"{head.rstrip(':')} ... {tail}"


def _btf_records(prep: _Prepared, btf_spec: BTFSpec, builder: Builder | None,
                 shared: Handle | None = None,
                 ) -> tuple[Handle, tuple[Any, ...]]:
    """Load BTF for func/line info: `builder` (the object's BTF, same ids) or, when
    None, a minimal BTF holding only the functions and what they refer to. `shared`,
    the object's BTF loaded from `builder` earlier, is used instead of a new BTF
    object when it holds every string the line info needs: the builder only ever
    appends strings, so it does when the blob has the size the kernel holds.

    Returns the handle and the records: (builder, func info, line info, a ctypes view
    of each, whose address the attr takes), func or line info None when there is none;
    those of the object's BTF are kept on the template (the views too: made once)."""
    tpl = prep.template
    own = builder is not None  # the object's BTF: the records can be kept
    if builder is None:
        # BTF code on first use: programs without BTF never load it
        from .btf.builder import Builder

        builder, shared = Builder(), None
    # the object's builder is shared by every program of the object (and every copy
    # of its specs, loaded by `load_many` from several threads): its strings are
    # appended and the blob marshalled under its lock, so that each program's offsets
    # are its own strings' and the blob holds them
    with _builder_lock(builder):
        cached = tpl.records if tpl is not None else None  # (another thread's, maybe)
        if own and cached is not None and cached[0] is builder:
            # the builder only ever appends: the string offsets found before still hold
            records = cached
        else:
            type_id = btf_spec.type_id if own else builder.add
            funcs = _u32_records([
                v for slot, f in prep.func_info for v in (slot, type_id(f))]) \
                if prep.func_info else None
            add_string = builder.add_string
            lines = _u32_records([
                v for slot, line in prep.line_info for v in (
                    slot, add_string(str(line.file_name)), add_string(str(line.line_text)),
                    (int(line.line) << 10) | (int(line.col) & 0x3FF))
            ]) if prep.line_info else None
            records = (builder, funcs, lines,
                       None if funcs is None else ctypes.c_char.from_buffer(funcs),
                       None if lines is None else ctypes.c_char.from_buffer(lines))
            if tpl is not None and own:
                tpl.records = records
        blob = _marshal_locked(builder)
    if shared is not None and len(blob) == shared.blob_size():
        return shared, records
    return _Handle()(blob), records


def _u32_records(values: list[int]) -> bytearray:
    """The bytes of an array of records of __u32 fields (`struct bpf_func_info`,
    `bpf_line_info`) holding `values`, their fields in order, each cut to 32 bits as a
    field assignment would: packed at once (building the structs one by one costs ~4 us
    each), and no ctypes array type made for the count (a class each: ~20 us)."""
    return bytearray(struct.pack(f"={len(values)}I", *[v & 0xFFFFFFFF for v in values]))


def _address(data: bytearray, keep: list[Any]) -> int:
    """The address of `data`'s bytes for a syscall attr, `data` held (unresizable) by an
    object put in `keep` until the call is done (no ctypes array type made for its
    length, as ``(c_char * n).from_buffer_copy`` would: a class each, ~20 us)."""
    view = ctypes.c_char.from_buffer(data)
    keep.append(view)
    return ctypes.addressof(view)


def _attached(obj: object, name: str) -> dict[Any, Any]:
    """`_objcache.attached` (a cache dict stored on `obj`, dying with it), without
    importing `_objcache` on a load that keeps no template (process start)."""
    d: dict[Any, Any] = vars(obj).setdefault(name, {})
    return d


# Per object BTF: the kernel-ready Builder and its last marshalled blob, so that loading
# many programs (or the same spec many times) marshals the object's BTF once. Both are
# stored on the objects themselves (the Builder holds the spec's types, which refer to
# the spec): a module-level cache keyed by them would keep every parsed spec alive.
def _cached_builder(spec: BTFSpec) -> Builder:
    b: Builder | None = vars(spec).get("_programs_builder")
    if b is None:  # (one wins a race: setdefault is atomic)
        b = vars(spec).setdefault("_programs_builder", _kernel_ready_builder(spec))
    return b


def _marshal_cached(b: Builder) -> bytes:
    """`b.marshal()`, reused while no type or string was added since."""
    blob = _last_blob(b)  # (without the lock: a reload's, nothing added since)
    if blob is not None:
        return blob
    with _builder_lock(b):
        return _marshal_locked(b)


def _marshal_locked(b: Builder) -> bytes:
    """`_marshal_cached` when the caller holds `b`'s lock."""
    blob = _last_blob(b)
    if blob is None:
        key = (len(b), len(b._strtab))
        blob = b.marshal()
        vars(b)["_programs_blob"] = (key, blob)  # (on the builder: dies with it)
    return blob


def _last_blob(b: Builder) -> bytes | None:
    """`b`'s last marshalled blob if no type or string was added since, else None;
    right without `b`'s lock too: the builder only appends, so a blob made when it had
    as many types and string bytes as it has now holds what it holds."""
    cached: tuple[tuple[int, int], bytes] | None = vars(b).get("_programs_blob")
    if cached is not None and cached[0] == (len(b), len(b._strtab)):
        return cached[1]
    return None


def _builder_lock(b: Builder) -> _thread.RLock:
    """The lock serializing what adds to and marshals builder `b` (one per builder,
    created on first use; replaced by a free one in a forked child)."""
    lock: _thread.RLock | None = vars(b).get("_programs_lock")
    if lock is None:
        # (registered for a forked child's reset before another thread can take it)
        lock = vars(b).setdefault(  # atomic: one wins
            "_programs_lock", _forking.new_lock(b, "_programs_lock", _thread.RLock))
    return lock


def object_btf_blob(spec: BTFSpec) -> bytes:
    """The object's BTF as the kernel accepts it (externs fixed), same type ids."""
    return _marshal_cached(_cached_builder(spec))


def _kernel_ready_builder(spec: BTFSpec) -> Builder:
    """A `Builder` of `spec` (same type ids) with what the kernel refuses in an
    object's BTF fixed the way libbpf does: extern variables become allocated
    globals, and the extern sections .kconfig / .ksyms (size 0 in the object)
    get a layout (.ksyms entries become ints, as libbpf pretends). Beyond libbpf,
    an enum forward declaration (size 0) gets the size of an int, so that the
    object keeps its BTF."""
    from . import btf  # BTF code on first use: programs without BTF never load it
    from .btf.builder import Builder  # BTF code on first use: programs without BTF never load it

    b = Builder.from_spec(spec)
    fake_int: btf.Int | None = None
    # (only the types it changes are decoded: the others are marshalled as they are)
    kinds = btf.Kind.VAR, btf.Kind.FUNC, btf.Kind.ENUM, btf.Kind.ENUM64, btf.Kind.DATASEC
    for tid in b.ids_of_kind(*kinds):
        t = b.type_by_id(tid)
        if isinstance(t, btf.Var) and t.linkage == btf.Linkage.EXTERN:
            b.replace(tid, btf.Var(t.name, t.type, btf.Linkage.GLOBAL))
        elif isinstance(t, btf.Func) and t.linkage == btf.Linkage.EXTERN:
            from ._progtargets import declare_extern_func  # objects calling kfuncs only

            declare_extern_func(b, tid, t)
        elif isinstance(t, btf.Enum) and t.size == 0:
            # `enum e;` (clang: size 0, no values) is "Unexpected size" to every kernel;
            # an int-sized enum without values, same name, is accepted by all of them
            b.replace(tid, btf.Enum(t.name, 8 if t.is64 else 4, (), t.signed))
        elif isinstance(t, btf.Datasec) and t.size == 0 and t.vars:
            ksyms = t.name == ".ksyms"
            new_vars = []
            off = 0
            for vsi in t.vars:
                member = vsi.type
                var: btf.Type
                if ksyms:
                    if fake_int is None:
                        fake_int = btf.Int("int", 4, btf.IntEncoding.SIGNED)
                    var = btf.Var(member.name, fake_int, btf.Linkage.GLOBAL)
                    if isinstance(member, btf.Var):
                        b.replace(spec.type_id(member), var)
                    else:  # an extern function: keep it, add a variable for the section
                        b.add(var)
                    size, align = 4, 4
                else:
                    var = member
                    inner = member.type if isinstance(member, btf.Var) else member
                    size, align = max(btf.sizeof(inner), 1), max(btf.alignof(inner), 1)
                off = (off + align - 1) // align * align
                new_vars.append(btf.VarSecinfo(var, off, size))
                off += size
            b.replace(tid, btf.Datasec(t.name, off, new_vars))
    return b


# -- info -------------------------------------------------------------------------


def _kind(name: str) -> str:
    """How errors name a program ("program 'count_exec'")."""
    return f"program {name!r}" if name else "program"

