"""CO-RE: relocate a program's field offsets, sizes, type ids and enum values
to the types of the kernel it runs on.

clang records, for every instruction whose immediate or offset depends on a
kernel type, a `CoreRelo` in ``.BTF.ext``: the local (object BTF) type, an
access string ("0:12:3" = root[0], its member #12, element 3) and what to
compute (`CoreReloKind`). `relocate` looks the local type up by name in the
target BTF (the running kernel's vmlinux and module BTF, or an external file),
follows the same access path through each candidate and patches the
instruction with the value the target gives.

How it works here:

* the local access string is read into an *access path*: array subscripts and
  member *names* (anonymous structs/unions on the way add their offset but no
  step, since the target may nest its members differently);
* candidates are the target types of the local type's kind whose name, without
  a ``___flavor`` suffix, equals the local name without its suffix
  (``task_struct___old`` -> ``task_struct``; ``nf_conn___init`` in the kernel
  counts as ``nf_conn``); vmlinux is searched first, module BTF only when
  vmlinux has none;
* the path is walked through each candidate (`_Landing`): a member is found by
  name, also inside anonymous members, and must have a type compatible with the
  local member's; a subscript must stay within the array (flexible arrays
  excepted). The landing gives the bit offset, the trail of member indices and
  the member or element reached; type relocations compare whole types instead
  (compatible, or "matches" for ``bpf_core_type_matches``), enum relocations
  look the enumerator up by name;
* each relocation kind turns a landing into a value (`_Outcome`: local and
  target value, whether the instruction is checked against the local value,
  how a load's size changes). Candidates that match must agree on the outcome,
  otherwise the relocation is ambiguous (`CoreError`); candidates that match
  nothing are dropped for the object's later relocations of the same type;
* a relocation that cannot be satisfied (a missing field or enumerator, a load
  whose size changed in a way that cannot be adjusted) poisons its
  instruction: it becomes ``call 0xbad2310``, which the verifier accepts in
  dead code (a branch guarded by ``bpf_core_field_exists`` & co.) and rejects
  with "invalid func unknown#195896080" when reachable; `explain_poison` turns
  that log into a message naming the relocation.

tests/test_core_differential.py checks every relocation of the real-world
corpus and of the test objects against what libbpf does with them. One
deliberate difference: libbpf sign-extends every 32-bit enumerator, so an
unsigned one >= 2**31 read as a 64-bit value never matches the instruction
clang emitted and libbpf refuses the object; here values are extended as the
enum's signedness says, and such relocations work.

Usage (what the program loader does)::

    ext = btf.ext.parse_ext(elf_btf_ext_bytes, local_spec)
    insns = asm.decode(section_bytes)
    relos = core.index_relos(insns, ext.core_relos[section_name], section_name)
    results = core.relocate(insns, relos, local_spec, core.kernel_targets())
    # or, against an external BTF file (BTFHub):  ..., btf.load_spec(path))
"""

from __future__ import annotations

import _thread  # (threading's RLock, without importing threading: process start)
import functools
import sys
import weakref
from collections.abc import Callable, Iterable, Sequence

import ebpf._lazyattr as _lazyattr

from .._sys import forking as _forking
from .._sys.types import CoreReloKind
from ..errors import BTFError
from .ext import CoreRelo
from .spec import Spec
from .types import (
    Array,
    Composite,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Float,
    Fwd,
    Int,
    Kind,
    Member,
    Pointer,
    Restrict,
    Type,
    Typedef,
    TypeTag,
    Var,
    Void,
    Volatile,
    skip_typedefs,
)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any, TypeAlias, overload

    from ..asm import Instruction
    from ._core_explain import explain_poison as explain_poison

    # Plain tuples, not record classes (process start: a class costs ~0.1 M instructions):
    # one step of an access path: (name, number, local type): a subscript (name None,
    # number the element) or a member by name (number its position in the local type)
    _Step: TypeAlias = "tuple[str | None, int, Type | None]"
    # a member reachable by name from a struct/union, maybe inside anonymous ones:
    # (member indices from the outer type down to it, bit offset from the outer type, stop)
    _Place: TypeAlias = "tuple[tuple[int, ...], int, _AtMember]"
    # a target type the local type may correspond to: (target number, type id)
    _Candidate: TypeAlias = "tuple[int, int]"
    # a candidate that matches: (candidate, landing, outcome)
    _Choice: TypeAlias = "tuple[_Candidate, _Landing, _Outcome]"
    # a load/store of a field whose size differs in the target: (local size, target
    # size, whether it can be adjusted (pointers and unsigned integers), local label,
    # target label)
    _Resize: TypeAlias = "tuple[int, int, bool, str, str]"
    # new fields of one instruction, applied once every relocation succeeded: (index,
    # poison, why it is poisoned when patching found it, opcode, off, imm)
    _Patch: TypeAlias = "tuple[int, bool, str | None, int | None, int | None, int | None]"
    # the storage behind a field access, as a program reads it: (byte offset and size of
    # the load that reaches the field, bit offset of its first bit, bit size, whether it
    # is a bitfield, the member's or element's type without typedefs, whether the path
    # ends at an array element (or at the root))
    _Field: TypeAlias = "tuple[int, int, int, int, bool, Type, bool]"
    _Stop: TypeAlias = "_AtMember | _AtElement | _AtEnumerator | None"

__all__ = [
    "POISON_IMM",
    "CoreCache",
    "CoreError",
    "CoreResult",
    "KernelTargets",
    "essential_name",
    "explain_poison",
    "index_relos",
    "kernel_targets",
    "relocate",
    "relocate_instructions",
]

POISON_IMM = 0xBAD2310
"""The helper id of a poisoned instruction (``call 195896080``, "bad relo")."""


_U64 = (1 << 64) - 1
_MAX_PATH = 64      # longest access path (and trail through a target) accepted
_MAX_NESTING = 32   # deepest chain of typedefs/arrays/pointers followed
_POINTER_SIZE = 8
_SIGNED = 1  # IntEncoding.SIGNED (an Int's raw `_encoding`: no IntEncoding class made)

_FIELD_KINDS = frozenset((
    CoreReloKind.FIELD_BYTE_OFFSET, CoreReloKind.FIELD_BYTE_SIZE, CoreReloKind.FIELD_EXISTS,
    CoreReloKind.FIELD_SIGNED, CoreReloKind.FIELD_LSHIFT_U64, CoreReloKind.FIELD_RSHIFT_U64))
_TYPE_KINDS = frozenset((
    CoreReloKind.TYPE_ID_LOCAL, CoreReloKind.TYPE_ID_TARGET, CoreReloKind.TYPE_EXISTS,
    CoreReloKind.TYPE_MATCHES, CoreReloKind.TYPE_SIZE))
_ENUM_KINDS = frozenset((CoreReloKind.ENUMVAL_EXISTS, CoreReloKind.ENUMVAL_VALUE))

