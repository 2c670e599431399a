"""BTF deduplication: collapse structurally identical types into one.

    small = btf.dedup(spec)

Two types are the same when their records agree in everything but the ids they
refer to (kind, name, size, member names and offsets, enumerators, ...) and the
types they refer to are, position by position, the same again — the largest
such equivalence, so that two copies of a recursive `struct list { struct list
*next; }` are the same type. It is computed by partition refinement: start
from the classes of equal records (references ignored), then split every class
whose members refer to different classes, until no class splits. The result is
the coarsest stable partition, which is exactly "equal as (possibly infinite)
trees".

A forward declaration (`struct foo;`) becomes its definition when the BTF holds
exactly one distinct `struct foo` (union for a union forward); with none or
several, the forward stays. An enum forward (`enum e;`: an ENUM without
enumerators) likewise becomes the one distinct ENUM or ENUM64 `e` that has
enumerators, whatever the sizes; a lone one stays (identical ones collapse).
Resolving forwards can make more types equal (two `struct bar { struct foo *p;
}`, one seen through the forward), so refinement runs again until nothing more
resolves.

Variables and data sections are never merged (each describes one place in
memory). Each class keeps its first type; the output lists the kept types in
their original order and holds only the strings they use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import BTFError
from .records import Record, StringTable, encode_records, layout, marshal, parse_records
from .spec import Spec
from .types import Kind

__all__ = ["Deduplicated", "dedup", "dedup_records"]

_NEVER_MERGED = frozenset((Kind.VAR, Kind.DATASEC))
# A forward with kflag set declares a union, without it a struct.
_FWD_TARGET = {False: Kind.STRUCT, True: Kind.UNION}
# Rounds of forward resolution (each can only make classes coarser; real BTF needs 1-2).
_MAX_FWD_ROUNDS = 16


class Deduplicated:
    """The result of `dedup_records`: the kept `records` and `id_map`, where
    `id_map[old_id]` is the new id of every input id (0, void, stays 0)."""

    __slots__ = ("id_map", "records")

    def __init__(self, records: list[Record], id_map: list[int]) -> None:
        self.records = records
        self.id_map = id_map


def _shallow_key(i: int, r: Record) -> tuple[object, ...]:
    """What two records must share to be the same type, references left out."""
    info = r.info
    kind = (info >> 24) & 0x1F
    if kind in _NEVER_MERGED:
        return (-1, i)
    st_ref, refs, _ = layout(info)
    tail = r.tail
    if refs:
        tail = list(tail)
        for p in refs:
            tail[p] = -1
    return (info, r.name, -1 if st_ref else r.size_type, *tail)


def _refine(n: int, keys: Sequence[tuple[object, ...]], refs: Sequence[Sequence[int]],
            live: Sequence[int]) -> list[int]:
    """The coarsest partition of the `live` ids that refines `keys` and is stable
    under `refs`: a class number per id (void, id 0, is class 0)."""
    cls = [0] * (n + 1)
    numbering: dict[object, int] = {}
    for i in live:
        cls[i] = numbering.setdefault(keys[i], len(numbering) + 1)
    count = len(numbering)
    # Only types that refer to others can split; the others keep their class, and no
    # class holds both kinds (the shallow key tells them apart). Each round renumbers
    # the referring types' classes above the leaves' numbers; the partition is stable
    # when a round finds no more classes than the one before.
    referring = [i for i in live if refs[i]]
    before = len({cls[i] for i in referring})
    while True:
        numbering = {}
        new = cls[:]
        for i in referring:
            new[i] = numbering.setdefault(
                (cls[i], *[cls[r] for r in refs[i]]), len(numbering) + count + 1)
        cls = new
        if len(numbering) == before:
            return cls
        before = len(numbering)


def dedup_records(records: Sequence[Record], aliases: Mapping[int, int] | None = None
                  ) -> Deduplicated:
    """Deduplicate the types `records` (ids 1..len(records)).

    `aliases` maps ids to other ids that take their place first (the linker
    uses it to replace an extern declaration by its definition): an aliased
    type is dropped and every reference to it follows the alias. Raises
    `BTFError` for references to ids that do not exist.
    """
    n = len(records)
    target = list(range(n + 1))
    for src, dst in (aliases or {}).items():
        if not (0 < src <= n and 0 <= dst <= n):
            raise BTFError(f"alias {src} -> {dst} is outside the {n} types")
        target[src] = dst

    def resolve(t: int) -> int:
        seen = 0
        while target[t] != t:
            t = target[t]
            seen += 1
            if seen > n:
                raise BTFError(f"aliases of type id {t} form a cycle")
        return t

    for i in range(1, n + 1):
        target[i] = resolve(i)
    raw_refs = [()] + [r.refs() for r in records]
    for i, rr in enumerate(raw_refs):
        for t in rr:
            if not 0 <= t <= n:
                raise BTFError(f"type id {i} refers to type id {t}, beyond the {n} types")
    keys: list[tuple[object, ...]] = [()] + [
        _shallow_key(i, r) for i, r in enumerate(records, 1)]

    for _ in range(_MAX_FWD_ROUNDS):
        live = [i for i in range(1, n + 1) if target[i] == i]
        refs = [[target[t] for t in rr] for rr in raw_refs]
        cls = _refine(n, keys, refs, live)
        changed = _resolve_forwards(records, live, cls, target)
        if not changed:
            break

    rep: dict[int, int] = {}
    for i in live:
        rep.setdefault(cls[i], i)
    kept = sorted(rep.values())
    new_id = [0] * (n + 1)
    for k, i in enumerate(kept, 1):
        new_id[i] = k
    id_map = [new_id[rep[cls[target[i]]]] if target[i] else 0 for i in range(n + 1)]
    id_map[0] = 0
    out = [records[i - 1].remapped(id_map.__getitem__) for i in kept]
    return Deduplicated(out, id_map)


def _resolve_forwards(records: Sequence[Record], live: Sequence[int], cls: Sequence[int],
                      target: list[int]) -> bool:
    """Point every forward declaration with exactly one candidate definition at it."""
    defs: dict[tuple[int, str], dict[int, int]] = {}
    fwds: list[tuple[int, tuple[int, str]]] = []
    for i in live:
        r = records[i - 1]
        kind = r.kind
        if kind == Kind.FWD:
            fwds.append((i, (_FWD_TARGET[bool(r.info >> 31)], r.name)))
        elif (kind == Kind.STRUCT or kind == Kind.UNION) and r.name:
            defs.setdefault((kind, r.name), {}).setdefault(cls[i], i)
        elif (kind == Kind.ENUM or kind == Kind.ENUM64) and r.name:
            # `enum e;` is an enum without enumerators (clang gives it size 0); it
            # stands for the enum or enum64 of its name, whatever that one's size.
            if r.info & 0xFFFF:
                defs.setdefault((Kind.ENUM, r.name), {}).setdefault(cls[i], i)
            else:
                fwds.append((i, (Kind.ENUM, r.name)))
    changed = False
    for i, wanted in fwds:
        found = defs.get(wanted)
        if found is not None and len(found) == 1:
            target[i] = next(iter(found.values()))
            changed = True
    if changed:
        for i in range(1, len(target)):
            t = target[i]
            if target[t] != t:
                target[i] = target[t]
    return changed


def dedup(spec: Spec) -> Spec:
    """A copy of `spec` with identical types merged and forward declarations
    resolved (see the module's documentation); strings are stored once and only
    those the kept types use remain. Split BTF is not supported (BTFError)."""
    if spec.base is not None:
        raise BTFError("btf.dedup does not support split BTF")
    records, _ = parse_records(spec.raw)
    result = dedup_records(records)
    strings = StringTable()
    return Spec(marshal(encode_records(result.records, strings), strings))
