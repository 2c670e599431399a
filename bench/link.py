"""Benchmark: static linking with `ebpf.linker.link` vs `bpftool gen object`.

    python bench/link.py [--runs N] [--limit K]

Object sets, linked by both in the same run:

* the project's own multi-file test program (tests/bpf/linked_a.c + linked_b.c);
* every libbpf-tools object of Debian's ``libbpf-tools`` package (extracted from
  the tools by tools/realworld.py), linked pairwise (1+2, 3+4, ...); pairs that
  bpftool refuses are skipped for both.

For each link: `ebpf` in process (`link()` of the files, min over the runs) and as a
fresh process (`python -m ebpf gen object`, min over the runs), and bpftool as a
process (min over the runs). Prints JSON; times in milliseconds, summed over the
set; `ratio_*` are ebpf / bpftool.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ebpf.linker import link  # noqa: E402


def _best(fn: Any, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def _proc(argv: Sequence[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def measure(sets: Sequence[Sequence[str]], runs: int, tmp: pathlib.Path) -> dict[str, Any]:
    """Summed times of linking every set with ebpf (in process and as a process) and
    with bpftool."""
    out = str(tmp / "out.o")
    totals = {"ebpf_in_process_ms": 0.0, "ebpf_process_ms": 0.0, "bpftool_ms": 0.0}
    done = 0
    for objs in sets:
        try:
            _proc(["bpftool", "gen", "object", out, *objs])
        except subprocess.CalledProcessError:
            continue
        totals["bpftool_ms"] += _best(lambda o=objs: _proc(["bpftool", "gen", "object", out,
                                                            *o]), runs)
        totals["ebpf_in_process_ms"] += _best(lambda o=objs: link(o), runs)
        totals["ebpf_process_ms"] += _best(
            lambda o=objs: _proc([sys.executable, "-m", "ebpf", "gen", "object", out, *o]),
            runs)
        done += 1
    res: dict[str, Any] = {"links": done, **{k: round(v, 1) for k, v in totals.items()}}
    if totals["bpftool_ms"]:
        res["ratio_in_process"] = round(totals["ebpf_in_process_ms"] / totals["bpftool_ms"], 2)
        res["ratio_process"] = round(totals["ebpf_process_ms"] / totals["bpftool_ms"], 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limit", type=int, default=0, help="at most this many pairs")
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
        result = {
            "bench": "link",
            "runs": args.runs,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "own_test_program": measure(own, args.runs, tmp),
            "libbpf_tools_pairwise": measure(pairs, args.runs, tmp),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