_KIND_NAMES = {
    CoreReloKind.FIELD_BYTE_OFFSET: "byte_off",
    CoreReloKind.FIELD_BYTE_SIZE: "byte_sz",
    CoreReloKind.FIELD_EXISTS: "field_exists",
    CoreReloKind.FIELD_SIGNED: "signed",
    CoreReloKind.FIELD_LSHIFT_U64: "lshift_u64",
    CoreReloKind.FIELD_RSHIFT_U64: "rshift_u64",
    CoreReloKind.TYPE_ID_LOCAL: "local_type_id",
    CoreReloKind.TYPE_ID_TARGET: "target_type_id",
    CoreReloKind.TYPE_EXISTS: "type_exists",
    CoreReloKind.TYPE_MATCHES: "type_matches",
    CoreReloKind.TYPE_SIZE: "type_size",
    CoreReloKind.ENUMVAL_EXISTS: "enumval_exists",
    CoreReloKind.ENUMVAL_VALUE: "enumval_value",
}


class CoreError(BTFError):
    """A CO-RE relocation cannot be applied: malformed, ambiguous, or the
    instruction does not hold the value the compiler should have put there.
    The message names the relocation's type and field path."""


class CoreResult:
    """What one relocation did, for debugging and ``ebpf inspect``.

    `index` is the instruction's position in the list given to `relocate` and
    `slot` its offset in 8-byte slots (the verifier's instruction numbers);
    `description` the local type and field path (``struct task_struct.pid``),
    `target` the matched target type (``[114] struct task_struct in vmlinux``)
    or None, `local_value`/`target_value` the value the compiler assumed and
    the relocated one (u64), `poisoned` whether the instruction was replaced
    by ``call 0xbad2310`` and `reason` why.
    """

    __slots__ = ("access", "candidates", "description", "index", "kind", "local_type_id",
                 "local_value", "poisoned", "reason", "slot", "target", "target_type_id",
                 "target_value")

    def __init__(self, index: int, slot: int, kind: CoreReloKind, local_type_id: int,
                 access: str, description: str, local_value: int, target_value: int,
                 poisoned: bool = False, reason: str | None = None, target: str | None = None,
                 target_type_id: int | None = None, candidates: int = 0) -> None:
        self.index = index
        self.slot = slot
        self.kind = kind
        self.local_type_id = local_type_id
        self.access = access
        self.description = description
        self.local_value = local_value
        self.target_value = target_value
        self.poisoned = poisoned
        self.reason = reason
        self.target = target
        self.target_type_id = target_type_id
        self.candidates = candidates

    @property
    def kind_name(self) -> str:
        """libbpf's short name of the kind ("byte_off", "field_exists", ...)."""
        return _KIND_NAMES.get(self.kind, str(int(self.kind)))

    def __repr__(self) -> str:
        return f"<CoreResult {self}>"

    def __str__(self) -> str:
        head = f"insn {self.slot}: <{self.kind_name}> {self.description}"
        if self.poisoned:
            return f"{head}: poisoned ({self.reason})"
        return f"{head}: {self.local_value} -> {self.target_value}"


class CoreCache:
    """What the relocations of one object share: the candidate target types of
    each local type (candidates that fail to match a relocation are dropped for
    the object's later relocations, as libbpf does) and the outcome of each
    relocation already resolved, so that loading the same object again (a
    template with new constants) skips type matching.

    Pass the same cache to every `relocate` call of one object; it resets
    itself when used with a different local BTF or target list. Calls from
    several threads (the programs of one object loaded at once) take turns on
    it, so that each sees the candidates the others pruned as a later call
    would. It holds the BTF specs only through weak references (candidates are
    kept as target number and type id, outcomes as plain values), so a cache
    stored under a spec never keeps that spec alive.
    """

    __slots__ = ("__weakref__", "_local", "_lock", "_targets", "cands", "decisions")

    def __init__(self) -> None:
        self._local: weakref.ref[Spec] | None = None
        self._targets: tuple[weakref.ref[Any], ...] = ()
        self.cands: dict[int, list[_Candidate]] = {}
        self.decisions: dict[tuple[int, int, str], _Decision] = {}
        # (held by `relocate`; a child forked while another thread holds it gets a free one)
        self._lock = _forking.new_lock(self, "_lock", _thread.RLock)

    def _bind(self, local: Spec, targets: Sequence[Spec]) -> None:
        """Start afresh unless the cache was last used for `local` and `targets`."""
        if (self._local is not None and self._local() is local
                and self._targets_are(targets)):
            return
        self._local = weakref.ref(local)
        self._targets = _target_refs(targets)
        self.cands = {}
        self.decisions = {}

    def first_target_only(self) -> bool:
        """Whether every relocation resolved with this cache so far found its candidates
        in the first target (vmlinux) and so consulted no other: their outcomes depend
        on that target alone, not on which modules are loaded."""
        # (a copy of the values, at C speed: another thread may add to the dict)
        return all(cands and cands[0][0] == 0 for cands in list(self.cands.values()))

    def _targets_are(self, targets: Sequence[Spec]) -> bool:
        if isinstance(targets, KernelTargets):   # one object, whose modules load lazily
            return len(self._targets) == 1 and self._targets[0]() is targets
        return (len(self._targets) == len(targets)
                and all(ref() is spec for ref, spec in zip(self._targets, targets,
                                                            strict=False)))


def _target_refs(targets: Sequence[Spec]) -> tuple[weakref.ref[Any], ...]:
    if isinstance(targets, KernelTargets):
        return (weakref.ref(targets),)
    return tuple(weakref.ref(spec) for spec in targets)


class KernelTargets(Sequence[Spec]):
    """The running kernel's BTF as CO-RE targets: vmlinux first, then every
    module with BTF (``/sys/kernel/btf/<module>``), each loaded only when a
    relocation finds no candidate in vmlinux. `names` labels them."""

    def __init__(self, modules: Sequence[str] | None = None) -> None:
        if modules is None:
            from .kernel import kernel_module_names  # the kernel's BTF only when relocating

            modules = kernel_module_names()
        self.names = ["vmlinux", *modules]
        self._specs: dict[int, Spec] = {}

    def __len__(self) -> int:
        return len(self.names)

    if TYPE_CHECKING:  # (typing's overloads for type checkers only: process start)
        @overload
        def __getitem__(self, i: int) -> Spec: ...
        @overload
        def __getitem__(self, i: slice) -> list[Spec]: ...

    def __getitem__(self, i: int | slice) -> Spec | list[Spec]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        spec = self._specs.get(i)
        if spec is None:
            # the kernel's BTF only when relocating against it
            from .kernel import load_kernel_module_spec, load_kernel_spec

            spec = load_kernel_spec() if i == 0 else load_kernel_module_spec(self.names[i])
            self._specs[i] = spec
        return spec

    def __repr__(self) -> str:
        return f"<KernelTargets {', '.join(self.names)}>"


_kernel_targets: KernelTargets | None = None


