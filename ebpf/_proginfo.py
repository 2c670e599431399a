"""`ProgramInfo` and `TestRunResult`, what `Program.info()` and `Program.test_run()`
return: a module of their own that `ebpf.programs` loads on first use, so that loading a
program does not pay for building their frozen dataclasses (process start, issue 15)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ._sys.types import ProgramType

if TYPE_CHECKING:
    from .asm import Instruction

__all__ = ["ProgramInfo", "TestRunResult"]


@dataclass(frozen=True)
class TestRunResult:
    """The outcome of `Program.test_run`.

    `retval` is the program's return value (r0, as an unsigned 32-bit value),
    `data` the packet after the run (b"" when no data was passed), `ctx` the
    context after the run (None when no context was passed or the program type
    does not return one), `duration_ns` the mean run time of one repetition.
    """

    __test__: ClassVar[bool] = False  # not a pytest test class

    retval: int
    data: bytes
    ctx: bytes | None
    duration_ns: int


@dataclass(frozen=True)
class ProgramInfo:
    """What the kernel reports about a loaded program (BPF_OBJ_GET_INFO_BY_FD).

    `xlated` is the program as the verifier rewrote it (decode it with
    `instructions()`), `jited` the native machine code (empty when the
    program is interpreted). `run_cnt`/`run_time_ns` count only while
    statistics are enabled (`enable_stats`). `load_time_ns` is nanoseconds
    since boot.
    """

    type: ProgramType | int
    id: int
    tag: str
    name: str
    load_time_ns: int
    created_by_uid: int
    map_ids: tuple[int, ...]
    btf_id: int
    xlated: bytes
    jited: bytes
    jited_ksyms: tuple[int, ...]
    jited_func_lens: tuple[int, ...]
    run_cnt: int
    run_time_ns: int
    recursion_misses: int
    verified_insns: int
    gpl_compatible: bool
    ifindex: int
    attach_btf_id: int
    attach_btf_obj_id: int
    nr_func_info: int
    nr_line_info: int

    def instructions(self) -> list[Instruction]:
        """The translated (xlated) instructions."""
        from .asm import decode  # the disassembler only to decode xlated code

        return decode(self.xlated)
