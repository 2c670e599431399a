"""CO-RE: relocate a program's field offsets, sizes, type ids and enum values
to the types of the kernel it runs on.

clang records, for every instruction whose immediate or offset depends on a
kernel type, a `CoreRelo` in ``.BTF.ext``: the local (object BTF) type, an
access string ("0:12:3" = root[0].member#12[3]) and what to compute
(`CoreReloKind`). `relocate` finds the matching types in the target BTF (the
running kernel's vmlinux and module BTF, or an external file), computes the
target value and patches the instruction, following libbpf's
``relo_core.c`` rule for rule:

* candidates are target types of a compatible kind whose name equals the
  local name without its flavor suffix (``task_struct___old`` ->
  ``task_struct``; target names are compared without their suffix too);
  vmlinux is searched first and module BTF only when vmlinux has none;
* a field access matches a candidate when every named member exists (looking
  through anonymous structs/unions), member types are compatible and array
  indices are in bounds (flexible arrays excepted);
* several matching candidates must agree on the result, otherwise the
  relocation is ambiguous (`CoreError`); candidates that do not match are
  dropped for later relocations of the same local type, as libbpf does;
* a relocation that cannot be satisfied (a missing field, enum value, or a
  load whose size cannot be adjusted) poisons its instruction: it becomes
  ``call 0xbad2310``, which the verifier accepts in dead code (a branch
  guarded by ``bpf_core_field_exists`` & co.) and rejects with "invalid func
  unknown#195896080" when reachable; `explain_poison` turns that log into a
  message naming the relocation.

One deliberate difference: libbpf sign-extends every 32-bit enumerator, so an
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

import copy
import functools
import mmap
import re
import struct
import sys
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NoReturn, Protocol, overload

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
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Kind,
    Member,
    Pointer,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Var,
    Void,
    Volatile,
    skip_typedefs,
)

if TYPE_CHECKING:
    from ..asm import Instruction

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

_MASK64 = (1 << 64) - 1
_MAX_SPEC_LEN = 64  # BPF_CORE_SPEC_MAX_LEN
_MAX_DEPTH = 32
_PTR_SIZE = 8

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

_GUARDS = {
    CoreReloKind.FIELD_BYTE_OFFSET: "bpf_core_field_exists()",
    CoreReloKind.FIELD_BYTE_SIZE: "bpf_core_field_exists()",
    CoreReloKind.FIELD_SIGNED: "bpf_core_field_exists()",
    CoreReloKind.FIELD_LSHIFT_U64: "bpf_core_field_exists()",
    CoreReloKind.FIELD_RSHIFT_U64: "bpf_core_field_exists()",
    CoreReloKind.ENUMVAL_VALUE: "bpf_core_enum_value_exists()",
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
    """Candidate target types per local type id, shared by the relocations of
    one object (libbpf keeps one such cache per object: candidates that fail to
    match a field are dropped for the object's later relocations).

    Pass the same cache to every `relocate` call of one object; it resets
    itself when used with a different local BTF or target list.
    """

    __slots__ = ("_local", "_targets", "cands", "decisions")

    def __init__(self) -> None:
        self._local: Spec | None = None
        self._targets: Sequence[Spec] | None = None
        self.cands: dict[int, list[_Cand]] = {}
        # (kind, local type id, access) -> what the relocation resolved to: loading the
        # same object again (a template with new constants) skips the matching
        self.decisions: dict[tuple[int, int, str], _Decision] = {}

    def _bind(self, local: Spec, targets: Sequence[Spec]) -> None:
        old = self._targets
        if isinstance(targets, KernelTargets) or isinstance(old, KernelTargets):
            same = old is targets
        else:
            same = old is not None and len(old) == len(targets) and all(
                a is b for a, b in zip(old, targets, strict=False))
        if self._local is not local or not same:
            self._local = local
            self._targets = targets
            self.cands = {}
            self.decisions = {}


class KernelTargets(Sequence[Spec]):
    """The running kernel's BTF as CO-RE targets: vmlinux first, then every
    module with BTF (``/sys/kernel/btf/<module>``), each loaded only when a
    relocation finds no candidate in vmlinux. `names` labels them."""

    def __init__(self) -> None:
        from .kernel import kernel_module_names

        self.names = ["vmlinux", *kernel_module_names()]
        self._specs: dict[int, Spec] = {}

    def __len__(self) -> int:
        return len(self.names)

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
            from .kernel import load_kernel_module_spec, load_kernel_spec

            spec = load_kernel_spec() if i == 0 else load_kernel_module_spec(self.names[i])
            self._specs[i] = spec
        return spec

    def __repr__(self) -> str:
        return f"<KernelTargets {', '.join(self.names)}>"


_kernel_targets: KernelTargets | None = None


def kernel_targets() -> KernelTargets:
    """The running kernel's vmlinux and module BTF as CO-RE targets (cached)."""
    global _kernel_targets
    if _kernel_targets is None:
        _kernel_targets = KernelTargets()
    return _kernel_targets


# -- names ------------------------------------------------------------------------

@functools.lru_cache(maxsize=1 << 16)
def essential_name(name: str) -> str:
    """`name` without its flavor suffix: the part before the last ``___``
    that is neither preceded nor followed by another underscore."""
    if "___" not in name:
        return name
    n = len(name)
    for i in range(n - 5, -1, -1):
        if (name[i] != "_" and name[i + 1] == "_" and name[i + 2] == "_"
                and name[i + 3] == "_" and name[i + 4] != "_"):
            return name[: i + 1]
    return name


# essential name -> ids of a target spec's own types called that (with any flavor)
_name_ids: weakref.WeakKeyDictionary[Spec, dict[str, list[int]]] = weakref.WeakKeyDictionary()


def _string_section(spec: Spec) -> tuple[bytes | mmap.mmap, int, int]:
    """(blob, start, end) of `spec`'s own string section, from the BTF header."""
    buf = getattr(spec, "_buf", None)
    if not isinstance(buf, (bytes, mmap.mmap)):
        buf = spec.raw
    order = "<" if buf[0:2] == b"\x9f\xeb" else ">"
    hdr_len, _, _, str_off, str_len = struct.unpack_from(order + "5I", buf, 4)
    start = hdr_len + str_off
    return buf, start, min(start + str_len, len(buf))


# essential name -> the flavored names (``x___y``) in a spec's own string table
_flavor_tables: weakref.WeakKeyDictionary[Spec, dict[str, set[str]]] = (
    weakref.WeakKeyDictionary())


def _flavor_table(spec: Spec) -> dict[str, set[str]]:
    table = _flavor_tables.get(spec)
    if table is not None:
        return table
    table = {}
    buf, start, end = _string_section(spec)
    pos = buf.find(b"___", start, end)
    while pos >= 0:
        first = buf.rfind(b"\0", start, pos) + 1 or start
        stop = buf.find(b"\0", pos, end)
        if stop < 0:
            break
        try:
            name = bytes(buf[first:stop]).decode()
        except UnicodeDecodeError:
            name = ""
        ess = essential_name(name)
        if ess != name:
            table.setdefault(ess, set()).add(name)
        pos = buf.find(b"___", stop, end)
    _flavor_tables[spec] = table
    return table


def _flavored_names(spec: Spec, essential: str) -> set[str]:
    """Names in the string tables of `spec` (and its bases) of the form
    ``<essential>___<flavor>``: target types can carry flavors too (the
    kernel's ``nf_conn___init``), and libbpf compares essential names."""
    found: set[str] = set()
    s: Spec | None = spec
    while s is not None:
        found |= _flavor_table(s).get(essential, set())
        s = s.base
    return found


def _target_ids(spec: Spec, essential: str) -> list[int]:
    """Ids of `spec`'s own types (not its base's) named `essential`, flavored or not."""
    per_spec = _name_ids.get(spec)
    if per_spec is None:
        per_spec = _name_ids[spec] = {}
    ids = per_spec.get(essential)
    if ids is None:
        first = len(spec.base) if spec.base is not None else 1
        found = set(spec.ids_by_name(essential))
        for name in _flavored_names(spec, essential):
            found.update(spec.ids_by_name(name))
        ids = per_spec[essential] = sorted(i for i in found if i >= first)
    return ids


# -- type helpers -----------------------------------------------------------------

class _Invalid(Exception):
    """libbpf's -EINVAL/-E2BIG inside the matching code; becomes a CoreError."""


def _skip(t: Type) -> Type:
    try:
        return skip_typedefs(t)
    except BTFError as e:
        raise _Invalid(str(e)) from None


def _kind(t: Type) -> Kind:
    return t.kind  # Enum reports ENUM for both ENUM and ENUM64: they are compatible


_KIND_STR = {Kind.UNKN: "void", Kind.INT: "int", Kind.PTR: "ptr", Kind.ARRAY: "array",
             Kind.STRUCT: "struct", Kind.UNION: "union", Kind.ENUM: "enum", Kind.FWD: "fwd",
             Kind.TYPEDEF: "typedef", Kind.VOLATILE: "volatile", Kind.CONST: "const",
             Kind.RESTRICT: "restrict", Kind.FUNC: "func", Kind.FUNC_PROTO: "func_proto",
             Kind.VAR: "var", Kind.DATASEC: "datasec", Kind.FLOAT: "float",
             Kind.DECL_TAG: "decl_tag", Kind.TYPE_TAG: "type_tag", Kind.ENUM64: "enum"}


def _kind_str(t: Type) -> str:
    return _KIND_STR.get(t.kind, "?")


def _label(t: Type) -> str:
    if isinstance(t, Fwd):
        return ("union " if t.union else "struct ") + t.name
    return f"{_kind_str(t)} {t.name or '<anon>'}"


def _size(t: Type) -> int:
    """btf__resolve_size: size in bytes, through typedefs, modifiers and arrays."""
    nelems = 1
    for _ in range(_MAX_DEPTH):
        if isinstance(t, (Int, Composite, Enum, Float, Datasec)):
            size = nelems * t.size
            if size > 0xFFFFFFFF:
                raise _Invalid(f"size of {_label(t)} overflows")
            return size
        if isinstance(t, Pointer):
            return nelems * _PTR_SIZE
        if isinstance(t, Array):
            nelems *= t.nelems
            if nelems > 0xFFFFFFFF:
                raise _Invalid("array size overflows")
            t = t.type
            continue
        if isinstance(t, (Typedef, Var, Volatile, Const, Restrict, TypeTag, DeclTag)):
            t = t.type
            continue
        raise _Invalid(f"{_label(t)} has no size")
    raise _Invalid("type nesting too deep to compute a size")


def _int_offset(t: Type) -> int:
    return t.offset if isinstance(t, Int) else 0


def _enum_u64(e: Enum, idx: int) -> int:
    """An enumerator's value as a u64, extended according to the enum's signedness.

    libbpf (up to at least 1.6) sign-extends every 32-bit enumerator, so an
    unsigned value >= 2**31 loaded with a 64-bit immediate never matches what
    clang emitted (zero-extended) and the object fails to load; zero-extending
    unsigned values (as the BTF says they are) relocates them correctly.
    """
    return e.values[idx].value & _MASK64


def _names_match(local: str, target: str) -> bool:
    if not target:
        return not local
    return essential_name(local) == essential_name(target)


# -- field specs ------------------------------------------------------------------

class _Acc:
    """High-level accessor: a named member (`type` is its composite, `idx` the
    member index) or an array index (`name` None, `type` the element type)."""

    __slots__ = ("idx", "name", "type")

    def __init__(self, t: Type, idx: int, name: str | None) -> None:
        self.type = t
        self.idx = idx
        self.name = name


class _FSpec:
    """bpf_core_spec: the parsed access of one side of a relocation."""

    __slots__ = ("accs", "bit_offset", "kind", "raw", "root", "root_id", "spec")

    def __init__(self, spec: Spec, root_id: int, root: Type, kind: CoreReloKind) -> None:
        self.spec = spec
        self.root_id = root_id
        self.root = root
        self.kind = kind
        self.accs: list[_Acc] = []
        self.raw: list[int] = []
        self.bit_offset = 0

    def path(self) -> str:
        """C-like view: ``struct task_struct.comm[3]``, ``enum e::VAL``."""
        base = _label(self.root)
        if self.kind in _TYPE_KINDS:
            return base
        if self.kind in _ENUM_KINDS:
            return f"{base}::{self.accs[0].name}" if self.accs else base
        out = [base]
        for i, acc in enumerate(self.accs):
            if acc.name is not None:
                out.append(f".{acc.name}")
            elif i > 0 or acc.idx > 0:
                out.append(f"[{acc.idx}]")
        return "".join(out)

    def detail(self) -> str:
        raw = ":".join(map(str, self.raw))
        off = self.bit_offset
        where = f"{off // 8}.{off % 8}" if off % 8 else f"{off // 8}"
        return f"{self.path()} ({raw} @ offset {where})"


def _is_flex(prev: _Acc | None, arr: Array) -> bool:
    if prev is None or prev.name is None or arr.nelems > 0:
        return False
    t = prev.type
    return isinstance(t, Composite) and prev.idx == len(t.members) - 1


_ACCESS_RE = re.compile(r"\s*[+-]?\d+\s*(?::\s*[+-]?\d+\s*)*")


@functools.lru_cache(maxsize=4096)
def _parse_access(access: str) -> tuple[int, ...]:
    """"0:12:3" -> (0, 12, 3), as libbpf's sscanf loop reads it."""
    if not access or access[0] == ":" or not _ACCESS_RE.fullmatch(access):
        raise _Invalid(f"bad access string {access!r}")
    out = tuple(int(part) for part in access.split(":"))
    if len(out) > _MAX_SPEC_LEN:
        raise _Invalid(f"access string {access!r} is too long")
    return out


def _parse_spec(local: Spec, relo: CoreRelo) -> _FSpec:
    """bpf_core_parse_spec: validate the access string against the local type."""
    try:
        root = local.type_by_id(relo.type_id)
    except BTFError as e:
        raise _Invalid(str(e)) from None
    spec = _FSpec(local, relo.type_id, root, relo.kind)
    if relo.kind in _TYPE_KINDS:
        if relo.access != "0":
            raise _Invalid(f"type relocation with access string {relo.access!r} (expected '0')")
        return spec
    raw = _parse_access(relo.access)
    spec.raw = list(raw)
    t = _skip(root)
    idx = raw[0]
    if relo.kind in _ENUM_KINDS:
        if not isinstance(t, Enum) or len(raw) > 1 or not 0 <= idx < len(t.values):
            raise _Invalid(f"enum value access {relo.access!r} does not fit {_label(t)}")
        spec.accs.append(_Acc(t, idx, t.values[idx].name))
        return spec
    if relo.kind not in _FIELD_KINDS:
        raise _Invalid(f"unknown relocation kind {relo.kind}")
    if idx < 0:
        raise _Invalid(f"negative index in access string {relo.access!r}")
    spec.accs.append(_Acc(t, idx, None))
    spec.bit_offset = idx * _size(t) * 8
    for i in range(1, len(raw)):
        t = _skip(t)
        idx = raw[i]
        if idx < 0:
            raise _Invalid(f"negative index in access string {relo.access!r}")
        if isinstance(t, Composite):
            if idx >= len(t.members):
                raise _Invalid(f"{_label(t)} has no member #{idx}")
            m = t.members[idx]
            spec.bit_offset += m.offset_bits
            if m.name:
                spec.accs.append(_Acc(t, idx, m.name))
            t = m.type
        elif isinstance(t, Array):
            elem = _skip(t.type)
            if not _is_flex(spec.accs[-1], t) and idx >= t.nelems:
                raise _Invalid(f"index {idx} out of bounds of a {t.nelems}-element array")
            spec.accs.append(_Acc(elem, idx, None))
            spec.bit_offset += idx * _size(elem) * 8
            t = elem
        else:
            raise _Invalid(f"access {relo.access!r} (at position {i}) goes through "
                           f"{_label(t)}, which is neither a struct/union nor an array")
    return spec


def _fields_compat(lt: Type, tt: Type) -> bool:
    """bpf_core_fields_are_compat."""
    for _ in range(_MAX_DEPTH):
        lt, tt = _skip(lt), _skip(tt)
        if isinstance(lt, Composite) and isinstance(tt, Composite):
            return True
        if _kind(lt) != _kind(tt):
            return False
        if isinstance(lt, (Pointer, Float)):
            return True
        if isinstance(lt, (Fwd, Enum)):
            ln, tn = essential_name(lt.name), essential_name(tt.name)
            return not ln or not tn or ln == tn
        if isinstance(lt, Int):
            return _int_offset(lt) == 0 and _int_offset(tt) == 0
        if isinstance(lt, Array) and isinstance(tt, Array):
            lt, tt = lt.type, tt.type
            continue
        return False
    raise _Invalid("type nesting too deep")


# Per target composite: member name -> where it is, in libbpf's search order
# (depth first through anonymous members): (index path, bit offset, the member,
# the composite holding it, its index there).
_Place = tuple[tuple[int, ...], int, Member, Composite, int]
_member_places: weakref.WeakKeyDictionary[Spec, dict[int, tuple[Type, dict[str, list[_Place]]]]] = (
    weakref.WeakKeyDictionary())


def _places(spec: Spec, t: Composite) -> dict[str, list[_Place]]:
    per_spec = _member_places.get(spec)
    if per_spec is None:
        per_spec = _member_places[spec] = {}
    entry = per_spec.get(id(t))
    if entry is not None and entry[0] is t:
        return entry[1]
    index: dict[str, list[_Place]] = {}

    def walk(c: Composite, prefix: tuple[int, ...], base: int) -> None:
        if len(prefix) >= _MAX_SPEC_LEN:
            raise _Invalid("struct/union nesting too deep")
        for i, m in enumerate(c.members):
            path = (*prefix, i)
            off = base + m.offset_bits
            if m.name:
                index.setdefault(m.name, []).append((path, off, m, c, i))
            else:
                inner = _skip(m.type)
                if isinstance(inner, Composite):
                    walk(inner, path, off)

    walk(t, (), 0)
    per_spec[id(t)] = (t, index)  # the spec keeps `t` alive: its id stays unique
    return index


def _match_member(name: str, ltype: Type, targ: Type, tspec: _FSpec) -> Type | None:
    """bpf_core_match_member: find member `name` in `targ`, through anonymous
    members; on success extend `tspec` and return the member's type.

    A same-named member of an incompatible type ends the search of the
    struct/union that holds it (libbpf returns from that level)."""
    targ = _skip(targ)
    if not isinstance(targ, Composite):
        return None
    places = _places(tspec.spec, targ).get(name)
    if not places:
        return None
    skip: tuple[int, ...] | None = None
    for path, off, m, parent, idx in places:
        if skip is not None and path[: len(skip)] == skip:
            continue
        if len(tspec.raw) + len(path) > _MAX_SPEC_LEN:
            raise _Invalid("struct/union/array nesting too deep")
        if _fields_compat(ltype, m.type):
            tspec.raw.extend(path)
            tspec.bit_offset += off
            tspec.accs.append(_Acc(parent, idx, name))
            return m.type
        if len(path) == 1:
            return None
        skip = path[:-1]
    return None


def _types_compat(lt: Type, tt: Type, level: int = _MAX_DEPTH) -> bool:
    """bpf_core_types_are_compat (type-based relocations)."""
    if _kind(lt) != _kind(tt):
        return False
    for _ in range(_MAX_DEPTH):
        lt, tt = _skip(lt), _skip(tt)
        if _kind(lt) != _kind(tt):
            return False
        if isinstance(lt, (Void, Composite, Enum, Fwd)):
            return True
        if isinstance(lt, Int):
            return _int_offset(lt) == 0 and _int_offset(tt) == 0
        if isinstance(lt, Pointer) and isinstance(tt, Pointer):
            lt, tt = lt.type, tt.type
            continue
        if isinstance(lt, Array) and isinstance(tt, Array):
            lt, tt = lt.type, tt.type
            continue
        if isinstance(lt, FuncProto) and isinstance(tt, FuncProto):
            if len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params, strict=False):
                if level <= 0:
                    raise _Invalid("function prototype nesting too deep")
                if not _types_compat(_skip(lp.type), _skip(tp.type), level - 1):
                    return False
            lt, tt = lt.return_type, tt.return_type
            continue
        return False
    raise _Invalid("type nesting too deep")