def kernel_targets() -> KernelTargets:
    """The running kernel's vmlinux and module BTF as CO-RE targets (cached while
    the set of modules with BTF stays the same: a module loaded later is a target)."""
    global _kernel_targets
    from .kernel import kernel_module_names  # the kernel's BTF only when relocating against it

    modules = kernel_module_names()
    if _kernel_targets is None or _kernel_targets.names[1:] != modules:
        _kernel_targets = KernelTargets(modules)
    return _kernel_targets


# -- names ------------------------------------------------------------------------

@functools.lru_cache(maxsize=1 << 16)
def essential_name(name: str) -> str:
    """`name` without its flavor suffix: the part before the last ``___``
    that is neither preceded nor followed by another underscore."""
    at = name.rfind("___")
    while at > 0:
        # (no regular expression: process start)
        if name[at - 1] != "_" and at + 3 < len(name) and name[at + 3] != "_":
            return name[:at]
        at = name.rfind("___", 0, at + 2)
    return name


def _same_essential_name(local: str, target: str) -> bool:
    """Names correspond: equal without flavors, or both anonymous."""
    if not target or not local:
        return not target and not local
    return essential_name(local) == essential_name(target)


def _on_spec(spec: Spec, attr: str) -> dict[Any, Any]:
    """A cache stored on `spec` itself: its entries may refer to the spec's types (which
    refer to the spec) and still die with it."""
    cache: dict[Any, Any] = vars(spec).setdefault(attr, {})
    return cache


def _flavors(spec: Spec, essential: str) -> list[str]:
    """The flavored names (``x___y``) in `spec`'s own strings whose essential name is
    `essential` (a flavored name starts with its essential name and ``___``: only those
    are looked at, not all of the kernel's)."""
    prefix = essential + "___"
    return [name for name in spec.flavored_names()
            if name.startswith(prefix) and essential_name(name) == essential]


def _ids_named(spec: Spec, essential: str) -> list[int]:
    """Ids of `spec`'s own types (not its base's) whose essential name is `essential`."""
    known = _on_spec(spec, "_core_ids_by_essential_name")
    ids = known.get(essential)
    if ids is None:
        names = [essential]
        s: Spec | None = spec
        while s is not None:    # a flavored name may be stored in a base's strings
            names += _flavors(s, essential)
            s = s.base
        own_from = len(spec.base) if spec.base is not None else 1
        ids = known[essential] = sorted({i for n in names for i in spec.ids_by_name(n)
                                         if i >= own_from})
    return ids


# -- types ------------------------------------------------------------------------

class _Refused(Exception):
    """The relocation is malformed or cannot be decided; becomes a CoreError."""


def _resolved(t: Type) -> Type:
    """`t` without typedefs and qualifiers."""
    try:
        return skip_typedefs(t)
    except BTFError as e:
        raise _Refused(str(e)) from None


_KIND_WORDS = {Kind.UNKN: "void", Kind.INT: "int", Kind.PTR: "ptr", Kind.ARRAY: "array",
               Kind.STRUCT: "struct", Kind.UNION: "union", Kind.ENUM: "enum", Kind.FWD: "fwd",
               Kind.TYPEDEF: "typedef", Kind.VOLATILE: "volatile", Kind.CONST: "const",
               Kind.RESTRICT: "restrict", Kind.FUNC: "func", Kind.FUNC_PROTO: "func_proto",
               Kind.VAR: "var", Kind.DATASEC: "datasec", Kind.FLOAT: "float",
               Kind.DECL_TAG: "decl_tag", Kind.TYPE_TAG: "type_tag", Kind.ENUM64: "enum"}


def _kind_word(t: Type) -> str:
    return _KIND_WORDS.get(t.kind, "?")


def _label(t: Type) -> str:
    """``struct task_struct``, ``typedef pid_t``, ``union <anon>``."""
    if isinstance(t, Fwd):
        return ("union " if t.union else "struct ") + t.name
    return f"{_kind_word(t)} {t.name or '<anon>'}"


_SIZED = (Int, Composite, Enum, Float, Datasec)
_TRANSPARENT = (Typedef, Var, Volatile, Const, Restrict, TypeTag, DeclTag)


def _byte_size(t: Type) -> int:
    """Bytes `t` occupies, through typedefs, qualifiers and arrays."""
    count = 1
    for _ in range(_MAX_NESTING):
        if isinstance(t, _TRANSPARENT):
            t = t.type
            continue
        if isinstance(t, Array):
            count *= t.nelems
            if count > 0xFFFFFFFF:
                raise _Refused("array size overflows")
            t = t.type
            continue
        if isinstance(t, _SIZED):
            size = count * t.size
            if size > 0xFFFFFFFF:
                raise _Refused(f"size of {_label(t)} overflows")
            return size
        if isinstance(t, Pointer):
            return count * _POINTER_SIZE
        raise _Refused(f"{_label(t)} has no size")
    raise _Refused("type nesting too deep to compute a size")


def _bit_offset_within(t: Type) -> int:
    return t.offset if isinstance(t, Int) else 0


def _member_fits(local: Type, target: Type) -> bool:
    """Whether a target member can stand for a local one of the same name: composites
    of any kind, pointers and floats always; enums and forward declarations with
    corresponding names; integers not shifted within their storage; arrays whose
    elements fit."""
    for _ in range(_MAX_NESTING):
        local, target = _resolved(local), _resolved(target)
        if isinstance(local, Composite):
            return isinstance(target, Composite)
        if local.kind != target.kind:
            return False
        if isinstance(local, (Pointer, Float)):
            return True
        if isinstance(local, (Enum, Fwd)):
            a, b = essential_name(local.name), essential_name(target.name)
            return a == b or not a or not b
        if isinstance(local, Int):
            return _bit_offset_within(local) == 0 == _bit_offset_within(target)
        if isinstance(local, Array) and isinstance(target, Array):
            local, target = local.type, target.type
            continue
        return False
    raise _Refused("type nesting too deep")


# -- access paths -----------------------------------------------------------------

# Where a path stops: at a member, an array element (or the root), an enumerator.
# Small classes of their own, not records (process start: no metaclass, no properties).

class _AtMember(tuple):  # type: ignore[type-arg]  # (a tuple: places compare equal)
    """The member at `position` in `owner`."""

    __slots__ = ()

    def __new__(cls, member: Member, owner: Composite, position: int) -> _AtMember:
        return tuple.__new__(cls, (member, owner, position))

    @property
    def member(self) -> Member:
        """The member."""
        m: Member = self[0]
        return m

    @property
    def owner(self) -> Composite:
        """The struct/union that declares it."""
        o: Composite = self[1]
        return o

    @property
    def position(self) -> int:
        """Its position in `owner`."""
        p: int = self[2]
        return p


class _AtElement:
    """The element (or root) type reached by the last subscript."""

    __slots__ = ("type",)

    def __init__(self, type: Type) -> None:
        self.type = type


class _AtEnumerator:
    """Enumerator #`position` of `enum`."""

    __slots__ = ("enum", "position")

    def __init__(self, enum: Enum, position: int) -> None:
        self.enum, self.position = enum, position


