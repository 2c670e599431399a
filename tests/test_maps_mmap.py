"""Memory-mapped arrays (ebpf.maps.mapped): element operations of ARRAY maps created
with MapFlags.MMAPABLE served from the mapping without system calls, with the same
values and errors as the system-call path; zero-copy views and their lifetime; close
racing readers."""

from __future__ import annotations

import ctypes
import errno
import gc
import os
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from bpfbuild import compile_bpf

import ebpf
from ebpf import btf
from ebpf.errors import ClosedError, PermissionError, SyscallError
from ebpf.maps import Map, MapFlags, MapSpec, MapType, UpdateFlags

pytestmark = pytest.mark.kernel

U32 = btf.Int("unsigned int", 4)
S64 = btf.Int("long long", 8, btf.IntEncoding.SIGNED)
VAL = btf.Struct("val", 12, [btf.Member("a", btf.Int("unsigned int", 4), 0),
                             btf.Member("b", S64, 32)])


def pair(value_size: int = 8, n: int = 16, **kw: Any) -> tuple[Map, Map]:
    """The same array twice: mmapable (served from memory) and plain (system calls)."""
    mm = Map(MapSpec(type=MapType.ARRAY, key_size=4, value_size=value_size, max_entries=n,
                     flags=MapFlags.MMAPABLE, name="mm_fast", **kw))
    plain = Map(MapSpec(type=MapType.ARRAY, key_size=4, value_size=value_size, max_entries=n,
                        name="mm_plain", **kw))
    return mm, plain


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except ebpf.Error as e:
        msg = str(e).replace("mm_fast", "M").replace("mm_plain", "M")
        return type(e).__name__, (msg, getattr(e, "errno", None))


@contextmanager
def no_syscalls(m: Map) -> Iterator[None]:
    """The map's descriptor number points at /dev/null for the block: any bpf(2) call
    on it fails (EBADF/EINVAL), so whatever succeeds was served from the mapping."""
    fd = m.fileno()
    saved = os.dup(fd)
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.dup2(null, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(null)


@pytest.mark.parametrize("value_size,typed", [(8, False), (4, False), (12, False),
                                              (8, True), (12, True)])
def test_same_results_and_errors_as_syscalls(value_size: int, typed: bool) -> None:
    kw: dict[str, Any] = {}
    if typed:
        kw = {"key": U32, "value": S64 if value_size == 8 else VAL}
    fast, plain = pair(value_size, **kw)
    try:
        big = 1 << (8 * value_size)
        values: list[Any] = [5, -3, bytes(range(value_size)), big, b"\1"]
        if typed and value_size == 12:
            values = [{"a": 1, "b": -2}, bytes(range(12)), 7]
        keys: list[Any] = [0, 3, 15, 16, -1, 2**32, b"\2\0\0\0", b"\1\0", 1.5]
        for k in keys:
            for v in values:
                for flags in (None, UpdateFlags.ANY, UpdateFlags.EXIST, UpdateFlags.NOEXIST,
                              UpdateFlags.LOCK):
                    def write(m: Map, k: Any = k, v: Any = v, flags: Any = flags) -> Any:
                        if flags is None:
                            m[k] = v
                        else:
                            m.update(k, v, flags)
                    a, b = outcome(lambda: write(fast)), outcome(lambda: write(plain))
                    assert a == b, (k, v, flags)
            reads: list[Callable[[Map, Any], Any]] = [
                lambda m, k: m[k], lambda m, k: m.lookup(k, raw=True),
                lambda m, k: m.get(k, 0), lambda m, k: k in m,
                lambda m, k: m.lookup(k, flags=UpdateFlags.LOCK), lambda m, k: m.delete(k)]
            for op in reads:
                assert compare(op, fast, plain, k), k
        assert _plain(list(fast.items())) == _plain(list(plain.items()))
        assert _plain(list(fast.values(raw=True))) == _plain(list(plain.values(raw=True)))
        assert list(fast.keys()) == list(plain.keys())
        assert len(fast) == len(plain) == 16
        fk, fv = fast.lookup_batch()
        pk, pv = plain.lookup_batch()
        assert (fk.tolist(), fv.tolist()) == (pk.tolist(), pv.tolist())
        assert (fk.format, fv.format, fv.shape) == (pk.format, pv.format, pv.shape)
        fk, fv = fast.lookup_batch(numpy=True)
        pk, pv = plain.lookup_batch(numpy=True)
        assert np.array_equal(fk, pk) and np.array_equal(fv, pv) and fv.dtype == pv.dtype
        assert fast._mm is not None and plain._mm is None
    finally:
        fast.close()
        plain.close()


def compare(op: Callable[[Map, Any], Any], fast: Map, plain: Map, k: Any) -> bool:
    return outcome(lambda: _plain(op(fast, k))) == outcome(lambda: _plain(op(plain, k)))


def _plain(x: Any) -> Any:
    """ctypes structures compared by their bytes."""
    if isinstance(x, ctypes.Structure):
        return bytes(x)
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(i) for i in x)
    return x


