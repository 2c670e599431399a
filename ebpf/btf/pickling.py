"""Pickles and deep copies of parsed BTF (`Spec`), loaded on the first one (process
start).

A `Spec` pickles as its blob (the views of it are made again where it is unpickled)
and the types decoded from it so far, by value: what holds them (a map's key and value,
an instruction's func info, a variable's type) finds them in the unpickled spec by
identity, as a load needs, with the ELF parser's fixups and any edit. The running
kernel's BTF (`load_kernel_spec`, `load_kernel_module_spec`) pickles by name, never its
megabytes: the unpickling process uses its own kernel's.

A deep copy shares a `Spec` (it does not change); `share_types` makes a deep copy of a
record (a `CollectionSpec`, `MapSpec`, ...) share the spec's decoded types too.
"""

from __future__ import annotations

import sys

from .spec import Spec

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from .types import Type

__all__ = ["reduce_spec", "restore_types", "share_types", "unpickled_spec"]


def reduce_spec(spec: Spec) -> tuple[Any, ...]:
    """`Spec.__reduce__`: the kernel's BTF by name, any other as its blob, its base
    and (the state) its decoded types."""
    kernel = sys.modules.get(__package__ + ".kernel")  # loaded once a kernel spec exists
    if kernel is not None:
        vmlinux = kernel._kernel
        if spec is vmlinux and vmlinux is not None:
            return kernel.load_kernel_spec, ()
        if spec.base is vmlinux and vmlinux is not None:
            for name, module in list(kernel._modules.items()):
                if module is spec:
                    return kernel.load_kernel_module_spec, (name,)
    return unpickled_spec, (spec.raw, spec.base), {"types": dict(spec._by_id)}


def unpickled_spec(raw: bytes, base: Spec | None) -> Spec:
    """A pickled spec, made again from its blob and indexed as it is used (the blob
    was checked when it was first parsed); `restore_types` then adds its types."""
    return Spec(raw, base, lazy=True)


def restore_types(spec: Spec, state: dict[str, Any]) -> None:
    """`Spec.__setstate__`: the decoded types of a pickled spec become `spec`'s."""
    types: dict[int, Type] = state["types"]
    with spec._lock:  # (their slots may not be set yet: only their identity is used)
        for tid, t in types.items():
            spec._ids[id(t)] = tid
            spec._by_id[tid] = t


def share_types(spec: Spec, memo: dict[int, Any]) -> None:
    """Make a `copy.deepcopy` in progress (its `memo`) keep the types decoded from
    `spec`, as it keeps the spec. (A type deep-copied by itself is still copied.)"""
    by_id = spec._by_id
    if id(by_id) in memo:  # (the mark of a spec this copy already shares)
        return
    memo[id(by_id)] = by_id
    for t in list(by_id.values()):
        memo[id(t)] = t
