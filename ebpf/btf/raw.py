"""BTF as bpftool's ``btf dump ... format raw`` prints it: one line per type (``[2] INT
'int' size=4 bits_offset=0 nr_bits=32 encoding=SIGNED``) and one tab-indented line per
member, enumerator, parameter or section variable; and the same records as JSON."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import BTFError
from .layout import _FIXED, _PER_VLEN
from .types import (
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
    from .spec import Spec

__all__ = ["raw_chunks", "raw_lines", "raw_records", "type_ids"]

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
    if ids is None:
        for chunk in raw_chunks(spec):
            yield from chunk
        return
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



# -- every type, straight from the type section ------------------------------------------------

_KIND_NAMES = tuple(k.name for k in Kind)
_ANON_KINDS = frozenset((Kind.PTR, Kind.ARRAY, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT,
                         Kind.FUNC_PROTO))  # (their types have no name, whatever the record says)
_INT_ENCODINGS = tuple(_ENCODINGS.get(e, "UNKN") for e in range(16))
_LINKAGE_NAMES = ("static", "global", "extern")
_CHUNK = 4096  # types per chunk


def raw_chunks(spec: Spec) -> Iterator[list[str]]:
    """bpftool's raw text of every type of `spec` (not its base), as lists of lines,
    read from the type records without making type objects: the same lines as
    `raw_lines`, and the same checks (BTFError for a reference to no type, a bad
    string offset, an unknown kind)."""
    spec._ensure_complete()
    spec._load_strings()
    words, offsets, first = spec._words, spec._offsets, spec._first_id
    nwords, ntypes = spec._nwords, len(offsets)
    maxid = first + ntypes
    cache, string = spec._strcache, spec.string
    kind_names, anon, linkages = _KIND_NAMES, _ANON_KINDS, _LINKAGE_NAMES
    fixed, per_vlen = _FIXED, _PER_VLEN
    var_names: dict[int, str] = {}

    def name_at(off: int) -> str:
        s = cache.get(off)
        if s is None:
            s = string(off) if off else ""
        return s

    def names_at(offs: Iterable[int]) -> list[str]:
        """The names at `offs`, "(anon)" for none."""
        names = list(map(cache.get, offs))
        if None in names:
            names = [name_at(o) if n is None else n for n, o in zip(names, offs, strict=True)]
        return [n or "(anon)" for n in names]

    def type_name(tid: int) -> str:
        """The `name` of the type object of id `tid` ("" for anonymous kinds)."""
        if tid < first or tid >= maxid:
            return spec.type_by_id(tid).name
        i = offsets[tid - first]
        return "" if (words[i + 1] >> 24) & 0x1F in anon else name_at(words[i])

    def fail(tid: int, i: int, what: str) -> BTFError:
        spec.type_by_id(tid)  # raises the decoder's error
        return BTFError(f"type id {tid}: {what}", spec._type_start + 4 * i)

    lines: list[str] = []
    add = lines.append
    extend = lines.extend
    for k in range(ntypes):
        tid = first + k
        i = offsets[k]
        name_off, info, st = words[i], words[i + 1], words[i + 2]
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        end = offsets[k + 1] if k + 1 < ntypes else nwords
        if not 0 < kind < 20 or end - i != 3 + fixed[kind] + per_vlen[kind] * vlen:
            raise fail(tid, i, "malformed record")
        if kind in anon:
            if name_off:
                name_at(name_off)  # (checked, not shown)
            name = "(anon)"
        else:
            name = (cache.get(name_off) or name_at(name_off) or "(anon)") if name_off else "(anon)"
        j = i + 3
        if kind == 12:  # FUNC
            add(f"[{tid}] FUNC '{name}' type_id={st} "
                f"linkage={linkages[vlen] if vlen < 3 else '(unknown)'}")
            if st >= maxid:
                raise fail(tid, i, f"reference to type id {st} out of range")
        elif kind == 13:  # FUNC_PROTO
            add(f"[{tid}] FUNC_PROTO '(anon)' ret_type_id={st} vlen={vlen}")
            if vlen:
                seg = words[j : j + 2 * vlen]
                types = seg[1::2]
                extend([f"\t'{n}' type_id={t}"
                        for n, t in zip(names_at(seg[0::2]), types, strict=True)])
                if max(types) >= maxid:
                    raise fail(tid, i, f"reference to type id {max(types)} out of range")
            if st >= maxid:
                raise fail(tid, i, f"reference to type id {st} out of range")
        elif kind == 4 or kind == 5:  # STRUCT, UNION
            add(f"[{tid}] {'STRUCT' if kind == 4 else 'UNION'} '{name}' size={st} vlen={vlen}")
            if vlen:
                seg = words[j : j + 3 * vlen]
                types = seg[1::3]
                names = names_at(seg[0::3])
                if info >> 31:
                    for n, t, b in zip(names, types, seg[2::3], strict=True):
                        if b >> 24:
                            add(f"\t'{n}' type_id={t} bits_offset={b & 0xFFFFFF} "
                                f"bitfield_size={b >> 24}")
                        else:
                            add(f"\t'{n}' type_id={t} bits_offset={b}")
                else:
                    extend([f"\t'{n}' type_id={t} bits_offset={b}"
                            for n, t, b in zip(names, types, seg[2::3], strict=True)])
                if max(types) >= maxid:
                    raise fail(tid, i, f"reference to type id {max(types)} out of range")
        elif kind == 6 or kind == 19:  # ENUM, ENUM64
            kflag = info >> 31
            add(f"[{tid}] {kind_names[kind]} '{name}' "
                f"encoding={'SIGNED' if kflag else 'UNSIGNED'} size={st} vlen={vlen}")
            if kind == 6:
                seg = words[j : j + 2 * vlen]
                for v_off, v in zip(seg[0::2], seg[1::2], strict=True):
                    if kflag and v & 0x80000000:
                        v -= 1 << 32
                    add(f"\t'{name_at(v_off) if v_off else string(0)}' val={v}")
            else:
                suffix = "LL" if kflag else "ULL"
                seg = words[j : j + 3 * vlen]
                for v_off, lo, hi in zip(seg[0::3], seg[1::3], seg[2::3], strict=True):
                    v = lo | hi << 32
                    if kflag and v & (1 << 63):
                        v -= 1 << 64
                    add(f"\t'{name_at(v_off) if v_off else string(0)}' val={v}{suffix}")
        elif kind == 1:  # INT
            enc = words[j]
            add(f"[{tid}] INT '{name}' size={st} bits_offset={(enc >> 16) & 0xFF} "
                f"nr_bits={enc & 0xFF} encoding={_INT_ENCODINGS[(enc >> 24) & 0xF]}")
        elif kind == 3:  # ARRAY
            elem, index = words[j], words[j + 1]
            add(f"[{tid}] ARRAY '(anon)' type_id={elem} index_type_id={index} "
                f"nr_elems={words[j + 2]}")
            if max(elem, index) >= maxid:
                raise fail(tid, i, f"reference to type id {max(elem, index)} out of range")
        elif kind == 7:  # FWD
            add(f"[{tid}] FWD '{name}' fwd_kind={'union' if info >> 31 else 'struct'}")
        elif kind == 14:  # VAR
            linkage = words[j]
            add(f"[{tid}] VAR '{name}' type_id={st}, "
                f"linkage={linkages[linkage] if linkage < 3 else '(unknown)'}")
            if st >= maxid:
                raise fail(tid, i, f"reference to type id {st} out of range")
            var_names[tid] = name
        elif kind == 15:  # DATASEC
            add(f"[{tid}] DATASEC '{name}' size={st} vlen={vlen}")
            seg = words[j : j + 3 * vlen]
            for v_type, v_off, v_size in zip(seg[0::3], seg[1::3], seg[2::3], strict=True):
                if v_type >= maxid:
                    raise fail(tid, i, f"reference to type id {v_type} out of range")
                v_name = var_names.get(v_type)
                if v_name is None:
                    v_name = type_name(v_type) or "(anon)"
                add(f"\ttype_id={v_type} offset={v_off} size={v_size} (VAR '{v_name}')")
        elif kind == 16:  # FLOAT
            add(f"[{tid}] FLOAT '{name}' size={st}")
        elif kind == 17:  # DECL_TAG
            idx = words[j]
            add(f"[{tid}] DECL_TAG '{name}' type_id={st} component_idx="
                f"{idx - (1 << 32) if idx & 0x80000000 else idx}")
            if st >= maxid:
                raise fail(tid, i, f"reference to type id {st} out of range")
        else:  # PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
            add(f"[{tid}] {kind_names[kind]} '{name}' type_id={st}")
            if st >= maxid:
                raise fail(tid, i, f"reference to type id {st} out of range")
        if k % _CHUNK == _CHUNK - 1:
            yield lines
            lines = []
            add = lines.append
            extend = lines.extend
    if lines:
        yield lines
