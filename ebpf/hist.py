"""Histograms kept in BPF maps, read into counts and printed as BCC prints them.

    from ebpf import hist

    h = hist.log2_hist(coll.maps["latency"])      # a map keyed by log2 bucket
    print(h.format("usecs"), end="")
    h.counts                                      # numpy array (list without numpy)

The map is an array or hash map whose key is the bucket index and whose value is a
count (per-CPU maps are summed over CPUs). A map keyed by a struct of two or more
members — ``struct { u32 pid; u64 slot; }`` — holds one histogram per *section*
(the members other than the bucket), printed one after the other like BCC's
``print_log2_hist(section_header=...)``.

Buckets follow BCC's convention: for a log2 histogram bucket ``i`` (from 1) counts
values ``2**(i-1) .. 2**i - 1`` (bucket 1 also counts 0), i.e. the BPF side stores
at ``log2(v) + 1``; bucket 0 is counted but not printed. A linear histogram's
bucket ``i`` is printed as ``i``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Literal

from .errors import InvalidArgumentError

LOG2_BUCKETS = 65
"""Buckets of a log2 histogram: enough for any 64-bit value (bucket 64 ends at 2**64-1)."""

MAX_LINEAR_BUCKETS = 1 << 16
"""The largest bucket index + 1 a linear histogram read from a hash map may have."""

STARS = 40
"""Width of the distribution bar (half of it in the wide log2 layout)."""

Kind = Literal["log2", "linear"]
KeySplit = Callable[[bytes], tuple[Hashable, int]]
"""Turns a raw map key into ``(section, bucket)``."""

_SLOT_NAMES = ("slot", "bucket")


def _as_counts(values: Sequence[int]) -> Any:
    """A numpy uint64 array when numpy is installed, else a list of ints."""
    try:
        import numpy as np  # optional dependency
    except ImportError:
        return [int(v) for v in values]
    return np.asarray(list(values), dtype=np.uint64)


@dataclasses.dataclass(eq=False)
class Histogram:
    """Counts per bucket, and per section when the map had a secondary key.

    `counts[i]` is bucket `i`'s count (the sum over sections for a sectioned map); a
    numpy ``uint64`` array when numpy is installed, else a list. `sections` maps each
    secondary key to its own `Histogram` (empty for a plain map). `kind` says how
    buckets map to values (see `ranges`).
    """

    counts: Any
    kind: Kind = "log2"
    sections: dict[Hashable, Histogram] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("log2", "linear"):
            raise InvalidArgumentError(f"kind must be 'log2' or 'linear', got {self.kind!r}")
        if any(int(c) < 0 for c in self.counts):
            raise InvalidArgumentError("histogram counts must not be negative")

    @property
    def total(self) -> int:
        """The sum of all counts."""
        return sum(int(c) for c in self.counts)

    def ranges(self) -> list[tuple[int, int]]:
        """``(low, high)`` of the values each bucket counts (inclusive)."""
        if self.kind == "linear":
            return [(i, i) for i in range(len(self.counts))]
        return [(0, 0)] + [_log2_range(i) for i in range(1, len(self.counts))]

    def format(self, val_type: str = "value", *, section_header: str = "Bucket ptr",
               section_format: Callable[[Any], str] | None = None,
               strip_leading_zero: bool = False) -> str:
        """The histogram as BCC's ``print_log2_hist``/``print_linear_hist`` print it,
        one ``\\n``-terminated line each (empty when there is nothing to show).

        `val_type` heads the value column. A sectioned histogram prints each section
        after a blank line and ``<section_header> = <section>`` (`section_format` turns
        the section into text, else its ``repr``), in sorted order of the sections
        when they can be sorted. `strip_leading_zero` leaves out the empty buckets
        before the first non-empty one (the empty ones after the last are never
        shown)."""
        lines: list[str] = []
        if self.sections:
            for key in _ordered(self.sections):
                label = section_format(key) if section_format is not None else repr(key)
                lines += ["", f"{section_header} = {label}"]
                lines += self.sections[key]._rows(val_type, strip_leading_zero)
        else:
            lines = self._rows(val_type, strip_leading_zero)
        return "".join(line + "\n" for line in lines)

    def print(self, val_type: str = "value", *, file: Any = None, **options: Any) -> None:
        """Write `format(val_type, **options)` to `file` (default: stdout)."""
        (file if file is not None else sys.stdout).write(self.format(val_type, **options))

    def _rows(self, val_type: str, strip_leading_zero: bool) -> list[str]:
        counts = [int(c) for c in self.counts]
        last = max((i for i, c in enumerate(counts) if c), default=-1)
        peak = max(counts, default=0)
        if self.kind == "linear":
            return _linear_rows(counts, last, peak, val_type, strip_leading_zero)
        return _log2_rows(counts, last, peak, val_type, strip_leading_zero)

    def __repr__(self) -> str:
        nonzero = sum(1 for c in self.counts if int(c))
        extra = f", {len(self.sections)} sections" if self.sections else ""
        return (f"Histogram({self.kind}, {len(self.counts)} buckets, {nonzero} non-empty, "
                f"total={self.total}{extra})")


def _log2_range(i: int) -> tuple[int, int]:
    high = (1 << i) - 1
    low = 0 if i == 1 else 1 << (i - 1)
    return low, high


def _bar(count: int, peak: int, width: int) -> str:
    # as many stars as whole width-ths of the peak (BCC's float division, in exact integer
    # arithmetic: counts within float precision of the peak, past 2**53, stay short of it)
    return "*" * min(width, width * count // peak) if peak else ""


def _log2_rows(counts: list[int], last: int, peak: int, val_type: str,
               strip: bool) -> list[str]:
    if last <= 0:  # nothing, or only bucket 0: BCC prints nothing, not even a header
        return []
    if last <= 32:
        num, width = 10, STARS
        head = f"     {val_type:<19} : count     distribution"
    else:
        num, width = 20, STARS // 2
        head = f"               {val_type:<29} : count     distribution"
    rows = [head]
    for i in range(1, last + 1):
        if strip and not counts[i]:
            continue
        strip = False
        low, high = _log2_range(i)
        rows.append(f"{low:>{num}} -> {high:<{num}} : {counts[i]:<8} "
                    f"|{_bar(counts[i], peak, width):<{width}}|")
    return rows


def _linear_rows(counts: list[int], last: int, peak: int, val_type: str,
                 strip: bool) -> list[str]:
    if last < 0:
        return []
    rows = [f"     {val_type:<13} : count     distribution"]
    for i in range(last + 1):
        if strip and not counts[i]:
            continue
        strip = False
        rows.append(f"        {i:<10} : {counts[i]:<8} |{_bar(counts[i], peak, STARS):<{STARS}}|")
    return rows


def _ordered(sections: dict[Hashable, Histogram]) -> list[Hashable]:
    try:
        return sorted(sections)  # type: ignore[type-var]
    except TypeError:
        return list(sections)


# ---------------------------------------------------------------------------- from maps

def log2_hist(m: Any, *, key: KeySplit | None = None) -> Histogram:
    """Read a log2 histogram from map `m` (see the module docstring for the layout).

    `key` turns a raw key into ``(section, bucket)`` for keys the library cannot split
    itself; by default an integer key is the bucket, and a struct key (with BTF) is
    split into its member named ``slot`` or ``bucket`` (else its last member) and the
    section: the other member's value, or a tuple of the others' values."""
    return _read(m, "log2", key)


def linear_hist(m: Any, *, key: KeySplit | None = None) -> Histogram:
    """Read a linear histogram (bucket ``i`` counts value ``i``) from map `m`; `key`
    as for `log2_hist`."""
    return _read(m, "linear", key)


def from_counts(counts: Iterable[int], kind: Kind = "log2") -> Histogram:
    """A `Histogram` of counts already read (a list, a numpy array, a batch lookup)."""
    return Histogram(_as_counts([int(c) for c in counts]), kind)


def _read(m: Any, kind: Kind, key: KeySplit | None) -> Histogram:
    split = key if key is not None else _default_split(m)
    decode_count = _count_decoder(m)
    per_section: dict[Hashable, dict[int, int]] = {}
    for raw_key, raw_value in m.items(raw=True):
        section, bucket = split(bytes(raw_key))
        if bucket < 0:
            raise InvalidArgumentError(f"map {m.name!r}: negative bucket {bucket}")
        limit = LOG2_BUCKETS if kind == "log2" else MAX_LINEAR_BUCKETS
        if bucket >= limit:
            raise InvalidArgumentError(
                f"map {m.name!r}: bucket {bucket} is past the last {kind} bucket ({limit - 1})")
        count = decode_count(raw_value)
        if count:
            buckets = per_section.setdefault(section, {})
            buckets[bucket] = buckets.get(bucket, 0) + count
    size = _size(m, kind, per_section, key is None)
    if all(section is None for section in per_section):
        only = per_section.get(None, {})
        return Histogram(_as_counts(_dense(only, size)), kind)
    sections = {s: Histogram(_as_counts(_dense(b, size)), kind) for s, b in per_section.items()}
    total = [0] * size
    for b in per_section.values():
        for i, c in b.items():
            total[i] += c
    return Histogram(_as_counts(total), kind, sections)


def _dense(buckets: dict[int, int], size: int) -> list[int]:
    out = [0] * size
    for i, c in buckets.items():
        out[i] = c
    return out


def _size(m: Any, kind: Kind, per_section: dict[Hashable, dict[int, int]],
          plain_key: bool) -> int:
    top = max((i + 1 for b in per_section.values() for i in b), default=0)
    if kind == "log2":
        return max(top, LOG2_BUCKETS)
    if plain_key and _is_array(m):
        return max(top, int(m.max_entries))
    return top


def _is_array(m: Any) -> bool:
    return str(getattr(m.type, "name", "")) in ("ARRAY", "PERCPU_ARRAY")


def _struct_key(m: Any) -> Any:
    """The key's BTF struct when it has two or more members, else None."""
    # BTF code only for BTF-typed keys: `import ebpf.hist` loads none
    from .btf import Struct, skip_typedefs

    t = m.key_type
    if t is None:
        return None
    t = skip_typedefs(t)
    if isinstance(t, Struct) and len(t.members) >= 2:
        return t
    return None


