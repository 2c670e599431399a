"""Short ``repr``s of the specs: names and counts instead of every instruction and type
(a dataclass repr of a whole object's spec runs to kilobytes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .collection import CollectionSpec, VariableSpec
    from .maps import MapSpec
    from .programs import ProgramSpec

__all__ = ["collection_repr", "map_repr", "program_repr", "type_name", "variable_repr"]

_MAX_TYPE_NAME = 60


def _enum(v: Any) -> str:
    name = getattr(v, "name", None)
    return name if isinstance(name, str) else repr(v)


def type_name(t: Any) -> str:
    """A BTF type as a short C-like name (``struct event``, ``u32[4]``)."""
    from ..btf.values import describe  # BTF code only to name a type: `import ebpf.spec` loads none

    try:
        text = describe(t)
    except Exception:  # a malformed type must not make repr fail
        text = type(t).__name__
    return text if len(text) <= _MAX_TYPE_NAME else text[: _MAX_TYPE_NAME - 3] + "..."


def program_repr(p: ProgramSpec) -> str:
    """``ProgramSpec(name='x', type=KPROBE, section='kprobe/f', 42 instructions)``."""
    parts = [f"name={p.name!r}", f"type={_enum(p.type)}"]
    if p.section:
        parts.append(f"section={p.section!r}")
    if p.attach_type is not None:
        parts.append(f"attach_type={_enum(p.attach_type)}")
    if p.attach_to and not p.section:  # the section names the target already
        parts.append(f"attach_to={p.attach_to!r}")
    n = len(p.instructions)
    parts.append(f"{n} instruction{'s' if n != 1 else ''}")
    return f"ProgramSpec({', '.join(parts)})"


def map_repr(m: MapSpec) -> str:
    """``MapSpec(name='counts', type=HASH, key_size=4, value_size=8, max_entries=1024)``
    plus what is not the default (flags, pinning, key/value types, inner map,
    contents)."""
    parts = [f"name={m.name!r}", f"type={_enum(m.type)}", f"key_size={m.key_size}",
             f"value_size={m.value_size}", f"max_entries={m.max_entries}"]
    if m.flags:
        parts.append(f"flags={int(m.flags):#x}")
    if int(m.pinning):
        parts.append(f"pinning={_enum(m.pinning)}")
    if m.key is not None:
        parts.append(f"key={type_name(m.key)}")
    if m.value is not None:
        parts.append(f"value={type_name(m.value)}")
    if m.inner_map is not None:
        parts.append(f"inner_map={m.inner_map.name or _enum(m.inner_map.type)!r}")
    if m.contents:
        parts.append(f"contents={len(m.contents)}")
    if m.freeze:
        parts.append("freeze=True")
    return f"MapSpec({', '.join(parts)})"


def variable_repr(v: VariableSpec) -> str:
    """``VariableSpec(name='pid', section='.rodata', offset=0, size=4, type=u32)``."""
    t = f", type={type_name(v.type)}" if v.type is not None else ""
    return (f"VariableSpec(name={v.name!r}, section={v.section!r}, offset={v.offset}, "
            f"size={v.size}{t})")


def collection_repr(c: CollectionSpec) -> str:
    """``CollectionSpec(programs=['a', 'b'], maps=['m'], variables=3)`` (externs and
    struct_ops when there are any)."""
    parts = [f"programs={list(c.programs)!r}", f"maps={list(c.maps)!r}",
             f"variables={len(c.variables)}"]
    if c.externs:
        parts.append(f"externs={len(c.externs)}")
    if c.struct_ops:
        parts.append(f"struct_ops={list(c.struct_ops)!r}")
    return f"CollectionSpec({', '.join(parts)})"
