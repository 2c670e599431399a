"""Whether two declarations of one global symbol have compatible types.

The rules are the ones `bpftool gen object` is observed to apply between an extern
(or a losing weak definition) and the definition, looser than type identity:

- typedefs and modifiers (const, volatile, restrict, type tags) do not count, at any
  depth: `extern const int x` matches `const volatile int x`, `key_type` matches the
  `struct my_key` it names;
- integers, floats and enums match by size alone (`int` and `__u32` match, `int` and
  `long` do not); enums and enum64s also need the same name;
- structs and unions need the same name and, when compared by value, the same members
  (names, bit offsets) of matching types; behind a pointer only the name counts, and
  a forward declaration matches the struct or union of its name;
- arrays match when their elements do (the length does not count);
- function prototypes need matching return and parameter types (names do not count).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..btf.records import Record
from ..btf.types import Kind

__all__ = ["types_match"]

_SKIPPED = frozenset((Kind.TYPEDEF, Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG))
_NAMED = frozenset((Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FWD))
_SIZED = frozenset((Kind.INT, Kind.FLOAT, Kind.ENUM, Kind.ENUM64))
# Deeper than any real C type nests by value; guards against malformed (cyclic) BTF.
_MAX_DEPTH = 64


def _strip(records: Sequence[Record], tid: int) -> tuple[int, Record | None]:
    """The id and record after typedefs and modifiers (None for void)."""
    for _ in range(_MAX_DEPTH):
        if not tid or not 0 < tid <= len(records):
            return 0, None
        r = records[tid - 1]
        if r.kind not in _SKIPPED:
            return tid, r
        tid = r.size_type
    return 0, None


def _fwd_kind(r: Record) -> int:
    return Kind.UNION if r.info >> 31 else Kind.STRUCT


def types_match(records: Sequence[Record], a: int, b: int, *, by_value: bool = True,
                depth: int = 0) -> bool:
    """Whether type ids `a` and `b` of `records` are compatible (see the module)."""
    if depth > _MAX_DEPTH:
        return False
    a, ra = _strip(records, a)
    b, rb = _strip(records, b)
    if ra is None or rb is None:
        return ra is rb
    if a == b:
        return True
    ka, kb = ra.kind, rb.kind
    if not by_value and (ka == Kind.FWD) != (kb == Kind.FWD):
        fwd, other = (ra, rb) if ka == Kind.FWD else (rb, ra)
        return fwd.name == other.name and _fwd_kind(fwd) == other.kind
    if ka != kb:
        return False
    if ka in _NAMED and ra.name != rb.name:
        return False
    if ka in _SIZED:
        return ra.size_type == rb.size_type
    if ka == Kind.FWD:
        return True
    if ka == Kind.PTR:
        return types_match(records, ra.size_type, rb.size_type, by_value=False,
                           depth=depth + 1)
    if ka == Kind.ARRAY:
        return types_match(records, int(ra.tail[0]), int(rb.tail[0]), by_value=by_value,
                           depth=depth + 1)
    if ka in (Kind.STRUCT, Kind.UNION):
        if not by_value:
            return True
        ta, tb = ra.tail, rb.tail
        if len(ta) != len(tb):
            return False
        for j in range(0, len(ta), 3):
            if ta[j] != tb[j] or ta[j + 2] != tb[j + 2]:
                return False
            if not types_match(records, int(ta[j + 1]), int(tb[j + 1]), depth=depth + 1):
                return False
        return True
    if ka == Kind.FUNC_PROTO:
        if ra.vlen != rb.vlen:
            return False
        if not types_match(records, ra.size_type, rb.size_type, by_value=by_value,
                           depth=depth + 1):
            return False
        return all(types_match(records, int(ra.tail[j]), int(rb.tail[j]), by_value=by_value,
                               depth=depth + 1) for j in range(1, len(ra.tail), 2))
    return False
