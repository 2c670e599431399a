"""ebpf.ringbuf against the real kernel.

Events come from programs built with `ebpf.asm` and run with BPF_PROG_TEST_RUN
(repeat), and from a real tracepoint (syscalls/sys_enter_getpid). Records are
``struct { u64 seq; u64 cpu; ... }``: `seq` from an atomic counter in an array
map, so that counts, contents and order can be checked exactly.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import gc
import os
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kernelmatrix import requires
from threadwait import wait_inside_library

import ebpf
from ebpf import asm, btf
from ebpf._sys import perf as sysperf
from ebpf.errors import InvalidArgumentError
from ebpf.ringbuf import (
    Batch,
    DeadlineExceededError,
    Reader,
    ReaderClosedError,
    Record,
    Writer,
)

pytestmark = pytest.mark.kernel

PACKET = b"\0" * 64
# counters map value: [0] next seq, [1] failed outputs, [2] drained (user ringbuf)
CNT_VALUE = 32


# --------------------------------------------------------------------------- programs


def counters() -> ebpf.Map:
    return ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.ARRAY, key_size=4, value_size=CNT_VALUE,
                                 max_entries=1, name="counters"))


def read_counters(m: ebpf.Map) -> tuple[int, int, int, int]:
    raw = m.lookup(0, raw=True)
    return struct.unpack("<4Q", bytes(raw))


def ringbuf(size: int = 1 << 16) -> ebpf.Map:
    return ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.RINGBUF, max_entries=size, name="rb"))


def _counters_prologue(size: int) -> list[Any]:
    """r7 = &counters[0] (or exit), r8 = fetch_add(seq), stack record zeroed,
    record.seq = r8, record.cpu = cpu."""
    insns = [asm.mov_reg(asm.R6, asm.R1), asm.mov_imm(asm.R1, 0)]
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
    ]
    return insns


def _count_failure() -> list[Any]:
    return [
        asm.jeq_imm(asm.R0, 0, "out"),
        asm.mov_imm(asm.R1, 1),
        asm.atomic_add(asm.R7, 8, asm.R1),
    ]


def output_prog(rb: ebpf.Map, cnt: ebpf.Map, size: int = 16, *, variable: bool = False,
                ptype: ebpf.ProgramType = ebpf.ProgramType.SOCKET_FILTER) -> ebpf.Program:
    """bpf_ringbuf_output of a `size`-byte record {seq, cpu, 0...}; with
    `variable` the size is 16 + 8 * (seq % 4) (size must be >= 40)."""
    insns = _counters_prologue(size)
    insns += [asm.ld_map_fd(asm.R1, "rb"), asm.mov_reg(asm.R2, asm.R10),
              asm.add_imm(asm.R2, -size)]
    if variable:
        insns += [asm.mov_reg(asm.R3, asm.R8), asm.and_imm(asm.R3, 3), asm.lsh_imm(asm.R3, 3),
                  asm.add_imm(asm.R3, 16)]
    else:
        insns.append(asm.mov_imm(asm.R3, size))
    insns += [asm.mov_imm(asm.R4, 0), asm.call("ringbuf_output")]
    insns += _count_failure()
    insns += [asm.label("out"), asm.mov_imm(asm.R0, 0), asm.exit()]
    return ebpf.Program(ebpf.ProgramSpec(type=ptype, license="GPL", instructions=insns,
                                         name="rb_output"), maps={"rb": rb, "cnt": cnt})


def discard_prog(rb: ebpf.Map, cnt: ebpf.Map) -> ebpf.Program:
    """bpf_ringbuf_reserve 16 bytes, write {seq, cpu}; submit even seqs, discard odd ones."""
    insns = _counters_prologue(16)
    insns += [
        asm.ld_map_fd(asm.R1, "rb"), asm.mov_imm(asm.R2, 16), asm.mov_imm(asm.R3, 0),
        asm.call("ringbuf_reserve"),
        asm.jne_imm(asm.R0, 0, "got"),
        asm.mov_imm(asm.R1, 1), asm.atomic_add(asm.R7, 8, asm.R1),
        asm.ja("out"),
        asm.label("got"),
        asm.store_mem(asm.R0, 0, asm.R8, asm.Size.DW),
        asm.load_mem(asm.R1, asm.R10, -8, asm.Size.DW),
        asm.store_mem(asm.R0, 8, asm.R1, asm.Size.DW),
        asm.mov_reg(asm.R1, asm.R0), asm.mov_imm(asm.R2, 0),
        asm.and_imm(asm.R8, 1),
        asm.jeq_imm(asm.R8, 0, "submit"),
        asm.call("ringbuf_discard"),
        asm.ja("out"),
        asm.label("submit"),
        asm.call("ringbuf_submit"),
        asm.label("out"), asm.mov_imm(asm.R0, 0), asm.exit(),
    ]
    return ebpf.Program(ebpf.ProgramSpec(type=ebpf.ProgramType.SOCKET_FILTER, license="GPL",
                                         instructions=insns, name="rb_discard"),
                        maps={"rb": rb, "cnt": cnt})


def seqs(samples: list[bytes]) -> list[int]:
    return [struct.unpack_from("<Q", s)[0] for s in samples]


def drain(rd: Reader) -> list[Record]:
    out = []
    while True:
        try:
            out.append(rd.read(timeout=0))
        except DeadlineExceededError:
            return out


def open_fds() -> set[int]:
    """Open descriptors (without the one listdir used for /proc/self/fd)."""
    fds = set()
    for n in os.listdir("/proc/self/fd"):
        try:
            os.fstat(int(n))
        except OSError:
            continue
        fds.add(int(n))
    return fds


def bpf_mappings() -> list[str]:
    with open("/proc/self/maps") as f:
        return [ln for ln in f if "bpf" in ln or "perf_event" in ln]


@pytest.fixture
def cnt() -> Iterator[ebpf.Map]:
    with counters() as m:
        yield m


# --------------------------------------------------------------------------- basics


def test_read_counts_contents_order(cnt: ebpf.Map) -> None:
    with ringbuf() as rb, output_prog(rb, cnt) as prog, Reader(rb) as rd:
        prog.test_run(PACKET, repeat=1000)
        recs = drain(rd)
        assert len(recs) == 1000
        assert seqs([r.sample for r in recs]) == list(range(1000))
        assert all(len(r.sample) == 16 and r.ring == 0 for r in recs)
        cpus = {struct.unpack_from("<Q", r.sample, 8)[0] for r in recs}
        assert cpus <= set(sysperf.online_cpus())
        # remaining: the bytes behind each record, down to 0 for the last
        assert [r.remaining for r in recs[-3:]] == [48, 24, 0]
        assert recs[0].remaining == 999 * 24
        assert read_counters(cnt)[:2] == (1000, 0)
        assert rd.available() == 0
        with pytest.raises(DeadlineExceededError):
            rd.read(timeout=0)


def test_record_is_typed_namedtuple(cnt: ebpf.Map) -> None:
    with ringbuf() as rb, output_prog(rb, cnt) as prog, Reader(rb) as rd:
        prog.test_run(PACKET)
        rec = rd.read(timeout=1)
        assert isinstance(rec, Record)
        sample, remaining, ring = rec
        assert (sample, remaining, ring) == (rec.sample, 0, 0)


def test_variable_sizes_and_read_batch(cnt: ebpf.Map) -> None:
    with ringbuf() as rb, output_prog(rb, cnt, 40, variable=True) as prog, Reader(rb) as rd:
        prog.test_run(PACKET, repeat=400)
        got: list[bytes] = []
        while len(got) < 400:
            b = rd.read_batch(64, timeout=1)
            assert isinstance(b, Batch) and 1 <= len(b) <= 64 and b.ring == 0
            got.extend(b)
        assert seqs(got) == list(range(400))
        assert [len(s) for s in got[:8]] == [16, 24, 32, 40] * 2
        assert b.remaining == 0
        with pytest.raises(DeadlineExceededError):
            rd.read_batch(timeout=0)


def test_read_batch_after_read_keeps_order(cnt: ebpf.Map) -> None:
    with ringbuf() as rb, output_prog(rb, cnt) as prog, Reader(rb) as rd:
        prog.test_run(PACKET, repeat=100)
        first = rd.read(timeout=1)       # queues the rest internally
        rest = rd.read_batch(1000, timeout=1)
        assert seqs([first.sample, *rest]) == list(range(100))


def test_read_into(cnt: ebpf.Map) -> None:
    with ringbuf() as rb, output_prog(rb, cnt) as prog, Reader(rb) as rd:
        prog.test_run(PACKET, repeat=3)
        buf = bytearray(64)
        assert rd.read_into(buf, timeout=1) == 16
        assert struct.unpack_from("<Q", buf)[0] == 0
        with pytest.raises(InvalidArgumentError):
            rd.read_into(bytearray(8), timeout=1)   # too small: the record stays
        assert rd.read_into(memoryview(buf)[8:], timeout=1) == 16
        assert struct.unpack_from("<Q", buf, 8)[0] == 1
        assert seqs([rd.read(timeout=1).sample]) == [2]


def test_iteration_and_deadline(cnt: ebpf.Map) -> None:
    with ringbuf() as rb, output_prog(rb, cnt) as prog, Reader(rb) as rd:
        prog.test_run(PACKET, repeat=10)
        rd.set_deadline(time.monotonic() + 0.2)
        got = []
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            for rec in rd:
                got.append(rec)
        assert 0.15 < time.monotonic() - t0 < 2
        assert seqs([r.sample for r in got]) == list(range(10))
        rd.set_deadline(time.monotonic() - 1)       # in the past: non-blocking
        with pytest.raises(TimeoutError):
            rd.read()
        rd.set_deadline(None)
        prog.test_run(PACKET)
        assert seqs([rd.read().sample]) == [10]


def test_timeout_blocks_then_wakes_on_data(cnt: ebpf.Map) -> None:
    with ringbuf() as rb, output_prog(rb, cnt) as prog, Reader(rb) as rd:
        timer = threading.Timer(0.2, lambda: prog.test_run(PACKET))
        t0 = time.monotonic()
        timer.start()
        try:
            rec = rd.read(timeout=10)
        finally:
            timer.join()
        assert 0.1 < time.monotonic() - t0 < 5
        assert seqs([rec.sample]) == [0]


# --------------------------------------------------------------------------- ring mechanics


def test_wraparound_many_times(cnt: ebpf.Map) -> None:
    # 40-byte records (48 with header) do not divide 4096: records straddle the
    # end of the ring and are read through the kernel's double mapping.
    with ringbuf(4096) as rb, output_prog(rb, cnt, 40) as prog, Reader(rb) as rd:
        total = 0
        got: list[bytes] = []
        for i in range(300):
            n = 1 + (i * 7) % 80                       # never more than fits (85)
            prog.test_run(PACKET, repeat=n)
            total += n
            if i % 3 == 0:
                got.extend(r.sample for r in drain(rd))
            elif i % 3 == 1:
                while rd.available():
                    got.extend(rd.read_batch(17, timeout=0))
            else:
                while rd.available():
                    arr = rd.read_array(13, timeout=0)
                    got.extend(bytes(x) for x in arr)
        assert total * 48 > 100 * 4096
        assert read_counters(cnt)[1] == 0
        assert seqs(got) == list(range(total))
        assert all(len(s) == 40 for s in got)


def test_discarded_records_are_skipped(cnt: ebpf.Map) -> None:
    with ringbuf() as rb, discard_prog(rb, cnt) as prog, Reader(rb) as rd:
        prog.test_run(PACKET, repeat=200)
        assert seqs([r.sample for r in drain(rd)]) == list(range(0, 200, 2))
        prog.test_run(PACKET, repeat=200)
        got: list[bytes] = []
        while rd.available():
            got.extend(rd.read_batch(7, timeout=0))
        assert seqs(got) == list(range(200, 400, 2))
        prog.test_run(PACKET, repeat=200)
        arr = []
        while rd.available():
            arr.extend(rd.read_array(1000, dtype="<u8,<u8", timeout=0)["f0"].tolist())
        assert arr == list(range(400, 600, 2))
        assert rd.available() == 0


def test_ring_full_failures_match_what_was_not_seen(cnt: ebpf.Map) -> None:
    with ringbuf(4096) as rb, output_prog(rb, cnt) as prog, Reader(rb) as rd:
        prog.test_run(PACKET, repeat=1000)
        recs = drain(rd)
        seq, failed = read_counters(cnt)[:2]
        assert seq == 1000
        assert len(recs) == 4096 // 24
        assert failed == 1000 - len(recs)
        assert seqs([r.sample for r in recs]) == list(range(len(recs)))
        prog.test_run(PACKET, repeat=5)             # room again
        assert seqs([r.sample for r in drain(rd)]) == list(range(1000, 1005))


@pytest.mark.cpus(2)
def test_two_cpus_producing_at_once(cnt: ebpf.Map) -> None:
    cpus = sysperf.online_cpus()
    if len(cpus) < 2:
        pytest.skip("needs two online CPUs")
    per_cpu = 20000
    with ringbuf(1 << 22) as rb, output_prog(rb, cnt) as prog, Reader(rb) as rd:
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def produce(cpu: int) -> None:
            try:
                os.sched_setaffinity(0, {cpu})
                barrier.wait()
                for _ in range(4):
                    prog.test_run(PACKET, repeat=per_cpu // 4)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=produce, args=(c,)) for c in cpus[:2]]
        for t in threads:
            t.start()
        got: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(got) < 2 * per_cpu and time.monotonic() < deadline:
            try:
                got.extend(rd.read_batch(5000, timeout=1))
            except DeadlineExceededError:
                pass
        for t in threads:
            t.join()
        assert not errors
        assert read_counters(cnt)[:2] == (2 * per_cpu, 0)
        assert len(got) == 2 * per_cpu
        pairs = [struct.unpack("<QQ", s) for s in got]
        assert sorted(p[0] for p in pairs) == list(range(2 * per_cpu))
        by_cpu: dict[int, list[int]] = {}
        for s, c in pairs:
            by_cpu.setdefault(c, []).append(s)
        assert sorted(by_cpu) == cpus[:2]
        for c, ss in by_cpu.items():
            assert len(ss) == per_cpu
            assert ss == sorted(ss), f"records of CPU {c} out of order"


def test_several_rings_in_one_reader(cnt: ebpf.Map) -> None:
    with ringbuf() as a, ringbuf() as b, counters() as cnt2, \
            output_prog(a, cnt) as pa, output_prog(b, cnt2) as pb, Reader(a) as rd:
        assert rd.add(b) == 1 and rd.rings == 2
        pa.test_run(PACKET, repeat=5)
        pb.test_run(PACKET, repeat=7)
        recs = drain(rd)
        by_ring: dict[int, list[bytes]] = {0: [], 1: []}
        for r in recs:
            by_ring[r.ring].append(r.sample)
        assert seqs(by_ring[0]) == list(range(5))
        assert seqs(by_ring[1]) == list(range(7))


# --------------------------------------------------------------------------- numpy / decoding


def test_read_array_dtypes(cnt: ebpf.Map) -> None:
    np = pytest.importorskip("numpy")
    with ringbuf() as rb, output_prog(rb, cnt) as prog, Reader(rb) as rd:
        prog.test_run(PACKET, repeat=100)
        raw = rd.read_array(10, timeout=1)
        assert raw.dtype == np.dtype("V16") and len(raw) == 10
        assert seqs([bytes(x) for x in raw]) == list(range(10))
        typed = rd.read_array(40, dtype=np.dtype([("seq", "<u8"), ("cpu", "<u8")]))
        assert typed["seq"].tolist() == list(range(10, 50))

        class Event(ctypes.Structure):
            _fields_ = [("seq", ctypes.c_uint64), ("cpu", ctypes.c_uint64)]

        from_ctypes = rd.read_array(25, dtype=Event)
        assert from_ctypes["seq"].tolist() == list(range(50, 75))
        u64 = btf.Int("u64", 8)
        event = btf.Struct("event", 16, [btf.Member("seq", u64, 0), btf.Member("cpu", u64, 64)])
        from_btf = rd.read_array(1000, dtype=event)
        assert from_btf.dtype.names == ("seq", "cpu")
        assert from_btf["seq"].tolist() == list(range(75, 100))
        # a shorter dtype takes the head of each record
        prog.test_run(PACKET, repeat=3)
        assert rd.read_array(dtype="<u8").tolist() == [100, 101, 102]
        with pytest.raises(InvalidArgumentError):
            prog.test_run(PACKET)
            rd.read_array(dtype="V32")


def test_read_array_takes_each_dtype_description_as_given(cnt: ebpf.Map) -> None:
    """dtypes given as field lists (a new list each call): each read uses the one it
    was given, never the dtype made for an earlier list that died (whose id a new
    list takes)."""
    pytest.importorskip("numpy")
    with ringbuf() as rb, output_prog(rb, cnt) as prog, Reader(rb) as rd:
        prog.test_run(PACKET, repeat=4)
        first = rd.read_array(2, dtype=[("seq", "<u8"), ("cpu", "<u8")], timeout=1)
        assert first.dtype.names == ("seq", "cpu") and first["seq"].tolist() == [0, 1]
        second = rd.read_array(2, dtype=[("lo", "<u4"), ("hi", "<u4")], timeout=1)
        assert second.dtype.names == ("lo", "hi") and second["lo"].tolist() == [2, 3]
        got = [rd.dtype([(f"a{i}", "<u4"), (f"b{i}", "<u4")]).names for i in range(20)]
        assert got == [(f"a{i}", f"b{i}") for i in range(20)]


def test_read_array_stops_at_other_size(cnt: ebpf.Map) -> None:
    pytest.importorskip("numpy")
    with ringbuf() as rb, output_prog(rb, cnt, 40, variable=True) as prog, Reader(rb) as rd:
        prog.test_run(PACKET, repeat=8)             # sizes 16, 24, 32, 40, 16, ...
        sizes = []
        while rd.available():
            a = rd.read_array(100, timeout=0)
            assert len(a) == 1
            sizes.append(a.dtype.itemsize)
        assert sizes == [16, 24, 32, 40] * 2


def test_read_array_recycles_only_dropped_results(cnt: ebpf.Map) -> None:
    pytest.importorskip("numpy")
    with ringbuf() as rb, output_prog(rb, cnt) as prog, Reader(rb) as rd:
        prog.test_run(PACKET, repeat=10)
        a = rd.read_array(5, dtype="<u8,<u8")
        prog.test_run(PACKET, repeat=10)
        b = rd.read_array(5, dtype="<u8,<u8")     # `a` is alive: must not be reused
        assert a["f0"].tolist() == list(range(5)) and b["f0"].tolist() == list(range(5, 10))
        view = b["f0"]
        del b
        c = rd.read_array(5, dtype="<u8,<u8")     # a view of `b` is alive
        assert view.tolist() == list(range(5, 10))
        assert c["f0"].tolist() == list(range(10, 15))


def test_decode_with_btf(cnt: ebpf.Map) -> None:
    u64 = btf.Int("u64", 8)
    event = btf.Struct("event", 16, [btf.Member("seq", u64, 0), btf.Member("cpu", u64, 64)])
    with ringbuf() as rb, output_prog(rb, cnt) as prog, Reader(rb, record_type=event) as rd:
        prog.test_run(PACKET, repeat=3)
        rec = rd.read(timeout=1)
        ev = rd.decode(rec)
        assert (ev.seq, ev.cpu in sysperf.online_cpus()) == (0, True)
        batch = rd.read_batch(timeout=1)
        assert [e.seq for e in rd.decode_batch(batch)] == [1, 2]
        with pytest.raises(InvalidArgumentError):
            rd.decode(b"short")


def test_decode_type_name_from_spec(cnt: ebpf.Map) -> None:
    kernel = btf.load_kernel_spec()
    with ringbuf() as rb, output_prog(rb, cnt) as prog, Reader(rb, btf=kernel) as rd:
        prog.test_run(PACKET)
        rec = rd.read(timeout=1)
        head = rd.decode(rec, "struct list_head")      # two pointers: 16 bytes
        assert head.next == 0
        if pytest.importorskip("numpy"):
            prog.test_run(PACKET, repeat=2)
            arr = rd.read_array(dtype="struct list_head")
            assert arr.dtype.names == ("next", "prev")
            assert arr["next"].tolist() == [1, 2]


def test_decode_struct_from_clang_object() -> None:
    """An object compiled by clang: records decode by the object's BTF type name."""
    from bpfbuild import compile_bpf

    spec = ebpf.load_collection_spec(str(compile_bpf("events")))
    with ebpf.Collection(spec) as coll, \
            Reader(coll.maps["rb"], btf=spec.btf, record_type="struct event") as rd:
        coll.programs["emit"].test_run(PACKET, repeat=4)
        first = rd.decode(rd.read(timeout=1))
        assert (first.seq, first.delta, first.tag) == (0, 0, b"event")
        assert first.cpu in sysperf.online_cpus()
        assert [e.seq for e in rd.decode_batch(rd.read_batch(1, timeout=1))] == [1]
        if pytest.importorskip("numpy"):
            arr = rd.read_array(timeout=1, dtype="struct event")
            assert arr.dtype.names == ("seq", "cpu", "delta", "tag")
            assert arr["seq"].tolist() == [2, 3] and arr["delta"].tolist() == [-2, -3]
            assert arr["tag"].tolist() == [b"event", b"event"]


