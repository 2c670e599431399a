"""Benchmark: `ebpf btf dump` of the whole kernel BTF vs `bpftool btf dump`.

    sudo nice python3 bench/btf_dump.py [--runs 7] [--btf /sys/kernel/btf/vmlinux]
                                        [--baseline DIR]

Runs, interleaved round by round so that background load hits both tools alike,

* `python3 -m ebpf btf dump file BTF format c` and `bpftool btf dump file BTF format c`,
* the same with `format raw`,
* `python3 -c pass` and `python3 -c "import ebpf.cli"` (the interpreter's and the
  CLI's import share of the process start),

each as a fresh process with its output sent to a pipe that is read and discarded
(as `> /dev/null` would not: some tools detect it). CPU time (user + sys of the child,
from `wait4`) is the primary figure on a shared machine; wall time is reported too.
Figures are milliseconds, min and median over the runs; `ratio` divides ours by
bpftool's (min CPU and min wall), `ratio_median` is the median over the rounds of
that round's ratio, `ratio_of_medians` divides the medians. `--baseline DIR` adds
`format c` of another version's `ebpf` package (`git archive OLD ebpf | tar -x -C DIR`)
to the same rounds, for before/after figures from one run. The kernel's BTF index
cache is disabled for the child (`EBPF_BTF_CACHE=0`): the dump is measured cold.
Imports run from bytecode (written by a priming run). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VMLINUX = "/sys/kernel/btf/vmlinux"
TARGET_RATIO = 2.0


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(CPU ms, wall ms, bytes of output) of one run of `argv`."""
    start = time.perf_counter()
    # (from "/": `python -m` puts the working directory first on sys.path, before
    # PYTHONPATH, which names the package to run)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd="/")
    assert proc.stdout is not None and proc.stderr is not None
    nbytes = 0
    while True:
        chunk = proc.stdout.read(1 << 20)
        if not chunk:
            break
        nbytes += len(chunk)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - start) * 1e3
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {err.decode()[-500:]}")
    return (usage.ru_utime + usage.ru_stime) * 1e3, wall, nbytes


def _stats(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 1), "median": round(statistics.median(values), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--btf", default=VMLINUX, help="the BTF file to dump")
    ap.add_argument("--bpftool", default=shutil.which("bpftool") or "bpftool")
    ap.add_argument("--baseline", help="a directory holding another version's ebpf package")
    args = ap.parse_args()
    args.btf = os.path.abspath(args.btf)  # (the children run from "/")
    env = dict(os.environ, EBPF_BTF_CACHE="0")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    py = sys.executable
    commands: dict[str, list[str]] = {}
    for fmt in ("c", "raw"):
        commands[f"ebpf_{fmt}"] = [py, "-m", "ebpf", "btf", "dump", "file", args.btf,
                                   "format", fmt]
        commands[f"bpftool_{fmt}"] = [args.bpftool, "btf", "dump", "file", args.btf,
                                      "format", fmt]
    commands["python_pass"] = [py, "-c", "pass"]
    commands["import_ebpf_cli"] = [py, "-c", "import ebpf.cli"]
    envs = {k: env for k in commands}
    if args.baseline:
        commands["baseline_c"] = commands["ebpf_c"]
        envs["baseline_c"] = dict(env, PYTHONPATH=os.path.abspath(args.baseline))
    cpu: dict[str, list[float]] = {k: [] for k in commands}
    wall: dict[str, list[float]] = {k: [] for k in commands}
    sizes: dict[str, int] = {}
    for key, argv in commands.items():  # priming: bytecode, page cache
        run_once(argv, envs[key])
    for _ in range(args.runs):
        for key, argv in commands.items():
            c, w, n = run_once(argv, envs[key])
            cpu[key].append(c)
            wall[key].append(w)
            sizes[key] = n
    out: dict[str, Any] = {
        "benchmark": "btf_dump",
        "btf": args.btf,
        "runs": args.runs,
        "env": {"python": platform.python_version(), "kernel": platform.release(),
                "cpus": os.cpu_count(), "load_avg": os.getloadavg()[0]},
    }
    for key in commands:
        out[key] = {"cpu_ms": _stats(cpu[key]), "wall_ms": _stats(wall[key])}
        if key in sizes and not key.startswith(("python", "import")):
            out[key]["output_bytes"] = sizes[key]
    ratio: dict[str, float] = {}
    ratio_median: dict[str, float] = {}
    ratio_of_medians: dict[str, float] = {}
    pairs = [("c", "ebpf_c", "bpftool_c"), ("raw", "ebpf_raw", "bpftool_raw")]
    if args.baseline:
        pairs.append(("baseline_c", "baseline_c", "bpftool_c"))
    for name, ours_key, theirs_key in pairs:
        ours, theirs = out[ours_key], out[theirs_key]
        for unit, values in (("cpu", cpu), ("wall", wall)):
            ratio[f"{name}_{unit}"] = round(
                ours[f"{unit}_ms"]["min"] / theirs[f"{unit}_ms"]["min"], 2)
            ratio_median[f"{name}_{unit}"] = round(statistics.median(
                a / b for a, b in zip(values[ours_key], values[theirs_key], strict=True)), 2)
            ratio_of_medians[f"{name}_{unit}"] = round(
                ours[f"{unit}_ms"]["median"] / theirs[f"{unit}_ms"]["median"], 2)
    out["ratio"] = ratio
    out["ratio_median"] = ratio_median
    out["ratio_of_medians"] = ratio_of_medians
    out["target_ratio"] = TARGET_RATIO
    out["within_target"] = {k: v <= TARGET_RATIO for k, v in ratio.items()}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
