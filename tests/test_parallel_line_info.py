"""ebpf.load_many with line info: copies of one spec share the object's BTF builder,
to which each load appends the strings of its line info. Loaded from many threads at
once (with the interpreter switching threads as often as it can), every program loads
and the kernel holds exactly the line info of its own copy."""

from __future__ import annotations

import pytest
from bpfbuild import compile_bpf
from conftest import frequent_thread_switches

import ebpf
from ebpf.btf.ext import LineInfo
from ebpf.cli.proglines import read_lines

# library thread safety: races need two CPUs (the matrix guests have one)
pytestmark = [pytest.mark.kernel, pytest.mark.hostonly]

COPIES = 24


def copies(base: ebpf.ProgramSpec, n: int, tag: str) -> list[ebpf.ProgramSpec]:
    """`n` copies, copy i's line texts tagged with i (new strings for the shared
    builder on every load)."""
    out = []
    for i in range(n):
        s = base.copy()
        s.name = f"lines_{i}"
        for ins in s.instructions:
            line = ins.meta.get("line") if ins.meta else None
            if line is not None:
                ins.meta["line"] = LineInfo(line.file_name, f"{line.line_text} // {tag} copy {i}",
                                            line.line, line.col)
        out.append(s)
    return out


def expected_lines(spec: ebpf.ProgramSpec) -> list[tuple[str, str, int, int]]:
    return [(m.file_name, m.line_text, m.line, m.col)
            for ins in spec.instructions if ins.meta and (m := ins.meta.get("line"))]


def kernel_lines(prog: ebpf.Program) -> list[tuple[str, str, int, int]]:
    with prog.fd.hold() as fd:
        got = read_lines(fd, int(prog.info().btf_id))
    return [(sl.file, sl.text, sl.line, sl.col) for sl in got.lines]


@pytest.mark.parametrize("obj, prog, rounds", [("net_xdp", "xdp_act", 1),
                                               ("tc_template", "endpoint", 3)])
def test_load_many_copies_keep_their_line_info(obj: str, prog: str, rounds: int) -> None:
    """Without the builder's lock, about one tc_template round in 20 had a program
    refused ("Invalid line_info[..].line_off") or pointing at another copy's lines."""
    collection = ebpf.load_collection_spec(str(compile_bpf(obj)))
    base = collection.programs[prog]
    assert expected_lines(base), "the object has line info"
    maps: dict[str, ebpf.Map] = {}
    try:
        for name, ms in collection.maps.items():
            maps[name] = ebpf.Map(ms)
        for r in range(rounds):
            check_round(copies(base, COPIES, f"round {r}"), maps)
    finally:
        for m in maps.values():
            m.close()


def check_round(specs: list[ebpf.ProgramSpec], maps: dict[str, ebpf.Map]) -> None:
    """Load `specs` from 2 threads; each program has its own copy's line info."""
    with frequent_thread_switches():
        loaded = ebpf.load_many(specs, workers=2, maps=maps)
    try:
        shapes = set()
        for i, (spec, p) in enumerate(zip(specs, loaded, strict=True)):
            got = kernel_lines(p)
            # the verifier drops the line info of dead code: the kernel keeps a subset,
            # every record of it the copy's own
            assert got and set(got) <= set(expected_lines(spec)), spec.name
            assert all(text.endswith(f" copy {i}") for _, text, _, _ in got), spec.name
            shapes.add(tuple((f, t.rsplit(" // ", 1)[0], ln, c) for f, t, ln, c in got))
        assert len(shapes) == 1  # every copy has the same lines, its tag aside
    finally:
        for p in loaded:
            p.close()
