"""One .BTF for the linked object: every input's types, data sections merged,
externs replaced by their definitions, then deduplicated.

The types of the inputs are numbered one after the other. A DATASEC of the same
name from several inputs becomes one, its variables at the offsets their
sections landed at; an extern variable (or a definition that lost to another
object's) leaves its DATASEC and takes the winning variable's place; an extern
FUNC becomes the defining FUNC. Before that, every extern and losing
definition is checked against the winner: same kind, same type (compared after
dedup, so structurally), and for maps the same definition field by field.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..btf.dedup import Deduplicated, dedup_records
from ..btf.records import Record
from ..btf.types import Kind, Linkage
from ..errors import LinkError
from .inputs import SHARED_SECTIONS, InputObject
from .layout import Layout
from .symbols import SymbolTable
from .typematch import types_match

__all__ = ["MergedBTF"]

_MAPS = ".maps"


def _linkage(r: Record) -> int:
    return r.vlen if r.kind == Kind.FUNC else int(r.tail[0])


class MergedBTF:
    """The merged, deduplicated types (`result`) and where each input's ids start."""

    def __init__(self, objects: Sequence[InputObject], layout: Layout,
                 symbols: SymbolTable) -> None:
        self.objects, self.layout, self.symbols = objects, layout, symbols
        records: list[Record] = []
        self.bases: list[int] = []
        # Per object: name -> id of its non-static FUNC / VAR.
        self.named: list[dict[str, int]] = []
        self._externs: list[int] = []  # ids of extern FUNCs and VARs
        self._datasecs: list[tuple[int, int]] = []  # (object number, id) of DATASECs
        func, var, datasec = int(Kind.FUNC), int(Kind.VAR), int(Kind.DATASEC)
        static, extern = int(Linkage.STATIC), int(Linkage.EXTERN)
        for k, obj in enumerate(objects):
            base = len(records)
            self.bases.append(base)
            named: dict[str, int] = {}
            own = obj.read_btf(base)
            records.extend(own)
            for i, r in enumerate(own, base + 1):
                kind = (r.info >> 24) & 0x1F
                if kind == func or kind == var:
                    linkage = r.info & 0xFFFF if kind == func else r.tail[0]
                    if linkage != static:
                        named.setdefault(r.name, i)
                        if linkage == extern:
                            self._externs.append(i)
                elif kind == datasec:
                    self._datasecs.append((k, i))
            self.named.append(named)
        self.records = records
        self.aliases: dict[int, int] = {}
        self._merge_datasecs()
        self._resolve_externs()
        self.result: Deduplicated = dedup_records(records, self.aliases, datasecs_last=True)
        self._check_declarations()

    # -- data sections ---------------------------------------------------------

    def _defining_id(self, name: str) -> int | None:
        k = self.symbols.winner(name)
        return self.named[k].get(name) if k is not None else None

    def _merge_datasecs(self) -> None:
        records = self.records
        groups: dict[str, list[tuple[int, int]]] = {}
        for k, i in self._datasecs:
            groups.setdefault(records[i - 1].name, []).append((k, i))
        # clang leaves the offsets of a relocatable object's DATASECs at 0: the
        # symbols say where each variable is (per object: section -> name -> offset).
        # A name twice in a section (static variables of several files in a linked
        # input) keeps its DATASEC offset.
        where_is: list[dict[int, dict[str, int]]] = []
        for obj in self.objects:
            by_section: dict[int, dict[str, int]] = {}
            for sym in obj.symbols:
                if sym.name:
                    at = by_section.setdefault(sym.section_index, {})
                    at[sym.name] = -1 if sym.name in at else sym.value
            where_is.append(by_section)
        for name, members in groups.items():
            out = self.layout.sections.get(name)
            entries: list[tuple[int, int, int]] = []
            externs: dict[str, int] = {}
            shared = name in SHARED_SECTIONS
            for k, i in members:
                obj = self.objects[k]
                sec = obj.elf.section_by_name(name)
                where = self.layout.place.get((k, sec.index)) if sec is not None else None
                shift = where[1] if where is not None else 0
                at = where_is[k].get(sec.index, {}) if sec is not None else {}
                tail = records[i - 1].tail
                for j in range(0, len(tail), 3):
                    vid, off, size = int(tail[j]), int(tail[j + 1]), int(tail[j + 2])
                    if not 0 < vid <= len(records):
                        raise LinkError(f"{obj.name!r}: DATASEC {name!r} refers to type id "
                                        f"{vid - self.bases[k]}, which does not exist")
                    v = records[vid - 1]
                    found = at.get(v.name, -1)
                    off = found if found >= 0 else off
                    linkage = _linkage(v) if v.kind in (Kind.VAR, Kind.FUNC) else 0
                    if shared and k != members[0][0]:
                        # One copy of license/version: the first object's variables.
                        same = next((e[0] for e in entries if e[1] == off + shift), None)
                        if same is not None:
                            self.aliases[vid] = same
                        continue
                    if linkage == Linkage.STATIC:
                        entries.append((vid, off + shift, size))
                        continue
                    winner = self.symbols.winner(v.name)
                    if winner == k and linkage != Linkage.EXTERN:
                        entries.append((vid, off + shift, size))
                    elif winner is None and linkage == Linkage.EXTERN:
                        first = externs.setdefault(v.name, vid)
                        if first == vid:
                            entries.append((vid, off, size))
                        else:
                            self.aliases[vid] = first
                    else:
                        target = self._defining_id(v.name)
                        if target is not None and target != vid:
                            self.aliases[vid] = target
            entries.sort(key=lambda e: e[1])
            first_id = members[0][1]
            size = out.size if out is not None else records[first_id - 1].size_type
            records[first_id - 1] = Record(
                Kind.DATASEC << 24 | len(entries), name, size,
                [x for e in entries for x in e])
            for _, i in members[1:]:
                self.aliases[i] = first_id

    def _resolve_externs(self) -> None:
        """An extern FUNC, or an extern VAR outside any DATASEC (clang lists only
        .kconfig/.ksyms externs in one), becomes the definition when there is one."""
        for i in self._externs:
            if i not in self.aliases:
                target = self._defining_id(self.records[i - 1].name)
                if target is not None and target != i:
                    self.aliases[i] = target

    # -- checks ----------------------------------------------------------------

    def _check_declarations(self) -> None:
        """Every declaration of a global name against the winning definition (or,
        with none, against the first declaration)."""
        for name, g in self.symbols.globals.items():
            ref = g.definition if g.definition is not None else g.decls[0]
            wk = ref.obj
            wid = self.named[wk].get(name)
            if wid is None:
                continue
            for decl in g.decls:
                if decl.obj == wk:
                    continue
                did = self.named[decl.obj].get(name)
                if did is not None:
                    self._compare(name, wk, wid, decl.obj, did)

    def _compare(self, name: str, wk: int, wid: int, k: int, did: int) -> None:
        records = self.records
        w, d = records[wid - 1], records[did - 1]
        a, b = self.objects[wk].name, self.objects[k].name
        if w.kind != d.kind:
            what = {Kind.FUNC: "a function", Kind.VAR: "a variable"}
            raise LinkError(f"symbol {name!r} is {what[Kind(w.kind)]} in {a!r} but "
                            f"{what[Kind(d.kind)]} in {b!r}")
        if w.kind == Kind.FUNC:
            pw, pd = records[w.size_type - 1], records[d.size_type - 1]
            if pw.vlen != pd.vlen:
                raise LinkError(f"function {name!r} takes {pw.vlen} parameters in {a!r} but "
                                f"{pd.vlen} in {b!r}")
            if not types_match(records, pw.size_type, pd.size_type):
                raise LinkError(f"function {name!r} returns {self._describe(pw.size_type)} in "
                                f"{a!r} but {self._describe(pd.size_type)} in {b!r}")
            for j in range(pw.vlen):
                tw, td = int(pw.tail[2 * j + 1]), int(pd.tail[2 * j + 1])
                if not types_match(records, tw, td):
                    raise LinkError(f"function {name!r}: parameter {j + 1} is "
                                    f"{self._describe(tw)} in {a!r} but {self._describe(td)} "
                                    f"in {b!r}")
            return
        if self._in_maps(wk, wid) or self._in_maps(k, did):
            self._compare_maps(name, a, w.size_type, b, d.size_type)
            return
        if not types_match(records, w.size_type, d.size_type):
            raise LinkError(f"variable {name!r} is {self._describe(w.size_type)} in {a!r} but "
                            f"{self._describe(d.size_type)} in {b!r}")

    def _in_maps(self, k: int, vid: int) -> bool:
        for r in self.objects[k].btf:
            if r.kind == Kind.DATASEC and r.name == _MAPS:
                return any(int(r.tail[j]) == vid for j in range(0, len(r.tail), 3))
        return False

    def _map_fields(self, tid: int) -> dict[str, tuple[str, int]]:
        """A map definition's fields: ("value", N) for __uint(f, N), ("type", id)
        for __type(f, T)."""
        records = self.records
        r = self._skip_typedefs(tid)
        fields: dict[str, tuple[str, int]] = {}
        if r is None or r.kind != Kind.STRUCT:
            return fields
        for j in range(0, len(r.tail), 3):
            fname, mtype = str(r.tail[j]), int(r.tail[j + 1])
            ptr = records[mtype - 1] if mtype else None
            if ptr is None or ptr.kind != Kind.PTR:
                fields[fname] = ("type", mtype)
                continue
            pointee = records[ptr.size_type - 1] if ptr.size_type else None
            if pointee is not None and pointee.kind == Kind.ARRAY:
                fields[fname] = ("value", int(pointee.tail[2]))
            else:
                fields[fname] = ("type", ptr.size_type)
        return fields

    def _skip_typedefs(self, tid: int) -> Record | None:
        for _ in range(32):
            if not tid:
                return None
            r = self.records[tid - 1]
            if r.kind not in (Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.TYPE_TAG):
                return r
            tid = r.size_type
        return None

    def _compare_maps(self, name: str, a: str, ta: int, b: str, tb: int) -> None:
        """Two definitions of map `name` agree field by field (in any order; key and
        value types compared as `types_match` does)."""
        fa, fb = self._map_fields(ta), self._map_fields(tb)
        for field in [*fa, *(f for f in fb if f not in fa)]:
            va, vb = fa.get(field), fb.get(field)
            if va is None or vb is None:
                has, lacks = (a, b) if va is not None else (b, a)
                raise LinkError(f"incompatible definitions of map {name!r}: {field} is set in "
                                f"{has!r} but not in {lacks!r}")
            if va[0] == "value" and vb[0] == "value":
                if va[1] != vb[1]:
                    raise LinkError(f"incompatible definitions of map {name!r}: {field} is "
                                    f"{va[1]} in {a!r} but {vb[1]} in {b!r}")
            elif va[0] != vb[0] or not types_match(self.records, va[1], vb[1]):
                raise LinkError(f"incompatible definitions of map {name!r}: the {field} types "
                                f"differ between {a!r} and {b!r}")

    def _describe(self, tid: int) -> str:
        if not tid:
            return "void"
        r = self.records[tid - 1]
        kind = Kind(r.kind).name.lower()
        if r.kind == Kind.PTR:
            return f"a pointer to {self._describe(r.size_type)}"
        if r.kind in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FLOAT):
            return f"{kind} {r.name or '(anon)'!r} of {r.size_type} bytes"
        return f"{kind} {r.name or '(anon)'!r}"
