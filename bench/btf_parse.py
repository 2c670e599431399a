"""Benchmark: first kernel BTF lookup in a fresh process, ebpf vs libbpf.

    python bench/btf_parse.py [--runs N] [--name task_struct] [--no-bytecode]

Each sample is a new interpreter that imports `ebpf` and runs
`ebpf.btf.load_kernel_spec().type_by_name(NAME)`, timed inside the process
(from before `import ebpf` to the decoded type) and as the whole process's
wall time:

* cold: no index cache (EBPF_BTF_CACHE=0);
* warm: with an index cache in a temporary directory, written by a priming run;

and, in the same run, libbpf's `btf__parse` + `btf__find_by_name_kind`
(bench/c/btf_parse.c built with gcc -lbpf), plus `python -X importtime -c
"import ebpf"`. Imports run from bytecode (PYTHONPYCACHEPREFIX in a temporary
directory, as for an installed package) unless --no-bytecode. Prints JSON;
times are milliseconds, min and median over the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent
C_SOURCE = pathlib.Path(__file__).resolve().parent / "c" / "btf_parse.c"
VMLINUX = "/sys/kernel/btf/vmlinux"

CHILD = """
import time
t0 = time.perf_counter()
import ebpf
t1 = time.perf_counter()
spec = ebpf.btf.load_kernel_spec()
t2 = time.perf_counter()
t = spec.type_by_name({name!r})
t3 = time.perf_counter()
assert t.name == {name!r}
print((t3 - t0) * 1e3, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
"""


def _stats(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3)}


def _run_python(env: dict[str, str], name: str, runs: int) -> dict[str, Any]:
    code = CHILD.format(name=name)
    totals, imports, loads, lookups, walls = [], [], [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout
        walls.append((time.perf_counter() - start) * 1e3)
        total, imp, load, lookup = map(float, out.split())
        totals.append(total)
        imports.append(imp)
        loads.append(load)
        lookups.append(lookup)
    return {"first_lookup_ms": _stats(totals), "import_ebpf_ms": _stats(imports),
            "load_kernel_spec_ms": _stats(loads), "type_by_name_ms": _stats(lookups),
            "process_wall_ms": _stats(walls)}


def _run_libbpf(workdir: str, name: str, runs: int) -> dict[str, Any]:
    exe = os.path.join(workdir, "btf_parse")
    try:
        subprocess.run(["gcc", "-O2", "-o", exe, str(C_SOURCE), "-lbpf"], check=True,
                       capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        return {"error": f"cannot build {C_SOURCE.name}: {detail.strip()}"}
    totals, parses, walls = [], [], []
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run([exe, VMLINUX, name], capture_output=True, text=True,
                             check=True).stdout
        walls.append((time.perf_counter() - start) * 1e3)
        res = json.loads(out)
        totals.append(res["total_ms"])
        parses.append(res["parse_ms"])
    return {"first_lookup_ms": _stats(totals), "btf__parse_ms": _stats(parses),
            "process_wall_ms": _stats(walls)}


def _import_time(env: dict[str, str], runs: int) -> dict[str, Any]:
    """`python -X importtime -c "import ebpf"`: cumulative microseconds of `ebpf`."""
    result: dict[str, Any] = {}
    for module in ("ebpf", "ebpf.btf"):
        values = []
        for _ in range(runs):
            err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                                 env=env, capture_output=True, text=True, check=True).stderr
            for line in err.splitlines():
                parts = [p.strip() for p in line.split("|")]
                if len(parts) == 3 and parts[2] == module:
                    values.append(int(parts[1]) / 1e3)
        result[module] = _stats(values)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--name", default="task_struct")
    ap.add_argument("--no-bytecode", action="store_true",
                    help="import from source (PYTHONDONTWRITEBYTECODE=1)")
    args = ap.parse_args()
    if not os.path.exists(VMLINUX):
        sys.exit(f"{VMLINUX} is missing")
    with tempfile.TemporaryDirectory(prefix="ebpf-bench-") as tmp:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
        cold_env = dict(env, EBPF_BTF_CACHE="0")
        cache_dir = os.path.join(tmp, "btf-cache")
        warm_env = dict(env, EBPF_BTF_CACHE=cache_dir)
        # Priming: compile bytecode, write the index cache (at the child's exit).
        _run_python(warm_env, args.name, 1)
        written = sorted(os.listdir(cache_dir)) if os.path.isdir(cache_dir) else []
        cold = _run_python(cold_env, args.name, args.runs)
        warm = _run_python(warm_env, args.name, args.runs)
        libbpf = _run_libbpf(tmp, args.name, args.runs)
        imports = _import_time(env, max(3, args.runs // 3))
        out: dict[str, Any] = {
            "benchmark": "btf_parse",
            "name": args.name,
            "runs": args.runs,
            "bytecode": not args.no_bytecode,
            "python": sys.version.split()[0],
            "kernel": os.uname().release,
            "vmlinux_bytes": os.path.getsize(VMLINUX),
            "cache_files": written,
            "ebpf_cold": cold,
            "ebpf_warm": warm,
            "libbpf": libbpf,
            "import_time_ms": imports,
        }
        if "first_lookup_ms" in libbpf:
            lib = libbpf["first_lookup_ms"]["min"]
            out["ratio_vs_libbpf"] = {
                "cold": round(cold["first_lookup_ms"]["min"] / lib, 2),
                "warm": round(warm["first_lookup_ms"]["min"] / lib, 2),
            }
        shutil.rmtree(cache_dir, ignore_errors=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
