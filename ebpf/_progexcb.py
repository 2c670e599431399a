"""A program's exception callback (``__exception_cb``, kernel 6.7+): where it starts,
from the main function's ``exception_callback:<name>`` decl tag. A module of its own
that `ebpf.programs` loads on first use: only func info that does not match the calls'
subprograms needs it (process start, issue 15)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from .btf import Spec as BTFSpec

__all__ = ["exception_callback_slot"]

# The decl tag on a program's FUNC naming its exception callback (`__exception_cb`).
_EXCEPTION_CB_TAG = "exception_callback:"


def exception_callback_slot(func_info: list[tuple[int, Any]],
                            btf_spec: BTFSpec | None) -> int | None:
    """Where the exception callback starts: the function named by the main
    function's ``exception_callback:<name>`` decl tag (``__exception_cb``), when the
    program's func info has it; else None."""
    from .btf import DeclTag, Kind  # BTF code on first use: programs without BTF never load it

    if btf_spec is None or not func_info or func_info[0][0] != 0:
        return None
    main = func_info[0][1]
    name = next((t.name[len(_EXCEPTION_CB_TAG):] for t in btf_spec.types_of_kind(Kind.DECL_TAG)
                 if isinstance(t, DeclTag) and t.component_idx == -1 and t.type is main
                 and t.name.startswith(_EXCEPTION_CB_TAG)), None)
    return next((slot for slot, f in func_info[1:] if f.name == name), None)
