"""Maps against the real kernel: every map type, dict operations, flags, errors,
per-CPU values, batches, queues, freeze, mmap, pinning, ids, BTF-typed values,
iteration under concurrent deletes, threads, and descriptor hygiene."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import gc
import os
import socket
import struct
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ebpf
from ebpf import btf, features
from ebpf._sys.ops import possible_cpus
from ebpf.errors import (
    InvalidArgumentError,
    KeyNotFoundError,
    NotSupportedError,
    PermissionError,
    SyscallError,
)
from ebpf.maps import (
    IterationAbortedError,
    KeyExistsError,
    Map,
    MapFlags,
    MapSpec,
    PinType,
    UpdateFlags,
    iteration,
    map_ids,
    sanitize_name,
)

pytestmark = pytest.mark.kernel

T = ebpf.MapType
NCPU = possible_cpus()
U32 = btf.Int("unsigned int", 4)
S32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
U64 = btf.Int("unsigned long long", 8)
S64 = btf.Int("long long", 8, btf.IntEncoding.SIGNED)


def u32(v: int) -> bytes:
    return struct.pack("=I", v)


def u64(v: int) -> bytes:
    return struct.pack("=Q", v)


def open_fds() -> set[int]:
    return {int(n) for n in os.listdir("/proc/self/fd")}


def cloexec(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def need(map_type: ebpf.MapType) -> None:
    if not features.have_map_type(map_type):
        pytest.skip(f"map type {map_type.name} is not supported by this kernel")


@pytest.fixture
def hmap() -> Iterator[Map]:
    with Map(MapSpec(type=T.HASH, key_size=4, value_size=8, max_entries=1024,
                     name="test_hash")) as m:
        yield m


@pytest.fixture
def amap() -> Iterator[Map]:
    with Map(MapSpec(type=T.ARRAY, key_size=4, value_size=8, max_entries=16,
                     name="test_array")) as m:
        yield m


def trivial_program() -> ebpf.Program:
    from ebpf import asm

    return ebpf.Program(ebpf.ProgramSpec(
        name="ret0", type=ebpf.ProgramType.SOCKET_FILTER, license="GPL",
        instructions=[asm.mov_imm(asm.R0, 0), asm.exit()]))


# -- dict operations ------------------------------------------------------------------------------


def test_dict_operations(hmap: Map) -> None:
    hmap[1] = 2
    assert hmap[1] == u64(2)
    assert hmap.lookup(1) == u64(2)
    assert hmap.get(1) == u64(2)
    assert hmap.get(5) is None
    assert hmap.get(5, b"x") == b"x"
    assert 1 in hmap and 5 not in hmap
    hmap[b"\x07\0\0\0"] = b"abcdefgh"
    hmap[ctypes.c_uint32(9)] = ctypes.c_uint64(10)
    assert hmap[7] == b"abcdefgh"
    assert hmap[9] == u64(10)
    assert sorted(hmap.keys()) == [u32(1), u32(7), u32(9)]
    assert sorted(hmap) == sorted(hmap.keys())
    assert sorted(hmap.values()) == sorted([u64(2), b"abcdefgh", u64(10)])
    assert dict(hmap.items()) == {u32(1): u64(2), u32(7): b"abcdefgh", u32(9): u64(10)}
    assert len(hmap) == 3
    del hmap[7]
    assert 7 not in hmap and len(hmap) == 2
    assert hmap.pop(1) == u64(2)
    assert hmap.pop(1, None) is None
    hmap.clear()
    assert len(hmap) == 0 and list(hmap.items()) == []
    assert bool(hmap)


def test_int_packing_native_and_signed(hmap: Map) -> None:
    hmap[-1] = -2
    assert hmap[0xFFFFFFFF] == struct.pack("=q", -2)
    hmap[2**32 - 2] = 2**64 - 1
    assert hmap[-2] == b"\xff" * 8
    assert hmap.next_key() in (u32(0xFFFFFFFF), u32(0xFFFFFFFE))


def test_update_flags(hmap: Map) -> None:
    hmap.update(1, 1, UpdateFlags.NOEXIST)
    with pytest.raises(KeyExistsError, match="already exists") as ei:
        hmap.update(1, 2, UpdateFlags.NOEXIST)
    assert ei.value.errno == errno.EEXIST
    hmap.update(1, 3, UpdateFlags.EXIST)
    assert hmap[1] == u64(3)
    with pytest.raises(KeyNotFoundError):
        hmap.update(2, 3, UpdateFlags.EXIST)
    with pytest.raises(InvalidArgumentError, match="spin_lock"):
        hmap.update(1, 4, UpdateFlags.LOCK)


def test_missing_key_is_key_error(hmap: Map) -> None:
    with pytest.raises(KeyError) as ei:
        hmap[42]
    assert isinstance(ei.value, KeyNotFoundError)
    assert "42" in str(ei.value) and "test_hash" in str(ei.value)
    with pytest.raises(KeyNotFoundError):
        del hmap[42]
    with pytest.raises(KeyNotFoundError):
        hmap.pop(42)


@pytest.mark.parametrize("bad, message", [
    (b"abc", "key must be 4 bytes, got 3"),
    (b"abcde", "key must be 4 bytes, got 5"),
    (ctypes.c_uint16(1), "key must be 4 bytes, got 2"),
    (2**32, "does not fit in 4 bytes"),
    (1.5, "key must be an int, bytes or a ctypes object of 4 bytes, got float"),
])
def test_wrong_key(hmap: Map, bad: Any, message: str) -> None:
    for op in (lambda: hmap[bad], lambda: hmap.update(bad, 1), lambda: hmap.delete(bad),
               lambda: bad in hmap):
        with pytest.raises(InvalidArgumentError) as ei:
            op()
        assert message in str(ei.value)
        assert isinstance(ei.value, ValueError)


def test_wrong_value(hmap: Map) -> None:
    with pytest.raises(InvalidArgumentError, match="value must be 8 bytes, got 4"):
        hmap[1] = b"abcd"
    with pytest.raises(InvalidArgumentError, match="value must be 8 bytes, got 4"):
        hmap[1] = ctypes.c_uint32(1)
    with pytest.raises(InvalidArgumentError, match="does not fit in 8 bytes"):
        hmap[1] = 2**64
    assert 1 not in hmap


def test_map_full(hmap: Map) -> None:
    small = Map(MapSpec(type=T.HASH, key_size=4, value_size=4, max_entries=2, name="small"))
    with small:
        small[1] = 1
        small[2] = 2
        with pytest.raises(SyscallError, match="full") as ei:
            small[3] = 3
        assert ei.value.errno == errno.E2BIG


def test_array_semantics(amap: Map) -> None:
    assert len(amap) == 16
    assert amap[3] == bytes(8)
    amap[3] = 7
    assert amap[3] == u64(7)
    assert [k for k in amap.keys()] == [u32(i) for i in range(16)]
    with pytest.raises(KeyNotFoundError):
        amap[16]
    with pytest.raises(InvalidArgumentError, match="cannot be deleted"):
        del amap[3]
    with pytest.raises(InvalidArgumentError, match="cannot be deleted"):
        amap.pop(3)


def test_closed_map(hmap: Map) -> None:
    hmap[1] = 1
    hmap.close()
    hmap.close()  # idempotent
    assert hmap.closed
    with pytest.raises(ValueError, match="closed"):
        hmap[1]
    with pytest.raises(ValueError, match="closed"):
        hmap[1] = 2
    assert "closed" in repr(hmap)


def test_names() -> None:
    assert sanitize_name("counts") == "counts"
    assert sanitize_name("a-very-long.map_name!with stuff") == "averylong.map_n"
    with Map(MapSpec(type=T.ARRAY, key_size=4, value_size=4, max_entries=1,
                     name="a-very-long.map_name!")) as m:
        assert m.info().name == "averylong.map_n"
        assert m.name == "a-very-long.map_name!"


def test_spec_copy_is_independent() -> None:
    inner = MapSpec(type=T.ARRAY, key_size=4, value_size=4, max_entries=1)
    spec = MapSpec(name="x", type=T.ARRAY_OF_MAPS, key_size=4, value_size=4, max_entries=2,
                   inner_map=inner, contents=[(0, bytearray(4))])
    c = spec.copy()
    c.max_entries = 9
    assert c.inner_map is not None and c.inner_map is not spec.inner_map
    c.inner_map.max_entries = 5
    c.contents[0][1][0] = 1
    assert spec.max_entries == 2 and inner.max_entries == 1
    assert spec.contents[0][1] == bytearray(4)


# -- every map type -------------------------------------------------------------------------------


def _use_hash_like(m: Map) -> None:
    m[1] = 2
    assert m[1] == u32(2)
    del m[1]
    assert 1 not in m


def _use_percpu(m: Map) -> None:
    m[1] = list(range(NCPU))
    assert m[1] == [u32(i) for i in range(NCPU)]
    assert dict(m.items())[u32(1)] == [u32(i) for i in range(NCPU)]


def _use_lpm(m: Map) -> None:
    # key: u32 prefix length + 4 address bytes
    m[struct.pack("=I4B", 16, 10, 1, 0, 0)] = u64(16)
    m[struct.pack("=I4B", 24, 10, 1, 2, 0)] = u64(24)
    assert m[struct.pack("=I4B", 32, 10, 1, 2, 3)] == u64(24)
    assert m[struct.pack("=I4B", 32, 10, 1, 9, 9)] == u64(16)
    assert struct.pack("=I4B", 32, 10, 2, 0, 0) not in m
    assert len(list(m.keys())) == 2


def _use_queue(m: Map) -> None:
    for i in range(3):
        m.push(i)
    assert m.peek() == u32(0)
    assert [m.pop() for _ in range(3)] == [u32(0), u32(1), u32(2)]


def _use_stack(m: Map) -> None:
    for i in range(3):
        m.push(i)
    assert m.peek() == u32(2)
    assert [m.pop() for _ in range(3)] == [u32(2), u32(1), u32(0)]


def _use_prog_array(m: Map) -> None:
    with trivial_program() as prog:
        m[0] = prog
        assert m[0] == u32(prog.id)  # reads give the program id
        assert list(dict(m.items())) == [u32(0)]  # empty slots are skipped
        del m[0]
        assert 0 not in m


def _use_devmap(m: Map) -> None:
    m[0] = 1  # the loopback ifindex: an entry only refers to the device
    assert m[0] == u32(1)


def _use_sockmap(m: Map) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        m[0] = s  # sockets go in by fd; reads give the socket cookie (8-byte values)
        assert m[0] == u64(socket_cookie(s))
        del m[0]


def socket_cookie(s: socket.socket) -> int:
    so_cookie = 57  # SO_COOKIE
    return int.from_bytes(s.getsockopt(socket.SOL_SOCKET, so_cookie, 8), sys.byteorder)


def _use_sk_storage(m: Map) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        m[s.fileno()] = {"cnt": 5}
        assert m[s.fileno()].cnt == 5
        del m[s.fileno()]


def _use_task_storage(m: Map) -> None:
    pidfd = os.pidfd_open(os.getpid())
    try:
        m[pidfd] = {"cnt": 7}
        assert m[pidfd].cnt == 7
    finally:
        os.close(pidfd)


def _use_bloom(m: Map) -> None:
    for v in (1, 2, 3):
        m.push(v)
    assert 1 in m and 3 in m


def _use_cpumap(m: Map) -> None:
    m[0] = 192  # queue size
    assert m[0] == u32(192)


def _create_only(m: Map) -> None:
    assert m.info().type == m.type


def _storage_value() -> btf.Struct:
    lock = btf.Struct("bpf_spin_lock", 4, [btf.Member("val", S32, 0)])
    return btf.Struct("storage_val", 8, [btf.Member("cnt", S32, 0), btf.Member("l", lock, 32)])


def _storage_spec(t: ebpf.MapType) -> MapSpec:
    return MapSpec(type=t, key_size=4, value_size=8, max_entries=0,
                   flags=MapFlags.NO_PREALLOC, key=S32, value=_storage_value())


MAP_TYPE_CASES: dict[ebpf.MapType, tuple[Callable[[], MapSpec], Callable[[Map], None]]] = {
    T.HASH: (lambda: MapSpec(type=T.HASH, key_size=4, value_size=4, max_entries=4),
             _use_hash_like),
    T.ARRAY: (lambda: MapSpec(type=T.ARRAY, key_size=4, value_size=4, max_entries=4),
              lambda m: (m.update(1, 2), _create_only(m))),
    T.PROG_ARRAY: (lambda: MapSpec(type=T.PROG_ARRAY, key_size=4, value_size=4,
                                   max_entries=4), _use_prog_array),
    T.PERF_EVENT_ARRAY: (lambda: MapSpec(type=T.PERF_EVENT_ARRAY, key_size=4, value_size=4),
                         lambda m: (_create_only(m), _check(m.max_entries == NCPU))),
    T.PERCPU_HASH: (lambda: MapSpec(type=T.PERCPU_HASH, key_size=4, value_size=4,
                                    max_entries=4), _use_percpu),
    T.PERCPU_ARRAY: (lambda: MapSpec(type=T.PERCPU_ARRAY, key_size=4, value_size=4,
                                     max_entries=4), _use_percpu),
    T.STACK_TRACE: (lambda: MapSpec(type=T.STACK_TRACE, key_size=4, value_size=8 * 8,
                                    max_entries=4),
                    lambda m: _check(0 not in m)),
    T.CGROUP_ARRAY: (lambda: MapSpec(type=T.CGROUP_ARRAY, key_size=4, value_size=4,
                                     max_entries=4), _create_only),
    T.LRU_HASH: (lambda: MapSpec(type=T.LRU_HASH, key_size=4, value_size=4, max_entries=64),
                 _use_hash_like),
    T.LRU_PERCPU_HASH: (lambda: MapSpec(type=T.LRU_PERCPU_HASH, key_size=4, value_size=4,
                                        max_entries=64), _use_percpu),
    T.LPM_TRIE: (lambda: MapSpec(type=T.LPM_TRIE, key_size=8, value_size=8, max_entries=8,
                                 flags=MapFlags.NO_PREALLOC), _use_lpm),
    T.ARRAY_OF_MAPS: (lambda: MapSpec(type=T.ARRAY_OF_MAPS, key_size=4, value_size=4,
                                      max_entries=2, inner_map=MapSpec(
                                          type=T.ARRAY, key_size=4, value_size=4,
                                          max_entries=1)), lambda m: _use_map_in_map(m)),
    T.HASH_OF_MAPS: (lambda: MapSpec(type=T.HASH_OF_MAPS, key_size=4, value_size=4,
                                     max_entries=2, inner_map=MapSpec(
                                         type=T.ARRAY, key_size=4, value_size=4,
                                         max_entries=1)), lambda m: _use_map_in_map(m)),
    T.DEVMAP: (lambda: MapSpec(type=T.DEVMAP, key_size=4, value_size=4, max_entries=2),
               _use_devmap),
    T.SOCKMAP: (lambda: MapSpec(type=T.SOCKMAP, key_size=4, value_size=8, max_entries=2),
                _use_sockmap),
    T.CPUMAP: (lambda: MapSpec(type=T.CPUMAP, key_size=4, value_size=4, max_entries=NCPU),
               _use_cpumap),
    T.XSKMAP: (lambda: MapSpec(type=T.XSKMAP, key_size=4, value_size=4, max_entries=2),
               lambda m: _raises(NotSupportedError, lambda: m[0])),  # no reads from user space
    T.SOCKHASH: (lambda: MapSpec(type=T.SOCKHASH, key_size=4, value_size=8, max_entries=2),
                 _use_sockmap),
    T.CGROUP_STORAGE: (lambda: MapSpec(type=T.CGROUP_STORAGE, key_size=16, value_size=8),
                       _create_only),
    T.REUSEPORT_SOCKARRAY: (lambda: MapSpec(type=T.REUSEPORT_SOCKARRAY, key_size=4,
                                            value_size=8, max_entries=2), _create_only),
    T.PERCPU_CGROUP_STORAGE: (lambda: MapSpec(type=T.PERCPU_CGROUP_STORAGE, key_size=16,
                                              value_size=8), _create_only),
    T.QUEUE: (lambda: MapSpec(type=T.QUEUE, value_size=4, max_entries=4), _use_queue),
    T.STACK: (lambda: MapSpec(type=T.STACK, value_size=4, max_entries=4), _use_stack),
    T.SK_STORAGE: (lambda: _storage_spec(T.SK_STORAGE), _use_sk_storage),
    T.DEVMAP_HASH: (lambda: MapSpec(type=T.DEVMAP_HASH, key_size=4, value_size=4,
                                    max_entries=2), _use_devmap),
    T.RINGBUF: (lambda: MapSpec(type=T.RINGBUF, max_entries=os.sysconf("SC_PAGE_SIZE")),
                _create_only),
    T.INODE_STORAGE: (lambda: _storage_spec(T.INODE_STORAGE), _create_only),
    T.TASK_STORAGE: (lambda: _storage_spec(T.TASK_STORAGE), _use_task_storage),
    T.BLOOM_FILTER: (lambda: MapSpec(type=T.BLOOM_FILTER, value_size=4, max_entries=16,
                                     map_extra=3), _use_bloom),
    T.USER_RINGBUF: (lambda: MapSpec(type=T.USER_RINGBUF,
                                     max_entries=os.sysconf("SC_PAGE_SIZE")), _create_only),
    T.CGRP_STORAGE: (lambda: _storage_spec(T.CGRP_STORAGE), _create_only),
    T.ARENA: (lambda: MapSpec(type=T.ARENA, max_entries=1, flags=MapFlags.MMAPABLE),
              _create_only),
}


def _check(cond: bool) -> None:
    assert cond


def _raises(exc: type[BaseException], fn: Callable[[], Any]) -> None:
    with pytest.raises(exc):
        fn()


def _use_map_in_map(m: Map) -> None:
    with Map(MapSpec(type=T.ARRAY, key_size=4, value_size=4, max_entries=1)) as inner:
        inner[0] = 42
        m[0] = inner
        inner_id = struct.unpack("=I", m[0])[0]
        assert inner_id == inner.id
        with Map.from_id(inner_id) as again:
            assert again[0] == u32(42)


def _all_map_types() -> list[ebpf.MapType]:
    seen: set[int] = set()
    out = []
    for t in T:
        if int(t) not in seen and t != T.UNSPEC:
            seen.add(int(t))
            out.append(t)
    return out


# STRUCT_OPS maps need a kernel struct type and programs: tests/test_link_net_struct_ops.py
@pytest.mark.parametrize("map_type", [t for t in _all_map_types() if t != T.STRUCT_OPS],
                         ids=lambda t: t.name)
def test_every_map_type(map_type: ebpf.MapType) -> None:
    need(map_type)
    make, use = MAP_TYPE_CASES[map_type]
    spec = make()
    spec.name = f"t_{map_type.name.lower()}"[:15]
    with Map(spec) as m:
        info = m.info()
        assert info.type == map_type
        assert info.name == spec.name
        use(m)


def test_unsupported_map_type_names_it() -> None:
    with pytest.raises(NotSupportedError, match="map type 200 is not supported") as ei:
        Map(MapSpec(type=200, key_size=4, value_size=4, max_entries=1))  # type: ignore[arg-type]
    assert ei.value.feature == "map type 200"


def test_create_error_says_what_was_asked() -> None:
    with pytest.raises(SyscallError, match=r"create HASH map 'bad'.*key_size 0") as ei:
        Map(MapSpec(type=T.HASH, key_size=0, value_size=4, max_entries=1, name="bad"))
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(InvalidArgumentError, match="needs an inner map"):
        Map(MapSpec(type=T.ARRAY_OF_MAPS, key_size=4, value_size=4, max_entries=1))
    with pytest.raises(InvalidArgumentError, match="type is not set"):
        Map(MapSpec(key_size=4, value_size=4, max_entries=1))


# -- flags ----------------------------------------------------------------------------------------


def test_flags_no_prealloc_and_numa() -> None:
    spec = MapSpec(type=T.HASH, key_size=4, value_size=4, max_entries=8,
                   flags=MapFlags.NO_PREALLOC, numa_node=0)
    with Map(spec) as m:
        assert m.info().flags == MapFlags.NO_PREALLOC | MapFlags.NUMA_NODE
        m[1] = 1
        assert m[1] == u32(1)


def test_flag_rdonly_rejects_writes() -> None:
    with Map(MapSpec(type=T.ARRAY, key_size=4, value_size=4, max_entries=2,
                     flags=MapFlags.RDONLY)) as m:
        assert m[0] == u32(0)
        with pytest.raises(PermissionError, match="read-only"):
            m[0] = 1


def test_flag_wronly_rejects_reads() -> None:
    with Map(MapSpec(type=T.ARRAY, key_size=4, value_size=4, max_entries=2,
                     flags=MapFlags.WRONLY)) as m:
        m[0] = 1
        with pytest.raises(PermissionError):
            m[0]


def test_lookup_with_lock_on_spin_lock_value() -> None:
    with Map(MapSpec(type=T.HASH, key_size=4, value_size=8, max_entries=4, key=S32,
                     value=_storage_value())) as m:
        assert m.info().btf_id != 0
        m.update(1, {"cnt": 3}, UpdateFlags.LOCK)
        assert m.lookup(1, flags=UpdateFlags.LOCK).cnt == 3


# -- per-CPU --------------------------------------------------------------------------------------


def test_percpu_values_rounded_to_8_bytes() -> None:
    with Map(MapSpec(type=T.PERCPU_ARRAY, key_size=4, value_size=3, max_entries=2)) as m:
        m[0] = [bytes([i, i, i]) for i in range(NCPU)]
        assert m[0] == [bytes([i, i, i]) for i in range(NCPU)]
        assert m[1] == [bytes(3)] * NCPU
        keys, values = m.lookup_batch()
        assert keys.tolist() == [0, 1]
        assert values.shape == (2, 8 * NCPU)
        # row = key, 8 bytes per CPU: each CPU's 3 bytes, then padding (any CPU count)
        raw = bytes(values)
        for cpu in range(NCPU):
            assert raw[8 * cpu : 8 * cpu + 8] == bytes([cpu] * 3) + bytes(5)
            assert raw[8 * (NCPU + cpu) : 8 * (NCPU + cpu) + 8] == bytes(8)


def test_percpu_value_errors() -> None:
    with Map(MapSpec(type=T.PERCPU_HASH, key_size=4, value_size=4, max_entries=2)) as m:
        with pytest.raises(InvalidArgumentError, match=f"must have {NCPU} elements"):
            m[0] = [1] * (NCPU + 1)
        with pytest.raises(InvalidArgumentError, match="sequence of"):
            m[0] = 1
        with pytest.raises(InvalidArgumentError, match=r"value\[0\] must be 4 bytes"):
            m[0] = [b"ab"] * NCPU


def test_percpu_typed() -> None:
    with Map(MapSpec(type=T.PERCPU_HASH, key_size=4, value_size=8, max_entries=2, key=U32,
                     value=S64)) as m:
        m[1] = [-i for i in range(NCPU)]
        assert m[1] == [-i for i in range(NCPU)]
        assert dict(m.items()) == {1: [-i for i in range(NCPU)]}


# -- batches --------------------------------------------------------------------------------------


def test_lookup_batch(hmap: Map) -> None:
    for i in range(100):
        hmap[i] = i * 3
    keys, values = hmap.lookup_batch()
    assert len(keys) == 100
    assert dict(zip(keys.tolist(), values.tolist(), strict=True)) == {i: i * 3 for i in range(100)}
    keys2, _ = hmap.lookup_batch(chunk_size=7)
    assert sorted(keys2.tolist()) == list(range(100))


def test_lookup_batch_empty_and_array(hmap: Map, amap: Map) -> None:
    keys, values = hmap.lookup_batch()
    assert len(keys) == 0 and len(values) == 0
    amap[2] = 5
    keys, values = amap.lookup_batch()
    assert keys.tolist() == list(range(16))
    assert values.tolist()[2] == 5


def test_lookup_batch_odd_sizes() -> None:
    with Map(MapSpec(type=T.HASH, key_size=3, value_size=5, max_entries=8)) as m:
        m[b"abc"] = b"12345"
        m[b"xyz"] = b"67890"
        keys, values = m.lookup_batch()
        assert keys.shape == (2, 3) and values.shape == (2, 5)
        got = {bytes(k): bytes(v) for k, v in zip(keys.tolist(), values.tolist(), strict=True)}
        assert got == {b"abc": b"12345", b"xyz": b"67890"}


def test_lookup_batch_numpy(hmap: Map) -> None:
    np = pytest.importorskip("numpy")
    for i in range(10):
        hmap[i] = i + 100
    keys, values = hmap.lookup_batch(numpy=True)
    assert keys.dtype == np.uint32 and values.dtype == np.uint64
    assert dict(zip(keys.tolist(), values.tolist(), strict=True)) == {
        i: i + 100 for i in range(10)}


def test_update_and_delete_batch(hmap: Map) -> None:
    assert hmap.update_batch(list(range(10)), [i * 2 for i in range(10)]) == 10
    assert hmap[9] == u64(18)
    assert hmap.update_batch(struct.pack("=3I", 20, 21, 22), struct.pack("=3Q", 1, 2, 3)) == 3
    assert hmap[22] == u64(3)
    with pytest.raises(InvalidArgumentError, match="ANY or LOCK only"):
        hmap.update_batch([20], [5], UpdateFlags.NOEXIST)
    with pytest.raises(InvalidArgumentError, match="2 keys but 1 values"):
        hmap.update_batch([1, 2], [1])
    assert hmap.delete_batch([0, 1, 2]) == 3
    assert 0 not in hmap and 3 in hmap
    with pytest.raises(KeyNotFoundError):
        hmap.delete_batch([0])
    keys, _ = hmap.lookup_and_delete_batch()
    assert sorted(keys.tolist()) == [3, 4, 5, 6, 7, 8, 9, 20, 21, 22]
    assert len(hmap) == 0


def test_update_batch_holds_map_values_given_by_any_iterable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """update_batch of a map-in-map with the inner maps from a generator: each stays
    held until the kernel has it, so a close of one by another thread meanwhile does
    not let a map created right after (taking its number) into the outer map."""
    import ebpf.maps.batch as batch

    inner = MapSpec(type=T.ARRAY, key_size=4, value_size=4, max_entries=1)
    outer = MapSpec(type=T.ARRAY_OF_MAPS, key_size=4, value_size=4, max_entries=2,
                    inner_map=inner)
    with Map(inner) as a, Map(inner) as b, Map(outer) as o:
        ids = [a.id, b.id]
        made: list[Map] = []
        call = batch._bpf_errno

        def closing_first(cmd: int, attr: Any) -> int:
            a.close()  # (another thread's close, after the numbers were packed)
            made.append(Map(inner))  # takes the number closed, if it was freed
            return call(cmd, attr)

        monkeypatch.setattr(batch, "_bpf_errno", closing_first)
        try:
            assert o.update_batch([0, 1], (m for m in (a, b))) == 2
        finally:
            monkeypatch.undo()
            for m in made:
                m.close()
        assert [int.from_bytes(o[i], sys.byteorder) for i in (0, 1)] == ids


def test_batch_numpy_input(hmap: Map) -> None:
    np = pytest.importorskip("numpy")
    hmap.update_batch(np.arange(5, dtype=np.uint32), np.arange(5, dtype=np.uint64) * 7)
    assert hmap[4] == u64(28)


def test_batch_not_supported_type() -> None:
    with Map(MapSpec(type=T.LPM_TRIE, key_size=8, value_size=8, max_entries=4,
                     flags=MapFlags.NO_PREALLOC)) as m, \
            pytest.raises(NotSupportedError, match="lookup_batch on LPM_TRIE"):
        m.lookup_batch()


# -- queue / stack / bloom ------------------------------------------------------------------------


def test_queue_errors() -> None:
    with Map(MapSpec(type=T.QUEUE, value_size=4, max_entries=2, name="q")) as q:
        with pytest.raises(KeyNotFoundError, match="QUEUE map 'q' is empty"):
            q.pop()
        with pytest.raises(KeyNotFoundError):
            q.peek()
        assert q.pop(default=None) is None
        q.push(1)
        q.push(2)
        with pytest.raises(SyscallError, match="full"):
            q.push(3)
        q.push(3, UpdateFlags.EXIST)  # drops the oldest
        assert [q.pop(), q.pop()] == [u32(2), u32(3)]
        with pytest.raises(InvalidArgumentError, match="no keys"):
            q[0]
        with pytest.raises(TypeError):
            len(q)


def test_bloom_filter_map_extra() -> None:
    need(T.BLOOM_FILTER)
    with Map(MapSpec(type=T.BLOOM_FILTER, value_size=8, max_entries=100, map_extra=5)) as m:
        assert m.info().map_extra == 5
        for v in range(0, 100, 2):
            m.push(v)
        assert all(v in m for v in range(0, 100, 2))
        false_positives = sum(v in m for v in range(1, 100, 2))
        assert false_positives < 25


# -- freeze, mmap ---------------------------------------------------------------------------------


def test_freeze(amap: Map) -> None:
    amap[0] = 5
    assert not amap.frozen
    amap.freeze()
    assert amap.frozen and amap.info().frozen
    assert amap[0] == u64(5)
    with pytest.raises(PermissionError, match="frozen") as ei:
        amap[0] = 6
    assert ei.value.errno == errno.EPERM
    with pytest.raises(PermissionError, match="frozen"):
        amap.update_batch([1], [1])
    assert amap[0] == u64(5)


def test_spec_contents_and_freeze() -> None:
    spec = MapSpec(type=T.ARRAY, key_size=4, value_size=4, max_entries=3,
                   contents=[(0, 10), (2, b"\1\0\0\0")], freeze=True)
    with Map(spec) as m:
        assert [m[i] for i in range(3)] == [u32(10), u32(0), u32(1)]
        assert m.frozen
        with Map.from_id(m.id) as again:
            assert again.frozen
            with pytest.raises(PermissionError, match="frozen"):
                again[1] = 1


def test_mmap() -> None:
    spec = MapSpec(type=T.ARRAY, key_size=4, value_size=4, max_entries=4,
                   flags=MapFlags.MMAPABLE)
    with Map(spec) as m:
        mem = m.mmap()
        assert len(mem) == 4 * 8  # elements are 8-byte aligned
        mem[8:12] = u32(77)  # element 1
        assert m[1] == u32(77)
        m[2] = 99
        assert bytes(mem[16:20]) == u32(99)
        ro = m.mmap(writable=False)
        assert ro.readonly and bytes(ro[8:12]) == u32(77)
        del mem, ro
    with Map(MapSpec(type=T.ARRAY, key_size=4, value_size=4, max_entries=1)) as m, \
            pytest.raises(InvalidArgumentError, match="MMAPABLE"):
        m.mmap()


def test_mmap_survives_close() -> None:
    spec = MapSpec(type=T.ARRAY, key_size=4, value_size=8, max_entries=2,
                   flags=MapFlags.MMAPABLE)
    m = Map(spec)
    mem = m.mmap()
    m[1] = 5
    m.close()
    assert bytes(mem[8:16]) == u64(5)
    mem.release()


# -- pinning, ids, dup, info ----------------------------------------------------------------------


def test_pin_open_unpin(pin_dir: str, hmap: Map) -> None:
    path = os.path.join(pin_dir, "counts")
    hmap[1] = 11
    hmap.pin(path)
    assert hmap.pinned == path and os.path.exists(path)
    with pytest.raises(SyscallError, match="already exists"):
        hmap.pin(path)
    with Map.open_pinned(path) as again:
        assert again[1] == u64(11)
        assert again.info().id == hmap.info().id
        assert again.type == T.HASH and again.key_size == 4 and again.value_size == 8
        assert again.pinned == path
        assert cloexec(again.fileno())
    with Map.open_pinned(path, read_only=True) as ro:
        assert ro[1] == u64(11)
        with pytest.raises(PermissionError):
            ro[1] = 2
    hmap.unpin()
    assert not os.path.exists(path) and hmap.pinned is None
    hmap.unpin()  # nothing to do
    with pytest.raises(SyscallError, match="no pinned object") as ei:
        Map.open_pinned(path)
    assert ei.value.errno == errno.ENOENT


def test_pin_outside_bpffs(tmp_path: Any, hmap: Map) -> None:
    with pytest.raises(InvalidArgumentError, match="not on a bpf filesystem"):
        hmap.pin(str(tmp_path / "x"))


def test_open_pinned_program_is_refused(pin_dir: str) -> None:
    with trivial_program() as prog:
        path = os.path.join(pin_dir, "prog")
        prog.pin(path)
        with pytest.raises(InvalidArgumentError, match="not a map"):
            Map.open_pinned(path)


def test_pinning_by_name(pin_dir: str) -> None:
    spec = MapSpec(name="shared", type=T.HASH, key_size=4, value_size=4, max_entries=8,
                   pinning=PinType.BY_NAME)
    with Map(spec, pin_path=pin_dir) as first:
        first[1] = 1
        assert first.pinned == os.path.join(pin_dir, "shared")
        with Map(spec, pin_path=pin_dir) as second:  # reused
            assert second.id == first.id and second[1] == u32(1)
        bad = spec.copy()
        bad.max_entries = 16
        with pytest.raises(InvalidArgumentError, match="max_entries 8, spec wants 16"):
            Map(bad, pin_path=pin_dir)
    assert os.path.exists(os.path.join(pin_dir, "shared"))  # pins outlive the objects


def test_pinning_by_name_refuses_places_others_control(pin_dir: str) -> None:
    """Reusing pins is trusting whoever put them there: a directory another user can
    write (or owns), or a pin that is a symlink or not ours, is refused."""
    spec = MapSpec(name="shared", type=T.HASH, key_size=4, value_size=4, max_entries=8,
                   pinning=PinType.BY_NAME)
    os.chmod(pin_dir, 0o777)
    with pytest.raises(ebpf.PermissionError, match="writable by other users"):
        Map(spec, pin_path=pin_dir)
    os.chmod(pin_dir, 0o1777)               # sticky, like /sys/fs/bpf: others cannot swap
    with Map(spec, pin_path=pin_dir) as first:
        pin = os.path.join(pin_dir, "shared")
        os.chown(pin, 65534, 65534)
        with pytest.raises(ebpf.PermissionError, match="owned by uid 65534"):
            Map(spec, pin_path=pin_dir)
        os.chown(pin, 0, 0)
        with Map(spec, pin_path=pin_dir) as again:
            assert again.id == first.id
        os.symlink(pin, os.path.join(pin_dir, "alias"))
        aliased = spec.copy()
        aliased.name = "alias"
        with pytest.raises(ebpf.PermissionError, match="alias is a symlink"):
            Map(aliased, pin_path=pin_dir)
    os.chmod(pin_dir, 0o700)
    os.chown(pin_dir, 65534, 65534)
    with pytest.raises(ebpf.PermissionError, match="belongs to uid 65534"):
        Map(spec, pin_path=pin_dir)
    os.chown(pin_dir, 0, 0)


def test_info_from_id_dup(hmap: Map) -> None:
    info = hmap.info()
    assert (info.type, info.key_size, info.value_size, info.max_entries) == (
        T.HASH, 4, 8, 1024)
    assert info.name == "test_hash" and info.id > 0 and info.id == hmap.id
    hmap[3] = 4
    with Map.from_id(info.id) as other:
        assert other[3] == u64(4)
        assert other.fileno() != hmap.fileno()
    d = hmap.dup()
    assert d.fileno() != hmap.fileno() and cloexec(d.fileno())
    d.close()
    assert hmap[3] == u64(4)
    with pytest.raises(KeyNotFoundError, match="no map with id"):
        Map.from_id(0x7FFFFFF0)
    assert info.id in set(map_ids())


def test_from_fd_refuses_other_objects() -> None:
    with trivial_program() as prog:
        fd = os.dup(prog.fileno())
        with pytest.raises(InvalidArgumentError, match="bpf-prog, not a map"):
            Map.from_fd(fd)
        with pytest.raises(OSError):
            os.fstat(fd)  # closed: from_fd owned it


def test_from_fd_takes_ownership(hmap: Map) -> None:
    fd = os.dup(hmap.fileno())
    m = Map.from_fd(fd)
    assert m.info().id == hmap.info().id
    m.close()
    with pytest.raises(OSError):
        os.fstat(fd)


# -- BTF-typed keys and values --------------------------------------------------------------------


def test_btf_typed_values() -> None:
    val = btf.Struct("val", 16, [btf.Member("a", U64, 0), btf.Member("b", S32, 64)])
    spec = MapSpec(type=T.HASH, key_size=4, value_size=16, max_entries=4, name="typed",
                   key=U32, value=val)
    with Map(spec) as m:
        info = m.info()
        assert info.btf_id and info.btf_key_type_id and info.btf_value_type_id
        m[1] = {"a": 5, "b": -6}
        v = m[1]
        assert isinstance(v, ctypes.Structure) and (v.a, v.b) == (5, -6)
        assert m.lookup(1, raw=True) == u64(5) + struct.pack("=i", -6) + bytes(4)
        v.a = 9
        m[2] = v  # ctypes values go in as they are
        assert m[2].a == 9
        assert sorted(m.keys()) == [1, 2]
        assert sorted(m.keys(raw=True)) == [u32(1), u32(2)]
        assert {k: x.a for k, x in m.items()} == {1: 5, 2: 9}
        with Map.from_id(info.id) as again:  # types come back from the kernel's BTF
            assert isinstance(again.value_type, btf.Struct)
            assert again[2].a == 9


def test_btf_int_values() -> None:
    with Map(MapSpec(type=T.ARRAY, key_size=4, value_size=8, max_entries=2, key=U32,
                     value=S64)) as m:
        m[0] = -5
        assert m[0] == -5
        assert m.get(1) == 0
        assert list(m.values()) == [-5, 0]
        assert m.lookup(0, raw=True) == struct.pack("=q", -5)


# -- programs see what we write -------------------------------------------------------------------


def test_program_updates_array() -> None:
    from ebpf import asm

    with Map(MapSpec(type=T.ARRAY, key_size=4, value_size=8, max_entries=1)) as m:
        insns = [
            asm.ld_map_value(asm.R1, m.fileno(), 0),
            asm.mov_imm(asm.R2, 3),
            asm.atomic_add(asm.R1, 0, asm.R2),
            asm.mov_imm(asm.R0, 0),
            asm.exit(),
        ]
        with ebpf.Program(ebpf.ProgramSpec(name="inc", type=ebpf.ProgramType.SOCKET_FILTER,
                                           license="GPL", instructions=insns)) as prog:
            m[0] = 10
            prog.test_run(b"\0" * 64)
            assert m[0] == u64(13)


# -- iteration under concurrent deletes -----------------------------------------------------------


def test_iteration_survives_deleting_current_key(hmap: Map) -> None:
    for i in range(200):
        hmap[i] = i
    seen = []
    for k in iteration.raw_keys(hmap):  # the BPF_MAP_GET_NEXT_KEY walk
        seen.append(k)
        del hmap[k]  # the cursor key vanishes: the kernel restarts the walk
    assert sorted(seen) == sorted(u32(i) for i in range(200))
    assert len(hmap) == 0


def test_iteration_survives_deleting_other_keys(hmap: Map) -> None:
    for i in range(300):
        hmap[i] = i
    out: list[bytes] = []
    it = iteration.raw_keys(hmap)
    for n, k in enumerate(it):
        out.append(k)
        if n == 10:
            for j in range(0, 300, 3):
                hmap.pop(j, None)
    assert len(out) == len(set(out))
    assert set(out) >= {u32(i) for i in range(300) if i % 3}


def test_items_while_deleting(hmap: Map) -> None:
    for i in range(500):
        hmap[i] = i
    got = {}
    for k, v in hmap.items():
        got[k] = v
        hmap.pop(k, None)
        hmap.pop(int.from_bytes(k, sys.byteorder) ^ 1, None)
    assert len(got) == len(set(got))
    assert all(v == u64(int.from_bytes(k, sys.byteorder)) for k, v in got.items())


def test_iteration_aborts_when_map_churns() -> None:
    with Map(MapSpec(type=T.HASH, key_size=4, value_size=4, max_entries=4)) as m:
        m[0] = 0
        with pytest.raises(IterationAbortedError, match="kept changing"):
            for n, k in enumerate(iteration.raw_keys(m)):
                del m[k]
                m[n + 1] = 0  # a new key every step: the walk never ends


def test_next_key(hmap: Map) -> None:
    assert hmap.next_key() is None
    hmap[5] = 1
    assert hmap.next_key() == u32(5)
    assert hmap.next_key(5) is None
    assert hmap.next_key(6) == u32(5)  # a missing key restarts the walk


# -- threads --------------------------------------------------------------------------------------


def test_threads_share_a_map(hmap: Map) -> None:
    errors: list[BaseException] = []

    def work(base: int) -> None:
        try:
            for i in range(2000):
                k = base + i % 50
                hmap[k] = k * 7
                assert hmap[k] == u64(k * 7)
        except BaseException as e:  # collected for the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t * 100,)) for t in range(4)]
    for t in threads:
        t.start()
    work(1000)
    for t in threads:
        t.join()
    assert not errors
    assert len(hmap) == 250


# -- descriptors ----------------------------------------------------------------------------------


def test_no_fd_leaks(pin_dir: str) -> None:
    before = open_fds()
    for _ in range(3):
        with Map(MapSpec(type=T.HASH_OF_MAPS, key_size=4, value_size=4, max_entries=2,
                         inner_map=MapSpec(type=T.ARRAY, key_size=4, value_size=4,
                                           max_entries=1))) as m:
            pass
        with Map(MapSpec(type=T.HASH, key_size=4, value_size=8, max_entries=8, key=U32,
                         value=U64, name="leak")) as m:
            m[1] = 1
            m.pin(os.path.join(pin_dir, "leak"))
            m.lookup_batch()
            list(m.items())
            with Map.open_pinned(os.path.join(pin_dir, "leak")) as p, m.dup(), \
                    Map.from_id(p.id):
                pass
            m.unpin()
        with pytest.raises(SyscallError):
            Map(MapSpec(type=T.HASH, key_size=0, value_size=4, max_entries=1))
    gc.collect()
    assert open_fds() == before


def test_resource_warning_on_forgotten_close() -> None:
    m = Map(MapSpec(type=T.ARRAY, key_size=4, value_size=4, max_entries=1, name="forgot"))
    fd = m.fileno()
    with pytest.warns(ResourceWarning, match="unclosed map 'forgot'"):
        del m
        gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_no_warning_when_closed() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        m = Map(MapSpec(type=T.ARRAY, key_size=4, value_size=4, max_entries=1))
        m.close()
        del m
        gc.collect()


def test_close_on_exec(hmap: Map) -> None:
    assert cloexec(hmap.fileno())
    with hmap.dup() as d, Map.from_id(hmap.id) as byid:
        assert cloexec(d.fileno()) and cloexec(byid.fileno())


# -- packing properties ---------------------------------------------------------------------------


SIZES = st.sampled_from([1, 2, 3, 4, 5, 8, 12, 16])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ks=SIZES, vs=SIZES, data=st.data())
def test_packing_roundtrip(ks: int, vs: int, data: st.DataObject) -> None:
    with Map(MapSpec(type=T.HASH, key_size=ks, value_size=vs, max_entries=4)) as m:
        kind = data.draw(st.sampled_from(["int", "neg", "bytes", "ctypes"]))
        if kind == "int":
            key: Any = data.draw(st.integers(0, 2 ** (8 * ks) - 1))
            kb = key.to_bytes(ks, sys.byteorder)
        elif kind == "neg":
            key = data.draw(st.integers(-(2 ** (8 * ks - 1)), -1))
            kb = key.to_bytes(ks, sys.byteorder, signed=True)
        elif kind == "bytes":
            kb = key = data.draw(st.binary(min_size=ks, max_size=ks))
        else:
            kb = data.draw(st.binary(min_size=ks, max_size=ks))
            key = (ctypes.c_ubyte * ks).from_buffer_copy(kb)
        value = data.draw(st.integers(0, 2 ** (8 * vs) - 1) | st.binary(min_size=vs,
                                                                         max_size=vs))
        vb = value if isinstance(value, bytes) else value.to_bytes(vs, sys.byteorder)
        m[key] = value
        assert m[kb] == vb
        assert m.next_key() == kb
        keys, values = m.lookup_batch()
        assert bytes(keys) == kb and bytes(values) == vb


@pytest.mark.hostonly  # the library's own checks: the same on every kernel
@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 12).filter(lambda n: n != 4))
def test_wrong_sizes_say_expected(n: int) -> None:
    with Map(MapSpec(type=T.HASH, key_size=4, value_size=4, max_entries=1)) as m:
        with pytest.raises(InvalidArgumentError, match=f"key must be 4 bytes, got {n}"):
            m[b"k" * n] = 1
        with pytest.raises(InvalidArgumentError, match=f"value must be 4 bytes, got {n}"):
            m[1] = b"v" * n


def test_batch_type_loads_on_first_use() -> None:
    """`import ebpf.maps` makes no Batch class (process start); `ebpf.maps.Batch`,
    `ebpf.maps.batch.Batch` and `ebpf.Batch` are the one class."""
    import pickle
    import subprocess
    import sys

    code = ("import sys, ebpf.maps as m; print('ebpf.maps._batch_type' in sys.modules); "
            "m.Batch; print('ebpf.maps._batch_type' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]
    import ebpf.maps.batch

    assert ebpf.Batch is ebpf.maps.Batch is ebpf.maps.batch.Batch
    assert pickle.loads(pickle.dumps(ebpf.Batch(b"k", b"v"))) == (b"k", b"v")
