"""BTF: the BPF Type Format. Parse, look up, build and write types."""

from __future__ import annotations

import sys
from types import ModuleType

import ebpf._lazyattr as _lazyattr

from ..errors import BTFError
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
    Volatile,
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
        from ..elffile import ELFFile  # only for ELF input: `import ebpf.btf` stays small

        sec = ELFFile(data).section_by_name(".BTF")
        if sec is None:
            raise BTFError("ELF object has no .BTF section")
        data = bytes(sec.data())
    return Spec(data, base)


# Imported on first use, so that `import ebpf.btf` (and the first kernel type
# lookup) does not pay for ctypes, the writer or the C printer.
_LAZY = {
    "dedup": ".dedup",
    "Builder": ".builder",
    "marshal_types": ".builder",
    "Handle": ".handle",
    "BTFLoadError": ".handle",
    "to_ctypes": ".ctypes_conv",
    "to_dtype": ".ctypes_conv",
    "dump_c": ".cdump",
    "sanitize": ".sanitize",
    "IntEncoding": ".types",  # (made on first use there too)
}

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from .builder import Builder, marshal_types
    from .cdump import dump_c
    from .ctypes_conv import to_ctypes, to_dtype
    from .dedup import dedup
    from .handle import BTFLoadError, Handle
    from .intencoding import IntEncoding
    from .sanitize import sanitize


class _Package(ModuleType):
    """`ebpf.btf` itself: `dedup` and `sanitize` name the functions, not their submodules,
    whoever imports a submodule first (the import system then sets the package's
    attribute of that name to the submodule)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("dedup", "sanitize") and isinstance(value, ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__getattr__ = _lazyattr.lazy_attributes(globals(), _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Array", "BTFLoadError", "Builder", "Composite", "Const", "Datasec", "DeclTag", "Enum",
    "EnumValue", "Float", "Func", "FuncParam", "FuncProto", "Fwd", "Handle", "Int",
    "IntEncoding", "Kind", "Linkage", "Member", "Pointer", "Restrict", "Spec", "Struct", "Type",
    "TypeTag", "Typedef", "Union", "Var", "VarSecinfo", "Void", "Volatile", "alignof", "dedup",
    "dump_c", "load_kernel_spec", "load_spec", "marshal_types", "sanitize", "sizeof",
    "skip_typedefs", "strip_qualifiers", "to_ctypes", "to_dtype",
]
