"""`ebpf.btf.core.explain_poison`: what a verifier log that reached a poisoned CO-RE
instruction means. Its own module, imported when a program load fails (process
start); public as ``ebpf.btf.core.explain_poison`` (its `__module__`)."""

from __future__ import annotations

from .._sys.types import CoreReloKind
from .core import POISON_IMM

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .core import CoreResult

__all__ = ["explain_poison"]

_GUARDS = {
    CoreReloKind.FIELD_BYTE_OFFSET: "bpf_core_field_exists()",
    CoreReloKind.FIELD_BYTE_SIZE: "bpf_core_field_exists()",
    CoreReloKind.FIELD_SIGNED: "bpf_core_field_exists()",
    CoreReloKind.FIELD_LSHIFT_U64: "bpf_core_field_exists()",
    CoreReloKind.FIELD_RSHIFT_U64: "bpf_core_field_exists()",
    CoreReloKind.ENUMVAL_VALUE: "bpf_core_enum_value_exists()",
}

# (compiled on first use, by `re`'s cache: process start)
_INVALID_RE = r"invalid func unknown#" + str(POISON_IMM) + r"\b"
_CALL_RE = r"^\s*(\d+): \(85\) call unknown#" + str(POISON_IMM) + r"\b"


def explain_poison(log: str, results: Sequence[CoreResult]) -> str | None:
    """Explain a verifier rejection caused by a poisoned CO-RE instruction.

    `log` is the verifier log, `results` what `relocate` returned for the
    program (with `slot` adjusted by the loader if it moved the code). Returns
    None when the log is not about a poisoned instruction, else a message
    naming the instruction, the relocation (type and field path) and why it
    failed, with the guard that would have made it dead code.
    """
    import re  # only to read a verifier log

    lines = log.splitlines()
    hit = None
    for i in range(len(lines) - 1, -1, -1):
        if re.search(_INVALID_RE, lines[i]):
            hit = i
            break
    if hit is None:
        return None
    slot: int | None = None
    for j in range(hit, max(hit - 64, -1), -1):
        m = re.match(_CALL_RE, lines[j])
        if m:
            slot = int(m.group(1))
            break
    poisoned = [r for r in results if r.poisoned]
    exact = [r for r in poisoned if r.slot == slot]
    where = f"instruction {slot}" if slot is not None else "an instruction"

    def one(r: CoreResult) -> str:
        guard = _GUARDS.get(r.kind)
        text = f"<{r.kind_name}> {r.description}: {r.reason or 'cannot be relocated'}"
        if guard:
            text += f"; guard the access with {guard}"
        return text

    if exact:
        return f"{where}: unguarded CO-RE relocation failed: {one(exact[0])}"
    if poisoned:
        listing = "; ".join(f"insn {r.slot}: {one(r)}" for r in poisoned)
        return (f"{where}: a poisoned CO-RE relocation was reached; the program's failed "
                f"relocations are: {listing}")
    return (f"{where}: a poisoned CO-RE relocation (call unknown#{POISON_IMM}) was reached, "
            "but no failed relocation is known for this program")


explain_poison.__module__ = "ebpf.btf.core"  # where it is public (reprs, pickles, docs)
