"""Map operation benchmark: ebpf (pure Python) vs C libbpf vs the bare-ctypes floor.

Measures, on a HASH map (1M max entries, `--filled` keys) and an ARRAY map
(`--filled` entries), u32 keys and u64 values:
  - single lookup and update through the public API (`m[k]`, `m[k] = v`, int key/value)
  - the same through C libbpf (bench/c/map_ops.c, built with gcc -lbpf in this run)
  - the floor: ctypes.CDLL(None).syscall(321, cmd, buf, 32) on preallocated attrs
  - batch lookup of the whole hash map: raw buffers, into a dict, and dict(m.items())
  - `m[k]` and `m[k] = v` on an ARRAY created with MapFlags.MMAPABLE (served from the
    map's memory, no system call) against C libbpf's bpf_map_lookup_elem /
    bpf_map_update_elem on the same kind of map (target: lookup <= 0.5x C)
and prints one JSON object with ns per operation and the ratios. Each figure is the
best of several rounds; C and Python rounds alternate so that background load
affects both alike. `--clock cpu` (default) times with the thread's CPU clock (user +
system: robust on a shared machine), `--clock wall` with the monotonic clock.

    sudo python3 bench/map_ops.py [--filled 100000] [--iterations 20000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ebpf import MapType
from ebpf._sys import types as T
from ebpf.maps import Map, MapFlags, MapSpec

HERE = os.path.dirname(os.path.abspath(__file__))
C_SOURCE = os.path.join(HERE, "c", "map_ops.c")


def build_c(outdir: str) -> str:
    exe = os.path.join(outdir, "map_ops")
    subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, C_SOURCE, "-lbpf"], check=True)
    return exe


CLOCK = {"cpu": time.thread_time_ns, "wall": time.perf_counter_ns}
now_ns = time.thread_time_ns


def run_c(exe: str, filled: int, iterations: int, repeats: int) -> dict[str, float]:
    clock = "cpu" if now_ns is time.thread_time_ns else "wall"
    out = subprocess.run([exe, str(filled), str(iterations), str(repeats), clock], check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out)
    return result


def best_ns(fn: Callable[[], Any], n: int, repeats: int) -> float:
    """Best time per operation over `repeats` runs of fn (which does n operations)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = now_ns()
        fn()
        best = min(best, (now_ns() - t0) / n)
    return best