class _Landing:
    """Where an access path leads in one BTF: from `root` (type `root_id`) through
    the member/element indices of `trail`, `bit_offset` bits in, to `stop`."""

    __slots__ = ("bit_offset", "root", "root_id", "shown", "stop", "trail")

    def __init__(self, root_id: int, root: Type) -> None:
        self.root_id = root_id
        self.root = root
        self.trail: list[int] = []
        self.shown: list[str] = []      # the path in C syntax, one piece per step
        self.bit_offset = 0
        self.stop: _Stop = None

    def enter(self, index: int, bits: int, shown: str, stop: _Stop) -> None:
        if len(self.trail) >= _MAX_PATH:
            raise _Refused("struct/union/array nesting too deep")
        self.trail.append(index)
        self.bit_offset += bits
        if shown:
            self.shown.append(shown)
        self.stop = stop

    def path(self) -> str:
        """C-like view: ``struct task_struct.comm[3]``, ``enum e::VAL``."""
        return _label(self.root) + "".join(self.shown)

    def detail(self) -> str:
        """The path with the indices and offset it resolved to."""
        where = f"{self.bit_offset // 8}"
        if self.bit_offset % 8:
            where += f".{self.bit_offset % 8}"
        return f"{self.path()} ({':'.join(map(str, self.trail))} @ offset {where})"


def _subscript_shown(position: int, index: int) -> str:
    return "" if position == 0 and index == 0 else f"[{index}]"


def _is_number(part: str) -> bool:
    """`part` is decimal digits, maybe signed, maybe with whitespace around."""
    part = part.strip()
    if part[:1] in ("+", "-"):
        part = part[1:]
    return part.isdecimal()


@functools.lru_cache(maxsize=4096)
def _access_numbers(access: str) -> tuple[int, ...]:
    """"0:12:3" -> (0, 12, 3)."""
    parts = access.split(":")
    if not all(map(_is_number, parts)):
        raise _Refused(f"bad access string {access!r}")
    numbers = tuple(map(int, parts))
    if len(numbers) > _MAX_PATH:
        raise _Refused(f"access string {access!r} is too long")
    return numbers


def _is_flexible(array: Array, after: _Stop) -> bool:
    """An array without elements that is the last member of its struct."""
    return (array.nelems == 0 and isinstance(after, _AtMember)
            and after.position == after.owner._member_count() - 1)


def _read_local(local: Spec, relo: CoreRelo) -> tuple[_Landing, list[_Step]]:
    """The relocation's access path, checked against the local type, and where it
    leads there."""
    try:
        root = local._type_for_core(relo.type_id)
    except BTFError as e:
        raise _Refused(str(e)) from None
    landing = _Landing(relo.type_id, root)
    if relo.kind in _TYPE_KINDS:
        if relo.access != "0":
            raise _Refused(f"type relocation with access string {relo.access!r} "
                           "(expected '0')")
        return landing, []
    numbers = _access_numbers(relo.access)
    if relo.kind in _ENUM_KINDS:
        enum = _resolved(root)
        if not isinstance(enum, Enum) or len(numbers) > 1 or not 0 <= numbers[0] < len(
                enum.values):
            raise _Refused(f"enum value access {relo.access!r} does not fit {_label(enum)}")
        name = enum.values[numbers[0]].name
        landing.enter(numbers[0], 0, f"::{name}", _AtEnumerator(enum, numbers[0]))
        return landing, [(name, numbers[0], None)]
    if relo.kind not in _FIELD_KINDS:
        raise _Refused(f"unknown relocation kind {relo.kind}")
    if any(n < 0 for n in numbers):
        raise _Refused(f"negative index in access string {relo.access!r}")
    return landing, _walk_local(landing, numbers, relo.access)


def _walk_local(landing: _Landing, numbers: tuple[int, ...], access: str) -> list[_Step]:
    here = _resolved(landing.root)
    landing.enter(numbers[0], numbers[0] * _byte_size(here) * 8,
                  _subscript_shown(0, numbers[0]), _AtElement(here))
    steps: list[_Step] = [(None, numbers[0], None)]
    for position, n in enumerate(numbers[1:], 1):
        here = _resolved(here)
        if isinstance(here, Composite):
            if n >= here._member_count():
                raise _Refused(f"{_label(here)} has no member #{n}")
            m = here._member_at(n)
            if m.name:    # anonymous members: their offset counts, they are no step
                steps.append((m.name, n, m.type))
                landing.enter(n, m.offset_bits, f".{m.name}", _AtMember(m, here, n))
            else:
                landing.enter(n, m.offset_bits, "", landing.stop)
            here = m.type
        elif isinstance(here, Array):
            element = _resolved(here.type)
            if n >= here.nelems and not _is_flexible(here, landing.stop):
                raise _Refused(f"index {n} out of bounds of a {here.nelems}-element array")
            steps.append((None, n, None))
            landing.enter(n, n * _byte_size(element) * 8, _subscript_shown(position, n),
                          _AtElement(element))
            here = element
        else:
            raise _Refused(f"access {access!r} (at position {position}) goes through "
                           f"{_label(here)}, which is neither a struct/union nor an array")
    return steps


def _land(kind: CoreReloKind, local: _Landing, steps: Sequence[_Step], target: Spec,
          root_id: int, root: Type) -> _Landing | None:
    """Follow the local access path through the target type `root`; None when the
    target has no such field, enumerator or compatible type."""
    landing = _Landing(root_id, root)
    if kind in _TYPE_KINDS:
        # (type relocations only: field relocations do not load it, process start)
        from ._core_types import types_compatible, types_match

        same = types_match if kind == CoreReloKind.TYPE_MATCHES else types_compatible
        return landing if same(local.root, root) else None
    if kind in _ENUM_KINDS:
        return _land_enumerator(landing, steps[0][0] or "")
    here = root
    for position, (name, number, local_type) in enumerate(steps):
        here = _resolved(here)
        if name is not None:
            found = _find_member(target, here, name, local_type)
            if found is None:
                return None
            trail, bits, stop = found
            for n in trail[:-1]:
                landing.enter(n, 0, "", landing.stop)
            landing.enter(trail[-1], bits, f".{name}", stop)
            here = stop.member.type
            continue
        if position > 0:
            if not isinstance(here, Array):
                return None
            if number >= here.nelems and not _is_flexible(here, landing.stop):
                return None
            here = _resolved(here.type)
        landing.enter(number, number * _byte_size(here) * 8,
                      _subscript_shown(position, number), _AtElement(here))
    return landing


def _land_enumerator(landing: _Landing, name: str) -> _Landing | None:
    enum = _resolved(landing.root)
    if not isinstance(enum, Enum):
        return None
    wanted = essential_name(name)
    for i, v in enumerate(enum.values):
        if essential_name(v.name) == wanted:
            landing.enter(i, 0, f"::{v.name}", _AtEnumerator(enum, i))
            return landing
    return None


