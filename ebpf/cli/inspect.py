"""`ebpf inspect OBJECT`: an object's programs, maps and variables, without a kernel."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..errors import Error
from .common import add_json, emit, enum_name

#: Variables larger than this are listed with their size instead of their value (an
#: object's 16 MiB array would otherwise print millions of numbers).
INSPECT_VALUE_BYTES = 4096

if TYPE_CHECKING:
    from ..collection import CollectionSpec

__all__ = ["inspect_spec", "register"]


def _type_desc(t: Any) -> str | None:
    if t is None:
        return None
    from ..btf import values  # on use: a subcommand loads only what it needs

    return values.describe(t)


def inspect_spec(spec: CollectionSpec) -> dict[str, Any]:
    """A JSON-able description of an object's programs, maps and variables."""
    progs = []
    for name, p in spec.programs.items():
        progs.append({
            "name": name, "section": p.section, "type": enum_name(p.type),
            "attach_type": enum_name(p.attach_type), "attach_to": p.attach_to or None,
            "instructions": sum(ins.size for ins in p.instructions),
            "autoload": getattr(p, "autoload", True),
        })
    maps = []
    for name, m in spec.maps.items():
        maps.append({
            "name": name, "type": enum_name(m.type), "key_size": m.key_size,
            "value_size": m.value_size, "key": _type_desc(m.key), "value": _type_desc(m.value),
            "max_entries": m.max_entries, "flags": m.flags,
            "pinning": enum_name(m.pinning),
            "inner_map": m.inner_map.name if m.inner_map is not None else None,
        })
    variables = []
    for name, v in spec.variables.items():
        value: Any
        if v.size > INSPECT_VALUE_BYTES:
            value = f"<{v.size} bytes>"
        else:
            try:
                value = v.get()
            except Error as e:
                value = f"<{e}>"
        if isinstance(value, bytes):
            value = value.hex()
        variables.append({"name": name, "section": v.section, "type": _type_desc(v.type),
                          "offset": v.offset, "size": v.size, "value": value})
    return {"programs": progs, "maps": maps, "variables": variables}


def _inspect_text(d: dict[str, Any]) -> str:
    out = ["Programs:"]
    for p in d["programs"]:
        target = f" -> {p['attach_to']}" if p["attach_to"] else ""
        at = f" ({p['attach_type']})" if p["attach_type"] else ""
        out.append(f"  {p['name']:<24} {p['section']:<28} {p['type']}{at}{target}  "
                   f"{p['instructions']} insns")
    out.append("Maps:")
    for m in d["maps"]:
        kv = f"{m['key'] or m['key_size']} -> {m['value'] or m['value_size']}"
        pin = f" pinned:{m['pinning']}" if m["pinning"] not in (None, "none") else ""
        out.append(f"  {m['name']:<24} {m['type']:<16} {kv}  max {m['max_entries']}  "
                   f"flags {m['flags']:#x}{pin}")
    out.append("Variables:")
    for v in d["variables"]:
        out.append(f"  {v['name']:<24} {v['section']:<16} {v['type'] or v['size']} = "
                   f"{v['value']!r}")
    return "\n".join(out)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .. import load_collection_spec  # on use: a subcommand loads only what it needs

    spec = load_collection_spec(args.object)
    emit(args, inspect_spec(spec), _inspect_text)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `inspect` to the command line."""
    ins = sub.add_parser("inspect", help="show an object's programs, maps and variables")
    ins.add_argument("object")
    add_json(ins)
    ins.set_defaults(func=_cmd_inspect)
