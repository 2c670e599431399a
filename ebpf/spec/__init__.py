"""Specs: what maps, programs, variables and whole objects are made of, before
anything exists in the kernel.

Pure, editable, copyable data: the ELF reader (`ebpf.elf`) produces it, `ebpf gen`
and the static linker consume it, and `ebpf.instantiate` turns it into kernel
objects. Nothing here opens a file descriptor or imports a kernel-object module.

Names are imported on first use, so that `ebpf.maps` (which needs `MapSpec` only)
does not pay for the other specs' classes.
"""

from __future__ import annotations

import ebpf._lazyattr as _lazyattr

_LAZY = {
    "CollectionSpec": ".collection", "Extern": ".collection", "Maps": ".collection",
    "NamedDict": ".collection", "Programs": ".collection", "Variables": ".collection",
    "VariableSpec": ".collection",
    "MapFlags": ".flags", "MapSpec": ".maps", "PinType": ".maps",
    "LoadedProgram": ".programs", "ProgramFlags": ".flags", "ProgramSpec": ".programs",
    "SupportsFileno": ".programs",
    "StructOpsSpec": ".struct_ops",
}

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from .collection import (
        CollectionSpec,
        Extern,
        Maps,
        NamedDict,
        Programs,
        Variables,
        VariableSpec,
    )
    from .flags import MapFlags, ProgramFlags
    from .maps import MapSpec, PinType
    from .programs import LoadedProgram, ProgramSpec, SupportsFileno
    from .struct_ops import StructOpsSpec


OBJ_NAME_MAX = 15
"""The longest name the kernel keeps (BPF_OBJ_NAME_LEN less its NUL)."""


def kernel_name(name: str) -> str:
    """The name the kernel gets for a map or program: only [A-Za-z0-9_.] kept, at
    most 15 characters (like libbpf)."""
    if (name.__class__ is str and name.isascii()
            and name.replace("_", "a").replace(".", "a").isalnum()):
        return name[:OBJ_NAME_MAX]  # (every character kept: no pass over them)
    kept = "".join(c for c in name if c.isascii() and (c.isalnum() or c in "_."))
    return kept[:OBJ_NAME_MAX]


__getattr__ = _lazyattr.lazy_attributes(globals(), _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "OBJ_NAME_MAX",
    "CollectionSpec",
    "Extern",
    "LoadedProgram",
    "MapFlags",
    "MapSpec",
    "Maps",
    "NamedDict",
    "PinType",
    "ProgramFlags",
    "ProgramSpec",
    "Programs",
    "StructOpsSpec",
    "SupportsFileno",
    "VariableSpec",
    "Variables",
    "kernel_name",
]