# --------------------------------------------------------------------------- lifetime


def test_close_wakes_blocked_reader(cnt: ebpf.Map) -> None:
    with ringbuf() as rb:
        rd = Reader(rb)
        result: list[object] = []

        def block() -> None:
            try:
                rd.read()
            except BaseException as e:
                result.append(e)

        def iterate() -> None:
            result.append(list(rd))

        threads = [threading.Thread(target=block), threading.Thread(target=iterate)]
        for t in threads:
            t.start()
        wait_inside_library(threads)
        time.sleep(0.05)  # into the poll
        assert all(t.is_alive() for t in threads)
        t0 = time.monotonic()
        rd.close()
        for t in threads:
            t.join(5)
        assert time.monotonic() - t0 < 2
        assert not any(t.is_alive() for t in threads)
        assert any(isinstance(r, ReaderClosedError) for r in result)
        assert [] in result                         # iteration just ends
        with pytest.raises(ReaderClosedError):
            rd.read(timeout=0)
        rd.close()                                  # idempotent


def test_no_fd_or_mapping_left_after_close(cnt: ebpf.Map) -> None:
    with ringbuf() as rb, ringbuf() as rb2, output_prog(rb, cnt) as prog:
        gc.collect()
        fds, maps = open_fds(), bpf_mappings()
        rd = Reader(rb, rb2)
        assert len(bpf_mappings()) > len(maps)
        for fd in open_fds() - fds:
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC, fd
        prog.test_run(PACKET, repeat=10)
        assert len(drain(rd)) == 10
        rd.close()
        gc.collect()
        assert open_fds() == fds
        assert bpf_mappings() == maps