# -- finding a member by name -----------------------------------------------------------

# Names looked up one by one in a struct/union before all of its members are indexed.
_NAMES_BEFORE_INDEX = 8


def _places_named(spec: Spec, outer: Composite, name: str) -> list[_Place]:
    """The members called `name` of `outer`, its anonymous members included, in
    declaration order (an anonymous member's contents where it is declared). Cached on
    `spec`: the first few names by a scan of the members for each (a relocated struct
    is often big, e.g. task_struct, and only a few of its members are asked for), then
    every name at once."""
    cache = _on_spec(spec, "_core_member_places")
    hit = cache.get(id(outer))
    if hit is None or hit[0] is not outer:
        # holding `outer` keeps its id unique; [places by name, names scanned or -1 once
        # every name is in]
        hit = cache[id(outer)] = (outer, {}, [0])
    places: dict[str, list[_Place]] = hit[1]
    found = places.get(name)
    if found is not None:
        return found
    scanned = hit[2]
    if scanned[0] < 0:
        return []
    if scanned[0] < _NAMES_BEFORE_INDEX:
        one: dict[str, list[_Place]] = {}
        _collect_places(outer, (), 0, one, name)
        scanned[0] += 1
        found = places[name] = one.get(name, [])
        return found
    every: dict[str, list[_Place]] = {}
    _collect_places(outer, (), 0, every, None)
    places.clear()
    places.update(every)
    scanned[0] = -1
    return places.get(name, [])


def _collect_places(owner: Composite, trail: tuple[int, ...], base: int,
                    places: dict[str, list[_Place]], only: str | None) -> None:
    """Add the members of `owner` (those called `only`, unless None) to `places`."""
    if len(trail) >= _MAX_PATH:
        raise _Refused("struct/union nesting too deep")
    if only is None:
        pairs: Iterable[tuple[int, Member]] = enumerate(owner.members)
    else:  # (without decoding every member of a big struct: those called `only` and
        # the anonymous ones, in declaration order)
        at = owner._member_at
        pairs = [(i, at(i)) for i in sorted(owner._positions(only) + owner._positions(""))]
    for i, m in pairs:
        if m.name:
            if only is None or m.name == only:
                places.setdefault(m.name, []).append(
                    ((*trail, i), base + m.offset_bits, _AtMember(m, owner, i)))
            continue
        inner = _resolved(m.type)
        if isinstance(inner, Composite):
            _collect_places(inner, (*trail, i), base + m.offset_bits, places, only)


def _find_member(spec: Spec, here: Type, name: str,
                 local_type: Type | None) -> tuple[tuple[int, ...], int, _AtMember] | None:
    """The member `name` of struct/union `here` whose type fits `local_type`.

    Members are tried in declaration order, anonymous members' contents in place. A
    member of that name that does not fit ends the search of the struct/union that
    declares it: in `here` itself the member is missing, inside an anonymous member
    the search goes on after that anonymous member."""
    if not isinstance(here, Composite):
        return None
    places = _places_named(spec, here, name)
    if not places:
        return None
    assert local_type is not None
    abandoned: tuple[int, ...] | None = None
    for trail, bit_offset, stop in places:
        if abandoned is not None and trail[:len(abandoned)] == abandoned:
            continue
        if _member_fits(local_type, stop.member.type):
            return trail, bit_offset, stop
        if len(trail) == 1:
            return None
        abandoned = trail[:-1]
    return None


# -- outcomes ---------------------------------------------------------------------

class _Outcome:
    """What a relocation resolves to: the value clang assumed and the target's.
    Plain values only: outcomes are kept in `CoreCache.decisions`."""

    __slots__ = ("checked", "local_value", "poisoned", "reason", "resize", "target_value")

    def __init__(self, local_value: int, target_value: int, poisoned: bool = False,
                 reason: str | None = None, checked: bool = True,
                 resize: _Resize | None = None) -> None:
        self.local_value = local_value
        self.target_value = target_value
        self.poisoned = poisoned
        self.reason = reason
        self.checked = checked      # the instruction must hold `local_value`
        self.resize = resize


