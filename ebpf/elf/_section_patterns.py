"""`SectionPattern` and `SECTION_TABLE`, the SEC() table as named tuples: their own
module so that `ebpf.elf.sections`, which loading any object imports, makes the
NamedTuple class and its 108 rows on first use (process start); `lookup_section` reads
the plain rows. Public as ``ebpf.elf.sections.SectionPattern`` (its `__module__`) and
``ebpf.elf.sections.SECTION_TABLE``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._sectiondef import AttachKind, SecFlags
from .sections import ROWS

if TYPE_CHECKING:
    from typing import NamedTuple
else:
    # the same stdlib classes, made at a fraction of the cost (process start)
    from .._sys.fastclass import NamedTuple

__all__ = ["SECTION_TABLE", "SectionPattern"]


class SectionPattern(NamedTuple):
    """One row of the table: how a section name maps to program and attach types."""

    pattern: str
    program_type: str  # ProgramType member name
    attach_type: str | None  # AttachType member name, None for "no expected attach type"
    flags: SecFlags
    kind: AttachKind


SectionPattern.__module__ = "ebpf.elf.sections"  # where it is public (reprs, pickles, docs)

#: The section-name patterns libbpf 1.6 knows (and the sleepable tracepoints added
#: after it), in the order they are tried.
SECTION_TABLE: tuple[SectionPattern, ...] = tuple(
    SectionPattern(pattern, ptype, atype, SecFlags(flags), AttachKind(kind))
    for pattern, ptype, atype, flags, kind in ROWS)
