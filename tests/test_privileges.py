"""Without privilege every kernel operation fails with ebpf.PermissionError naming the
missing capability; what needs none (reading the kernel's BTF) still works."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CHILD = r'''
import json, os, sys
import ebpf, ebpf.maps, ebpf.programs, ebpf.btf.cache, ebpf.btf.kernel, ebpf.features
# (imported before the switch to nobody, who cannot read this interpreter's files under
# /root: the BTF index writer and the name scan load on first use)
import ebpf.btf._cache_write, ebpf.btf._name_scan
from ebpf import asm
insns = [asm.mov_imm(asm.R0, 0), asm.exit()]
os.setgroups([]); os.setgid(65534); os.setuid(65534)   # nobody, no capabilities
out = {}
for what, fn in [
    ("map", lambda: ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.HASH, key_size=4, value_size=4,
                                          max_entries=1))),
    ("program", lambda: ebpf.Program(ebpf.ProgramSpec(
        type=ebpf.ProgramType.SOCKET_FILTER, license="GPL", instructions=insns))),
    ("probe", lambda: ebpf.features.have_map_type(ebpf.MapType.HASH)),
    ("btf", lambda: ebpf.btf.load_kernel_spec().type_by_name("task_struct").name),
]:
    try:
        out[what] = ["ok", str(fn())]
    except Exception as e:
        out[what] = [type(e).__module__ + "." + type(e).__qualname__, str(e),
                     isinstance(e, PermissionError)]
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def unprivileged() -> dict[str, list[object]]:
    if open("/proc/sys/kernel/unprivileged_bpf_disabled").read().strip() == "0":
        pytest.skip("unprivileged BPF is enabled here (kernel.unprivileged_bpf_disabled=0)")
    env = dict(os.environ, HOME="/nonexistent", XDG_CACHE_HOME="/nonexistent")
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                       env=env, cwd="/", check=False)
    assert r.returncode == 0, r.stderr
    result: dict[str, list[object]] = json.loads(r.stdout)
    return result


@pytest.mark.parametrize("what", ["map", "program", "probe"])
def test_kernel_operations_raise_permission_error(unprivileged: dict[str, list[object]],
                                                  what: str) -> None:
    kind, message, builtin = unprivileged[what]
    assert kind == "ebpf.errors.PermissionError"
    assert builtin is True                       # also the built-in PermissionError
    assert "needs CAP_BPF (or CAP_SYS_ADMIN);" in str(message)   # exactly what is missing
    assert "the process (uid 65534) has none of CAP_BPF" in str(message)
    assert "kernel.unprivileged_bpf_disabled is " in str(message)


def test_kernel_btf_needs_no_privilege(unprivileged: dict[str, list[object]]) -> None:
    assert unprivileged["btf"] == ["ok", "task_struct"]
