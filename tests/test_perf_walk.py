"""The numpy walk of a perf ring (`ebpf.perf.walk_array`, what `Reader.read_array` runs)
against a plain record-by-record walk, on random record streams laid out in a ring the
way the kernel writes them: samples of mixed lengths and headers, lost-sample notices,
other record types, records that wrap around the end of the ring."""

from __future__ import annotations

import mmap
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ebpf.errors import InvalidArgumentError
from ebpf.perf import view_run, walk_array

BASE = 4096          # the metadata page in front of the data pages
SAMPLE, LOST = 9, 2  # PERF_RECORD_SAMPLE, PERF_RECORD_LOST


def encode(rec: tuple[Any, ...]) -> bytes:
    """One record as the kernel writes it: a raw sample padded so that it ends 8-byte
    aligned, a lost-sample notice (header, id, count) or another record type."""
    kind = rec[0]
    if kind == "sample":
        _, data, misc, pad = rec
        body = struct.pack("<I", len(data)) + data
        body += pad[: -len(body) % 8].ljust(-len(body) % 8, b"\0")
        return struct.pack("<IHH", SAMPLE, misc, 8 + len(body)) + body
    if kind == "lost":
        return struct.pack("<IHHQQ", LOST, 0, 24, 7, rec[1])
    return struct.pack("<IHH", 3, 0, 16) + rec[1]


sample = st.tuples(st.just("sample"),
                   st.one_of(st.binary(min_size=16, max_size=16),
                             st.binary(min_size=1, max_size=40)),
                   st.sampled_from([0, 0, 0, 0, 1]), st.binary(min_size=8, max_size=8))
record = st.one_of(sample, sample, sample, sample,
                   st.tuples(st.just("lost"), st.integers(0, (1 << 64) - 1)),
                   st.tuples(st.just("other"), st.binary(min_size=8, max_size=8)))


