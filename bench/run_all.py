"""Run every benchmark in bench/ and write one JSON summary (`make bench`).

    sudo python3 bench/run_all.py [--out .cache/bench/summary.json] [--only map_ops,templates]
                                  [--nice 10] [--timeout 3600]

Each bench/*.py (but this one and the helpers it lists in SKIP) runs in its own process
under `nice`; its JSON output is kept whole in the summary, and every numeric value whose
key path contains "ratio" (or is named in bench/targets.json) becomes a row: the value,
the target and whether it is met (null: no target). A bench that fails is reported with
its exit status and the end of its stderr; the exit status is 1 when a bench failed or a
target was missed, else 0. Figures from a busy machine (`env.load_avg` above the CPU
count) are noisy: the summary records the load before and after each bench.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SKIP = {"run_all.py"}


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, list):
        return out  # per-sample series: no targets there
    else:
        out[prefix[:-1]] = obj
    return out


def load_targets() -> list[dict[str, Any]]:
    with open(os.path.join(HERE, "targets.json")) as f:
        rows: list[dict[str, Any]] = json.load(f)["targets"]
    return rows


def judge(bench: str, result: Any, targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    mine = [t for t in targets if t["bench"] == bench]
    for path, value in flatten(result).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        t = next((t for t in mine if fnmatch.fnmatchcase(path, t["key"])), None)
        if t is None and "ratio" not in path:
            continue
        met = None
        if t is not None:
            met = value <= t["target"] if t["op"] == "<=" else value >= t["target"]
        rows.append({"bench": bench, "key": path, "value": value,
                     "op": t["op"] if t else None, "target": t["target"] if t else None,
                     "issue": t.get("issue") if t else None, "met": met})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(REPO, ".cache", "bench", "summary.json"))
    ap.add_argument("--only", default="", help="comma-separated bench names")
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per bench")
    args = ap.parse_args()
    names = sorted(f[:-3] for f in os.listdir(HERE)
                   if f.endswith(".py") and f not in SKIP)
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    targets = load_targets()
    summary: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "kernel": platform.release(),
                    "cpus": os.cpu_count(), "cpu_model": cpu_model(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "benches": {}, "rows": []}
    failed = False
    for name in names:
        print(f"bench {name} ...", file=sys.stderr, flush=True)
        load0 = os.getloadavg()[0]
        t0 = time.monotonic()
        try:
            proc = subprocess.run(["nice", "-n", str(args.nice), sys.executable,
                                   os.path.join(HERE, f"{name}.py")], cwd=REPO,
                                  capture_output=True, text=True, timeout=args.timeout)
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = -1, "", f"timed out after {e.timeout:.0f} s"
        entry: dict[str, Any] = {"exit_status": rc, "seconds": round(time.monotonic() - t0, 1),
                                 "load_avg_before": load0, "load_avg_after": os.getloadavg()[0]}
        try:
            result = json.loads(out) if rc == 0 else None
        except json.JSONDecodeError:
            result = None
            rc = entry["exit_status"] = rc or -2
        if result is None:
            failed = True
            entry["stderr_tail"] = (err or "")[-2000:]
        else:
            entry["result"] = result
            entry["self_judged"] = {k: result[k] for k in (
                "within_targets", "within_target", "targets") if k in result}
            summary["rows"].extend(judge(name, result, targets))
        summary["benches"][name] = entry
    missed = [r for r in summary["rows"] if r["met"] is False]
    summary["targets_met"] = sum(1 for r in summary["rows"] if r["met"])
    summary["targets_missed"] = [f"{r['bench']}:{r['key']}" for r in missed]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps({"summary": args.out, "targets_met": summary["targets_met"],
                      "targets_missed": summary["targets_missed"],
                      "failed": [n for n, e in summary["benches"].items()
                                 if e["exit_status"] != 0]}, indent=2))
    return 1 if failed or missed else 0


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
