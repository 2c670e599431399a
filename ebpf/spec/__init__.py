"""Specs: what maps, programs, variables and whole objects are made of, before
anything exists in the kernel.

Pure, editable, copyable data: the ELF reader (`ebpf.elf`) produces it, `ebpf gen`
and the static linker consume it, and `ebpf.instantiate` turns it into kernel
objects. Nothing here opens a file descriptor or imports a kernel-object module.
"""

from __future__ import annotations

from .collection import CollectionSpec, Extern, Maps, NamedDict, Programs, Variables, VariableSpec
from .maps import MapFlags, MapSpec, PinType
from .names import kernel_name
from .programs import LoadedProgram, ProgramFlags, ProgramSpec, SupportsFileno
from .struct_ops import StructOpsSpec

__all__ = [
    "CollectionSpec", "Extern", "LoadedProgram", "MapFlags", "MapSpec", "Maps", "NamedDict",
    "PinType", "ProgramFlags", "ProgramSpec", "Programs", "StructOpsSpec", "SupportsFileno",
    "VariableSpec", "Variables", "kernel_name",
]
