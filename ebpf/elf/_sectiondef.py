"""`SecFlags`, `AttachKind` and `SectionDef`: what `lookup_section` returns, made on first
use (process start): loading an object reads the SEC() table as plain rows
(`ebpf.elf.sections`). Public as ``ebpf.elf.sections.SectionDef``, ... (their
`__module__`)."""

from __future__ import annotations

from ebpf._sys.fastclass import FrozenRecord

from .sections import _prog_flags

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from enum import Enum, IntFlag

    from ebpf._sys.types import AttachType, ProgramType
else:
    # the same stdlib classes, made at a fraction of the cost (process start)
    from ebpf._sys.fastclass import Enum, IntFlag

__all__ = ["AttachKind", "SecFlags", "SectionDef"]


class SecFlags(IntFlag):
    """Properties of a section-name pattern."""

    NONE = 0
    #: loading may go on without the expected attach type on a kernel that
    #: refuses it (older kernels load such programs without one)
    EXP_ATTACH_OPT = 1
    #: a program type that BPF_PROG_ATTACH attaches (kept for reference; nothing here uses it)
    ATTACHABLE = 2
    ATTACHABLE_OPT = ATTACHABLE | EXP_ATTACH_OPT
    #: the name's target is looked up in BTF: a kernel function, tracepoint,
    #: LSM hook or another program
    ATTACH_BTF = 4
    #: loaded with ``BPF_F_SLEEPABLE``
    SLEEPABLE = 8
    #: loaded with ``BPF_F_XDP_HAS_FRAGS``: the program sees multi-buffer packets
    XDP_FRAGS = 16
    #: a USDT probe: uprobes on the note's addresses (one uprobe_multi link where possible)
    USDT = 32


class AttachKind(Enum):
    """Which automatic attacher, if any, takes a section's programs."""

    #: none: the hook needs something the name cannot say (an interface, a
    #: cgroup, a socket; struct_ops attach through their map)
    NONE = "none"
    KPROBE = "kprobe"
    KSYSCALL = "ksyscall"
    KPROBE_MULTI = "kprobe_multi"
    KPROBE_SESSION = "kprobe_session"
    UPROBE = "uprobe"
    UPROBE_MULTI = "uprobe_multi"
    USDT = "usdt"
    TRACEPOINT = "tracepoint"
    RAW_TRACEPOINT = "raw_tracepoint"
    #: fentry/fexit/fmod_ret/tp_btf/freplace: one tracing link to the target named
    TRACING = "tracing"
    LSM = "lsm"
    ITER = "iter"


# Kinds whose attacher skips a bare section name (e.g. SEC("kprobe")): the
# target must then be given at attach time.
_NEEDS_TARGET = frozenset({
    AttachKind.KPROBE, AttachKind.KSYSCALL, AttachKind.KPROBE_MULTI, AttachKind.KPROBE_SESSION,
    AttachKind.UPROBE, AttachKind.UPROBE_MULTI, AttachKind.USDT, AttachKind.TRACEPOINT,
    AttachKind.RAW_TRACEPOINT,
})
_RETPROBES = frozenset({
    "kretprobe+", "uretprobe+", "uretprobe.s+", "kretsyscall+", "kretprobe.multi+",
    "uretprobe.multi+", "uretprobe.multi.s+",
})
_MULTI = frozenset({AttachKind.KPROBE_MULTI, AttachKind.KPROBE_SESSION, AttachKind.UPROBE_MULTI})


class SectionDef(FrozenRecord):
    """What a program's section name says about it."""

    # a FrozenRecord, not a dataclass: `dataclasses` costs process start ~1 ms a class
    _FIELDS = ("section", "pattern", "program_type", "attach_type", "attach_to", "flags",
                 "kind", "autoload")
    __slots__ = _FIELDS

    #: the section name without a leading "?"
    section: str
    #: the table entry that matched, e.g. "kprobe+" or "cgroup/connect4"
    pattern: str
    program_type: ProgramType
    #: the expected attach type passed at load time, or None for none
    attach_type: AttachType | None
    #: the attach target written after "<prefix>/" (None for a bare name):
    #: "do_unlinkat", "sched/sched_switch", "libc.so.6:malloc", "task", ...
    attach_to: str | None
    #: the properties of the matching pattern
    flags: SecFlags
    #: which auto-attacher handles the program
    kind: AttachKind
    #: False when the name started with "?" (program not loaded by default)
    autoload: bool

    def __init__(self, section: str, pattern: str, program_type: ProgramType,
                 attach_type: AttachType | None, attach_to: str | None, flags: SecFlags,
                 kind: AttachKind, autoload: bool = True) -> None:
        self._init_fields(section, pattern, program_type, attach_type, attach_to, flags, kind,
                          autoload)

    @property
    def sleepable(self) -> bool:
        """The program may sleep (loaded with ``BPF_F_SLEEPABLE``)."""
        return bool(self.flags & SecFlags.SLEEPABLE)

    @property
    def xdp_frags(self) -> bool:
        """An XDP program for multi-buffer packets (``BPF_F_XDP_HAS_FRAGS``)."""
        return bool(self.flags & SecFlags.XDP_FRAGS)

    @property
    def attach_btf(self) -> bool:
        """The attach target is resolved to a BTF id at load time (fentry, lsm, iter, ...)."""
        return bool(self.flags & SecFlags.ATTACH_BTF)

    @property
    def attach_type_optional(self) -> bool:
        """The expected attach type may be dropped on kernels that reject it."""
        return bool(self.flags & SecFlags.EXP_ATTACH_OPT)

    @property
    def usdt(self) -> bool:
        """A USDT probe."""
        return bool(self.flags & SecFlags.USDT)

    @property
    def multi(self) -> bool:
        """Attached through a multi link (kprobe.multi, kprobe.session, uprobe.multi,
        uprobe.session)."""
        return self.kind in _MULTI

    @property
    def session(self) -> bool:
        """A session probe: one program run on entry and on return (kprobe.session,
        uprobe.session)."""
        return self.attach_type is not None and self.attach_type.name in (
            "TRACE_KPROBE_SESSION", "TRACE_UPROBE_SESSION")

    @property
    def retprobe(self) -> bool:
        """A return probe (kretprobe, uretprobe, kretsyscall and their multi forms)."""
        return self.pattern in _RETPROBES

    @property
    def auto_attach(self) -> bool:
        """libbpf would attach this program automatically (skeleton ``attach()``).

        True when the kind has an attacher and the name carries what it needs;
        a bare ``SEC("kprobe")`` or ``SEC("tp")`` is not auto-attached.
        """
        if self.kind is AttachKind.NONE:
            return False
        return self.attach_to is not None or self.kind not in _NEEDS_TARGET

    @property
    def prog_flags(self) -> int:
        """The ``BPF_PROG_LOAD`` flags the section implies."""
        return _prog_flags(self.flags)


for _cls in (SecFlags, AttachKind, SectionDef):
    _cls.__module__ = "ebpf.elf.sections"  # where they are public (reprs, pickles, docs)
