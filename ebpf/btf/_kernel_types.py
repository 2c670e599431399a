"""`KernelType` and `StructOpsType`, the results of `ebpf.btf.kernel`'s look-ups: their
own module so that `ebpf.btf.kernel`, which loading any CO-RE object imports, makes them
on first use (~0.4 ms of NamedTuple classes; process start). Public as
``ebpf.btf.kernel.KernelType`` / ``.StructOpsType`` (their `__module__`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import NamedTuple

    from .spec import Spec
    from .types import Struct, Type
else:
    # the same stdlib classes, made at a fraction of the cost (process start)
    from .._sys.fastclass import NamedTuple

__all__ = ["KernelType", "StructOpsType"]


class KernelType(NamedTuple):
    """A type of the running kernel's BTF: `module` is "" for vmlinux, else the
    module whose split BTF holds it; `type_id` is its id there (a module's ids
    follow vmlinux's), which is what BPF_PROG_LOAD wants with that BTF object."""

    module: str
    type_id: int
    type: Type


class StructOpsType(NamedTuple):
    """A struct_ops type of the running kernel (``struct <name>``) and the struct the
    kernel keeps its values in (``struct bpf_struct_ops_<name>``, None when the kernel
    has none: then it cannot be implemented in BPF). `module` is "" when vmlinux
    defines it, else the module whose split BTF (`spec`) does; the ids are ids in
    `spec` (what BPF_PROG_LOAD and BPF_MAP_CREATE want with that module's BTF object)."""

    module: str
    spec: Spec
    struct: Struct
    struct_id: int
    value: Struct | None
    value_id: int


# public in ebpf.btf.kernel (reprs, pickles, docs name it there)
KernelType.__module__ = StructOpsType.__module__ = "ebpf.btf.kernel"