def _enums_match(lt: Enum, tt: Enum) -> bool:
    if lt.size != tt.size or len(lt.values) > len(tt.values):
        return False
    return all(any(_names_match(lv.name, tv.name) for tv in tt.values) for lv in lt.values)


def _composites_match(lt: Composite, tt: Composite, behind_ptr: bool, level: int) -> bool:
    if len(lt.members) > len(tt.members):
        return False
    for lm in lt.members:
        for tm in tt.members:
            if _names_match(lm.name, tm.name) and _types_match(lm.type, tm.type, behind_ptr,
                                                               level - 1):
                break
        else:
            return False
    return True


def _types_match(lt: Type, tt: Type, behind_ptr: bool = False, level: int = _MAX_DEPTH) -> bool:
    """__bpf_core_types_match (TYPE_MATCHES)."""
    if level <= 0:
        raise _Invalid("type nesting too deep")
    for _ in range(_MAX_DEPTH):
        lt, tt = _skip(lt), _skip(tt)
        if not _names_match(lt.name, tt.name):
            return False
        lk, tk = _kind(lt), _kind(tt)
        if isinstance(lt, Void):
            return lk == tk
        if isinstance(lt, Fwd):
            if behind_ptr:
                if isinstance(tt, Fwd):
                    return lt.union == tt.union
                return (isinstance(tt, Struct) and not lt.union) or (
                    tt.kind == Kind.UNION and lt.union)
            return isinstance(tt, Fwd) and lt.union == tt.union
        if isinstance(lt, Enum):
            return isinstance(tt, Enum) and _enums_match(lt, tt)
        if isinstance(lt, Composite):
            if behind_ptr:
                if lk == tk:
                    return True
                if not isinstance(tt, Fwd):
                    return False
                return (lt.kind == Kind.UNION) == tt.union
            if lk != tk:
                return False
            assert isinstance(tt, Composite)
            return _composites_match(lt, tt, behind_ptr, level)
        if isinstance(lt, Int):
            if not isinstance(tt, Int):
                return False
            return lt.size == tt.size and lt.signed == tt.signed
        if isinstance(lt, Pointer):
            if not isinstance(tt, Pointer):
                return False
            behind_ptr = True
            lt, tt = lt.type, tt.type
            continue
        if isinstance(lt, Array):
            if not isinstance(tt, Array) or lt.nelems != tt.nelems:
                return False
            lt, tt = lt.type, tt.type
            continue
        if isinstance(lt, FuncProto):
            if not isinstance(tt, FuncProto) or len(lt.params) != len(tt.params):
                return False
            for lp, tp in zip(lt.params, tt.params, strict=False):
                if not _types_match(lp.type, tp.type, behind_ptr, level - 1):
                    return False
            lt, tt = lt.return_type, tt.return_type
            continue
        return False
    raise _Invalid("type nesting too deep")


