"""What the kernel reports about loaded programs: `ProgramInfo` (what `Program.info()`
returns), `TestRunResult` (what `Program.test_run()` returns), `program_ids`, and the
run-time statistics (`enable_stats`). A module of its own that `ebpf.programs` loads on
first use, so that loading a program does not pay for building their frozen dataclasses
nor unmarshal their code (process start, issue 15)."""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ._sys import ops
from ._sys import prog as _prog
from ._sys.fd import FD
from ._sys.types import ProgramType, StatsType

if TYPE_CHECKING:
    from ._sys.types import ProgInfo as _ProgInfo
    from .asm import Instruction

__all__ = ["EnabledStats", "ProgramInfo", "TestRunResult", "enable_stats", "info",
           "program_ids"]


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


def info(fd: int, first: _ProgInfo) -> ProgramInfo:
    """What the kernel reports about the program `fd` (`first`: its info without the
    arrays, which gives their sizes)."""
    n_xl, n_jit = int(first.xlated_prog_len), int(first.jited_prog_len)
    n_maps, n_ksyms = int(first.nr_map_ids), int(first.nr_jited_ksyms)
    n_lens = int(first.nr_jited_func_lens)
    xl = ctypes.create_string_buffer(max(n_xl, 1))
    jit = ctypes.create_string_buffer(max(n_jit, 1))
    map_ids = (ctypes.c_uint32 * max(n_maps, 1))()
    ksyms = (ctypes.c_uint64 * max(n_ksyms, 1))()
    lens = (ctypes.c_uint32 * max(n_lens, 1))()
    info = type(first)()
    info.xlated_prog_len, info.xlated_prog_insns = n_xl, ctypes.addressof(xl)
    info.jited_prog_len, info.jited_prog_insns = n_jit, ctypes.addressof(jit)
    info.nr_map_ids, info.map_ids = n_maps, ctypes.addressof(map_ids)
    info.nr_jited_ksyms, info.jited_ksyms = n_ksyms, ctypes.addressof(ksyms)
    info.nr_jited_func_lens, info.jited_func_lens = n_lens, ctypes.addressof(lens)
    ops.obj_get_info(fd, info)
    # the program cannot change, but be safe if a count grew in between
    n_xl, n_jit = min(n_xl, int(info.xlated_prog_len)), min(n_jit, int(info.jited_prog_len))
    n_maps = min(n_maps, int(info.nr_map_ids))
    try:
        ptype: ProgramType | int = ProgramType(info.type)
    except ValueError:
        ptype = int(info.type)
    return ProgramInfo(
        type=ptype,
        id=int(info.id),
        tag=bytes(info.tag).hex(),
        name=bytes(info.name).split(b"\0", 1)[0].decode("utf-8", "replace"),
        load_time_ns=int(info.load_time),
        created_by_uid=int(info.created_by_uid),
        map_ids=tuple(map_ids[:n_maps]),
        btf_id=int(info.btf_id),
        xlated=xl.raw[:n_xl],
        jited=jit.raw[:n_jit],
        jited_ksyms=tuple(ksyms[:min(n_ksyms, int(info.nr_jited_ksyms))]),
        jited_func_lens=tuple(lens[:min(n_lens, int(info.nr_jited_func_lens))]),
        run_cnt=int(info.run_cnt),
        run_time_ns=int(info.run_time_ns),
        recursion_misses=int(info.recursion_misses),
        verified_insns=int(info.verified_insns),
        gpl_compatible=bool(info.gpl_compatible),
        ifindex=int(info.ifindex),
        attach_btf_id=int(info.attach_btf_id),
        attach_btf_obj_id=int(info.attach_btf_obj_id),
        nr_func_info=int(first.nr_func_info),
        nr_line_info=int(first.nr_line_info),
    )


def program_ids() -> Iterator[int]:
    """The ids of every program loaded in the kernel, ascending (needs CAP_SYS_ADMIN)."""
    next_id = _prog.prog_get_next_id(0)
    while next_id is not None:
        yield next_id
        next_id = _prog.prog_get_next_id(next_id)


# -- statistics -------------------------------------------------------------------


class EnabledStats:
    """Run-time statistics stay enabled while this object is open (BPF_ENABLE_STATS).

    Use it as a context manager or `close()` it; while any such handle is
    open anywhere, `ProgramInfo.run_cnt` and `run_time_ns` count.
    """

    def __init__(self, stats_type: StatsType = StatsType.RUN_TIME) -> None:
        self.fd = FD(_prog.enable_stats(int(stats_type)), "stats")

    def fileno(self) -> int:
        """The raw descriptor."""
        return self.fd.fileno()

    def close(self) -> None:
        """Stop holding the statistics on (idempotent)."""
        self.fd.close()

    def __enter__(self) -> EnabledStats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def enable_stats(stats_type: StatsType = StatsType.RUN_TIME) -> EnabledStats:
    """Turn on program run-time statistics until the returned handle is closed.

    >>> with ebpf.programs.enable_stats():          # doctest: +SKIP
    ...     prog.test_run(b"\\0" * 64)
    ...     prog.info().run_cnt
    1
    """
    return EnabledStats(stats_type)
