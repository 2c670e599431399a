"""Helpers for tests of BPF trampoline programs (fentry/fexit/fmod_ret, LSM, cgroup LSM,
freplace); no tests here.

The 6.18 development VM refuses these programs at load time (EPERM after the verifier
accepts them); the library reports it as NotSupportedError, and `load` skips the test
with that message. The kernel matrix's Debian 6.1 and 6.12 kernels support them, the BPF
LSM included ("bpf" is in their CONFIG_LSM): in a guest a refusal, or an inactive BPF
LSM (the `bpf_lsm` fixture of conftest.py), fails the test instead.
"""

from __future__ import annotations

import os

import pytest

import ebpf
from ebpf import NotSupportedError

#: In a kernel-matrix guest, where skipping for lack of trampolines is a failure.
IN_GUEST = bool(os.environ.get("KMATRIX_GUEST"))


def load(spec: ebpf.CollectionSpec, programs: list[str] | None = None) -> ebpf.Collection:
    """`ebpf.Collection(spec, programs=programs)`, skipping the test when the kernel
    refuses trampoline programs (failing it in a kernel-matrix guest)."""
    try:
        return ebpf.Collection(spec, programs=programs)
    except NotSupportedError as e:
        if IN_GUEST:
            pytest.fail(f"the kernel matrix's kernels support trampolines: {e}")
        pytest.skip(str(e))
