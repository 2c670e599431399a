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

import ebpf._lazyattr as _lazyattr

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
    from ..spec.flags import MapFlags
    from ._batch_type import Batch
    from .failures import KeyExistsError
    from .flags import UpdateFlags
    from .info import MapInfo
    from .iteration import IterationAbortedError

sanitize_name = kernel_name
"""Alias of `ebpf.spec.kernel_name`."""


# On first use (process start): Batch's NamedTuple class, the enum classes MapFlags and
# UpdateFlags, KeyExistsError with the other map errors, and MapInfo, whose frozen
# dataclass costs ~1 ms to import.
__getattr__ = _lazyattr.lazy_attributes(globals(), {
    "Batch": "._batch_type", "IterationAbortedError": ".iteration", "MapFlags": "..spec.flags",
    "UpdateFlags": ".flags", "KeyExistsError": ".failures", "MapInfo": ".info"})
