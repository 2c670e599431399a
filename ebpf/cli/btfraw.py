"""BTF as bpftool's ``btf dump ... format raw`` prints it: one line per type (``[2] INT
'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED``) and one tab-indented line per
member, enumerator, parameter or section variable; and the same records as JSON."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..btf import (
    Array,
    Composite,
    Datasec,
    DeclTag,
    Enum,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Kind,
    Linkage,
    TypeTag,
    Var,
)

if TYPE_CHECKING:
    from ..btf import Spec

__all__ = ["raw_lines", "raw_records", "type_ids"]

_ENCODINGS = {0: "(none)", int(IntEncoding.SIGNED): "SIGNED", int(IntEncoding.CHAR): "CHAR",
              int(IntEncoding.BOOL): "BOOL"}
_LINKAGE = {int(Linkage.STATIC): "static", int(Linkage.GLOBAL): "global",
            int(Linkage.EXTERN): "extern"}


def type_ids(spec: Spec) -> range:
    """The ids of `spec`'s own types (after its base's, for split BTF)."""
    first = len(spec.base) if spec.base is not None else 1
    return range(first, len(spec))


def _name(name: str) -> str:
    return name if name else "(anon)"


def _linkage(value: int) -> str:
    return _LINKAGE.get(int(value), "(unknown)")


def raw_records(spec: Spec, ids: Iterable[int] | None = None
                ) -> Iterator[dict[str, Any]]:
    """One dict per type, with bpftool's JSON field names."""
    tid_of = spec.type_id
    for tid in (type_ids(spec) if ids is None else ids):
        t = spec.type_by_id(tid)
        kind = Kind.ENUM64 if isinstance(t, Enum) and t.is64 else Kind(t.kind)
        d: dict[str, Any] = {"id": tid, "kind": kind.name, "name": _name(t.name)}
        if isinstance(t, Int):
            d.update(size=t.size, bits_offset=t.offset, nr_bits=t.bits,
                     encoding=_ENCODINGS.get(int(t.encoding), "UNKN"))
        elif isinstance(t, Array):
            d.update(type_id=tid_of(t.type), index_type_id=tid_of(t.index),
                     nr_elems=t.nelems)
        elif isinstance(t, Composite):
            members = []
            for m in t.members:
                md: dict[str, Any] = {"name": _name(m.name), "type_id": tid_of(m.type),
                                      "bits_offset": m.offset_bits}
                if m.bitfield_size:
                    md["bitfield_size"] = m.bitfield_size
                members.append(md)
            d.update(size=t.size, vlen=len(members), members=members)
        elif isinstance(t, Enum):
            d.update(encoding="SIGNED" if t.signed else "UNSIGNED", size=t.size,
                     vlen=len(t.values),
                     values=[{"name": v.name, "val": v.value} for v in t.values])
        elif isinstance(t, Fwd):
            d["fwd_kind"] = "union" if t.union else "struct"
        elif isinstance(t, Func):
            d.update(type_id=tid_of(t.type), linkage=_linkage(t.linkage))
        elif isinstance(t, FuncProto):
            params = [{"name": _name(p.name), "type_id": tid_of(p.type)} for p in t.params]
            d.update(ret_type_id=tid_of(t.return_type), vlen=len(params), params=params)
        elif isinstance(t, Var):
            d.update(type_id=tid_of(t.type), linkage=_linkage(t.linkage))
        elif isinstance(t, Datasec):
            d.update(size=t.size, vlen=len(t.vars),
                     vars=[{"type_id": tid_of(v.type), "offset": v.offset, "size": v.size}
                           for v in t.vars])
        elif isinstance(t, Float):
            d["size"] = t.size
        elif isinstance(t, DeclTag):
            d.update(type_id=tid_of(t.type), component_idx=t.component_idx)
        elif isinstance(t, TypeTag) or hasattr(t, "type"):
            d["type_id"] = tid_of(t.type)
        yield d


def raw_lines(spec: Spec, ids: Iterable[int] | None = None) -> Iterator[str]:
    """bpftool's raw text, one line at a time (members etc. as their own lines)."""
    var_names: dict[int, str] = {}
    for d in raw_records(spec, ids):
        kind = d["kind"]
        head = f"[{d['id']}] {kind} '{d['name']}'"
        if kind == "INT":
            yield (f"{head} size={d['size']} bits_offset={d['bits_offset']} "
                   f"nr_bits={d['nr_bits']} encoding={d['encoding']}")
        elif kind == "ARRAY":
            yield (f"{head} type_id={d['type_id']} index_type_id={d['index_type_id']} "
                   f"nr_elems={d['nr_elems']}")
        elif kind in ("STRUCT", "UNION"):
            yield f"{head} size={d['size']} vlen={d['vlen']}"
            for m in d["members"]:
                bits = f" bitfield_size={m['bitfield_size']}" if "bitfield_size" in m else ""
                yield f"\t'{m['name']}' type_id={m['type_id']} bits_offset={m['bits_offset']}{bits}"
        elif kind in ("ENUM", "ENUM64"):
            yield f"{head} encoding={d['encoding']} size={d['size']} vlen={d['vlen']}"
            suffix = ("LL" if d["encoding"] == "SIGNED" else "ULL") if kind == "ENUM64" else ""
            for v in d["values"]:
                yield f"\t'{v['name']}' val={v['val']}{suffix}"
        elif kind == "FWD":
            yield f"{head} fwd_kind={d['fwd_kind']}"
        elif kind == "FUNC":
            yield f"{head} type_id={d['type_id']} linkage={d['linkage']}"
        elif kind == "FUNC_PROTO":
            yield f"{head} ret_type_id={d['ret_type_id']} vlen={d['vlen']}"
            for p in d["params"]:
                yield f"\t'{p['name']}' type_id={p['type_id']}"
        elif kind == "VAR":
            yield f"{head} type_id={d['type_id']}, linkage={d['linkage']}"
        elif kind == "DATASEC":
            yield f"{head} size={d['size']} vlen={d['vlen']}"
            for v in d["vars"]:
                name = var_names.get(v["type_id"])
                if name is None:
                    name = _name(spec.type_by_id(v["type_id"]).name)
                yield (f"\ttype_id={v['type_id']} offset={v['offset']} size={v['size']} "
                       f"(VAR '{name}')")
        elif kind == "FLOAT":
            yield f"{head} size={d['size']}"
        elif kind == "DECL_TAG":
            yield f"{head} type_id={d['type_id']} component_idx={d['component_idx']}"
        else:  # PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
            yield f"{head} type_id={d['type_id']}"
        if kind == "VAR":
            var_names[d["id"]] = d["name"]

