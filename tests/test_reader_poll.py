"""reader.poll(callback, timeout): libbpf's ring_buffer__poll / perf_buffer__poll shape
on the ring buffer and perf readers (records handed to a callback, lost samples to
another, the count returned)."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from bpfbuild import compile_bpf

import ebpf
from ebpf import perf, ringbuf
from ebpf._sys import perf as sysperf

pytestmark = pytest.mark.kernel

PACKET = bytes(64)


def seq_of(sample: bytes) -> int:
    return int(struct.unpack_from("<Q", sample)[0])


@pytest.fixture
def coll() -> Iterator[ebpf.Collection]:
    with ebpf.Collection(ebpf.load_collection_spec(compile_bpf("events"))) as c:
        yield c


@pytest.fixture
def on_one_cpu() -> Iterator[int]:
    """Run on one CPU, so that every test run writes to that CPU's perf ring."""
    old = os.sched_getaffinity(0)
    cpu = min(old)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, old)


def test_ringbuf_poll(coll: ebpf.Collection) -> None:
    got: list[Any] = []
    with ringbuf.Reader(coll.maps["rb"]) as rd:
        start = time.monotonic()
        assert rd.poll(got.append, timeout=0.2) == 0  # nothing: 0 after the timeout
        assert 0.15 < time.monotonic() - start < 2
        assert rd.poll(got.append, timeout=0) == 0
        coll.programs["emit"].test_run(PACKET, repeat=10)
        assert rd.poll(got.append, timeout=1) == 10
        assert [seq_of(r.sample) for r in got] == list(range(10))
        assert all(isinstance(r, ringbuf.Record) for r in got)
        # at most max_records; the rest stays for the next call
        coll.programs["emit"].test_run(PACKET, repeat=5)
        got.clear()
        assert rd.poll(got.append, timeout=1, max_records=3) == 3
        assert rd.poll(got.append, timeout=0) == 2
        assert [seq_of(r.sample) for r in got] == list(range(10, 15))


def test_poll_callback_error_keeps_the_rest(coll: ebpf.Collection) -> None:
    seen: list[int] = []

    def picky(rec: Any) -> None:
        seen.append(seq_of(rec.sample))
        if len(seen) == 2:
            raise RuntimeError("stop")

    with ringbuf.Reader(coll.maps["rb"]) as rd:
        coll.programs["emit"].test_run(PACKET, repeat=4)
        with pytest.raises(RuntimeError):
            rd.poll(picky, timeout=1)
        assert [seq_of(r.sample) for r in (rd.read(timeout=0), rd.read(timeout=0))] == [2, 3]


def test_poll_callback_may_close(coll: ebpf.Collection) -> None:
    with ringbuf.Reader(coll.maps["rb"]) as rd:
        coll.programs["emit"].test_run(PACKET, repeat=4)
        assert rd.poll(lambda rec: rd.close(), timeout=1) == 1
        with pytest.raises(ebpf.ReaderClosedError):
            rd.poll(print, timeout=0)


def test_perf_poll_and_lost(coll: ebpf.Collection, on_one_cpu: int) -> None:
    got: list[perf.Record] = []
    lost: list[tuple[int, int]] = []
    prog = coll.programs["emit"]
    with perf.Reader(coll.maps["pb"], sysperf.PAGE_SIZE) as rd:
        prog.test_run(PACKET, repeat=1000)  # far more than one page holds
        n = rd.poll(got.append, timeout=1, lost_callback=lambda cpu, k: lost.append((cpu, k)))
        assert 50 < n == len(got) < 1000
        assert [seq_of(r.sample) for r in got] == list(range(n))
        assert {r.cpu for r in got} == {on_one_cpu}
        assert lost == []  # the kernel reports the loss with the next sample
        got.clear()
        prog.test_run(PACKET)
        assert rd.poll(got.append, timeout=1,
                       lost_callback=lambda cpu, k: lost.append((cpu, k))) == 1
        assert lost == [(on_one_cpu, 1000 - n)]
        assert seq_of(got[0].sample) == 1000
        # without a lost callback the notice is dropped quietly, still not counted
        prog.test_run(PACKET, repeat=1000)
        assert rd.poll(got.append, timeout=1) > 0
        prog.test_run(PACKET)
        got.clear()
        assert rd.poll(got.append, timeout=1) == 1 and got[0].lost == 0