def test_reader_outlives_map_object(cnt: ebpf.Map) -> None:
    rb = ringbuf()
    with output_prog(rb, cnt) as prog, Reader(rb) as rd:
        rb.close()                                  # the reader holds its own fd
        prog.test_run(PACKET, repeat=2)
        assert seqs([r.sample for r in drain(rd)]) == [0, 1]


def test_wrong_map_type() -> None:
    with ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.ARRAY, key_size=4, value_size=4,
                               max_entries=1)) as m, pytest.raises(InvalidArgumentError):
        Reader(m)


# --------------------------------------------------------------------------- asyncio


def test_asyncio_iteration_and_close(cnt: ebpf.Map) -> None:
    with ringbuf() as rb, output_prog(rb, cnt) as prog:
        rd = Reader(rb)

        async def main() -> list[int]:
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, lambda: prog.test_run(PACKET, repeat=5))
            got: list[int] = []
            async for rec in rd:
                got.extend(seqs([rec.sample]))
                if len(got) == 5:
                    # close from another thread while the loop awaits
                    threading.Timer(0.1, rd.close).start()
            return got

        t0 = time.monotonic()
        assert asyncio.run(asyncio.wait_for(main(), 10)) == list(range(5))
        assert time.monotonic() - t0 < 5
        assert rd.closed


