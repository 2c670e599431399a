"""Whether a `ProgramSpec` still holds what its kept load template was computed from:
tracking the edits of its instructions and of the line/CO-RE records their metas hold
(`track`, when a template is kept) and comparing (`unchanged`, at the next load). A
module of its own that `ebpf.programs` loads on first use: a spec loaded once (``ebpf
load``) keeps no template and never needs it (process start, issue 15)."""

from __future__ import annotations

from itertools import repeat

from . import _objcache  # (loaded with the first template kept, as this module is)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from .spec.programs import ProgramSpec

__all__ = ["track", "unchanged"]


def track(insns: list[Any], metas: list[dict[str, Any]]) -> bool:
    """Count edits of `insns` and of the line/CO-RE records their metas hold from now on
    (`_objcache.track_edits`); False when one cannot be tracked (a `Label`, a subclass,
    a record of another type): such a spec is prepared afresh at every load."""
    from .asm import Instruction  # asm on first load: `import ebpf.programs` stays small

    if not set(map(type, insns)) <= set(_objcache.tracked_classes(Instruction) or ()):
        return False
    records: list[Any] = list(filter(None, map(dict.get, metas, repeat("line"))))
    for relo in filter(None, map(dict.get, metas, repeat("core"))):
        records.extend(relo) if isinstance(relo, tuple) else records.append(relo)
    if records:
        from .btf.ext import CoreRelo, LineInfo  # BTF code only for programs with records

        allowed = {*(_objcache.tracked_classes(LineInfo) or ()),
                   *(_objcache.tracked_classes(CoreRelo) or ())}
        if not set(map(type, records)) <= allowed:
            return False
    return _objcache.track_edits(insns) and _objcache.track_edits(records)


def unchanged(spec: ProgramSpec, tpl: Any) -> bool:
    """Whether `spec` holds what `tpl` (its kept load template) was computed from: no
    tracked object edited since (instructions, line info, CO-RE records, the meta dicts
    that count their edits), equal instructions and other meta dicts, the same BTF."""
    if tpl.edits != _objcache.edits() or tpl.btf is not spec.btf:
        return False
    # Compared by value, so that an equal instruction put in place of one also
    # matches; the snapshot's own objects are tracked, so comparing against them stays
    # sound however new ones are edited later. list == list: identity first, then
    # Instruction.__eq__ / dict ==, at C speed.
    insns = spec.instructions
    if not (insns == tpl.insns if type(insns) is list else list(insns) == tpl.insns):
        return False
    return bool(tpl.metas == tpl.meta_copies)  # else a meta dict was edited in place