def _spec_match(lspec: _FSpec, tspec: _FSpec) -> bool:
    """bpf_core_spec_match: fill `tspec` for the candidate root; True on a match."""
    kind = lspec.kind
    if kind in _TYPE_KINDS:
        if kind == CoreReloKind.TYPE_MATCHES:
            return _types_match(lspec.root, tspec.root)
        return _types_compat(lspec.root, tspec.root)
    if kind in _ENUM_KINDS:
        t = _skip(tspec.root)
        if not isinstance(t, Enum):
            return False
        want = essential_name(lspec.accs[0].name or "")
        for i, v in enumerate(t.values):
            if essential_name(v.name) == want:
                tspec.accs.append(_Acc(t, i, v.name))
                tspec.raw.append(i)
                return True
        return False
    targ: Type = tspec.root
    for i, lacc in enumerate(lspec.accs):
        targ = _skip(targ)
        if lacc.name is not None:
            lt = lacc.type
            assert isinstance(lt, Composite)
            found = _match_member(lacc.name, lt.members[lacc.idx].type, targ, tspec)
            if found is None:
                return False
            targ = found
            continue
        if i > 0:
            if not isinstance(targ, Array):
                return False
            prev = tspec.accs[-1] if tspec.accs else None
            if not _is_flex(prev, targ) and lacc.idx >= targ.nelems:
                return False
            targ = _skip(targ.type)
        if len(tspec.raw) == _MAX_SPEC_LEN:
            raise _Invalid("struct/union/array nesting too deep")
        tspec.accs.append(_Acc(targ, lacc.idx, None))
        tspec.raw.append(lacc.idx)
        tspec.bit_offset += lacc.idx * _size(targ) * 8
    return True