def test_asyncio_timeout_and_batches(cnt: ebpf.Map) -> None:
    with ringbuf() as rb, output_prog(rb, cnt) as prog, Reader(rb) as rd:
        async def main() -> None:
            with pytest.raises(DeadlineExceededError):
                await rd.read_async(timeout=0.05)
            asyncio.get_running_loop().call_later(0.05, lambda: prog.test_run(PACKET, repeat=9))
            b = await rd.read_batch_async(100, timeout=5)
            got = list(b)
            while len(got) < 9:
                got.extend(await rd.read_batch_async(100, timeout=5))
            assert seqs(got) == list(range(9))
            try:
                import numpy  # noqa: F401
            except ImportError:
                return
            prog.test_run(PACKET, repeat=4)
            arr = await rd.read_array_async(dtype="<u8,<u8", timeout=5)
            assert arr["f0"].tolist() == [9, 10, 11, 12]

        asyncio.run(main())


def test_asyncio_read_closed_as_it_starts_waiting_raises_closed() -> None:
    """`close()` from another thread just as an async read goes to wait on the event
    loop (between taking the reader's epoll descriptor and watching it): the read
    raises `ReaderClosedError` at once. It used to watch the closed number, which
    descriptors opened meanwhile take: an OSError, or a wait that never ended."""
    with ringbuf() as rb:
        rd = Reader(rb)
        taken: list[int] = []

        async def main() -> None:
            loop = asyncio.get_running_loop()
            add_reader = loop.add_reader

            def closing_first(fd: int, callback: Any) -> None:
                rd.close()  # (another thread's close, at this point)
                # objects opened meanwhile get the numbers the close freed
                taken.extend(os.eventfd(0, os.EFD_CLOEXEC) for _ in range(2))
                add_reader(fd, callback)

            loop.add_reader = closing_first  # type: ignore[method-assign]
            with pytest.raises(ReaderClosedError):
                await asyncio.wait_for(rd.read_async(), 2)

        try:
            asyncio.run(main())
        finally:
            for fd in taken:
                os.close(fd)
        assert rd.closed


