"""Process start benchmark (issue 15, item 4): `ebpf load OBJ` as a whole process vs
`python3 -c pass` and `bpftool prog loadall` of the same CO-RE object.

    sudo python3 bench/start.py [--runs 15] [--object OBJ] [--baseline DIR]

Object: examples/bpf/execsnoop.bpf.c (CO-RE reads of task_struct fields, a ring
buffer, a hash map, .rodata), compiled with clang-19 once into .cache/bench/start/
(rebuilt when the source is newer). Each round runs every command once, in an order
rotated from round to round (the sides alternate on a shared machine):

  - `python3 -c pass` (the interpreter's own start: site, .pth files)
  - `python3 -c "import ebpf"`
  - `python3 -m ebpf load OBJ`
  - the installed `ebpf` console script next to sys.executable (what `pip install`
    puts on PATH; a pyenv shim in front of it is not ours to count), when present
  - `bpftool prog loadall OBJ /sys/fs/bpf/<dir>` (its pins removed after each run)

CPU is user + system time from os.wait4's rusage of each child, wall from
perf_counter around fork..wait4. Reported per command: median/min/max over the
runs; `*_beyond_pass` are medians minus the median of `python3 -c pass`.

`load_path_imports_cpu_ms`: the modules a `python3 -m ebpf load OBJ` process has
imported beyond those of `python3 -c pass` (listed once, in import order), imported
in a fresh interpreter and timed there with time.process_time (median over the runs);
`import_ebpf_cpu_ms` is the same for `import ebpf` alone. `importtime` is the
`python3 -X importtime` breakdown of the load process: each module's self time,
minimum over 5 runs, the largest first (wall microseconds, noisy on a busy machine).

`lean`: the same on a lean interpreter, `python3 -S` (no site: no .pth file imports
typing, enum, re, pathlib, ... before the program runs, as the setuptools editable
finder and the sandbox's certifi .pth do here; PYTHONPATH still applies): the whole
process beyond `python3 -S -c pass`, the modules a `-S` load process adds (the stdlib
ones listed by name) and the CPU of importing them.

`--baseline DIR` (a directory holding another version's `ebpf` package, e.g. from
`git archive OLD ebpf | tar -x -C DIR`) adds that version's `import ebpf` and load
process to the same rounds (`baseline_*` rows): before/after figures measured side by
side. Children run from / with PYTHONPATH naming the package's directory (this
checkout, or the baseline), with bytecode present (compileall first) and
PYTHONDONTWRITEBYTECODE unset. Prints one JSON object; targets (issue 15):
beyond-pass CPU <= 20 ms, load path imports <= 10 ms.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SOURCE = os.path.join(REPO, "examples", "bpf", "execsnoop.bpf.c")
CACHE = os.path.join(REPO, ".cache", "bench", "start")
PIN_DIR = f"/sys/fs/bpf/ebpf-bench-start-{os.getpid()}"
TARGET_BEYOND_PASS_MS = 20.0
TARGET_IMPORTS_MS = 10.0

IMPORT_SNIPPET = """
import sys, time
names = sys.argv[1:]
t0 = time.process_time()
for n in names:
    __import__(n)
print((time.process_time() - t0) * 1e3)
"""

# runpy is what `python3 -m` imports itself (atexit is built in); nothing else before
# `before` (json would hide re from the list). Listed at exit: `ebpf load` run as the
# command ends the process itself once the atexit handlers ran.
MODULES_SNIPPET = """
import atexit, runpy, sys
before = set(sys.modules)
atexit.register(lambda: print(repr([m for m in sys.modules if m not in before
                                    and m != '__main__']), file=sys.__stderr__))
