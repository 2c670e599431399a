"""ebpf: load, attach and talk to eBPF programs from pure Python.

Public names are imported lazily on first use, so `import ebpf` stays cheap.
"""

from __future__ import annotations

import ebpf._lazyattr as _lazyattr

from .errors import (
    BTFError,
    ClosedError,
    ELFError,
    Error,
    InvalidArgumentError,
    KeyNotFoundError,
    NotSupportedError,
    SyscallError,
)

__version__ = "0.1.0"

_LAZY = {
    "MapType": "._sys.types",
    "ProgramType": "._sys.types",
    "AttachType": "._sys.types",
    "LinkType": "._sys.types",
    "HelperFunc": "._sys.types",
    "Map": ".maps",
    "MapSpec": ".spec.maps",
    "MapFlags": ".spec.maps",
    "UpdateFlags": ".maps",
    "PinType": ".spec.maps",
    "MapInfo": ".maps",
    "Batch": ".maps",
    "KeyExistsError": ".maps",
    "Program": ".programs",
    "ProgramSpec": ".spec.programs",
    "TestRunResult": ".programs",
    "Collection": ".collection",
    "CollectionSpec": ".spec.collection",
    "load_collection_spec": ".elf.parse",
    "VariableSpec": ".spec.collection",
    "Variable": ".collection",
    "ProgramInfo": ".programs",
    "enable_stats": ".programs",
    "load_many": ".parallel",
    "Token": ".token",
    "NotPicklableError": "._sys.nopickle",
    # ebpf.errors' classes that no load uses (ebpf/errors/_lazy.py)
    "PermissionError": ".errors",
    "KernelPolicyError": ".errors",
    "VerifierError": ".errors",
    "ReaderClosedError": ".errors",
    "ReaderForkedError": ".errors",
    "DeadlineExceededError": ".errors",
}
_SUBMODULES = {"asm", "btf", "link", "ringbuf", "perf", "features", "elf", "maps", "programs",
               "collection", "gen", "tracing", "hist", "symbols", "spec",
               "token"}
__getattr__ = _lazyattr.lazy_attributes(globals(), _LAZY, _SUBMODULES)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from . import asm, btf, features, spec
    from ._sys.nopickle import NotPicklableError
    from ._sys.types import AttachType, HelperFunc, LinkType, MapType, ProgramType
    from .collection import Collection, Variable
    from .elf.parse import load_collection_spec
    from .errors import (
        DeadlineExceededError,
        KernelPolicyError,
        PermissionError,
        ReaderClosedError,
        ReaderForkedError,
        VerifierError,
    )
    from .maps import Batch, KeyExistsError, Map, MapInfo, UpdateFlags
    from .parallel import load_many
    from .programs import Program, ProgramInfo, TestRunResult, enable_stats
    from .spec.collection import CollectionSpec, VariableSpec
    from .spec.maps import MapFlags, MapSpec, PinType
    from .spec.programs import ProgramSpec
    from .token import Token


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


__all__ = [
    "AttachType", "BTFError", "Batch", "ClosedError", "Collection", "CollectionSpec",
    "DeadlineExceededError",
    "ELFError", "Error",
    "HelperFunc", "InvalidArgumentError", "KernelPolicyError", "KeyExistsError",
    "KeyNotFoundError", "LinkType",
    "Map", "MapFlags", "MapInfo", "MapSpec", "MapType", "NotPicklableError", "NotSupportedError",
    "PermissionError",
    "PinType", "Program", "ProgramInfo", "ProgramSpec", "ProgramType", "ReaderClosedError",
    "ReaderForkedError", "SyscallError",
    "TestRunResult", "Token", "UpdateFlags", "Variable", "VariableSpec", "VerifierError",
    "asm", "btf",
    "enable_stats", "features", "load_collection_spec", "load_many", "spec",
]
