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
from typing import TYPE_CHECKING

from ..errors import BTFError
from .spec import Spec
from .types import Kind

if TYPE_CHECKING:
    from array import array

    from .records import Record, StringTable

__all__ = ["Deduplicated", "dedup", "dedup_records"]

_NEVER_MERGED = frozenset((Kind.VAR, Kind.DATASEC))
# Rounds of forward resolution (each can only make classes coarser; real BTF needs 1-2).
_MAX_FWD_ROUNDS = 16


class Deduplicated:
    """The result of `dedup_records`: `id_map[old_id]` is the new id of every input
    id (0, void, stays 0); `records` the kept types renumbered (made on first use;
    `encode` writes them without making them)."""

    __slots__ = ("_records", "_source", "id_map")

    def __init__(self, source: list[Record], id_map: list[int]) -> None:
        self._source = source  # the kept records, still with the input's ids
        self._records: list[Record] | None = None
        self.id_map = id_map

    @property
    def records(self) -> list[Record]:
        """The kept types, their references renumbered."""
        if self._records is None:
            self._records = [r.renumbered(self.id_map) for r in self._source]
        return self._records

    def encode(self, strings: StringTable) -> array[int]:
        """The type section words of the kept types (see `encode_records`)."""
        from .records import encode_records  # on use: `import ebpf.btf` loads this module

        return encode_records(self._source, strings, self.id_map)


_FWD, _STRUCT, _UNION = int(Kind.FWD), int(Kind.STRUCT), int(Kind.UNION)
_ENUM, _ENUM64, _DATASEC = int(Kind.ENUM), int(Kind.ENUM64), int(Kind.DATASEC)
_NEVER = frozenset(int(k) for k in _NEVER_MERGED)

Forwards = list[tuple[int, tuple[int, str]]]
Definitions = dict[tuple[int, str], list[int]]


def _survey(records: Sequence[Record]
            ) -> tuple[list[tuple[object, ...]], list[list[int]], Forwards, Definitions]:
    """One pass over the records. Per id (0, void, first): what two records must
    share to be the same type with their references left out, and the ids they
    refer to in record order; the forward declarations, each with the (kind, name)
    of the definitions it stands for, and the ids of the definitions by (kind, name)."""
    from .records import layout  # on use: `import ebpf.btf` loads this module

    n = len(records)
    keys: list[tuple[object, ...]] = [()]
    refs: list[list[int]] = [[]]
    add_key, add_refs = keys.append, refs.append
    fwds: Forwards = []
    defs: Definitions = {}
    for i, r in enumerate(records, 1):
        info = r.info
        st_ref, positions, _ = layout(info)
        tail = r.tail
        if positions:
            out = [r.size_type] if st_ref else []
            masked = list(tail)
            for p in positions:
                out.append(tail[p])  # type: ignore[arg-type]
                masked[p] = -1
            tail = masked
        elif st_ref:
            out = [r.size_type]
        else:
            out = []
        if out and max(out) > n:  # (ids are unsigned words: never negative)
            bad = next(t for t in out if not 0 <= t <= n)
            raise BTFError(f"type id {i} refers to type id {bad}, beyond the {n} types")
        add_refs(out)
        kind = (info >> 24) & 0x1F
        if kind in _NEVER:
            add_key((-1, i))
            continue
        add_key((info, r.name, -1 if st_ref else r.size_type, *tail))
        if kind == _FWD:
            fwds.append((i, (_UNION if info >> 31 else _STRUCT, r.name)))
        elif (kind == _STRUCT or kind == _UNION) and r.name:
            defs.setdefault((kind, r.name), []).append(i)
        elif (kind == _ENUM or kind == _ENUM64) and r.name:
            # `enum e;` is an enum without enumerators (clang gives it size 0); it
            # stands for the enum or enum64 of its name, whatever that one's size.
            if info & 0xFFFF:
                defs.setdefault((_ENUM, r.name), []).append(i)
            else:
                fwds.append((i, (_ENUM, r.name)))
    return keys, refs, [f for f in fwds if f[1] in defs], defs


