"""`ebpf map`: show, dump, read, write, pin and create maps, as bpftool's `map` does.

    ebpf map show|list [MAP] [--json] [-f]
    ebpf map dump MAP
    ebpf map lookup MAP key BYTES
    ebpf map update MAP key BYTES value BYTES [any | exist | noexist]
    ebpf map delete MAP key BYTES
    ebpf map pin MAP FILE
    ebpf map create FILE type TYPE key KEY_SIZE value VALUE_SIZE entries MAX name NAME
                    [flags FLAGS] [inner_map MAP]

MAP is ``ID``, ``id ID``, ``pinned PATH`` or ``name NAME``. BYTES are bpftool's (``0x01
0x02 ...``, ``hex 01 02``) or one integer for the whole key or value. Keys and values
are shown as hex bytes and, when the map has BTF, also decoded ("formatted").
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from .common import (
    add_json,
    emit,
    enum_name,
    fdinfo,
    hex_list,
    open_one,
    open_selected,
    parse_bytes,
    parse_selector,
    pinned_paths,
    wants_json,
)

if TYPE_CHECKING:
    from ..maps import Map

__all__ = ["describe", "open_maps", "register"]


# -- selecting maps --------------------------------------------------------------------------


def open_maps(selector: tuple[str, str] | None) -> Iterator[Map]:
    """The maps a selector names (every map for None); the caller closes each."""
    from .._sys.types import BPF_MAP_GET_NEXT_ID  # on use: a subcommand loads only what it needs
    from ..maps import Map  # on use: a subcommand loads only what it needs

    return open_selected(selector, "map", from_id=Map.from_id, from_pin=Map.open_pinned,
                         next_id_cmd=BPF_MAP_GET_NEXT_ID, attribute=lambda m, _: m.info().name)


def _split_map(words: Sequence[str]) -> tuple[Map, list[str]]:
    """The map named by the first words (``ID`` or ``id|pinned|name X``), and the rest."""
    if not words:
        raise InvalidArgumentError("name a map: id ID | pinned PATH | name NAME")
    n = 1 if words[0].isdigit() else 2
    sel = parse_selector(words[:n], "map")
    assert sel is not None
    return open_one(open_maps(sel), sel, "map"), list(words[n:])


# -- show ------------------------------------------------------------------------------------


def describe(m: Map) -> dict[str, Any]:
    """bpftool's `map show` fields for one map."""
    info = m.info()
    fi = fdinfo(m.fileno())
    d: dict[str, Any] = {
        "id": info.id,
        "type": enum_name(info.type) if hasattr(info.type, "name") else int(info.type),
        "name": info.name,
        "flags": int(info.flags),
        "bytes_key": info.key_size,
        "bytes_value": info.value_size,
        "max_entries": info.max_entries,
    }
    mem = fi.get("memlock")
    if mem is not None and mem.isdigit():
        d["bytes_memlock"] = int(mem)
    d["frozen"] = int(fi.get("frozen", "0") or 0)
    if info.btf_id:
        d["btf_id"] = info.btf_id
    return d