def lay_out(records: list[bytes], size: int, tail: int) -> tuple[mmap.mmap, int]:
    """A ring of `size` bytes after BASE holding `records` from position `tail`
    (wrapping around its end); returns the mapping and the head position."""
    mm = mmap.mmap(-1, BASE + size)
    mm[BASE:] = bytes(range(256)) * (size // 256)   # garbage where nothing was written
    stream = b"".join(records)
    off = tail & (size - 1)
    first = stream[:size - off]
    mm[BASE + off:BASE + off + len(first)] = first
    rest = stream[len(first):]
    mm[BASE:BASE + len(rest)] = rest
    return mm, tail + len(stream)


def plain_walk(ring: bytes, tail: int, head: int, max_records: int,
               itemsize: int | None) -> tuple[list[bytes], int, int, str]:
    """Record by record: (samples, tail, lost, error)."""
    size = len(ring)
    twice = ring + ring
    out: list[bytes] = []
    first = None
    lost = 0
    while len(out) < max_records and tail < head:
        off = tail % size
        typ, _misc, rsize = struct.unpack_from("<IHH", twice, off)
        if typ != SAMPLE:
            if typ == LOST:
                lost += struct.unpack_from("<Q", twice, off + 16)[0]
            tail += rsize
            continue
        length = rsize - 12
        if first is None:
            first = length
            if itemsize is not None and itemsize > length:
                return out, tail, lost, "short"
        elif length != first:
            break
        out.append(twice[off + 12:off + 12 + (itemsize or length)])
        tail += rsize
    return out, tail, lost, ""


def alloc(np_: Any, count: int, item: int) -> Any:
    return np_.empty(count * item, np_.uint8).view(f"V{item}")


@settings(max_examples=150, deadline=None)
@given(records=st.lists(record, max_size=60), size_log=st.integers(8, 10),
       start=st.integers(0, 1 << 20), max_records=st.integers(1, 80),
       itemsize=st.sampled_from([None, None, 8, 16, 24]))
def test_numpy_walk_matches_the_plain_walk(records: list[tuple[Any, ...]], size_log: int,
                                           start: int, max_records: int,
                                           itemsize: int | None) -> None:
    size = 1 << size_log
    blobs = [encode(r) for r in records]
    while sum(map(len, blobs)) > size:    # what fits in the ring
        blobs.pop()
    tail = start * 8
    mm, head = lay_out(blobs, size, tail)
    q = memoryview(mm).cast("Q")
    dt = None if itemsize is None else np.dtype(f"V{itemsize}")
    want, want_tail, want_lost, error = plain_walk(bytes(mm[BASE:]), tail, head, max_records,
                                                   itemsize)
    settled: list[tuple[int, int]] = []
    try:
        if error:
            with pytest.raises(InvalidArgumentError, match="shorter than dtype"):
                walk_array(np, mm, q, BASE, size, tail, head, max_records, dt, alloc,
                           lambda t, lost: settled.append((t, lost)))
            assert settled == [(want_tail, want_lost)]
            return
        out, n, got_tail, got_lost = walk_array(np, mm, q, BASE, size, tail, head,
                                                max_records, dt, alloc,
                                                lambda t, lost: settled.append((t, lost)))
        assert not settled
        assert (got_tail, got_lost, n) == (want_tail, want_lost, len(want))
        if out is None:
            assert not want
        else:
            assert out[:n].tobytes() == b"".join(want)
    finally:
        q.release()
        mm.close()


def test_a_long_run_crosses_the_end_of_the_ring() -> None:
    """Thousands of equal samples from just before the end of a ring: chunked numpy
    runs on both sides of the one sample that wraps around, a lost notice between."""
    size = 1 << 16
    recs = [encode(("sample", i.to_bytes(16, "little"), 0, b"\xee" * 8)) for i in range(900)]
    recs.insert(700, encode(("lost", 5)))
    recs += [encode(("sample", i.to_bytes(16, "little"), 0, b"")) for i in range(900, 1800)]
    tail = (3 << 16) + size - 32 * 1000 - 4 * 8
    mm, head = lay_out(recs, size, tail)
    q = memoryview(mm).cast("Q")
    try:
        out, n, got_tail, lost = walk_array(np, mm, q, BASE, size, tail, head, 1 << 20,
                                            np.dtype("<u8,<u8"), alloc, lambda t, l_: None)
        assert (n, got_tail, lost) == (1800, head, 5)
        assert out[:n].view("<u8,<u8")["f0"].tolist() == list(range(1800))
    finally:
        q.release()
        mm.close()


def all_samples(ring: bytes, tail: int, head: int) -> tuple[list[bytes], int]:
    """Every sample (whatever its length) and the lost count, record by record."""
    size = len(ring)
    twice = ring + ring
    out: list[bytes] = []
    lost = 0
    while tail < head:
        off = tail % size
        typ, _misc, rsize = struct.unpack_from("<IHH", twice, off)
        if typ == SAMPLE:
            out.append(twice[off + 12:off + rsize])
        elif typ == LOST:
            lost += struct.unpack_from("<Q", twice, off + 16)[0]
        tail += rsize
    return out, lost


@settings(max_examples=150, deadline=None)
@given(records=st.lists(record, max_size=60), size_log=st.integers(8, 10),
       start=st.integers(0, 1 << 20), max_records=st.integers(1, 80),
       itemsize=st.sampled_from([None, None, 8]))
def test_zero_copy_runs_match_the_plain_walk(records: list[tuple[Any, ...]], size_log: int,
                                             start: int, max_records: int,
                                             itemsize: int | None) -> None:
    """`view_run` (read_array(copy=False)): each call returns a prefix of what the plain
    walk returns from the same tail (same tail and lost count after it), views are
    read-only and point into the ring, and calling it until it returns nothing yields
    every sample of the stream in order."""
    size = 1 << size_log
    blobs = [encode(r) for r in records]
    while sum(map(len, blobs)) > size:
        blobs.pop()
    tail = start * 8
    mm, head = lay_out(blobs, size, tail)
    ring = bytes(mm[BASE:])
    q = memoryview(mm).cast("Q")
    dt = None if itemsize is None else np.dtype(f"V{itemsize}")
    got: list[bytes] = []
    total_lost = 0
    settled: list[tuple[int, int]] = []
    try:
        while True:
            want, want_tail, want_lost, error = plain_walk(ring, tail, head, max_records,
                                                           itemsize)
            settled.clear()
            if error:
                with pytest.raises(InvalidArgumentError, match="shorter than dtype"):
                    view_run(np, mm, q, BASE, size, tail, head, max_records, dt,
                             lambda t, lost: settled.append((t, lost)))
                assert settled == [(want_tail, want_lost)]
                return
            out, new_tail, lost, owned = view_run(np, mm, q, BASE, size, tail, head,
                                                  max_records, dt,
                                                  lambda t, lost: settled.append((t, lost)))
            assert not settled
            if out is None:
                assert not want and (new_tail, lost) == (want_tail, want_lost)
                total_lost += lost
                break
            n = len(out)
            assert 1 <= n <= len(want)
            if owned:
                assert n == 1
            else:
                assert not out.flags.writeable and not out.flags.owndata
            cut = plain_walk(ring, tail, head, n, itemsize)
            assert (new_tail, lost) == (cut[1], cut[2])
            assert [bytes(x) for x in out] == want[:n]
            got += [bytes(x) for x in out]
            total_lost += lost
            del out
            tail = new_tail
        if itemsize is None:
            every, every_lost = all_samples(ring, start * 8, head)
            assert (got, total_lost) == (every, every_lost)
    finally:
        q.release()
        mm.close()
