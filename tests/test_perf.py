"""ebpf.perf against the real kernel.

Samples come from programs built with `ebpf.asm` calling bpf_perf_event_output
(BPF_F_CURRENT_CPU), run with BPF_PROG_TEST_RUN, and from a real tracepoint.
Samples are ``{u64 seq; u64 cpu}`` (plus the kernel's 4 bytes of padding).
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import gc
import os
import select
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from threadwait import wait_inside_library

import ebpf
from ebpf import asm
from ebpf._sys import perf as sysperf
from ebpf.errors import InvalidArgumentError
from ebpf.perf import Reader, Record
from ebpf.ringbuf import Batch, DeadlineExceededError, ReaderClosedError

pytestmark = pytest.mark.kernel

PACKET = b"\0" * 64
PAGE = sysperf.PAGE_SIZE
CPUS = sysperf.online_cpus()


def counters() -> ebpf.Map:
    return ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.ARRAY, key_size=4, value_size=16,
                                 max_entries=1, name="counters"))


def read_counters(m: ebpf.Map) -> tuple[int, int]:
    return struct.unpack("<2Q", bytes(m.lookup(0, raw=True)))


def event_array() -> ebpf.Map:
    return ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.PERF_EVENT_ARRAY, key_size=4, value_size=4,
                                 max_entries=max(CPUS) + 1, name="events"))


def output_body(size: int = 16) -> list[Any]:
    """r6 = ctx; seq = fetch_add(counters[0]); perf_event_output({seq, cpu, 0..}, size);
    failures counted in counters[1]."""
    insns: list[Any] = [asm.mov_reg(asm.R6, asm.R1), asm.mov_imm(asm.R1, 0)]
    for off in range(-size - 8, 0, 8):
        insns.append(asm.store_mem(asm.R10, off, asm.R1, asm.Size.DW))
    insns += [
        asm.mov_reg(asm.R2, asm.R10), asm.add_imm(asm.R2, -size - 8),
        asm.ld_map_fd(asm.R1, "cnt"),
        asm.call("map_lookup_elem"),
        asm.jeq_imm(asm.R0, 0, "out"),
        asm.mov_reg(asm.R7, asm.R0),
        asm.mov_imm(asm.R8, 1),
        asm.atomic_add(asm.R7, 0, asm.R8, fetch=True),
        asm.store_mem(asm.R10, -size, asm.R8, asm.Size.DW),
        asm.call("get_smp_processor_id"),
        asm.store_mem(asm.R10, -size + 8, asm.R0, asm.Size.DW),
        asm.mov_reg(asm.R1, asm.R6),
        asm.ld_map_fd(asm.R2, "events"),
        asm.mov_imm32(asm.R3, -1),                     # BPF_F_CURRENT_CPU
        asm.mov_reg(asm.R4, asm.R10), asm.add_imm(asm.R4, -size),
        asm.mov_imm(asm.R5, size),
        asm.call("perf_event_output"),
        asm.jeq_imm(asm.R0, 0, "out"),
        asm.mov_imm(asm.R1, 1),
        asm.atomic_add(asm.R7, 8, asm.R1),
        asm.label("out"), asm.mov_imm(asm.R0, 0), asm.exit(),
    ]
    return insns


def output_prog(events: ebpf.Map, cnt: ebpf.Map, size: int = 16) -> ebpf.Program:
    return ebpf.Program(ebpf.ProgramSpec(type=ebpf.ProgramType.SOCKET_FILTER, license="GPL",
                                         instructions=output_body(size), name="pb_output"),
                        maps={"events": events, "cnt": cnt})


def seq_of(sample: bytes) -> int:
    return int(struct.unpack_from("<Q", sample)[0])


def drain(rd: Reader) -> list[Record]:
    out = []
    while True:
        try:
            out.append(rd.read(timeout=0))
        except DeadlineExceededError:
            return out


def open_fds() -> set[int]:
    fds = set()
    for n in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(n))
        except OSError:
            continue
        fds.add(int(n))
    return fds


def perf_mappings() -> list[str]:
    with open("/proc/self/maps") as f:
        return [ln for ln in f if "perf_event" in ln or "bpf" in ln]


@pytest.fixture
def cnt() -> Iterator[ebpf.Map]:
    with counters() as m:
        yield m


@pytest.fixture
def events() -> Iterator[ebpf.Map]:
    with event_array() as m:
        yield m


@pytest.fixture
def on_cpu0() -> Iterator[None]:
    """Run the test on CPU 0 (test runs then write to CPU 0's ring)."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {CPUS[0]})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


# --------------------------------------------------------------------------- basics


def test_read_counts_contents_order(events: ebpf.Map, cnt: ebpf.Map, on_cpu0: None) -> None:
    with output_prog(events, cnt) as prog, Reader(events, 1 << 16) as rd:
        assert rd.cpus == CPUS
        prog.test_run(PACKET, repeat=1000)
        recs = drain(rd)
        assert len(recs) == 1000
        assert [seq_of(r.sample) for r in recs] == list(range(1000))
        # padded by the kernel so that the record ends 8-byte aligned
        assert all(len(r.sample) == 20 and r.lost == 0 for r in recs)
        assert all(r.cpu == CPUS[0] == struct.unpack_from("<Q", r.sample, 8)[0] for r in recs)
        assert recs[-1].remaining == 0 and recs[-2].remaining == 32
        assert read_counters(cnt) == (1000, 0)
        assert rd.lost_samples == 0


def test_read_batch_and_array(events: ebpf.Map, cnt: ebpf.Map, on_cpu0: None) -> None:
    with output_prog(events, cnt) as prog, Reader(events, 1 << 16) as rd:
        prog.test_run(PACKET, repeat=100)
        b = rd.read_batch(30, timeout=1)
        assert isinstance(b, Batch) and b.cpu == CPUS[0] and len(b) == 30 and b.lost == 0
        assert [seq_of(s) for s in b] == list(range(30))
        np = pytest.importorskip("numpy")
        raw = rd.read_array(10, timeout=1)
        assert raw.dtype == np.dtype("V20") and len(raw) == 10
        typed = rd.read_array(1000, dtype=np.dtype([("seq", "<u8"), ("cpu", "<u8")]))
        assert typed["seq"].tolist() == list(range(40, 100))
        assert set(typed["cpu"].tolist()) == {CPUS[0]}


def test_read_into_and_decode(events: ebpf.Map, cnt: ebpf.Map, on_cpu0: None) -> None:
    class Event(ctypes.Structure):
        _fields_ = [("seq", ctypes.c_uint64), ("cpu", ctypes.c_uint64)]

    with output_prog(events, cnt) as prog, Reader(events, 1 << 16, record_type=Event) as rd:
        prog.test_run(PACKET, repeat=3)
        buf = bytearray(32)
        assert rd.read_into(buf, timeout=1) == 20
        assert seq_of(bytes(buf)) == 0
        ev = rd.decode(rd.read(timeout=1))          # 20-byte sample, 16-byte type
        assert (ev.seq, ev.cpu) == (1, CPUS[0])
        assert [e.seq for e in rd.decode_batch(rd.read_batch(timeout=1))] == [2]


def test_wraparound_many_times(events: ebpf.Map, cnt: ebpf.Map, on_cpu0: None) -> None:
    # 40-byte samples take 56 bytes: records straddle the end of a one-page ring
    with output_prog(events, cnt, 40) as prog, Reader(events, PAGE) as rd:
        got: list[bytes] = []
        total = 0
        for i in range(200):
            n = 1 + (i * 5) % 70                    # at most 73 fit in 4096 bytes
            prog.test_run(PACKET, repeat=n)
            total += n
            if i % 3 == 0:
                got.extend(r.sample for r in drain(rd))
            elif i % 3 == 1:
                while True:
                    try:
                        got.extend(rd.read_batch(11, timeout=0))
                    except DeadlineExceededError:
                        break
            else:
                pytest.importorskip("numpy")
                while True:
                    try:
                        got.extend(bytes(x) for x in rd.read_array(9, timeout=0))
                    except DeadlineExceededError:
                        break
        assert total * 56 > 50 * PAGE
        assert read_counters(cnt) == (total, 0)
        assert [seq_of(s) for s in got] == list(range(total))
        assert {len(s) for s in got} == {44}


def test_zero_copy_array(events: ebpf.Map, cnt: ebpf.Map, on_cpu0: None) -> None:
    """read_array(copy=False): read-only views into the ring, in order across many
    wraparounds of a one-page ring, the space given back on the next read, and a view
    kept past close() stays readable."""
    np = pytest.importorskip("numpy")
    with output_prog(events, cnt, 40) as prog, Reader(events, PAGE) as rd:
        got: list[int] = []
        total = 0
        for i in range(60):
            n = 1 + (i * 7) % 70                    # at most 73 fit in 4096 bytes
            prog.test_run(PACKET, repeat=n)
            total += n
            while True:
                try:
                    arr = rd.read_array(1 + i % 50, "<u8", timeout=0, copy=False)
                except DeadlineExceededError:
                    break
                assert not arr.flags.writeable
                got.extend(arr.tolist())
        assert read_counters(cnt) == (total, 0) and rd.lost_samples == 0
        assert got == list(range(total))
        prog.test_run(PACKET, repeat=50)            # 50 x 56 bytes: more than half the ring
        first = rd.read_array(copy=False, dtype=np.dtype([("seq", "<u8"), ("cpu", "<u8")]))
        seqs = first["seq"].tolist()
        assert seqs and seqs[0] == total
        prog.test_run(PACKET, repeat=40)            # the view's space is still held: lost
        assert read_counters(cnt)[1] > 0
        assert first["seq"].tolist() == seqs        # nothing overwrote it
        rd.read_array(copy=False)                   # releases it; this one stays alive
    assert first["seq"].tolist() == seqs            # the mapping outlives close()


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "view"])
def test_array_wraparound_and_lost_records(events: ebpf.Map, cnt: ebpf.Map, on_cpu0: None,
                                           copy: bool) -> None:
    """read_array's numpy walk (copying, and copy=False) against the kernel: runs that wrap
    around a one-page ring, records straddling its end, and lost-sample notices written
    between runs (bursts larger than the ring after partial drains leave older samples in
    front of the notice, so one walk crosses it)."""
    pytest.importorskip("numpy")
    with output_prog(events, cnt, 40) as prog, Reader(events, PAGE) as rd:
        got: list[int] = []
        for i in range(150):
            prog.test_run(PACKET, repeat=1 + (i * 13) % 110)   # 73 fit in 4096 bytes
            want = (i * 29) % 90 if i % 4 else 1 << 20         # partial or full drain
            raw = i % 2 == 0
            taken = 0
            while taken < want:
                try:
                    arr = rd.read_array(min(want - taken, 1 << 16), None if raw else "<u8",
                                        timeout=0, copy=copy)
                except DeadlineExceededError:
                    break
                assert len(arr) and arr.flags.writeable == copy
                if raw:
                    assert arr.dtype.itemsize == 44
                    got.extend(seq_of(bytes(x)) for x in arr)
                else:
                    got.extend(arr.tolist())
                taken += len(arr)
        while True:                        # drain, then flush the last lost notice
            try:
                got.extend(rd.read_array(dtype="<u8", timeout=0, copy=copy).tolist())
            except DeadlineExceededError:
                break
        prog.test_run(PACKET)
        got.extend(rd.read_array(dtype="<u8", timeout=1, copy=copy).tolist())
        seq, failed = read_counters(cnt)
        assert failed > 100 and rd.lost_samples == failed
        assert len(got) == seq - failed
        assert got == sorted(set(got)) and got[-1] == seq - 1


