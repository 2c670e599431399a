"""Benchmark: static linking with `ebpf.linker.link` vs `bpftool gen object`.

    python bench/link.py [--runs N] [--limit K] [--process] [--no-selftests]

Object sets, linked by both in the same run:

* the project's own multi-file test program (tests/bpf/linked_a.c + linked_b.c);
* the kernel 6.12 selftests' multi-file objects (linked_funcs, linked_vars, ...:
  tools/conformance.py's LINKED sets, from the conformance cache; built on first use);
* every libbpf-tools object of Debian's ``libbpf-tools`` package (extracted from
  the tools by tools/realworld.py), linked pairwise (1+2, 3+4, ...); pairs that
  bpftool refuses are skipped for both.

Each link is timed `--runs` times per side, the two sides alternating (bpftool
first on even runs, ebpf first on odd ones) so that a change in the machine's load
hits both alike: `ebpf` in process (`link()` of the files) and bpftool as a process;
with `--process` also `python -m ebpf gen object` as a fresh process (mostly the
interpreter's start-up). For every side: the wall time and the CPU time (user+sys:
the process's own for the in-process link, the children's rusage for the
processes), min over the runs, summed over the set, in milliseconds; `ratio_*` are
ebpf / bpftool. The target (issue 16) is `ratio_in_process_wall` <= 3.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ebpf.linker import link  # noqa: E402


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _timed_process(argv: Sequence[str]) -> tuple[float, float]:
    """Wall and CPU seconds of running `argv` to completion."""
    c0, t0 = _children_cpu(), time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t0, _children_cpu() - c0


def _timed_call(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of calling `fn`."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def measure(sets: Sequence[Sequence[str]], runs: int, tmp: pathlib.Path,
            process: bool) -> dict[str, Any]:
    """Summed best wall and CPU times of linking every set with ebpf (in process, and
    as a process with `process`) and with bpftool."""
    out = str(tmp / "out.o")
    sides: dict[str, Callable[[Sequence[str]], tuple[float, float]]] = {
        "bpftool": lambda o: _timed_process(["bpftool", "gen", "object", out, *o]),
        "ebpf_in_process": lambda o: _timed_call(lambda: link(o)),
    }
    if process:
        sides["ebpf_process"] = lambda o: _timed_process(
            [sys.executable, "-m", "ebpf", "gen", "object", out, *o])
    totals = {f"{s}_{what}_ms": 0.0 for s in sides for what in ("wall", "cpu")}
    done = 0
    for objs in sets:
        try:
            subprocess.run(["bpftool", "gen", "object", out, *objs], check=True,
                           capture_output=True)
        except subprocess.CalledProcessError:
            continue
        link(objs)  # warm: the first link of a run imports the BTF code
        best = {s: [float("inf"), float("inf")] for s in sides}
        order = list(sides)
        for r in range(runs):
            for side in (order if r % 2 == 0 else order[::-1]):
                wall, cpu = sides[side](objs)
                best[side][0] = min(best[side][0], wall)
                best[side][1] = min(best[side][1], cpu)
        for side, (wall, cpu) in best.items():
            totals[f"{side}_wall_ms"] += wall * 1e3
            totals[f"{side}_cpu_ms"] += cpu * 1e3
        done += 1
    res: dict[str, Any] = {"links": done, **{k: round(v, 1) for k, v in totals.items()}}
    for side in sides:
        if side == "bpftool":
            continue
        for what in ("wall", "cpu"):
            theirs = totals[f"bpftool_{what}_ms"]
            if theirs:
                res[f"ratio_{side.removeprefix('ebpf_')}_{what}"] = round(
                    totals[f"{side}_{what}_ms"] / theirs, 2)
    return res


def _selftests_sets() -> list[list[str]]:
    sys.path.insert(0, str(REPO / "tools"))
    import conformance  # the selftests' parts, compiled into the conformance cache

    corpus = conformance.prepare(jobs=2)[0]
    by_name = {s.name: s for s in corpus.sources()}
    sets = list(conformance.LINKED.values())
    names = sorted({p for parts in sets for p in parts})
    built = {b.name: b.path for b in corpus.build_all([by_name[n] for n in names],
                                                      progress=False)}
    return [[str(built[p]) for p in parts] for parts in sets
            if all(built[p] is not None for p in parts)]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--limit", type=int, default=0, help="at most this many pairs")
    ap.add_argument("--process", action="store_true",
                    help="also time `python -m ebpf gen object` as a fresh process")
    ap.add_argument("--no-selftests", action="store_true",
                    help="skip the selftests' sets (they need the conformance cache)")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from tests.bpfbuild import compile_bpf
    from tools.realworld import discover

    own = [[str(compile_bpf("linked_a")), str(compile_bpf("linked_b"))]]
    tools = sorted(str(o.path) for o in discover(packages=["libbpf-tools"]))
    pairs = [list(p) for p in zip(tools[::2], tools[1::2], strict=False)]
    if args.limit:
        pairs = pairs[: args.limit]
    with tempfile.TemporaryDirectory() as d:
        tmp = pathlib.Path(d)
        result: dict[str, Any] = {
            "bench": "link",
            "runs": args.runs,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "loadavg": round(os.getloadavg()[0], 1),
            "own_test_program": measure(own, args.runs, tmp, args.process),
        }
        if not args.no_selftests:
            result["selftests_linked"] = measure(_selftests_sets(), args.runs, tmp,
                                                 args.process)
        result["libbpf_tools_pairwise"] = measure(pairs, args.runs, tmp, args.process)
        result["loadavg_after"] = round(os.getloadavg()[0], 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
