"""BTF: the BPF Type Format. Parse, look up, build and write types."""

from __future__ import annotations

from .kernel import load_kernel_spec
from .spec import Spec
from .types import (
    Array,
    Composite,
    Const,
    Datasec,
    DeclTag,
    Enum,
    EnumValue,
    Float,
    Func,
    FuncParam,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Kind,
    Linkage,
    Member,
    Pointer,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Void,
    alignof,
    sizeof,
    skip_typedefs,
    strip_qualifiers,
)


def load_spec(source: str | bytes, base: Spec | None = None) -> Spec:
    """Parse BTF from raw BTF bytes, a raw BTF file, or an ELF object's .BTF section."""
    if isinstance(source, str):
        with open(source, "rb") as f:
            data = f.read()
    else:
        data = bytes(source)
    if data[:4] == b"\x7fELF":
        from ..elf import ELFFile
        from ..errors import BTFError

        sec = ELFFile(data).section_by_name(".BTF")
        if sec is None:
            raise BTFError("ELF object has no .BTF section")
        data = bytes(sec.data())
    return Spec(data, base)


__all__ = [
    "Array", "Composite", "Const", "Datasec", "DeclTag", "Enum", "EnumValue", "Float", "Func",
    "FuncParam", "FuncProto", "Fwd", "Int", "IntEncoding", "Kind", "Linkage", "Member",
    "Pointer", "Restrict", "Spec", "Struct", "Type", "TypeTag", "Typedef", "Union", "Var",
    "VarSecinfo", "Void", "alignof", "load_kernel_spec", "load_spec", "sizeof",
    "skip_typedefs", "strip_qualifiers",
]