def test_lost_samples_reported(events: ebpf.Map, cnt: ebpf.Map, on_cpu0: None) -> None:
    with output_prog(events, cnt) as prog, Reader(events, PAGE) as rd:
        prog.test_run(PACKET, repeat=1000)
        seen = drain(rd)
        assert 100 < len(seen) < PAGE // 32 + 1
        seq, failed = read_counters(cnt)
        assert (seq, failed) == (1000, 1000 - len(seen))
        # the kernel writes the lost-samples record with the next sample
        prog.test_run(PACKET)
        more = drain(rd)
        assert [r.lost for r in more] == [failed, 0]
        assert more[0].sample == b"" and more[0].cpu == CPUS[0]
        assert seq_of(more[1].sample) == 1000
        assert rd.lost_samples == failed
        # batches count lost samples too
        prog.test_run(PACKET, repeat=1000)
        drained = len(rd.read_batch(10000, timeout=0))
        prog.test_run(PACKET)
        b = rd.read_batch(timeout=0)
        assert b.lost == 1000 - drained and len(b) == 1
        assert rd.lost_samples == failed + b.lost


@pytest.mark.cpus(2)
def test_two_cpus(events: ebpf.Map, cnt: ebpf.Map) -> None:
    if len(CPUS) < 2:
        pytest.skip("needs two online CPUs")
    per_cpu = 3000
    with output_prog(events, cnt) as prog, Reader(events, 1 << 18, watermark=1 << 16) as rd:
        barrier = threading.Barrier(2)

        def produce(cpu: int) -> None:
            os.sched_setaffinity(0, {cpu})
            barrier.wait()
            prog.test_run(PACKET, repeat=per_cpu)

        threads = [threading.Thread(target=produce, args=(c,)) for c in CPUS[:2]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        recs = drain(rd)
        assert read_counters(cnt) == (2 * per_cpu, 0)
        assert len(recs) == 2 * per_cpu
        by_cpu: dict[int, list[int]] = {}
        for r in recs:
            assert struct.unpack_from("<Q", r.sample, 8)[0] == r.cpu
            by_cpu.setdefault(r.cpu, []).append(seq_of(r.sample))
        assert sorted(by_cpu) == CPUS[:2]
        assert sorted(s for ss in by_cpu.values() for s in ss) == list(range(2 * per_cpu))
        for ss in by_cpu.values():
            assert len(ss) == per_cpu and ss == sorted(ss)


def test_pause_resume(events: ebpf.Map, cnt: ebpf.Map, on_cpu0: None) -> None:
    with output_prog(events, cnt) as prog, Reader(events, 1 << 16) as rd:
        prog.test_run(PACKET, repeat=2)
        rd.pause()
        assert rd.paused
        prog.test_run(PACKET, repeat=3)             # -ENOENT: counted as failures
        assert read_counters(cnt) == (5, 3)
        assert [seq_of(r.sample) for r in drain(rd)] == [0, 1]   # still readable
        rd.resume()
        prog.test_run(PACKET, repeat=2)
        assert [seq_of(r.sample) for r in drain(rd)] == [5, 6]
        assert read_counters(cnt) == (7, 3)


def test_overwritable_keeps_newest(events: ebpf.Map, cnt: ebpf.Map, on_cpu0: None) -> None:
    try:
        rd = Reader(events, PAGE, overwritable=True)
    except ebpf.NotSupportedError as e:
        pytest.skip(str(e))
    with output_prog(events, cnt) as prog, rd:
        prog.test_run(PACKET, repeat=1000)
        assert read_counters(cnt) == (1000, 0)      # nothing is ever refused
        recs = drain(rd)
        seqs = [seq_of(r.sample) for r in recs]
        assert seqs == list(range(1000 - len(seqs), 1000))     # newest, oldest first
        assert PAGE // 32 - 2 <= len(seqs) <= PAGE // 32
        prog.test_run(PACKET, repeat=5)
        assert [seq_of(r.sample) for r in drain(rd)] == list(range(1000, 1005))
        assert drain(rd) == []
        prog.test_run(PACKET, repeat=3)
        assert [seq_of(s) for s in rd.read_batch(timeout=0)] == [1005, 1006, 1007]


def test_watermark_wakeups(events: ebpf.Map, cnt: ebpf.Map, on_cpu0: None) -> None:
    with output_prog(events, cnt) as prog, Reader(events, 4 * PAGE, watermark=2048) as rd:
        prog.test_run(PACKET, repeat=2)             # 64 bytes: below the watermark
        assert select.select([rd], [], [], 0.05)[0] == []
        prog.test_run(PACKET, repeat=100)           # 3264 bytes: wakes
        assert select.select([rd], [], [], 1)[0] == [rd]
        assert len(drain(rd)) == 102
    with pytest.raises(InvalidArgumentError):
        Reader(events, PAGE, watermark=PAGE)


def test_decode_struct_from_clang_object(on_cpu0: None) -> None:
    """An object compiled by clang: samples decode by the object's BTF type name
    (the kernel's padding after the 24-byte struct is ignored)."""
    from bpfbuild import compile_bpf

    spec = ebpf.load_collection_spec(str(compile_bpf("events")))
    with ebpf.Collection(spec) as coll, \
            Reader(coll.maps["pb"], 1 << 16, btf=spec.btf, record_type="struct event") as rd:
        coll.programs["emit"].test_run(PACKET, repeat=4)
        rec = rd.read(timeout=1)
        assert len(rec.sample) == 28
        ev = rd.decode(rec)
        assert (ev.seq, ev.cpu, ev.delta, ev.tag) == (0, CPUS[0], 0, b"event")
        np = pytest.importorskip("numpy")
        arr = rd.read_array(timeout=1, dtype="struct event")
        assert arr.dtype == rd.dtype("struct event") and arr.dtype.itemsize == 24
        assert arr["seq"].tolist() == [1, 2, 3] and arr["delta"].tolist() == [-1, -2, -3]
        assert isinstance(arr, np.ndarray)


# --------------------------------------------------------------------------- lifetime


def test_close_wakes_blocked_reader(events: ebpf.Map) -> None:
    rd = Reader(events, PAGE)
    errors: list[BaseException] = []
    iterated: list[list[Record]] = []

    def block() -> None:
        try:
            rd.read_batch()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=block),
               threading.Thread(target=lambda: iterated.append(list(rd)))]
    for t in threads:
        t.start()
    wait_inside_library(threads)
    time.sleep(0.05)  # into the poll
    t0 = time.monotonic()
    rd.close()
    for t in threads:
        t.join(5)
    assert time.monotonic() - t0 < 2
    assert not any(t.is_alive() for t in threads)
    assert len(errors) == 1 and isinstance(errors[0], ReaderClosedError)
    assert iterated == [[]]
    with pytest.raises(ReaderClosedError):
        rd.read(timeout=0)
    with pytest.raises(ReaderClosedError):
        rd.pause()