def _field_at(landing: _Landing) -> _Field:
    stop, bits = landing.stop, landing.bit_offset
    if isinstance(stop, _AtElement):
        size = _byte_size(stop.type)
        return (bits // 8, size, bits, size * 8, False, stop.type, True)
    assert isinstance(stop, _AtMember)
    member, t = stop.member, _resolved(stop.member.type)
    if member.bitfield_size == 0:
        size = _byte_size(t)
        return (bits // 8, size, bits, size * 8, False, t, False)
    start, size = _bitfield_load(member, t, bits)
    return (start, size, bits, member.bitfield_size, True, t, False)


def _bitfield_load(member: Member, t: Type, bits: int) -> tuple[int, int]:
    """(byte offset, size) of the smallest aligned load, at least as wide as the
    bitfield's declared type, that holds all of its bits."""
    if not isinstance(t, (Int, Enum)):
        raise _Refused(f"bitfield {member.name!r} of {_label(t)}")
    if t.size <= 0:
        raise _Refused(f"bitfield {member.name!r} of zero size")
    size = t.size
    while True:
        start = bits // 8 // size * size
        if bits + member.bitfield_size <= (start + size) * 8:
            return start, size
        if size >= 8:
            raise _Refused(f"bitfield {member.name!r} cannot be read with a 64-bit load")
        size *= 2


def _is_signed(t: Type) -> bool:
    if isinstance(t, Enum):
        return t.signed
    return isinstance(t, Int) and bool(t._encoding & _SIGNED)


def _left_shift(f: _Field) -> int:
    """Shift that puts the field's last bit at the top of a u64 holding the load."""
    byte_offset, byte_size, bit_offset, bit_size = f[:4]
    within = bit_offset - byte_offset * 8
    if sys.byteorder == "little":
        return 64 - (within + bit_size)
    return (8 - byte_size) * 8 + within

# kinds whose instruction is not checked against the local value of a bitfield
# (clang cannot know the load a bitfield needs)
_UNCHECKED_FOR_BITFIELDS = frozenset((CoreReloKind.FIELD_BYTE_OFFSET,
                                      CoreReloKind.FIELD_BYTE_SIZE,
                                      CoreReloKind.FIELD_LSHIFT_U64))


def _field_value(kind: CoreReloKind, f: _Field) -> int:
    byte_offset, byte_size, _, bit_size, _, t, element = f
    if kind == CoreReloKind.FIELD_BYTE_OFFSET:
        return byte_offset
    if kind == CoreReloKind.FIELD_BYTE_SIZE:
        return byte_size
    if element:
        raise _Refused(f"relocation {_KIND_NAMES[kind]} cannot be applied to an array element")
    if kind == CoreReloKind.FIELD_SIGNED:
        return int(_is_signed(t))
    if kind == CoreReloKind.FIELD_LSHIFT_U64:
        return _left_shift(f)
    if kind == CoreReloKind.FIELD_RSHIFT_U64:
        return 64 - bit_size
    raise KeyError(kind)


def _loaded_type(kind: CoreReloKind, f: _Field) -> Type | None:
    """The type a load at the relocated offset reads, when its size matters."""
    if kind != CoreReloKind.FIELD_BYTE_OFFSET or f[4]:  # (a bitfield)
        return None
    return f[5]


def _resize(kind: CoreReloKind, local: _Field, target: _Field) -> _Resize | None:
    lt, tt = _loaded_type(kind, local), _loaded_type(kind, target)
    ls = local[1] if lt is not None else 0   # (the loads' byte sizes)
    ts = target[1] if tt is not None else 0
    if ls == ts:
        return None
    possible = (isinstance(lt, Pointer) and isinstance(tt, Pointer)) or (
        isinstance(lt, Int) and isinstance(tt, Int)
        and lt._encoding != _SIGNED and tt._encoding != _SIGNED)
    return (ls, ts, possible, _label(lt or Void()), _label(tt or Void()))


def _field_outcome(kind: CoreReloKind, local: _Landing, target: _Landing | None) -> _Outcome:
    if kind == CoreReloKind.FIELD_EXISTS:
        return _Outcome(1, int(target is not None))
    lf = _field_at(local)
    value = _field_value(kind, lf)
    checked = not (lf[4] and kind in _UNCHECKED_FOR_BITFIELDS)  # (a bitfield)
    if target is None:
        return _Outcome(value, 0, poisoned=True, checked=checked)
    tf = _field_at(target)
    return _Outcome(value, _field_value(kind, tf), checked=checked,
                    resize=_resize(kind, lf, tf))


def _type_value(kind: CoreReloKind, landing: _Landing) -> int:
    if kind == CoreReloKind.TYPE_ID_TARGET:
        return landing.root_id
    if kind == CoreReloKind.TYPE_SIZE:
        return _byte_size(landing.root)
    return 1    # TYPE_EXISTS, TYPE_MATCHES


def _type_outcome(kind: CoreReloKind, local: _Landing, target: _Landing | None) -> _Outcome:
    local_value = _type_value(kind, local)
    target_value = _type_value(kind, target) if target is not None else 0
    return _Outcome(local_value, target_value, checked=kind != CoreReloKind.TYPE_ID_TARGET)


def _enumerator_value(landing: _Landing) -> int:
    """The enumerator's value as a u64, extended as the enum's signedness says.

    libbpf (up to at least 1.6) sign-extends every 32-bit enumerator, so an
    unsigned value >= 2**31 loaded with a 64-bit immediate never matches what
    clang emitted (zero-extended) and the object fails to load; zero-extending
    unsigned values (as the BTF says they are) relocates them correctly.
    """
    stop = landing.stop
    assert isinstance(stop, _AtEnumerator)
    return stop.enum.values[stop.position].value & _U64


def _enum_outcome(kind: CoreReloKind, local: _Landing, target: _Landing | None) -> _Outcome:
    if kind == CoreReloKind.ENUMVAL_EXISTS:
        return _Outcome(1, int(target is not None))
    value = _enumerator_value(local)
    if target is None:
        return _Outcome(value, 0, poisoned=True)
    return _Outcome(value, _enumerator_value(target))


def _outcome(kind: CoreReloKind, local: _Landing, target: _Landing | None) -> _Outcome:
    if kind in _FIELD_KINDS:
        return _field_outcome(kind, local, target)
    if kind in _TYPE_KINDS:
        return _type_outcome(kind, local, target)
    return _enum_outcome(kind, local, target)


# -- candidates -------------------------------------------------------------------

def _candidates(root: Type, targets: Sequence[Spec]) -> list[_Candidate]:
    """Target types of the same kind whose essential name is the local type's;
    vmlinux (targets[0]) first, module BTF only when vmlinux has none."""
    essential = essential_name(root.name)
    found: list[_Candidate] = []
    for n in range(len(targets)):
        if found:
            break
        spec = targets[n]
        for tid in _ids_named(spec, essential):
            t = spec._type_for_core(tid)
            if t.kind == root.kind and t.name and essential_name(t.name) == essential:
                found.append((n, tid))
    return found


def _describe(c: _Candidate, targets: Sequence[Spec], names: Sequence[str]) -> str:
    n, tid = c
    return f"[{tid}] {_label(targets[n].type_by_id(tid))} in {names[n]}"


# -- resolving one relocation -------------------------------------------------------

class _Decision:
    """A resolved relocation, as `CoreCache.decisions` keeps it (plain values)."""

    __slots__ = ("candidates", "description", "outcome", "target", "target_type_id")

    def __init__(self, outcome: _Outcome, description: str, target: str | None,
                 target_type_id: int | None, candidates: int) -> None:
        self.outcome = outcome
        self.description = description
        self.target = target
        self.target_type_id = target_type_id
        self.candidates = candidates


def _decide(relo: CoreRelo, local_landing: _Landing, steps: Sequence[_Step],
            targets: Sequence[Spec], names: Sequence[str], cache: CoreCache) -> _Decision:
    """Look the local type up in the targets, follow the path through every
    candidate and settle on one outcome."""
    kind, root = relo.kind, local_landing.root
    description = local_landing.path()
    if kind == CoreReloKind.TYPE_ID_LOCAL:
        return _Decision(_Outcome(relo.type_id, relo.type_id, checked=False), description,
                         f"[{relo.type_id}] {_label(root)} (local)", relo.type_id, 0)
    if not root.name:
        raise _Refused("relocations of anonymous types are not supported")
    cands = cache.cands.get(relo.type_id)
    if cands is None:
        cands = cache.cands[relo.type_id] = _candidates(root, targets)
    choice: _Choice | None = None
    matching: list[_Candidate] = []
    for cand in cands:
        n, tid = cand
        spec = targets[n]
        landing = _land(kind, local_landing, steps, spec, tid, spec.type_by_id(tid))
        if landing is None:
            continue
        this = (cand, landing, _outcome(kind, local_landing, landing))
        if choice is None:
            choice = this
        else:
            _insist_on_agreement(choice, this, targets, names)
        matching.append(cand)
    if matching:
        cands[:] = matching     # the others cannot serve later relocations of this type
    if choice is None:
        outcome = _outcome(kind, local_landing, None)
        if outcome.poisoned:
            outcome = _Outcome(outcome.local_value, outcome.target_value, True,
                               _why_unmatched(kind, root, cands, targets, names),
                               outcome.checked, outcome.resize)
        return _Decision(outcome, description, None, None, len(cands))
    (n, tid), landing, outcome = choice
    shown = landing.detail() if kind in _FIELD_KINDS else landing.path()
    return _Decision(outcome, description, f"{shown} [{tid}] in {names[n]}", tid, len(cands))


def _insist_on_agreement(first: _Choice, other: _Choice, targets: Sequence[Spec],
                         names: Sequence[str]) -> None:
    """Two matching candidates must lead to the same place and value."""
    def where(c: _Choice) -> str:
        return _describe(c[0], targets, names)

    if other[1].bit_offset != first[1].bit_offset:
        raise _Refused(f"field offset ambiguity: {first[1].detail()} in {where(first)} "
                       f"!= {other[1].detail()} in {where(other)}")
    a, b = first[2], other[2]
    if a.poisoned != b.poisoned or a.target_value != b.target_value:
        def verdict(o: _Outcome) -> str:
            return "failure" if o.poisoned else f"success {o.target_value}"
        raise _Refused(f"relocation decision ambiguity: {verdict(a)} for {where(first)} "
                       f"!= {verdict(b)} for {where(other)}")


def _why_unmatched(kind: CoreReloKind, root: Type, cands: Sequence[_Candidate],
                   targets: Sequence[Spec], names: Sequence[str]) -> str:
    if not cands:
        return f"no {_kind_word(root)} named {essential_name(root.name)!r} in the target BTF"
    what = "enum value" if kind in _ENUM_KINDS else "field"
    return f"{what} not found in " + ", ".join(_describe(c, targets, names) for c in cands)


# -- patching ---------------------------------------------------------------------

_LD, _LDX, _ST, _STX, _ALU, _ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x07
_ACCESS_BYTES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
_ACCESS_CODES = {size: code for code, size in _ACCESS_BYTES.items()}
_LD_IMM64 = 0x18
_CALL = 0x85


def _as_s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _as_s64(v: int) -> int:
    v &= _U64
    return v - (1 << 64) if v & (1 << 63) else v


def _patch(at: int, *, poison: bool = False, reason: str | None = None,
           opcode: int | None = None, off: int | None = None,
           imm: int | None = None) -> _Patch:
    """New fields for instruction `at` (see `_Patch`)."""
    return (at, poison, reason, opcode, off, imm)


def _expect(o: _Outcome, held: int, what: str) -> None:
    """The instruction must hold the value clang computed from the local types."""
    if o.checked and held & _U64 != o.local_value & _U64:
        raise _Refused(f"unexpected {what} {held} (expected {o.local_value & _U64} -> "
                       f"{o.target_value & _U64})")


def _patch_immediate(ins: Instruction, index: int, o: _Outcome) -> _Patch:
    if ins.opcode & 0x08:
        raise _Refused(f"instruction {ins.opcode:#04x} has a register operand; "
                       "expected an immediate")
    _expect(o, ins.imm, "ALU/ALU64 immediate")
    return _patch(index, imm=_as_s32(o.target_value))


def _patch_offset(ins: Instruction, index: int, o: _Outcome) -> _Patch:
    _expect(o, ins.off, "LDX/ST/STX offset")
    new = o.target_value & _U64
    if new > 0x7FFF:
        raise _Refused(f"LDX/ST/STX offset {new} does not fit in 16 bits")
    if o.resize is None:
        return _patch(index, off=new)
    local_size, target_size, possible, local_label, target_label = o.resize
    if not possible:
        return _patch(index, poison=True, reason=(
            "the field's size changed and the load/store cannot be adjusted (only pointers "
            f"and unsigned integers can; {local_label} -> {target_label})"))
    size = _ACCESS_BYTES[ins.opcode & 0x18]
    if size != local_size:
        raise _Refused(f"unexpected memory access size {size} (expected {local_size})")
    code = _ACCESS_CODES.get(target_size)
    if code is None:
        raise _Refused(f"invalid new memory access size {target_size}")
    return _patch(index, off=new, opcode=(ins.opcode & 0xE0) | code | (ins.opcode & 0x07))


def _patch_wide_immediate(ins: Instruction, index: int, o: _Outcome) -> _Patch:
    if ins.opcode != _LD_IMM64 or ins.src != 0 or ins.off != 0:
        raise _Refused(f"instruction {ins.opcode:#04x} (src {ins.src}, off {ins.off}) is not "
                       "a plain 64-bit immediate load")
    _expect(o, ins.imm, "64-bit immediate")
    return _patch(index, imm=_as_s64(o.target_value))


_PATCHERS: dict[int, Callable[[Instruction, int, _Outcome], _Patch]] = {
    _ALU: _patch_immediate, _ALU64: _patch_immediate,
    _LDX: _patch_offset, _ST: _patch_offset, _STX: _patch_offset,
    _LD: _patch_wide_immediate,
}


def _plan_patch(ins: Instruction, index: int, o: _Outcome) -> _Patch:
    if o.poisoned:
        return _patch(index, poison=True)
    patcher = _PATCHERS.get(ins.opcode & 0x07)
    if patcher is None:
        raise _Refused(f"cannot relocate instruction with opcode {ins.opcode:#04x}")
    return patcher(ins, index, o)


def _apply(insns: list[Instruction], patches: Sequence[_Patch]) -> None:
    """Write the patches; a poisoned 64-bit load becomes two poisoned calls."""
    widened: list[int] = []
    for at, poison, _, opcode, off, imm in patches:
        ins = insns[at]
        if poison:
            if ins.opcode == _LD_IMM64:
                widened.append(at)
            ins.opcode, ins.dst, ins.src, ins.off, ins.imm = _CALL, 0, 0, 0, POISON_IMM
            ins.reference = None
            continue
        if opcode is not None:
            ins.opcode = opcode
        if off is not None:
            ins.off = off
        if imm is not None:
            ins.imm = imm
    for index in sorted(widened, reverse=True):
        insns.insert(index + 1, _poison_call())


# -- the driver -------------------------------------------------------------------

def index_relos(insns: Sequence[Instruction], relos: Iterable[CoreRelo],
                section: str = "") -> list[tuple[int, CoreRelo]]:
    """Map the byte offsets of `relos` (within their ELF section) to indices into
    `insns` (decoded from that section, where a 64-bit immediate load is one
    instruction of two slots). Raises CoreError for an offset that is not at
    the start of an instruction."""
    index_of: dict[int, int] = {}
    off = 0
    for i, ins in enumerate(insns):
        index_of[off] = i
        off += 16 if ins.opcode == _LD_IMM64 else 8
    where = f" in section {section!r}" if section else ""
    out: list[tuple[int, CoreRelo]] = []
    for relo in relos:
        idx = index_of.get(relo.insn_off)
        if idx is None:
            raise CoreError(f"CO-RE relocation at byte offset {relo.insn_off}{where} does not "
                            f"point at an instruction ({off} bytes of code)")
        out.append((idx, relo))
    return out


def _poison_call() -> Instruction:
    from ..asm import Instruction  # asm only to poison an instruction: `import ebpf.btf` loads none

    return Instruction(_CALL, 0, 0, 0, POISON_IMM)


def relocate(insns: list[Instruction], relos: Sequence[tuple[int, CoreRelo]], local: Spec,
             targets: Sequence[Spec] | Spec, *, cache: CoreCache | None = None,
             target_names: Sequence[str] | None = None) -> list[CoreResult]:
    """Apply CO-RE relocations to `insns` in place and describe what was done.

    `relos` pairs an index into `insns` with its relocation (see `index_relos`);
    `local` is the object's own BTF; `targets` the BTF to relocate against:
    ``targets[0]`` is vmlinux (or an external BTF file standing in for it) and
    further entries are kernel module BTF split on top of it, searched only
    for local types vmlinux has no candidate for (`kernel_targets()` is the
    running kernel's, loading module BTF lazily; a single Spec is accepted).
    Pass one `cache` to all calls for one object to share candidate lookups
    (and candidate pruning) and to reuse the outcomes of relocations seen
    before; `target_names` labels the targets in messages (default: the
    sequence's `names`, else "vmlinux", "module #1", ...).

    Immediates (ALU/ALU64 and 64-bit loads) and offsets (LDX/ST/STX, whose
    access size is adjusted when a field's size changed) are patched. An
    instruction whose relocation cannot be satisfied is poisoned (replaced by
    ``call 0xbad2310``): the verifier rejects it only when reachable. A
    poisoned 64-bit immediate load becomes two such calls, so `insns` grows by
    one instruction per poisoned ``ld_imm64`` (slot offsets do not change);
    this is done after every relocation has been applied, so the indices in
    `relos` refer to `insns` as passed.

    Raises CoreError (naming the relocation's type and field path) for
    malformed or ambiguous relocations and for instructions that do not hold
    the value the compiler should have put there; `insns` is then unchanged.
    """
    if isinstance(targets, Spec):
        targets = [targets]
    if not len(targets):
        raise CoreError("CO-RE relocation needs a target BTF (vmlinux or a BTF file)")
    names = list(target_names or getattr(targets, "names", None) or ())
    names += ["vmlinux" if n == 0 else f"module #{n}" for n in range(len(names), len(targets))]
    if cache is None:
        cache = CoreCache()
    slots = _slot_numbers(insns)
    results: list[CoreResult] = []
    patches: list[_Patch] = []
    # one call at a time per cache: a relocation prunes the candidate lists it iterates
    with cache._lock:
        cache._bind(local, targets)
        for n, (index, relo) in enumerate(relos):
            if not 0 <= index < len(insns):
                raise CoreError(f"CO-RE relocation #{n} ({relo!r}) refers to instruction "
                                f"{index}, beyond the program's {len(insns)} instructions")
            job = _Job(n, index, slots[index], relo)
            result, patch = job.run(insns[index], local, targets, names, cache)
            results.append(result)
            patches.append(patch)
    _apply(insns, patches)
    return results


def _slot_numbers(insns: Sequence[Instruction]) -> list[int]:
    """The verifier's number of each instruction (a 64-bit load takes two slots)."""
    out: list[int] = []
    slot = 0
    for ins in insns:
        out.append(slot)
        slot += 2 if ins.opcode == _LD_IMM64 else 1
    return out


class _Job:
    """One relocation of one instruction, and how to report its failure."""

    __slots__ = ("described", "index", "local", "n", "relo", "slot")

    def __init__(self, n: int, index: int, slot: int, relo: CoreRelo) -> None:
        self.n, self.index, self.slot, self.relo = n, index, slot, relo
        # what an error names the relocation by (made only for an error): the local
        # path or its landing once known, else the local type (with `local`) or its id
        self.described: str | _Landing | None = None
        self.local: Spec | None = None

    def description(self) -> str:
        """The relocation's local type and path, as far as they are known."""
        described = self.described
        if isinstance(described, _Landing):
            return described.path()
        if described is not None:
            return described
        relo, label = self.relo, "?"
        if self.local is not None:
            try:
                label = _label(self.local.type_by_id(relo.type_id))
            except BTFError:
                pass
        return f"[{relo.type_id}] {label} + {relo.access}"

    def error(self, msg: str) -> CoreError:
        kind = _KIND_NAMES.get(self.relo.kind, str(self.relo.kind))
        return CoreError(f"CO-RE relocation #{self.n} <{kind}> of {self.description()} at "
                         f"instruction {self.slot}: {msg}")

    def run(self, ins: Instruction, local: Spec, targets: Sequence[Spec],
            names: Sequence[str], cache: CoreCache) -> tuple[CoreResult, _Patch]:
        relo = self.relo
        key = (int(relo.kind), relo.type_id, relo.access)
        decision = cache.decisions.get(key)
        if decision is None:
            decision = self.decide(local, targets, names, cache)
            patch = self.patch(ins, decision)
            cache.decisions[key] = decision
        else:
            self.described = decision.description
            patch = self.patch(ins, decision)
        o = decision.outcome
        return CoreResult(self.index, self.slot, relo.kind, relo.type_id, relo.access,
                          decision.description, o.local_value & _U64, o.target_value & _U64,
                          poisoned=o.poisoned or patch[1], reason=patch[2] or o.reason,
                          target=decision.target, target_type_id=decision.target_type_id,
                          candidates=decision.candidates), patch

    def decide(self, local: Spec, targets: Sequence[Spec], names: Sequence[str],
               cache: CoreCache) -> _Decision:
        self.local = local
        try:
            landing, steps = _read_local(local, self.relo)
        except _Refused as e:
            raise self.error(f"cannot parse the relocation: {e}") from None
        self.described = landing
        try:
            decision = _decide(self.relo, landing, steps, targets, names, cache)
        except _Refused as e:
            raise self.error(str(e)) from None
        self.described = decision.description
        return decision

    def patch(self, ins: Instruction, decision: _Decision) -> _Patch:
        try:
            return _plan_patch(ins, self.index, decision.outcome)
        except _Refused as e:
            raise self.error(str(e)) from None


def relocate_instructions(insns: Sequence[Instruction],
                          target: Spec | Sequence[Spec] | None = None, *, local: Spec,
                          cache: CoreCache | None = None,
                          results: list[CoreResult] | None = None) -> list[Instruction]:
    """Relocate a program whose instructions carry their `CoreRelo` in
    ``meta["core"]`` (as the ELF loader attaches them); return a new list.

    `insns` is left untouched: relocated instructions are copies, so a
    ProgramSpec can be loaded again against another kernel. `target` is None
    for the running kernel (vmlinux, then module BTF), a Spec (an external
    BTF file) or a sequence as for `relocate`. `results`, when given, receives
    the `CoreResult`s (for `explain_poison`).
    """
    out = list(insns)
    relos: list[tuple[int, CoreRelo]] = []
    for i, ins in enumerate(out):
        relo = ins.meta.get("core") if ins.meta else None
        if isinstance(relo, CoreRelo):
            out[i] = ins.copy()
            relos.append((i, relo))
    if not relos:
        return out
    targets: Sequence[Spec] | Spec = kernel_targets() if target is None else target
    done = relocate(out, relos, local, targets, cache=cache)
    if results is not None:
        results.extend(done)
    return out


# explain_poison on first use (process start): see _core_explain.py
__getattr__ = _lazyattr.lazy_attributes(globals(), {"explain_poison": "._core_explain"})