def _show_text(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        out.append(f"{r['id']}: {r['type']}  name {r['name']}  flags {r['flags']:#x}")
        line = (f"\tkey {r['bytes_key']}B  value {r['bytes_value']}B  "
                f"max_entries {r['max_entries']}")
        if "bytes_memlock" in r:
            line += f"  memlock {r['bytes_memlock']}B"
        if r["frozen"]:
            line += "  frozen"
        out.append(line)
        if "btf_id" in r:
            out.append(f"\tbtf_id {r['btf_id']}")
        for path in r.get("pinned", ()):
            out.append(f"\tpinned {path}")
    return "\n".join(out)


def _cmd_show(args: argparse.Namespace) -> int:
    sel = parse_selector(args.target, "map")
    pins = pinned_paths("map") if args.bpffs else {}
    rows = []
    for m in open_maps(sel):
        with m:
            row = describe(m)
        if args.bpffs:
            row["pinned"] = pins.get(row["id"], [])
        rows.append(row)
    if sel is not None and sel[0] in ("id", "pinned") and wants_json(args):
        emit(args, rows[0], lambda r: _show_text([r]))
    else:
        emit(args, rows, _show_text)
    return 0


# -- entries ---------------------------------------------------------------------------------


def _per_cpu_values(m: Map, raw: bytes) -> list[bytes]:
    stride = (m.value_size + 7) & ~7
    return [raw[i:i + m.value_size] for i in range(0, len(raw), stride)]


def _formatted(t: Any, data: bytes) -> Any:
    from ..btf import values  # on use: a subcommand loads only what it needs

    return values.decode(t, data)


def entry(m: Map, key: bytes, value: bytes) -> dict[str, Any]:
    """One element as bpftool's JSON shows it: hex bytes, plus "formatted" with BTF."""
    d: dict[str, Any] = {"key": hex_list(key)}
    fmt: dict[str, Any] = {}
    if m.key_type is not None:
        fmt["key"] = _formatted(m.key_type, key)
    if m.is_per_cpu:
        per = _per_cpu_values(m, value)
        d["values"] = [{"cpu": i, "value": hex_list(v)} for i, v in enumerate(per)]
        if m.value_type is not None:
            fmt["values"] = [{"cpu": i, "value": _formatted(m.value_type, v)}
                             for i, v in enumerate(per)]
    else:
        d["value"] = hex_list(value)
        if m.value_type is not None:
            fmt["value"] = _formatted(m.value_type, value)
    if m.key_type is not None or m.value_type is not None:
        fmt.setdefault("key", d["key"])
        d["formatted"] = fmt
    return d


def _hex(data: list[str]) -> str:
    return " ".join(b[2:] for b in data)


def _entry_text(m: Map, e: dict[str, Any]) -> str:
    if "formatted" in e:
        return json.dumps(e["formatted"], indent=4)
    key = _hex(e["key"])
    if "values" in e:
        lines = [f"key: {key}"]
        lines.extend(f"value (CPU {v['cpu']:02d}): {_hex(v['value'])}" for v in e["values"])
        return "\n".join(lines)
    value = _hex(e["value"])
    broken = m.key_size > 16 or m.value_size > 16
    if broken:
        return f"key:\n{key}\nvalue:\n{value}"
    one_line = m.key_size + m.value_size <= 24
    return f"key: {key}{'  ' if one_line else chr(10)}value: {value}"


def _cmd_dump(args: argparse.Namespace) -> int:
    m, rest = _split_map(args.target)
    if rest:
        raise InvalidArgumentError(f"unexpected {' '.join(rest)!r}")
    with m:
        entries = [entry(m, k, v) for k, v in m.items(raw=True)]
        if wants_json(args):
            emit(args, entries, str)
        else:
            for e in entries:
                print(_entry_text(m, e))
            print(f"Found {len(entries)} element{'s' if len(entries) != 1 else ''}")
    return 0


def _take(words: list[str], keyword: str, stop: Sequence[str]) -> list[str] | None:
    """The words after `keyword` up to the next of `stop` (removed from `words`)."""
    if keyword not in words:
        return None
    i = words.index(keyword)
    j = i + 1
    while j < len(words) and words[j] not in stop:
        j += 1
    taken = words[i + 1:j]
    del words[i:j]
    return taken


def _key(m: Map, words: list[str]) -> bytes:
    key = _take(words, "key", ("value", "any", "exist", "noexist"))
    if key is None:
        raise InvalidArgumentError("missing `key BYTES`")
    return parse_bytes(key, m.key_size, "key")


def _cmd_lookup(args: argparse.Namespace) -> int:
    m, rest = _split_map(args.target)
    with m:
        key = _key(m, rest)
        value = m.lookup(key, raw=True)
        e = entry(m, key, value)
        if wants_json(args):
            emit(args, e, str)
        else:
            print(_entry_text(m, e))
    return 0


def _cmd_update(args: argparse.Namespace) -> int:
    from ..maps import UpdateFlags  # on use: a subcommand loads only what it needs

    m, rest = _split_map(args.target)
    with m:
        key = _key(m, rest)
        raw = _take(rest, "value", ("any", "exist", "noexist"))
        if raw is None:
            raise InvalidArgumentError("missing `value BYTES`")
        size = m.value_size
        if m.is_per_cpu and len(raw) != 1:
            from .._sys.ops import possible_cpus  # on use: a subcommand loads only what it needs

            size = ((m.value_size + 7) & ~7) * possible_cpus()
        value = parse_bytes(raw, size, "value")
        flags = {"any": UpdateFlags.ANY, "exist": UpdateFlags.EXIST,
                 "noexist": UpdateFlags.NOEXIST}
        unknown = [w for w in rest if w not in flags]
        if unknown or len(rest) > 1:
            raise InvalidArgumentError(f"unexpected {' '.join(rest)!r}: one of any, exist, "
                                       "noexist may follow the value")
        m.update(key, value, flags[rest[0]] if rest else UpdateFlags.ANY)
    return 0


def _cmd_delete(args: argparse.Namespace) -> int:
    m, rest = _split_map(args.target)
    with m:
        m.delete(_key(m, rest))
    return 0


def _cmd_pin(args: argparse.Namespace) -> int:
    m, rest = _split_map(args.target)
    with m:
        if len(rest) != 1:
            raise InvalidArgumentError("usage: ebpf map pin MAP FILE")
        m.pin(rest[0])
    return 0


def _cmd_create(args: argparse.Namespace) -> int:
    from .. import Map, MapSpec, MapType  # on use: a subcommand loads only what it needs

    words = list(args.options)
    opts: dict[str, str] = {}
    while words:
        if len(words) < 2:
            raise InvalidArgumentError(f"{words[0]!r} wants a value")
        opts[words[0]] = words[1]
        del words[:2]
    inner = None
    if "inner_map" in opts:
        raise InvalidArgumentError("inner_map is not supported by `ebpf map create`")
    known = {"type", "key", "value", "entries", "name", "flags"}
    extra = set(opts) - known
    if extra:
        raise InvalidArgumentError(f"unknown option(s) {', '.join(sorted(extra))}")
    missing = [k for k in ("type", "key", "value", "entries", "name") if k not in opts]
    if missing:
        raise InvalidArgumentError(f"missing {', '.join(missing)}")
    try:
        mtype = MapType[opts["type"].upper()]
    except KeyError:
        raise InvalidArgumentError(f"unknown map type {opts['type']!r}") from None

    def number(name: str) -> int:
        try:
            return int(opts[name], 0)
        except ValueError:
            raise InvalidArgumentError(f"{name} must be a number, got {opts[name]!r}") from None

    spec = MapSpec(name=opts["name"], type=mtype, key_size=number("key"),
                   value_size=number("value"), max_entries=number("entries"),
                   flags=number("flags") if "flags" in opts else 0, inner_map=inner)
    with Map(spec) as m:
        m.pin(args.file)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `map` and its verbs to the command line."""
    p = sub.add_parser("map", help="maps in the kernel (bpftool map)")
    verbs = p.add_subparsers(dest="verb", required=True)
    for verb in ("show", "list"):
        s = verbs.add_parser(verb, help="show maps (all, or the one selected)")
        s.add_argument("target", nargs="*", metavar="MAP",
                       help="ID | id ID | pinned PATH | name NAME")
        s.add_argument("-f", "--bpffs", action="store_true",
                       help="also list where each map is pinned under /sys/fs/bpf")
        add_json(s)
        s.set_defaults(func=_cmd_show)
    for verb, func, usage in (
            ("dump", _cmd_dump, "MAP"),
            ("lookup", _cmd_lookup, "MAP key BYTES"),
            ("update", _cmd_update, "MAP key BYTES value BYTES [any|exist|noexist]"),
            ("delete", _cmd_delete, "MAP key BYTES"),
            ("pin", _cmd_pin, "MAP FILE")):
        v = verbs.add_parser(verb, help=f"{verb} {usage}")
        v.add_argument("target", nargs="+", metavar=usage)
        add_json(v)
        v.set_defaults(func=func)
    c = verbs.add_parser("create", help="create a map and pin it at FILE")
    c.add_argument("file", metavar="FILE")
    c.add_argument("options", nargs="*", metavar="type TYPE key SIZE value SIZE entries N "
                   "name NAME [flags FLAGS]")
    c.set_defaults(func=_cmd_create)