def test_close_empties_map_and_leaves_nothing(events: ebpf.Map, cnt: ebpf.Map,
                                              on_cpu0: None) -> None:
    with output_prog(events, cnt) as prog:
        gc.collect()
        fds, maps = open_fds(), perf_mappings()
        rd = Reader(events, 2 * PAGE)
        new = open_fds() - fds
        assert len(new) >= len(CPUS) + 3          # events, map dup, epoll, eventfd
        assert all(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC for fd in new)
        assert len(perf_mappings()) == len(maps) + len(CPUS)
        prog.test_run(PACKET, repeat=4)
        assert len(drain(rd)) == 4
        rd.close()
        gc.collect()
        assert open_fds() == fds
        assert perf_mappings() == maps
        prog.test_run(PACKET)                       # slots emptied: -ENOENT
        assert read_counters(cnt) == (5, 1)


def test_wrong_map_type() -> None:
    with ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.RINGBUF, max_entries=PAGE)) as m, \
            pytest.raises(InvalidArgumentError):
        Reader(m)


# --------------------------------------------------------------------------- asyncio


def test_asyncio(events: ebpf.Map, cnt: ebpf.Map, on_cpu0: None) -> None:
    with output_prog(events, cnt) as prog:
        rd = Reader(events, 1 << 16)

        async def main() -> list[int]:
            with pytest.raises(DeadlineExceededError):
                await rd.read_async(timeout=0.05)
            asyncio.get_running_loop().call_later(0.05, lambda: prog.test_run(PACKET,
                                                                             repeat=6))
            got: list[int] = []
            async for rec in rd:
                got.append(seq_of(rec.sample))
                if len(got) == 6:
                    threading.Timer(0.1, rd.close).start()
            return got

        assert asyncio.run(asyncio.wait_for(main(), 10)) == list(range(6))
        assert rd.closed