def _default_split(m: Any) -> KeySplit:
    struct = _struct_key(m)
    if struct is not None:
        return _struct_split(struct)
    size = int(m.key_size)
    if size not in (1, 2, 4, 8):
        raise InvalidArgumentError(
            f"map {m.name!r}: cannot tell the bucket in a {size}-byte key without BTF; "
            "pass key=lambda raw: (section, bucket)")

    def plain(raw: bytes) -> tuple[Hashable, int]:
        return None, int.from_bytes(raw, sys.byteorder)
    return plain


def _struct_split(struct: Any) -> KeySplit:
    from .btf import values  # BTF code only for BTF-typed keys: `import ebpf.hist` loads none

    names = [mb.name for mb in struct.members]
    slot = next((n for n in _SLOT_NAMES if n in names), names[-1])
    others = [n for n in names if n != slot]

    def split(raw: bytes) -> tuple[Hashable, int]:
        d = values.decode(struct, raw)
        section = _hashable(d[others[0]]) if len(others) == 1 else tuple(
            _hashable(d[n]) for n in others)
        return section, int(d[slot])
    return split


def _hashable(v: Any) -> Hashable:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple((k, _hashable(x)) for k, x in v.items())
    return v  # type: ignore[no-any-return]


def _count_decoder(m: Any) -> Callable[[Any], int]:
    size = int(m.value_size)
    if size not in (1, 2, 4, 8):
        raise InvalidArgumentError(
            f"map {m.name!r}: a histogram's values are 1, 2, 4 or 8-byte counts, "
            f"not {size} bytes")
    order = sys.byteorder
    if m.is_per_cpu:
        return lambda per_cpu: sum(int.from_bytes(v[:size], order) for v in per_cpu)
    return lambda raw: int.from_bytes(raw[:size], order)


__all__ = [
    "LOG2_BUCKETS",
    "MAX_LINEAR_BUCKETS",
    "STARS",
    "Histogram",
    "KeySplit",
    "from_counts",
    "linear_hist",
    "log2_hist",
]