# --------------------------------------------------------------------------- real hooks


@pytest.fixture
def getpid_tracepoint(tracefs: str) -> str:
    if sysperf.tracefs_path() is None or not os.path.exists(
            os.path.join(tracefs, "events/syscalls/sys_enter_getpid")):
        pytest.skip("no syscalls/sys_enter_getpid tracepoint")
    return tracefs


def tracepoint_output_prog(rb: ebpf.Map, cnt: ebpf.Map) -> ebpf.Program:
    """A TRACEPOINT program: for this process only, output {seq, cpu}."""
    insns: list[Any] = [
        asm.mov_reg(asm.R9, asm.R1),
        asm.call("get_current_pid_tgid"),
        asm.rsh_imm(asm.R0, 32),
        asm.jne_imm(asm.R0, os.getpid(), "skip"),
        asm.mov_reg(asm.R1, asm.R9),
        *output_prog_body(),
        asm.label("skip"), asm.mov_imm(asm.R0, 0), asm.exit(),
    ]
    return ebpf.Program(ebpf.ProgramSpec(type=ebpf.ProgramType.TRACEPOINT, license="GPL",
                                         instructions=insns, name="rb_tp"),
                        maps={"rb": rb, "cnt": cnt})


def output_prog_body() -> list[Any]:
    insns = _counters_prologue(16)
    insns += [asm.ld_map_fd(asm.R1, "rb"), asm.mov_reg(asm.R2, asm.R10),
              asm.add_imm(asm.R2, -16), asm.mov_imm(asm.R3, 16), asm.mov_imm(asm.R4, 0),
              asm.call("ringbuf_output")]
    insns += _count_failure()
    insns += [asm.label("out"), asm.mov_imm(asm.R0, 0), asm.exit()]
    return insns


