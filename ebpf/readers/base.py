"""`ReaderBase`: everything the ring buffer and perf buffer readers share."""

from __future__ import annotations

from .aio import ReaderAsync

__all__ = ["ReaderBase"]


class ReaderBase(ReaderAsync):
    """Blocking/deadline/async plumbing, reads, batches, numpy arrays and decoding,
    shared by `ebpf.ringbuf.Reader` and `ebpf.perf.Reader`. Made of
    `ReaderLifetime` (closing, fork(), deadlines, waiting), `ReaderDecoding`,
    `ReaderReads` and `ReaderAsync`.

    A reader subclass provides `_rings` (objects with `records`, `batch`, `array`,
    `close`), `_poller`, `_close_rings`, `_requeue`, and the record accessors
    (`_sample_of`, `_ring_of`, `_lost_of`, `_remaining_of`) when its records are
    not shaped like ``(sample, remaining, ring)``.
    """