def _refine(n: int, keys: Sequence[tuple[object, ...]], refs: Sequence[Sequence[int]],
            live: Sequence[int], redirect: Sequence[tuple[int, int]]) -> list[int]:
    """The coarsest partition of the `live` ids that refines `keys` and is stable
    under `refs`: a class number per id (void, id 0, is class 0). Each (id, live id)
    of `redirect` takes the live id's class: references to it count as references
    to the live one."""
    cls = [0] * (n + 1)
    numbering: dict[object, int] = {}
    for i in live:
        cls[i] = numbering.setdefault(keys[i], len(numbering) + 1)
    for i, t in redirect:
        cls[i] = cls[t]
    count = len(numbering)
    # Only types that refer to others can split; the others keep their class, and no
    # class holds both kinds (the shallow key tells them apart). Each round renumbers
    # the referring types' classes above the leaves' numbers; the partition is stable
    # when a round finds no more classes than the one before.
    # A class of one type cannot split: its type keeps its number and stays out of
    # the rounds (types only one of several linked objects has, variables, ...).
    size = [0] * (count + 1)
    for i in live:
        size[cls[i]] += 1
    referring = [(i, refs[i]) for i in live if refs[i] and size[cls[i]] > 1]
    before = len({cls[i] for i, _ in referring})
    while True:
        numbering = {}
        number = numbering.setdefault
        new = cls[:]
        of = cls.__getitem__
        for i, rs in referring:
            new[i] = number((cls[i], *map(of, rs)), len(numbering) + count + 1)
        for i, t in redirect:
            new[i] = new[t]
        cls = new
        if len(numbering) == before:
            return cls
        before = len(numbering)


def _follow(target: list[int]) -> None:
    """Point every id of `target` at the end of its chain (a live id)."""
    for i in range(1, len(target)):
        t = target[i]
        while target[t] != t:
            t = target[t]
        target[i] = t


def dedup_records(records: Sequence[Record], aliases: Mapping[int, int] | None = None,
                  *, datasecs_last: bool = False) -> Deduplicated:
    """Deduplicate the types `records` (ids 1..len(records)).

    `aliases` maps ids to other ids that take their place first (the linker
    uses it to replace an extern declaration by its definition): an aliased
    type is dropped and every reference to it follows the alias. With
    `datasecs_last`, the kept DATASECs come after all other types (as in a
    linked object). Raises `BTFError` for references to ids that do not exist.
    """
    n = len(records)
    target = list(range(n + 1))
    for src, dst in (aliases or {}).items():
        if not (0 < src <= n and 0 <= dst <= n):
            raise BTFError(f"alias {src} -> {dst} is outside the {n} types")
        target[src] = dst
    for src in aliases or ():
        t, seen = src, 0
        while target[t] != t:
            t = target[t]
            seen += 1
            if seen > n:
                raise BTFError(f"aliases of type id {t} form a cycle")
        target[src] = t
    keys, refs, fwds, defs = _survey(records)
    # A forward with one definition of its name in all the records resolves to it
    # whatever the partition: now, saving a round of refinement after it.
    single = False
    for i, wanted in fwds:
        only = [d for d in defs[wanted] if target[d] == d]
        if len(only) == 1 and target[i] == i:
            target[i] = only[0]
            single = True
    if single:
        _follow(target)

    live: Sequence[int] = []
    cls: list[int] = []
    for _ in range(_MAX_FWD_ROUNDS):
        redirect = [(i, t) for i, t in enumerate(target) if i != t]
        live = [i for i, t in enumerate(target) if i == t and i] if redirect else range(1, n + 1)
        cls = _refine(n, keys, refs, live, redirect)
        resolved = False
        for i, wanted in fwds:
            if target[i] != i:
                continue
            found = {cls[d]: d for d in reversed(defs[wanted]) if target[d] == d}
            if len(found) == 1:
                target[i] = next(iter(found.values()))
                resolved = True
        if not resolved:
            break
        _follow(target)

    rep: dict[int, int] = {}
    for i in live:
        rep.setdefault(cls[i], i)
    kept = sorted(rep.values())
    if datasecs_last:
        datasec = _DATASEC << 24
        last = [i for i in kept if records[i - 1].info & 0x1F000000 == datasec]
        if last:
            first = [i for i in kept if records[i - 1].info & 0x1F000000 != datasec]
            kept = first + last
    new_id = [0] * (n + 1)
    for k, i in enumerate(kept, 1):
        new_id[i] = k
    id_map = [new_id[rep[cls[t]]] if t else 0 for t in target]
    return Deduplicated([records[i - 1] for i in kept], id_map)


def dedup(spec: Spec) -> Spec:
    """A copy of `spec` with identical types merged and forward declarations
    resolved (see the module's documentation); strings are stored once and only
    those the kept types use remain. Split BTF is not supported (BTFError)."""
    if spec.base is not None:
        raise BTFError("btf.dedup does not support split BTF")
    from .records import StringTable, marshal, parse_records  # on use: see encode

    records, _ = parse_records(spec.raw)
    result = dedup_records(records)
    strings = StringTable()
    return Spec(marshal(result.encode(strings), strings))