def test_read_array_async_copy(events: ebpf.Map, cnt: ebpf.Map, on_cpu0: None) -> None:
    """read_array_async takes read_array's `copy`: copies, or read-only views into the
    ring, waiting on the event loop in both cases."""
    pytest.importorskip("numpy")
    with output_prog(events, cnt) as prog, Reader(events, 1 << 16) as rd:

        async def main() -> tuple[list[int], list[int]]:
            prog.test_run(PACKET, repeat=10)
            a = await rd.read_array_async(dtype="<u8", timeout=5)
            assert a.flags.writeable
            asyncio.get_running_loop().call_later(0.05, lambda: prog.test_run(PACKET,
                                                                             repeat=5))
            v = await rd.read_array_async(dtype="<u8", timeout=5, copy=False)   # waits
            assert not v.flags.writeable
            return a.tolist(), v.tolist()

        assert asyncio.run(main()) == (list(range(10)), list(range(10, 15)))
        with pytest.raises(InvalidArgumentError):
            asyncio.run(rd.read_array_async(0, copy=False))


# --------------------------------------------------------------------------- real hooks


def test_tracepoint_events(events: ebpf.Map, cnt: ebpf.Map, tracefs: str) -> None:
    if not os.path.exists(os.path.join(tracefs, "events/syscalls/sys_enter_getpid")):
        pytest.skip("no syscalls/sys_enter_getpid tracepoint")
    insns: list[Any] = [
        asm.mov_reg(asm.R9, asm.R1),
        asm.call("get_current_pid_tgid"),
        asm.rsh_imm(asm.R0, 32),
        asm.jne_imm(asm.R0, os.getpid(), "skip"),
        asm.mov_reg(asm.R1, asm.R9),
        *output_body(),
        asm.label("skip"), asm.mov_imm(asm.R0, 0), asm.exit(),
    ]
    with ebpf.Program(ebpf.ProgramSpec(type=ebpf.ProgramType.TRACEPOINT, license="GPL",
                                       instructions=insns, name="pb_tp"),
                      maps={"events": events, "cnt": cnt}) as prog, \
            Reader(events, 1 << 16) as rd:
        with ebpf.link.tracepoint(prog, "syscalls", "sys_enter_getpid"):
            for _ in range(300):
                os.getpid()
        recs = drain(rd)
        assert read_counters(cnt) == (300, 0)
        assert sorted(seq_of(r.sample) for r in recs) == list(range(300))
        for cpu in {r.cpu for r in recs}:
            mine = [seq_of(r.sample) for r in recs if r.cpu == cpu]
            assert mine == sorted(mine)
