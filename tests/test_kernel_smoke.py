"""Smoke tests for the kernel matrix: tiny, kernel-dependent, run on every kernel.

They use only the syscall layer, so they run before the rest of the library exists, and
show that each VM boots the intended kernel with BPF (the runner itself checks the guest
mounted bpffs, tracefs, debugfs and cgroup2).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

import pytest
from kernelmatrix import requires

from ebpf._sys import syscall, types

pytestmark = pytest.mark.kernel



def _create_map(map_type: int, key_size: int, value_size: int, max_entries: int) -> int:
    attr = types.MapCreateAttr(map_type=map_type, key_size=key_size, value_size=value_size,
                               max_entries=max_entries)
    return syscall.bpf(types.Cmd.MAP_CREATE, attr)


def test_proc_version() -> None:
    with open("/proc/version") as f:
        version = f.read()
    assert version.startswith("Linux version ")
    assert platform.release() in version
    expect = os.environ.get("KMATRIX_EXPECT_RELEASE")
    if expect:
        assert platform.release() == expect


def test_array_map_roundtrip() -> None:
    fd = _create_map(types.MapType.ARRAY, 4, 8, 4)
    try:
        key = ctypes.c_uint32(2)
        value = ctypes.c_uint64(0x1122334455667788)
        attr = types.MapElemAttr(map_fd=fd, key=ctypes.addressof(key),
                                 value=ctypes.addressof(value), flags=types.BPF_ANY)
        syscall.bpf(types.Cmd.MAP_UPDATE_ELEM, attr)
        out = ctypes.c_uint64(0)
        attr = types.MapElemAttr(map_fd=fd, key=ctypes.addressof(key),
                                 value=ctypes.addressof(out))
        syscall.bpf(types.Cmd.MAP_LOOKUP_ELEM, attr)
        assert out.value == value.value
    finally:
        os.close(fd)


@requires("ringbuf map", min_kernel="5.8")
def test_ringbuf_map() -> None:
    try:
        fd = _create_map(types.MapType.RINGBUF, 0, 0, 4096)
    except OSError as e:
        if e.errno == errno.EINVAL:
            pytest.skip(f"BPF_MAP_TYPE_RINGBUF refused: {e}")
        raise
    os.close(fd)


@requires("kprobe_events", min_kernel="4.1", config="CONFIG_KPROBE_EVENTS")
def test_kprobe_events_file(tracefs: str) -> None:
    if not os.path.exists(os.path.join(tracefs, "kprobe_events")):
        pytest.skip("no kprobe_events in tracefs")


@requires("BTF for vmlinux", min_kernel="5.4", config="CONFIG_DEBUG_INFO_BTF")
def test_vmlinux_btf() -> None:
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("no /sys/kernel/btf/vmlinux")
    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        assert f.read(2) == b"\x9f\xeb"  # BTF magic, little endian


@requires("link_type:KPROBE_MULTI", min_kernel="5.18", config="CONFIG_FPROBE")
def test_kprobe_multi_probe() -> None:
    """Probed with ebpf.features before the test runs: skips where CONFIG_FPROBE is off
    (the host, Debian's 6.1), must pass on 6.12."""