sys.argv = ["ebpf", "load", sys.argv[1]]
try:
    runpy.run_module("ebpf", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
"""


def build_object() -> str:
    obj = os.path.join(CACHE, "execsnoop.o")
    if os.path.exists(obj) and os.path.getmtime(obj) >= os.path.getmtime(SOURCE):
        return obj
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from vmlinux import vmlinux_h

    os.makedirs(CACHE, exist_ok=True)
    tmp = f"{obj}.{os.getpid()}.tmp"
    subprocess.run(["clang-19", "-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86",
                    f"-I{vmlinux_h().parent}", "-c", SOURCE, "-o", tmp], check=True)
    os.replace(tmp, obj)
    return obj


def child_env(tree: str = REPO) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=tree)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(user+sys CPU ms, wall ms) of one run of cmd from /, its output discarded."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.chdir("/")
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.execvpe(cmd[0], cmd, env)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = (time.perf_counter() - t0) * 1e3
    if status != 0:
        raise SystemExit(f"{cmd} failed with wait status {status:#x}")
    return (usage.ru_utime + usage.ru_stime) * 1e3, wall


def stats(xs: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(xs), 2), "min": round(min(xs), 2),
            "max": round(max(xs), 2)}


def extra_modules(obj: str, env: dict[str, str], flags: tuple[str, ...] = ()) -> list[str]:
    """Modules a load process imports beyond those `python3 [flags] -c pass` has, in
    order."""
    r = subprocess.run([sys.executable, *flags, "-c", MODULES_SNIPPET, obj], env=env, check=True,
                       capture_output=True, text=True, cwd="/")
    mods: list[str] = ast.literal_eval(r.stderr.strip().splitlines()[-1])
    return mods


def import_cpu(names: list[str], env: dict[str, str], flags: tuple[str, ...] = ()) -> float:
    r = subprocess.run([sys.executable, *flags, "-c", IMPORT_SNIPPET, *names], env=env,
                       check=True, capture_output=True, text=True, cwd="/")
    return float(r.stdout)


def importtime(cmd: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
    best: dict[str, tuple[int, int]] = {}
    for _ in range(runs):
        r = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env,
                           capture_output=True, text=True, cwd="/")
        for line in r.stderr.splitlines():
            if not line.startswith("import time:") or "|" not in line:
                continue
            parts = line[len("import time:"):].split("|")
            try:
                self_us, cum_us = int(parts[0]), int(parts[1])
            except ValueError:
                continue
            name = parts[2].strip()
            old = best.get(name)
            best[name] = (min(old[0], self_us), min(old[1], cum_us)) if old else (self_us,
                                                                                     cum_us)
    ours = {n: v for n, v in best.items() if n == "ebpf" or n.startswith("ebpf.")}
    top = sorted(best.items(), key=lambda kv: -kv[1][0])[:25]
    return {"top_self_us": {n: v[0] for n, v in top},
            "ebpf_self_us_total": sum(v[0] for v in ours.values()),
            "ebpf_modules": len(ours)}


def cleanup_pins() -> None:
    shutil.rmtree(PIN_DIR, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--object", help="a CO-RE object (default: execsnoop, built here)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also measure the ebpf package in DIR (another version), alternated")
    args = ap.parse_args()
    trees = [REPO] + ([os.path.abspath(args.baseline)] if args.baseline else [])
    for tree in trees:
        subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(tree, "ebpf")],
                       check=True, capture_output=True)
    obj = os.path.abspath(args.object or build_object())
    env = child_env()
    py = sys.executable
    script = os.path.join(os.path.dirname(py), "ebpf")
    cmds: dict[str, list[str]] = {
        "python_pass": [py, "-c", "pass"],
        "import_ebpf": [py, "-c", "import ebpf"],
        "python_m_ebpf_load": [py, "-m", "ebpf", "load", obj],
        "lean_python_pass": [py, "-S", "-c", "pass"],
        "lean_python_m_ebpf_load": [py, "-S", "-m", "ebpf", "load", obj],
    }
    envs = {k: env for k in cmds}
    if args.baseline:
        for k in ("import_ebpf", "python_m_ebpf_load", "lean_python_m_ebpf_load"):
            cmds[f"baseline_{k}"] = cmds[k]
            envs[f"baseline_{k}"] = child_env(trees[1])
    if os.access(script, os.X_OK):
        cmds["ebpf_script_load"] = [script, "load", obj]
        envs["ebpf_script_load"] = env
    bpftool = shutil.which("bpftool")
    if bpftool:
        cmds["bpftool_loadall"] = [bpftool, "prog", "loadall", obj, PIN_DIR]
        envs["bpftool_loadall"] = env
    for k, cmd in cmds.items():  # warm: page cache, BTF index cache, bytecode
        run_once(cmd, envs[k])
        cleanup_pins()
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    wall: dict[str, list[float]] = {k: [] for k in cmds}
    names = list(cmds)
    load0 = os.getloadavg()
    try:
        for i in range(args.runs):
            order = names[i % len(names):] + names[:i % len(names)]
            for k in order:
                c, w = run_once(cmds[k], envs[k])
                cleanup_pins()
                cpu[k].append(c)
                wall[k].append(w)
    finally:
        cleanup_pins()
    mods = extra_modules(obj, env)
    lean = ("-S",)
    lean_mods = extra_modules(obj, env, lean)
    imp_all, imp_ebpf, imp_lean = [], [], []
    base_mods = extra_modules(obj, child_env(trees[1])) if args.baseline else []
    base_lean_mods = extra_modules(obj, child_env(trees[1]), lean) if args.baseline else []
    base_imp: list[float] = []
    base_imp_lean: list[float] = []
    for _ in range(args.runs):
        imp_ebpf.append(import_cpu(["ebpf"], env))
        imp_all.append(import_cpu(mods, env))
        imp_lean.append(import_cpu(lean_mods, env, lean))
        if base_mods:
            base_imp.append(import_cpu(base_mods, child_env(trees[1])))
            base_imp_lean.append(import_cpu(base_lean_mods, child_env(trees[1]), lean))
    base = statistics.median(cpu["python_pass"])
    lean_base = statistics.median(cpu["lean_python_pass"])
    result: dict[str, Any] = {
        "object": os.path.relpath(SOURCE, REPO) if not args.object else args.object,
        "runs": args.runs,
        "load_avg_before": [round(x, 2) for x in load0],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_ms": {k: stats(v) for k, v in cpu.items()},
        "wall_ms": {k: stats(v) for k, v in wall.items()},
        "cpu_ms_beyond_pass": {k: round(statistics.median(v) - base, 2)
                               for k, v in cpu.items()
                               if k not in ("python_pass", "bpftool_loadall")
                               and "lean_" not in k},
        "load_avg_note": "CPU time of short processes on a loaded 2-CPU machine is "
                         "inflated (shared caches, preemption): compare sides measured "
                         "in the same run, not figures of different runs",
        "import_ebpf_cpu_ms": stats(imp_ebpf),
        "load_path_imports_cpu_ms": stats(imp_all),
        "load_path_modules": len(mods),
        "load_path_ebpf_modules": sum(1 for m in mods if m.split(".")[0] == "ebpf"),
        "lean": {
            "cpu_ms_beyond_pass": {k: round(statistics.median(v) - lean_base, 2)
                                   for k, v in cpu.items()
                                   if "lean_" in k and k != "lean_python_pass"},
            "load_path_imports_cpu_ms": stats(imp_lean),
            "load_path_modules": len(lean_mods),
            "load_path_ebpf_modules": sum(1 for m in lean_mods if m.split(".")[0] == "ebpf"),
            "stdlib_modules": [m for m in lean_mods if m.split(".")[0] != "ebpf"],
            **({"baseline_load_path_imports_cpu_ms": stats(base_imp_lean),
                "baseline_load_path_modules": len(base_lean_mods)} if args.baseline else {}),
        },
        "importtime": importtime(cmds["python_m_ebpf_load"], env, 5),
        **({"baseline": args.baseline,
            "baseline_load_path_imports_cpu_ms": stats(base_imp),
            "baseline_load_path_modules": len(base_mods)} if args.baseline else {}),
        "targets": {"cpu_ms_beyond_pass": TARGET_BEYOND_PASS_MS,
                    "load_path_imports_cpu_ms": TARGET_IMPORTS_MS},
    }
    if "bpftool_loadall" in cpu:
        result["ratio_load_cpu_vs_bpftool"] = round(
            statistics.median(cpu["python_m_ebpf_load"])
            / statistics.median(cpu["bpftool_loadall"]), 2)
    beyond = result["cpu_ms_beyond_pass"]["python_m_ebpf_load"]
    result["within_targets"] = (beyond <= TARGET_BEYOND_PASS_MS
                                and result["load_path_imports_cpu_ms"]["median"]
                                <= TARGET_IMPORTS_MS)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
