"""The syscall layer: generated attr structures, typed errors, descriptors."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import gc
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import ebpf
from ebpf._sys import types as T
from ebpf._sys.fd import FD
from ebpf._sys.syscall import bpf, from_errno
from ebpf.errors import SyscallError

REPO = Path(__file__).resolve().parent.parent


def test_generated_types_are_reproducible() -> None:
    """Re-running tools/gen_sys.py on this kernel reproduces ebpf/_sys/types.py exactly."""
    r = subprocess.run([sys.executable, str(REPO / "tools" / "gen_sys.py"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_generated_layouts_match_kernel_btf() -> None:
    kernel = ebpf.btf.load_kernel_spec()
    attr = kernel.type_by_name("bpf_attr", ebpf.btf.Union)
    assert T.ATTR_SIZE == attr.size
    info = kernel.type_by_name("bpf_prog_info", ebpf.btf.Struct)
    assert ctypes.sizeof(T.ProgInfo) == info.size
    assert T.ProgInfo.jited_prog_len.offset * 8 == info.member("jited_prog_len").offset_bits
    assert T.HelperFunc.map_lookup_elem == 1
    assert T.Cmd.PROG_LOAD == 5


def test_errno_becomes_typed_exception() -> None:
    attr = T.MapCreateAttr(map_type=0xFFFF, key_size=4, value_size=4, max_entries=1)
    with pytest.raises(SyscallError) as ei:
        bpf(T.Cmd.MAP_CREATE, attr)
    assert ei.value.errno == errno.EINVAL
    assert "BPF_MAP_CREATE" in str(ei.value)
    # this process holds every capability: an EPERM is the kernel's policy, not privilege
    perm = from_errno(errno.EPERM, "bpf(BPF_PROG_LOAD)")
    assert isinstance(perm, ebpf.KernelPolicyError) and isinstance(perm, ebpf.NotSupportedError)
    assert perm.errno == errno.EPERM and isinstance(perm, OSError)
    assert "refused it by policy (EPERM although the process has CAP_BPF" in str(perm)
    nse = from_errno(524, "bpf(BPF_LINK_CREATE)")
    assert isinstance(nse, ebpf.NotSupportedError)


def test_fd_close_is_idempotent_and_cloexec() -> None:
    m = ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.ARRAY, key_size=4, value_size=4,
                              max_entries=1))
    fd = m.fileno()
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    dup = m.fd.dup()
    assert fcntl.fcntl(dup.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    dup.close()
    dup.close()
    m.close()
    m.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_forgotten_fd_warns_and_closes() -> None:
    r, w = os.pipe2(os.O_CLOEXEC)
    os.close(w)
    f = FD(r, "test pipe")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del f
        gc.collect()
    assert any(issubclass(c.category, ResourceWarning) for c in caught)
    with pytest.raises(OSError):
        os.fstat(r)


def test_children_do_not_inherit_kernel_objects() -> None:
    with ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.ARRAY, key_size=4, value_size=4,
                               max_entries=1)) as m:
        fd = m.fileno()
        out = subprocess.run(["ls", "/proc/self/fd"], capture_output=True, text=True,
                             close_fds=False).stdout.split()
        assert str(fd) not in out