# -- values -----------------------------------------------------------------------

class _Poison(Exception):
    pass


class _Res:
    """bpf_core_relo_res."""

    __slots__ = ("fail_memsz", "new_sz", "new_type", "new_val", "orig_sz", "orig_type",
                 "orig_val", "poison", "reason", "validate")

    def __init__(self) -> None:
        self.orig_val = 0
        self.new_val = 0
        self.poison = False
        self.validate = True
        self.fail_memsz = False
        self.orig_sz = 0
        self.new_sz = 0
        self.orig_type: Type | None = None
        self.new_type: Type | None = None
        self.reason: str | None = None


def _field_value(kind: CoreReloKind, spec: _FSpec | None) -> tuple[int, int, Type | None, bool]:
    """bpf_core_calc_field_relo: (value, field size, field type, validate)."""
    if kind == CoreReloKind.FIELD_EXISTS:
        return (1 if spec is not None else 0), 0, None, True
    if spec is None:
        raise _Poison
    acc = spec.accs[-1]
    if acc.name is None:  # an array element
        if kind == CoreReloKind.FIELD_BYTE_OFFSET:
            return spec.bit_offset // 8, _size(acc.type), acc.type, True
        if kind == CoreReloKind.FIELD_BYTE_SIZE:
            return _size(acc.type), 0, None, True
        raise _Invalid(f"relocation {_KIND_NAMES[kind]} cannot be applied to an array element")
    parent = acc.type
    assert isinstance(parent, Composite)
    m = parent.members[acc.idx]
    mt = _skip(m.type)
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size
    bitfield = bit_sz > 0
    if bitfield:
        if not isinstance(mt, (Int, Enum)):
            raise _Invalid(f"bitfield {m.name!r} of {_label(mt)}")
        byte_sz = mt.size
        if byte_sz <= 0:
            raise _Invalid(f"bitfield {m.name!r} of zero size")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise _Invalid(f"bitfield {m.name!r} cannot be read with a 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = _size(mt)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8
    validate = not bitfield
    if kind == CoreReloKind.FIELD_BYTE_OFFSET:
        if bitfield:
            return byte_off, 0, None, validate
        return byte_off, byte_sz, mt, validate
    if kind == CoreReloKind.FIELD_BYTE_SIZE:
        return byte_sz, 0, None, validate
    if kind == CoreReloKind.FIELD_SIGNED:
        signed = (isinstance(mt, Enum) and mt.signed) or (
            isinstance(mt, Int) and bool(mt.encoding & IntEncoding.SIGNED))
        return int(signed), 0, None, True
    if kind == CoreReloKind.FIELD_LSHIFT_U64:
        if sys.byteorder == "little":
            return 64 - (bit_off + bit_sz - byte_off * 8), 0, None, validate
        return (8 - byte_sz) * 8 + (bit_off - byte_off * 8), 0, None, validate
    if kind == CoreReloKind.FIELD_RSHIFT_U64:
        return 64 - bit_sz, 0, None, True
    raise _Invalid(f"unknown field relocation kind {kind}")


def _type_value(kind: CoreReloKind, spec: _FSpec | None) -> tuple[int, bool]:
    """bpf_core_calc_type_relo: (value, validate)."""
    if spec is None:
        return 0, True
    if kind == CoreReloKind.TYPE_ID_TARGET:
        return spec.root_id, False
    if kind in (CoreReloKind.TYPE_EXISTS, CoreReloKind.TYPE_MATCHES):
        return 1, True
    if kind == CoreReloKind.TYPE_SIZE:
        return _size(spec.root), True
    raise _Invalid(f"unexpected type relocation kind {kind}")


def _enum_value(kind: CoreReloKind, spec: _FSpec | None) -> int:
    if kind == CoreReloKind.ENUMVAL_EXISTS:
        return 1 if spec is not None else 0
    if spec is None:
        raise _Poison
    acc = spec.accs[0]
    assert isinstance(acc.type, Enum)
    return _enum_u64(acc.type, acc.idx)


def _calc(kind: CoreReloKind, lspec: _FSpec, tspec: _FSpec | None) -> _Res:
    """bpf_core_calc_relo: local and target values of one candidate (or none)."""
    res = _Res()
    try:
        if kind in _FIELD_KINDS:
            res.orig_val, res.orig_sz, res.orig_type, res.validate = _field_value(kind, lspec)
            res.new_val, res.new_sz, res.new_type, _ = _field_value(kind, tspec)
            if res.orig_sz != res.new_sz:
                ot, nt = res.orig_type, res.new_type
                if not (isinstance(ot, Pointer) and isinstance(nt, Pointer)) and not (
                        isinstance(ot, Int) and isinstance(nt, Int)
                        and ot.encoding != IntEncoding.SIGNED
                        and nt.encoding != IntEncoding.SIGNED):
                    res.fail_memsz = True
        elif kind in _TYPE_KINDS:
            res.orig_val, res.validate = _type_value(kind, lspec)
            res.new_val, _ = _type_value(kind, tspec)
        elif kind in _ENUM_KINDS:
            res.orig_val = _enum_value(kind, lspec)
            res.new_val = _enum_value(kind, tspec)
        else:
            raise _Invalid(f"unknown relocation kind {kind}")
    except _Poison:
        res.poison = True
    return res


# -- candidates -------------------------------------------------------------------

class _Cand:
    __slots__ = ("id", "origin", "spec", "type")

    def __init__(self, spec: Spec, tid: int, t: Type, origin: str) -> None:
        self.spec = spec
        self.id = tid
        self.type = t
        self.origin = origin

    def __str__(self) -> str:
        return f"[{self.id}] {_label(self.type)} in {self.origin}"


def _find_cands(local_type: Type, targets: Sequence[Spec], names: Sequence[str]) -> list[_Cand]:
    """bpf_core_find_cands: same-kind target types with the same essential name;
    vmlinux (targets[0]) first, module BTF only when vmlinux has none."""
    essential = essential_name(local_type.name)
    kind = _kind(local_type)
    cands: list[_Cand] = []
    for n in range(len(targets)):
        if n == 1 and cands:
            break
        spec = targets[n]
        for tid in _target_ids(spec, essential):
            t = spec.type_by_id(tid)
            if _kind(t) == kind and t.name and essential_name(t.name) == essential:
                cands.append(_Cand(spec, tid, t, names[n]))
    return cands


# -- patching ---------------------------------------------------------------------

_CLS_LD, _CLS_LDX, _CLS_ST, _CLS_STX, _CLS_ALU, _CLS_ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x07
_SIZE_BYTES = {0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8}
_BYTES_SIZE = {4: 0x00, 2: 0x08, 1: 0x10, 8: 0x18}
_LD_IMM64 = 0x18
_CALL = 0x85


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _s64(v: int) -> int:
    v &= _MASK64
    return v - (1 << 64) if v & (1 << 63) else v


class _Patch:
    """New field values for one instruction (applied after all relocations succeed)."""

    __slots__ = ("imm", "index", "off", "opcode", "poison")

    def __init__(self, index: int) -> None:
        self.index = index
        self.opcode: int | None = None
        self.off: int | None = None
        self.imm: int | None = None
        self.poison = False


def _patch(ins: Instruction, index: int, res: _Res, fail: _FailFn) -> _Patch:
    """bpf_core_patch_insn, computing the new fields of `ins`."""
    p = _Patch(index)
    if res.poison:
        p.poison = True
        return p
    cls = ins.opcode & 0x07
    orig, new = res.orig_val & _MASK64, res.new_val & _MASK64
    if cls in (_CLS_ALU, _CLS_ALU64):
        if ins.opcode & 0x08:
            fail(f"instruction {ins.opcode:#04x} has a register operand; expected an immediate")
        if res.validate and (ins.imm & _MASK64) != orig:
            fail(f"unexpected ALU/ALU64 immediate {ins.imm} (expected {orig} -> {new})")
        p.imm = _s32(new)
    elif cls in (_CLS_LDX, _CLS_ST, _CLS_STX):
        if res.validate and (ins.off & _MASK64) != orig:
            fail(f"unexpected LDX/ST/STX offset {ins.off} (expected {orig} -> {new})")
        if new > 0x7FFF:
            fail(f"LDX/ST/STX offset {new} does not fit in 16 bits")
        if res.fail_memsz:
            p.poison = True
            res.poison = True
            res.reason = ("the field's size changed and the load/store cannot be adjusted "
                          "(only pointers and unsigned integers can; "
                          f"{_label(res.orig_type or Void())} -> "
                          f"{_label(res.new_type or Void())})")
            return p
        p.off = new
        if res.new_sz != res.orig_sz:
            size = _SIZE_BYTES[ins.opcode & 0x18]
            if size != res.orig_sz:
                fail(f"unexpected memory access size {size} (expected {res.orig_sz})")
            bits = _BYTES_SIZE.get(res.new_sz)
            if bits is None:
                fail(f"invalid new memory access size {res.new_sz}")
            p.opcode = (ins.opcode & 0xE0) | bits | cls
    elif cls == _CLS_LD:
        if ins.opcode != _LD_IMM64 or ins.src != 0 or ins.off != 0:
            fail(f"instruction {ins.opcode:#04x} (src {ins.src}, off {ins.off}) is not a "
                 "plain 64-bit immediate load")
        if res.validate and (ins.imm & _MASK64) != orig:
            fail(f"unexpected 64-bit immediate {ins.imm & _MASK64} (expected {orig} -> {new})")
        p.imm = _s64(new)
    else:
        fail(f"cannot relocate instruction with opcode {ins.opcode:#04x}")
    return p


class _FailFn(Protocol):
    def __call__(self, msg: str) -> NoReturn: ...


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
    from ..asm import Instruction

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
    (and libbpf's candidate pruning); `target_names` labels the targets in
    messages (default: the sequence's `names`, else "vmlinux", "module #1", ...).

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
    tgts = targets
    names = list(target_names or getattr(targets, "names", None) or ())
    for n in range(len(names), len(tgts)):
        names.append("vmlinux" if n == 0 else f"module #{n}")
    if cache is None:
        cache = CoreCache()
    cache._bind(local, tgts)
    slots: list[int] = []
    slot = 0
    for ins in insns:
        slots.append(slot)
        slot += 2 if ins.opcode == _LD_IMM64 else 1

    results: list[CoreResult] = []
    patches: list[_Patch] = []
    for n, (index, relo) in enumerate(relos):
        if not 0 <= index < len(insns):
            raise CoreError(f"CO-RE relocation #{n} ({relo!r}) refers to instruction {index}, "
                            f"beyond the program's {len(insns)} instructions")
        result, patch = _relocate_one(n, insns[index], index, slots[index], relo, local, tgts,
                                      names, cache)
        results.append(result)
        patches.append(patch)

    grow: list[int] = []
    for p in patches:
        ins = insns[p.index]
        if p.poison:
            if ins.opcode == _LD_IMM64:
                grow.append(p.index)
            ins.opcode, ins.dst, ins.src, ins.off, ins.imm = _CALL, 0, 0, 0, POISON_IMM
            ins.reference = None
            continue
        if p.opcode is not None:
            ins.opcode = p.opcode
        if p.off is not None:
            ins.off = p.off
        if p.imm is not None:
            ins.imm = p.imm
    for index in sorted(grow, reverse=True):
        insns.insert(index + 1, _poison_call())
    return results


class _Decision:
    """A resolved relocation, for `CoreCache.decisions`."""

    __slots__ = ("desc", "ncands", "res", "target", "target_id")

    def __init__(self, res: _Res, desc: str, target: str | None, target_id: int | None,
                 ncands: int) -> None:
        self.res, self.desc, self.target = res, desc, target
        self.target_id, self.ncands = target_id, ncands


def _relocate_one(n: int, ins: Instruction, index: int, slot: int, relo: CoreRelo, local: Spec,
                  targets: Sequence[Spec], names: Sequence[str],
                  cache: CoreCache) -> tuple[CoreResult, _Patch]:
    kind = relo.kind
    kname = _KIND_NAMES.get(kind, str(kind))
    key = (int(kind), relo.type_id, relo.access)
    known = cache.decisions.get(key)
    if known is not None:
        def fail_known(msg: str) -> NoReturn:
            raise CoreError(f"CO-RE relocation #{n} <{kname}> of {known.desc} at instruction "
                            f"{slot}: {msg}")

        res = copy.copy(known.res)      # _patch may mark it poisoned
        patch = _patch(ins, index, res, fail_known)
        return CoreResult(index, slot, kind, relo.type_id, relo.access, known.desc,
                          res.orig_val & _MASK64, res.new_val & _MASK64,
                          poisoned=res.poison, reason=res.reason, target=known.target,
                          target_type_id=known.target_id, candidates=known.ncands), patch
    try:
        local_type: Type | None = local.type_by_id(relo.type_id)
    except BTFError:
        local_type = None
    desc = f"[{relo.type_id}] {_label(local_type) if local_type else '?'} + {relo.access}"

    def fail(msg: str) -> NoReturn:
        raise CoreError(f"CO-RE relocation #{n} <{kname}> of {desc} at instruction {slot}: "
                        f"{msg}")

    try:
        lspec = _parse_spec(local, relo)
    except _Invalid as e:
        fail(f"cannot parse the relocation: {e}")
    assert local_type is not None
    desc = lspec.path()

    if kind == CoreReloKind.TYPE_ID_LOCAL:
        res = _Res()
        res.validate = False
        res.orig_val = res.new_val = relo.type_id
        patch = _patch(ins, index, res, fail)
        return CoreResult(index, slot, kind, relo.type_id, relo.access, desc, relo.type_id,
                          relo.type_id, target=f"[{relo.type_id}] {_label(local_type)} (local)",
                          target_type_id=relo.type_id), patch

    if not local_type.name:
        fail("relocations of anonymous types are not supported")

    try:
        cands = cache.cands.get(relo.type_id)
        if cands is None:
            cands = cache.cands[relo.type_id] = _find_cands(local_type, targets, names)
        chosen: _Res | None = None
        chosen_spec: _FSpec | None = None
        chosen_cand: _Cand | None = None
        kept: list[_Cand] = []
        for cand in cands:
            tspec = _FSpec(cand.spec, cand.id, cand.type, kind)
            if not _spec_match(lspec, tspec):
                continue
            res = _calc(kind, lspec, tspec)
            if chosen is None:
                chosen, chosen_spec, chosen_cand = res, tspec, cand
            elif chosen_spec is not None and tspec.bit_offset != chosen_spec.bit_offset:
                fail(f"field offset ambiguity: {chosen_spec.detail()} in {chosen_cand} "
                     f"!= {tspec.detail()} in {cand}")
            elif res.poison != chosen.poison or res.new_val != chosen.new_val:
                def show(r: _Res) -> str:
                    return "failure" if r.poison else f"success {r.new_val}"
                fail(f"relocation decision ambiguity: {show(chosen)} for {chosen_cand} "
                     f"!= {show(res)} for {cand}")
            kept.append(cand)
        if kept:
            cands[:] = kept
        if chosen is None:
            chosen = _calc(kind, lspec, None)
            if chosen.poison:
                if not cands:
                    chosen.reason = (f"no {_kind_str(local_type)} named "
                                     f"{essential_name(local_type.name)!r} in the target BTF")
                else:
                    what = "enum value" if kind in _ENUM_KINDS else "field"
                    chosen.reason = (f"{what} not found in " + ", ".join(map(str, cands)))
    except _Invalid as e:
        fail(str(e))

    decided = copy.copy(chosen)
    patch = _patch(ins, index, chosen, fail)
    target = None
    target_id = None
    if chosen_cand is not None and chosen_spec is not None:
        target_id = chosen_cand.id
        target = f"{chosen_spec.detail() if kind in _FIELD_KINDS else chosen_spec.path()}" \
                 f" [{chosen_cand.id}] in {chosen_cand.origin}"
    cache.decisions[key] = _Decision(decided, desc, target, target_id, len(cands))
    return CoreResult(index, slot, kind, relo.type_id, relo.access, desc,
                      chosen.orig_val & _MASK64, chosen.new_val & _MASK64,
                      poisoned=chosen.poison, reason=chosen.reason, target=target,
                      target_type_id=target_id, candidates=len(cands)), patch


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


# -- verifier log -----------------------------------------------------------------

_INVALID_RE = re.compile(r"invalid func unknown#" + str(POISON_IMM) + r"\b")
_CALL_RE = re.compile(r"^\s*(\d+): \(85\) call unknown#" + str(POISON_IMM) + r"\b")


def explain_poison(log: str, results: Sequence[CoreResult]) -> str | None:
    """Explain a verifier rejection caused by a poisoned CO-RE instruction.

    `log` is the verifier log, `results` what `relocate` returned for the
    program (with `slot` adjusted by the loader if it moved the code). Returns
    None when the log is not about a poisoned instruction, else a message
    naming the instruction, the relocation (type and field path) and why it
    failed, with the guard that would have made it dead code.
    """
    lines = log.splitlines()
    hit = None
    for i in range(len(lines) - 1, -1, -1):
        if _INVALID_RE.search(lines[i]):
            hit = i
            break
    if hit is None:
        return None
    slot: int | None = None
    for j in range(hit, max(hit - 64, -1), -1):
        m = _CALL_RE.match(lines[j])
        if m:
            slot = int(m.group(1))
            break
    poisoned = [r for r in results if r.poisoned]
    exact = [r for r in poisoned if r.slot == slot]
    where = f"instruction {slot}" if slot is not None else "an instruction"

    def one(r: CoreResult) -> str:
        guard = _GUARDS.get(r.kind)
        text = f"<{r.kind_name}> {r.description}: {r.reason or 'cannot be relocated'}"
        if guard:
            text += f"; guard the access with {guard}"
        return text

    if exact:
        return f"{where}: unguarded CO-RE relocation failed: {one(exact[0])}"
    if poisoned:
        listing = "; ".join(f"insn {r.slot}: {one(r)}" for r in poisoned)
        return (f"{where}: a poisoned CO-RE relocation was reached; the program's failed "
                f"relocations are: {listing}")
    return (f"{where}: a poisoned CO-RE relocation (call unknown#{POISON_IMM}) was reached, "
            "but no failed relocation is known for this program")
