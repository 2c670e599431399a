"""Where struct_ops types are looked up (issue 12): vmlinux first, then the BTF of the
loaded kernel modules (`ebpf.btf.kernel.find_struct_ops_type`).

A type vmlinux defines is vmlinux's (no module, ids of vmlinux's BTF, as before module
types were supported); a name no BTF has is None, and the errors say where it was
looked for. Types defined by a module (bpf_testmod's ``bpf_testmod_ops``) are covered
by the 6.12 VM conformance run (tools/conformance_vm.py inserts bpf_testmod): no kernel
of the matrix ships a module defining one.
"""

from __future__ import annotations

import pytest
from kernelmatrix import requires

from ebpf import btf
from ebpf.btf.kernel import STRUCT_OPS_VALUE_PREFIX, find_struct_ops_type
from ebpf.errors import NotSupportedError
from ebpf.features import require_struct_ops

MISSING = "no_such_struct_ops_type"


@pytest.mark.kernel
def test_vmlinux_type_is_found_in_vmlinux() -> None:
    found = find_struct_ops_type("tcp_congestion_ops")
    assert found is not None
    kernel = btf.load_kernel_spec()
    assert found.module == ""
    assert found.spec is kernel
    assert found.struct.name == "tcp_congestion_ops"
    assert found.struct_id == kernel.type_id(kernel.type_by_name("tcp_congestion_ops",
                                                                 btf.Struct))
    assert found.value is not None
    assert found.value.name == STRUCT_OPS_VALUE_PREFIX + "tcp_congestion_ops"
    assert found.value_id == kernel.type_id(found.value)
    assert found.struct.members[0].name  # laid out from the kernel's struct


@pytest.mark.kernel
def test_struct_without_value_type_has_none() -> None:
    # a vmlinux struct that is not a struct_ops type
    found = find_struct_ops_type("task_struct")
    assert found is not None
    assert (found.module, found.value, found.value_id) == ("", None, 0)


@pytest.mark.kernel
def test_unknown_type_is_none() -> None:
    assert find_struct_ops_type(MISSING) is None


@requires("struct_ops", min_kernel="5.6", config="BPF_JIT")
def test_unknown_type_error_names_where_it_was_looked_for() -> None:
    with pytest.raises(NotSupportedError) as ei:
        require_struct_ops(MISSING)
    assert f"struct {MISSING} is not in the kernel's BTF (vmlinux or a loaded module's)" \
        in str(ei.value)
    with pytest.raises(NotSupportedError) as ei:
        require_struct_ops("task_struct")
    assert f"no struct {STRUCT_OPS_VALUE_PREFIX}task_struct" in str(ei.value)