def test_tracepoint_events(cnt: ebpf.Map, getpid_tracepoint: str) -> None:
    with ringbuf() as rb, tracepoint_output_prog(rb, cnt) as prog, Reader(rb) as rd:
        with ebpf.link.tracepoint(prog, "syscalls", "sys_enter_getpid"):
            for _ in range(500):
                os.getpid()
        # (Python caches nothing here: os.getpid() is a syscall each time.)
        recs = drain(rd)
        assert len(recs) == 500
        assert seqs([r.sample for r in recs]) == list(range(500))
        os.getpid()                                 # detached: nothing more
        assert drain(rd) == []


# --------------------------------------------------------------------------- user ring buffer


def _drain_prog(urb: ebpf.Map, out: ebpf.Map, cnt: ebpf.Map) -> ebpf.Program:
    """bpf_user_ringbuf_drain(urb, cb): the callback copies each 16-byte sample
    into the output ring buffer. Counts drained samples in counters[2]."""
    b = btf.Builder()
    int_t = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    long_t = btf.Int("long", 8, btf.IntEncoding.SIGNED)
    void_ptr = btf.Pointer(btf.Void())
    main = btf.Func("drain_main", btf.FuncProto(int_t, [btf.FuncParam("ctx", void_ptr)]),
                    btf.Linkage.GLOBAL)
    cb = btf.Func("drain_cb", btf.FuncProto(long_t, [btf.FuncParam("dynptr", void_ptr),
                                                     btf.FuncParam("ctx", void_ptr)]))
    b.add(main)
    b.add(cb)
    spec = btf.Spec(b.marshal())
    main_t = spec.type_by_name("drain_main", btf.Func)
    cb_t = spec.type_by_name("drain_cb", btf.Func)
    insns: list[Any] = [
        asm.ld_map_fd(asm.R1, "urb"),
        asm.ld_func(asm.R2, "drain_cb"),
        asm.mov_imm(asm.R3, 0), asm.mov_imm(asm.R4, 0),
        asm.call("user_ringbuf_drain"),
        asm.mov_imm(asm.R0, 0),
        asm.exit(),
        asm.label("drain_cb"),
        # r1 = dynptr: read 16 bytes into the stack, then output them
        asm.mov_reg(asm.R3, asm.R1),
        asm.mov_reg(asm.R1, asm.R10), asm.add_imm(asm.R1, -16),
        asm.mov_imm(asm.R2, 16), asm.mov_imm(asm.R4, 0), asm.mov_imm(asm.R5, 0),
        asm.call("dynptr_read"),
        asm.jne_imm(asm.R0, 0, "cb_out"),
        asm.ld_map_fd(asm.R1, "out"),
        asm.mov_reg(asm.R2, asm.R10), asm.add_imm(asm.R2, -16),
        asm.mov_imm(asm.R3, 16), asm.mov_imm(asm.R4, 0),
        asm.call("ringbuf_output"),
        asm.label("cb_out"),
        asm.mov_imm(asm.R0, 0),
        asm.exit(),
    ]
    insns[0].meta = {"func": main_t}
    cb_start = next(i for i, x in enumerate(insns) if isinstance(x, asm.Label)) + 1
    insns[cb_start].meta = {"func": cb_t}
    return ebpf.Program(ebpf.ProgramSpec(type=ebpf.ProgramType.SOCKET_FILTER, license="GPL",
                                         instructions=insns, name="urb_drain", btf=spec),
                        maps={"urb": urb, "out": out, "cnt": cnt})


