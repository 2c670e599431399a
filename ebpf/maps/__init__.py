"""BPF maps: `MapSpec` (what to create) and `Map` (a dict-like kernel map).

```python
spec = MapSpec(type=MapType.HASH, key_size=4, value_size=8, max_entries=1 << 20,
               name="counts")
with Map(spec) as m:
    m[1] = 2                      # ints are packed native-endian to key/value size
    m[1]                          # -> b"\\x02\\0\\0\\0\\0\\0\\0\\0" (typed with BTF)
    m.update(1, 3, UpdateFlags.EXIST)
    keys, values = m.lookup_batch()
```

Keys and values accept `int` (native byte order, two's complement when
negative), bytes-like objects and ctypes instances of the exact size. With BTF
key/value types (`MapSpec.key`/`.value`, or read back from the kernel for maps
opened by pin/id) they also accept what `ebpf.btf.values.encode` does (dicts for
structs, sequences for arrays), and lookups return typed values: ints for
integer and enum types, `ebpf.btf.to_ctypes` instances for structs, unions and
arrays; `raw=True` (on `lookup`, `get`, `keys`, `values`, `items`) always gives
bytes. Per-CPU maps take and return a list with one value per possible CPU.

A missing key raises `KeyNotFoundError` (a `KeyError`); a wrong size raises
`InvalidArgumentError` (a `ValueError`) saying the expected size. Iteration
(`keys()`, `values()`, `items()`) tolerates concurrent deletes: nothing is
produced twice and deleted keys are skipped.

A `Map` may be used from several threads. The thread that created it gets a
preallocated fast path; other threads use buffers of their own.
"""

from __future__ import annotations

from .._sys.types import MapType
from ..spec import kernel_name
from ..spec.maps import MapSpec, PinType
from .core import Map, map_ids

__all__ = [
    "Batch",
    "IterationAbortedError",
    "KeyExistsError",
    "Map",
    "MapFlags",
    "MapInfo",
    "MapSpec",
    "MapType",
    "PinType",
    "UpdateFlags",
    "map_ids",
    "sanitize_name",
]

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from ..spec.flags import MapFlags
    from ._batch_type import Batch
    from .failures import KeyExistsError
    from .flags import UpdateFlags
    from .info import MapInfo
    from .iteration import IterationAbortedError

sanitize_name = kernel_name
"""Alias of `ebpf.spec.kernel_name`."""


def __getattr__(name: str) -> Any:
    if name == "Batch":
        from ._batch_type import Batch  # its NamedTuple class on first use (process start)

        return Batch
    if name == "IterationAbortedError":
        from .iteration import IterationAbortedError  # on first use (process start)

        return IterationAbortedError
    if name == "MapFlags":
        from ..spec.flags import MapFlags  # its enum class on first use (process start)

        return MapFlags
    if name == "UpdateFlags":
        from .flags import UpdateFlags  # its enum class on first use (process start)

        return UpdateFlags
    if name == "KeyExistsError":
        from .failures import KeyExistsError  # with the other map errors (process start)

        return KeyExistsError
    if name == "MapInfo":
        from .info import MapInfo  # on first use: its frozen dataclass costs ~1 ms to import

        return MapInfo
    raise AttributeError(f"module 'ebpf.maps' has no attribute {name!r}")
