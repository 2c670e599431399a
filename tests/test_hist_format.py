"""ebpf.hist's formatting, without the kernel: the histogram text for given counts
(tests/test_hist.py reads the counts from maps)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ebpf import hist


def test_empty() -> None:
    assert hist.from_counts([0] * 65).format() == ""
    assert hist.from_counts([5] + [0] * 64).format() == ""  # bucket 0 is never shown
    assert hist.from_counts([], "linear").format() == ""
    assert hist.from_counts([0, 2], "linear").format().splitlines()[1] == (
        "        0          : 0        |                                        |")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=2, max_size=65),
       st.sampled_from(["log2", "linear"]), st.booleans())
@example([2**64 - 21288, 2**64 - 22920], "log2", False)  # within a float's precision
def test_format_shape(counts: list[int], kind: hist.Kind, strip: bool) -> None:
    """Every row has the bar between pipes at full width, the last row is the last
    non-empty bucket, and only the largest count gets a full bar."""
    h = hist.Histogram(counts, kind)
    lines = h.format(strip_leading_zero=strip).splitlines()
    shown = counts[1:] if kind == "log2" else counts
    if not any(shown):
        assert lines == []
        return
    width = 20 if kind == "log2" and max(i for i, c in enumerate(counts) if c) > 32 else 40
    rows = lines[1:]
    bars = [r[r.index("|") + 1:-1] for r in rows]
    assert all(len(b) == width and r.endswith("|") for b, r in zip(bars, rows, strict=True))
    row_counts = [int(r.split(" : ")[1].split()[0]) for r in rows]
    assert row_counts[-1] == shown[max(i for i, c in enumerate(shown) if c)]
    assert max(row_counts) == max(shown)
    # bars are scaled to the largest count of all buckets (a log2 histogram's bucket 0,
    # never shown, included, as BCC does)
    assert (bars[row_counts.index(max(row_counts))] == "*" * width) == (
        max(shown) == max(counts))
