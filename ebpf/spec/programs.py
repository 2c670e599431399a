"""`ProgramSpec`: what a program is made of, before it is loaded (plain data, no fds)."""

from __future__ import annotations

import ebpf._lazyattr as _lazyattr

from .._sys.fastclass import Record
from .._sys.types import ProgramType

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from .._sys.types import AttachType
    from ..asm import Instruction
    from ..btf import Spec as BTFSpec
    from .flags import ProgramFlags as ProgramFlags
    from .protocols import LoadedProgram, SupportsFileno

__all__ = ["LoadedProgram", "ProgramFlags", "ProgramSpec", "ProgramType", "SupportsFileno"]


# `SupportsFileno` and `LoadedProgram` (typing.Protocols) from `ebpf.spec.protocols` and
# `ProgramFlags` from `ebpf.spec.flags` on first use (process start: a load imports no
# `typing` and makes no flag enum: `ProgramSpec.flags` is an int); `AttachType`, which was
# importable from here, from `ebpf._sys.types` (its enum class on first use).
__getattr__ = _lazyattr.lazy_attributes(globals(), {
    "SupportsFileno": ".protocols", "LoadedProgram": ".protocols", "ProgramFlags": ".flags",
    "AttachType": ".._sys.types"})


class ProgramSpec(Record):
    """Everything needed to load a program; plain data, editable, no kernel objects
    (except `attach_prog`).

    `instructions` are `ebpf.asm.Instruction`s: jump/call references to labels
    are resolved by the assembler, a 64-bit load whose ``reference`` names a
    map gets that map's fd from `Program(..., maps=...)`, a kfunc call or
    ``__ksym`` load whose ``reference`` names a kernel symbol gets its BTF id
    in vmlinux or, failing that, in a loaded module's BTF (whose BTF object the
    load then passes along). ``meta["func"]`` / ``meta["line"]`` of instructions
    become BTF func/line info when `btf` is set. A load keeps what it computed on
    the spec, and the next load of an unchanged spec only fills in map fds and
    kernel symbols; edits of the instructions, their meta dicts and line/CO-RE
    records are seen (after a load an instruction's class is an edit-counting
    subclass of `Instruction`), in-place edits of BTF types are not.

    `attach_type` is the expected attach type (required by many program types,
    e.g. cgroup, tracing). `attach_to` names the attach target for tracing,
    LSM, iterator and freplace programs (a kernel function, in vmlinux or a
    loaded module, ``"sched_switch"`` for a BTF raw tracepoint, a function of
    `attach_prog`); `attach_btf_id`
    gives the target's BTF id directly instead. `flags` are `ProgramFlags`.
    `section` is set by the ELF loader; `kernel_version` only matters for
    kprobes on kernels before 5.0 (0 means the running kernel's).
    """

    # a Record, not a dataclass: `dataclasses` costs process start ~8 ms. No __slots__:
    # loads keep caches in the spec's __dict__ (_objcache's rule).
    _FIELDS = ("name", "type", "instructions", "license", "attach_type", "attach_to",
               "attach_btf_id", "attach_prog", "kernel_version", "flags", "section", "btf",
               "ifindex", "autoload")

    name: str
    type: ProgramType
    instructions: list[Instruction]
    license: str
    attach_type: AttachType | int | None
    attach_to: str
    attach_btf_id: int
    attach_prog: LoadedProgram | None
    """A loaded `ebpf.Program` (freplace and tracing programs attached to a BPF program)."""
    kernel_version: int
    flags: int
    section: str
    btf: BTFSpec | None
    ifindex: int
    autoload: bool
    """False for sections starting with "?": a Collection skips the program unless
    asked for it by name."""

    def __init__(
        self,
        name: str = "",
        type: ProgramType = ProgramType.UNSPEC,
        instructions: list[Instruction] | None = None,  # None: a new empty list
        license: str = "",
        attach_type: AttachType | int | None = None,
        attach_to: str = "",
        attach_btf_id: int = 0,
        attach_prog: LoadedProgram | None = None,
        kernel_version: int = 0,
        flags: int = 0,
        section: str = "",
        btf: BTFSpec | None = None,
        ifindex: int = 0,
        autoload: bool = True,
    ) -> None:
        self.name = name
        self.type = type
        self.instructions = [] if instructions is None else instructions
        self.license = license
        self.attach_type = attach_type
        self.attach_to = attach_to
        self.attach_btf_id = attach_btf_id
        self.attach_prog = attach_prog
        self.kernel_version = kernel_version
        self.flags = flags
        self.section = section
        self.btf = btf
        self.ifindex = ifindex
        self.autoload = autoload

    # Caches a load keeps in the spec's __dict__ and checks against the spec's contents
    # by value before each use: a copy starts with them (N copies of one template then
    # load without N recomputations of the same CO-RE relocations and encoding).
    _CACHES_CHECKED_BY_VALUE = ("_programs_template",)

    def copy(self) -> ProgramSpec:
        """A copy whose instruction list (and each instruction) can be edited freely.

        The BTF spec and `attach_prog` are shared, not copied.
        """
        new = self.replace(instructions=[ins.copy() for ins in self.instructions])
        own = vars(self)
        for name in self._CACHES_CHECKED_BY_VALUE:
            if name in own:
                vars(new)[name] = own[name]
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> ProgramSpec:
        """A deep copy sharing the parsed BTF and its types, and `attach_prog` (a
        kernel object), as `copy()` does."""
        from ._copies import deep_copy  # on the first deep copy (process start)

        if self.attach_prog is not None:
            memo.setdefault(id(self.attach_prog), self.attach_prog)
        new: ProgramSpec = deep_copy(self, memo, (self.btf,))
        return new

    def __repr__(self) -> str:
        from .reprs import program_repr  # the repr helpers on first repr

        return program_repr(self)