def test_served_without_syscalls() -> None:
    fast, plain = pair(8, 64)
    try:
        fast[1] = 11  # maps the memory
        with no_syscalls(fast):
            fast[2] = 22
            fast.update(3, b"\3" * 8, UpdateFlags.EXIST)
            assert fast[1] == (11).to_bytes(8, "little")
            assert fast.lookup(3) == b"\3" * 8 and 2 in fast
            assert dict(fast.items())[b"\2\0\0\0"] == (22).to_bytes(8, "little")
            k, v = fast.lookup_batch()
            assert len(k) == 64 and v[2] == 22
        with no_syscalls(plain), pytest.raises(ebpf.Error):
            plain[1]  # the check itself works: a system call fails here
        with no_syscalls(fast), pytest.raises(ebpf.Error):
            fast[64]  # out of range goes to the kernel, which cannot answer on /dev/null
    finally:
        fast.close()
        plain.close()


def test_typed_int_values_from_memory() -> None:
    fast, _plain_map = pair(8, 8, key=U32, value=S64)
    _plain_map.close()
    with fast:
        fast[2] = -5
        with no_syscalls(fast):
            assert fast[2] == -5 and fast.lookup(2) == -5
            fast[3] = -(2**63)
            assert fast[3] == -(2**63)
            assert list(fast.values())[:4] == [0, 0, -5, -(2**63)]


def test_memory_and_array_views() -> None:
    fast, plain = pair(12, 4, key=U32, value=VAL)
    plain.close()
    with fast:
        mem = fast.memory()
        assert len(mem) == 4 * 16 and not mem.readonly  # 8-byte aligned elements
        mem[16:20] = struct.pack("=I", 7)
        assert fast[1].a == 7
        arr = fast.array()
        assert arr.shape == (4,) and arr.dtype.itemsize == 12
        arr[2]["b"] = -9
        assert fast[2].b == -9
        raw = fast.array(np.dtype((np.uint8, 12)))
        assert raw.shape == (4, 12)
        with pytest.raises(ebpf.InvalidArgumentError, match="12"):
            fast.array(np.uint64)
        del arr, raw
        mem.release()
    ints, plain = pair(8, 5)
    plain.close()
    with ints:
        a = ints.array()
        a[:] = np.arange(5) * 10
        assert ints[4] == (40).to_bytes(8, "little")
        assert a.dtype == np.uint64
        del a
    with Map(MapSpec(type=MapType.ARRAY, key_size=4, value_size=8, max_entries=2)) as m, \
            pytest.raises(ebpf.InvalidArgumentError, match="MMAPABLE"):
        m.memory()
    with Map(MapSpec(type=MapType.PERCPU_ARRAY, key_size=4, value_size=8,
                     max_entries=2)) as m:
        m[0] = [1] * len(m[0])
        assert m._mm is None and sum(int.from_bytes(v, "little") for v in m[0]) == len(m[0])


def bpf_map_mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for line in f if "anon_inode:bpf-map" in line)