def test_user_ringbuf_writer(cnt: ebpf.Map) -> None:
    with ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.USER_RINGBUF, max_entries=4096,
                               name="urb")) as urb, ringbuf() as out:
        try:
            prog = _drain_prog(urb, out, cnt)
        except ebpf.NotSupportedError as e:
            pytest.skip(str(e))
        with prog, Writer(urb) as w, Reader(out) as rd:
            assert w.available() == 4096
            w.write(struct.pack("<QQ", 1, 11))
            s = w.reserve(16)
            s.data[:] = struct.pack("<QQ", 2, 22)
            s.discard()                                 # skipped by the kernel
            with w.reserve(16) as s3:
                s3.data[:] = struct.pack("<QQ", 3, 33)
            prog.test_run(PACKET)
            got = [struct.unpack("<QQ", r.sample) for r in drain(rd)]
            assert got == [(1, 11), (3, 33)]
            # fill it: 4096 / 24 samples fit, the next one does not
            n = 0
            while True:
                try:
                    w.write(struct.pack("<QQ", 100 + n, 0))
                except BufferError:
                    break
                n += 1
            assert n == 4096 // 24
            with pytest.raises(DeadlineExceededError):
                w.reserve(16, timeout=0.05)
            prog.test_run(PACKET)
            assert [struct.unpack("<QQ", r.sample)[0] for r in drain(rd)] == \
                [100 + i for i in range(n)]
            assert w.available() == 4096


@requires("map_type:USER_RINGBUF", min_kernel="6.1")
def test_user_ringbuf_reserve_waiting_when_closed_raises_closed() -> None:
    """A `reserve` waiting for space while another thread closes the writer (just as
    it goes to wait on the writer's epoll object) raises `ReaderClosedError`, not the
    closed epoll object's ValueError."""
    with ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.USER_RINGBUF, max_entries=4096,
                               name="urb")) as urb, Writer(urb) as w:
        with pytest.raises(BufferError):
            while True:  # full: no program drains it
                w.write(bytes(16))
        ep = w._ep
        assert ep is not None

        class ClosingFirst:
            def poll(self, timeout: float) -> list[tuple[int, int]]:
                w.close()  # (another thread's close, at this point)
                return ep.poll(timeout)

            def close(self) -> None:
                ep.close()

        w._ep = ClosingFirst()  # type: ignore[assignment]
        with pytest.raises(ReaderClosedError):
            w.reserve(16, timeout=1)


def test_user_ringbuf_wrong_map() -> None:
    with ringbuf() as rb, pytest.raises(InvalidArgumentError):
        Writer(rb)