def python_round(hmap: Map, amap: Map, mmap: Map, keys: list[int], repeats: int,
                 floors: dict[str, Any]) -> dict[str, float]:
    """Best-of-`repeats` figures; the measurements are interleaved so that a burst
    of background load hits all of them alike."""
    n = len(keys)

    def lookup(m: Map) -> Callable[[], None]:
        def run() -> None:
            for k in keys:
                m[k]
        return run

    def update(m: Map) -> Callable[[], None]:
        def run() -> None:
            for k in keys:
                m[k] = k
        return run

    def floor(bufs: list[Any], cmd: int) -> Callable[[], None]:
        sc = floors["syscall"]

        def run() -> None:
            for buf in bufs:
                sc(321, cmd, buf, 32)
        return run

    count = [0]

    def batch_raw() -> None:
        k, _v = hmap.lookup_batch()
        count[0] = len(k)

    def batch_dict() -> None:
        k, v = hmap.lookup_batch()
        count[0] = len(dict(zip(k.tolist(), v.tolist(), strict=True)))

    def items_dict() -> None:
        count[0] = len(dict(hmap.items()))

    single = {
        "floor_hash_lookup_ns": floor(floors["hash"], 1),
        "hash_lookup_ns": lookup(hmap),
        "floor_hash_update_ns": floor(floors["hash"], 2),
        "hash_update_ns": update(hmap),
        "floor_array_lookup_ns": floor(floors["array"], 1),
        "array_lookup_ns": lookup(amap),
        "floor_array_update_ns": floor(floors["array"], 2),
        "array_update_ns": update(amap),
        "mmap_array_lookup_ns": lookup(mmap),
        "mmap_array_update_ns": update(mmap),
    }
    whole = {
        "batch_lookup_raw_ns_per_elem": batch_raw,
        "batch_lookup_dict_ns_per_elem": batch_dict,
        "items_dict_ns_per_elem": items_dict,
    }
    r = {k: float("inf") for k in (*single, *whole)}
    for _ in range(repeats):
        for k, fn in single.items():
            r[k] = min(r[k], best_ns(fn, n, 1))
        for k, fn in whole.items():
            t = best_ns(fn, 1, 1)
            r[k] = min(r[k], t / count[0])
    r["batch_elements"] = count[0]
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--filled", type=int, default=100_000)
    ap.add_argument("--iterations", type=int, default=20_000,
                    help="operations per timed run of a single-op figure")
    ap.add_argument("--rounds", type=int, default=4,
                    help="alternations of the C program and the Python measurements")
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per figure per round")
    ap.add_argument("--no-c", action="store_true", help="skip the C libbpf counterpart")
    ap.add_argument("--clock", choices=sorted(CLOCK), default="cpu",
                    help="thread CPU time (default) or wall time")
    args = ap.parse_args()
    global now_ns
    now_ns = CLOCK[args.clock]

    with tempfile.TemporaryDirectory() as tmp:
        exe = None if args.no_c else build_c(tmp)
        hmap = Map(MapSpec(type=MapType.HASH, key_size=4, value_size=8, max_entries=1 << 20,
                           name="bench_hash"))
        amap = Map(MapSpec(type=MapType.ARRAY, key_size=4, value_size=8,
                           max_entries=args.filled, name="bench_array"))
        mmap = Map(MapSpec(type=MapType.ARRAY, key_size=4, value_size=8,
                           max_entries=args.filled, name="bench_mmap", flags=MapFlags.MMAPABLE))
        try:
            for k in range(args.filled):
                hmap[k] = k
                amap[k] = k
                mmap[k] = k
            keys = [i % args.filled for i in range(args.iterations)]
            # The floor: bare ctypes on preallocated attr buffers whose key/value pointers
            # were set up front, one per key of the sequence the API loop uses (so the
            # kernel does the same work): only the Python call into syscall(2) remains.
            kbufs = [ctypes.create_string_buffer(k.to_bytes(4, sys.byteorder)) for k in keys]
            vbuf = ctypes.create_string_buffer(8)
            floors: dict[str, Any] = {"syscall": ctypes.CDLL(None).syscall}
            for name, m in (("hash", hmap), ("array", amap)):
                floors[name] = [
                    ctypes.create_string_buffer(bytes(T.MapElemAttr(
                        map_fd=m.fileno(), key=ctypes.addressof(kb),
                        value=ctypes.addressof(vbuf))), 32)
                    for kb in kbufs]
            floors["_keep"] = (kbufs, vbuf)

            py: dict[str, float] = {}
            c: dict[str, float] = {}
            for _ in range(args.rounds):
                if exe is not None:
                    for key, val in run_c(exe, args.filled, args.iterations,
                                          args.repeats).items():
                        c[key] = min(c.get(key, float("inf")), val)
                for key, val in python_round(hmap, amap, mmap, keys, args.repeats,
                                             floors).items():
                    py[key] = min(py.get(key, float("inf")), val)
        finally:
            hmap.close()
            amap.close()
            mmap.close()

    def ratio(a: float, b: float | None) -> float | None:
        return round(a / b, 3) if b else None

    ratios = {
        "hash_lookup_vs_floor": ratio(py["hash_lookup_ns"], py["floor_hash_lookup_ns"]),
        "hash_update_vs_floor": ratio(py["hash_update_ns"], py["floor_hash_update_ns"]),
        "array_lookup_vs_floor": ratio(py["array_lookup_ns"], py["floor_array_lookup_ns"]),
        "array_update_vs_floor": ratio(py["array_update_ns"], py["floor_array_update_ns"]),
    }
    if c:
        ratios.update({
            "hash_lookup_vs_c": ratio(py["hash_lookup_ns"], c["hash_lookup_ns"]),
            "hash_update_vs_c": ratio(py["hash_update_ns"], c["hash_update_ns"]),
            "array_lookup_vs_c": ratio(py["array_lookup_ns"], c["array_lookup_ns"]),
            "array_update_vs_c": ratio(py["array_update_ns"], c["array_update_ns"]),
            "batch_raw_vs_c": ratio(py["batch_lookup_raw_ns_per_elem"],
                                    c["batch_lookup_ns_per_elem"]),
            "batch_dict_vs_c": ratio(py["batch_lookup_dict_ns_per_elem"],
                                     c["batch_lookup_ns_per_elem"]),
            "items_dict_vs_c": ratio(py["items_dict_ns_per_elem"],
                                     c["batch_lookup_ns_per_elem"]),
            "mmap_array_lookup_vs_c": ratio(py["mmap_array_lookup_ns"],
                                            c["mmap_array_lookup_ns"]),
            "mmap_array_update_vs_c": ratio(py["mmap_array_update_ns"],
                                            c["mmap_array_update_ns"]),
        })
    targets = {"hash_lookup_vs_floor": 1.25, "hash_update_vs_floor": 1.25,
               "array_lookup_vs_floor": 1.25, "array_update_vs_floor": 1.25,
               "batch_dict_vs_c": 1.6, "batch_raw_vs_c": 1.3, "mmap_array_lookup_vs_c": 0.5}
    print(json.dumps({
        "benchmark": "map_ops",
        "env": {"python": platform.python_version(), "kernel": platform.release(),
                "cpus": os.cpu_count(), "load_avg": os.getloadavg()[0],
                "filled": args.filled, "iterations": args.iterations,
                "rounds": args.rounds, "clock": args.clock},
        "python_ns": {k: round(v, 1) for k, v in py.items()},
        "c_libbpf_ns": {k: round(v, 1) for k, v in c.items()},
        "ratios": ratios,
        "targets": targets,
        "within_targets": {k: (ratios.get(k) or 0) <= v for k, v in targets.items()
                           if ratios.get(k) is not None},
    }, indent=2))


if __name__ == "__main__":
    main()