def test_views_outlive_close_and_are_unmapped_when_released() -> None:
    fast, plain = pair(8, 4)
    plain.close()
    before = bpf_map_mappings()
    fast[1] = 1
    view = fast.memory()
    arr = fast.array()
    assert bpf_map_mappings() == before + 1  # one mapping shared by the map and views
    fast.close()
    with pytest.raises(ClosedError):
        fast[1]
    with pytest.raises(ClosedError):
        fast.memory()
    view[8:16] = (5).to_bytes(8, "little")  # still the (closed) map's memory
    assert arr[1] == 5
    assert bpf_map_mappings() == before + 1
    view.release()
    del arr
    assert bpf_map_mappings() == before


def test_array_alone_keeps_the_mapping_alive() -> None:
    # an array (and a slice of it) made without keeping memory()'s view: with numpy 2.x,
    # np.ndarray(buffer=<memoryview>) holds the mmap object but no export of it, so
    # close() unmapped the memory under the array (reading it crashed the process)
    fast, plain = pair(8, 4)
    plain.close()
    before = bpf_map_mappings()
    fast[1] = 5
    arr = fast.array()
    raw = fast.array(np.dtype((np.uint8, 8)))
    fast.close()
    gc.collect()
    assert bpf_map_mappings() == before + 1
    assert arr[1] == 5 and bytes(raw[1]) == (5).to_bytes(8, "little")
    arr[2] = 9
    part = arr[1:3]
    del arr, raw
    gc.collect()
    assert list(part) == [5, 9] and bpf_map_mappings() == before + 1
    del part
    gc.collect()
    assert bpf_map_mappings() == before


def test_freeze_drops_own_mapping_and_refuses_with_views() -> None:
    fast, plain = pair(8, 4)
    plain.close()
    with fast:
        fast[0] = 3
        view = fast.memory()
        with pytest.raises(SyscallError, match="memory-mapped writable") as ei:
            fast.freeze()
        assert ei.value.errno == errno.EBUSY
        view.release()
        fast.freeze()  # the map's own mapping is dropped first
        assert fast[0] == (3).to_bytes(8, "little") and fast._mm is not None
        assert fast.memory().readonly
        with pytest.raises(PermissionError, match="frozen"):
            fast[0] = 4  # the syscall's answer
        with pytest.raises(PermissionError, match="frozen"):
            fast.update(1, 4, UpdateFlags.EXIST)


def test_global_data_maps_read_from_memory() -> None:
    spec = ebpf.load_collection_spec(str(compile_bpf("loader_globals")))
    data_maps = [n for n, ms in spec.maps.items() if ms.flags & MapFlags.MMAPABLE]
    assert ".rodata" in data_maps
    with ebpf.Collection(spec) as coll:
        for name in data_maps:
            m = coll.maps[name]
            via_syscall = m.lookup(0, raw=True) if m._mm is None else None
            value = m[0]
            assert m._mm is not None, name
            with no_syscalls(m):
                assert m[0] == value
            if via_syscall is not None:
                assert value == via_syscall
        ro = coll.maps[".rodata"]
        with pytest.raises(PermissionError):
            ro[0] = bytes(ro.value_size)


def _reader(m: Map, stop: threading.Event, counts: list[int],
            errors: list[BaseException]) -> None:
    while not stop.is_set():
        try:
            for k in range(0, 1024, 7):
                m[k]
                m[k] = k
            m.lookup_batch()
            counts[0] += 1
        except ClosedError:
            return
        except BaseException as e:  # anything but ClosedError is a defect
            errors.append(e)
            return


def test_close_racing_readers_and_writers() -> None:
    for _ in range(20):
        fast, plain = pair(8, 1024)
        plain.close()
        fast[0] = 1
        stop = threading.Event()
        errors: list[BaseException] = []
        counts = [0]
        threads = [threading.Thread(target=_reader, args=(fast, stop, counts, errors))
                   for _ in range(3)]
        for t in threads:
            t.start()
        while counts[0] < 3 and not errors and any(t.is_alive() for t in threads):
            threading.Event().wait(0.001)
        fast.close()
        stop.set()
        for t in threads:
            t.join()
        assert not errors, errors
