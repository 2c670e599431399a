"""`Batch`, what a batch lookup returns: its own module so that `ebpf.maps`, which
loading any object imports, makes the NamedTuple class on first use (process start).
Public as ``ebpf.maps.Batch`` / ``ebpf.maps.batch.Batch`` (its `__module__`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing import NamedTuple
else:
    # the same stdlib classes, made at a fraction of the cost (process start)
    from .._sys.fastclass import NamedTuple

__all__ = ["Batch"]


class Batch(NamedTuple):
    """Result of a batch lookup: raw `keys` and `values` buffers.

    Each is a memoryview over fresh memory: 1-D with a native unsigned integer
    format when the element is 1, 2, 4 or 8 bytes (so `.tolist()` gives ints),
    else 2-D bytes of shape (count, element size). Per-CPU values are 2-D of shape
    (count, possible CPUs * round_up(value_size, 8)). With `numpy=True` both are
    numpy arrays instead.
    """

    keys: Any
    values: Any


Batch.__module__ = "ebpf.maps.batch"  # where it is public (reprs, pickles, docs)
