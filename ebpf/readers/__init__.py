"""The event readers' shared core: the record-walking helpers (`records`) and the
reader base class (`ReaderBase`: lifetime and blocking, reads, batches, numpy arrays,
asyncio, BTF decoding) that `ebpf.ringbuf.Reader` and `ebpf.perf.Reader` build on.

Internal: the public API is `ebpf.ringbuf` and `ebpf.perf`."""

from __future__ import annotations

from .base import ReaderBase
from .decoding import lookup_btf_type
from .records import (
    Batch,
    cast_records,
    map_fd,
    match_run,
    np_copy_run,
    np_match_run,
    require_numpy,
    slice_samples,
    type_name,
)

__all__ = ["Batch", "ReaderBase", "cast_records", "lookup_btf_type", "map_fd", "match_run",
           "np_copy_run", "np_match_run", "require_numpy", "slice_samples",
           "type_name"]
