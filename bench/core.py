"""Benchmark: CO-RE relocation of a tracing object against the kernel's BTF, ebpf vs libbpf.

    python bench/core.py [--runs N]

The object is tests/bpf/core_fields.c (59 relocations of every kind, most of
them on task_struct fields), compiled against the running kernel's vmlinux.h.

ebpf, timed inside the process around `ebpf.btf.core.relocate` of every
program section (the object's .BTF/.BTF.ext already parsed):

* cold: a fresh interpreter, kernel BTF not loaded yet, no on-disk index cache
  (EBPF_BTF_CACHE=0): includes reading and indexing /sys/kernel/btf/vmlinux
  (`cold_kernel_btf_load` + `cold_after_kernel_btf_load` split it in two);
* cold_cached: a fresh interpreter with the kernel BTF index cache primed;
* warm: the same process again, with a fresh `CoreCache` (candidate lists are
  recomputed; the kernel spec and its name lookups are reused).

libbpf (libbpf.so.1 through ctypes, fresh process per sample): libbpf has no
separate "relocate" entry point in 1.1, so its CO-RE time is estimated as the
difference between two `bpf_object__load` calls on the same object: one with
the program's autoload on but its type set to an invalid one (so CO-RE runs and
the kernel rejects the program at once, before any verification) and one with
autoload off (CO-RE is skipped for it); both parse vmlinux BTF, probe features
and create the object's maps. `load_failfast` is the first of the two: libbpf's
whole open-to-relocated path. Times are milliseconds (min and median).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
from typing import Any

REPO = pathlib.Path(__file__).resolve().parent.parent

OURS = r"""
import sys, time
sys.path.insert(0, {repo!r})
from ebpf import asm, btf
from ebpf.btf import core
from ebpf.btf.ext import parse_ext
from ebpf.elf import ELFFile

elf = ELFFile(open({obj!r}, "rb").read())
local = btf.Spec(bytes(elf.section_by_name(".BTF").data()))
ext = parse_ext(bytes(elf.section_by_name(".BTF.ext").data()), local)
code = {{sec: bytes(elf.section_by_name(sec).data()) for sec in ext.core_relos}}

def run():
    cache = core.CoreCache()
    n = 0
    t0 = time.perf_counter()
    for sec, relos in ext.core_relos.items():
        insns = asm.decode(code[sec])
        n += len(core.relocate(insns, core.index_relos(insns, relos, sec), local,
                               core.kernel_targets(), cache=cache))
    return (time.perf_counter() - t0) * 1e3, n

if sys.argv[1:] == ["split"]:  # the kernel BTF first, then the relocations
    t0 = time.perf_counter()
    btf.load_kernel_spec()
    kernel = (time.perf_counter() - t0) * 1e3
    print(kernel, run()[0])
    raise SystemExit
cold, n = run()
warm = [run()[0] for _ in range({warm_runs})]
print(cold, min(warm), statistics.median(warm), n)
""".replace("import sys, time", "import statistics, sys, time")

LIBBPF = r"""
import ctypes, sys, time

class Opts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("object_name", ctypes.c_char_p),
                ("relaxed_maps", ctypes.c_bool), ("pin_root_path", ctypes.c_char_p),
                ("_unused", ctypes.c_uint32), ("kconfig", ctypes.c_char_p),
                ("btf_custom_path", ctypes.c_char_p), ("kernel_log_buf", ctypes.c_char_p),
                ("kernel_log_size", ctypes.c_size_t), ("kernel_log_level", ctypes.c_uint32)]

lib = ctypes.CDLL("libbpf.so.1")
vp = ctypes.c_void_p
for name, res, args in (
        ("bpf_object__open_file", vp, [ctypes.c_char_p, ctypes.POINTER(Opts)]),
        ("bpf_object__load", ctypes.c_int, [vp]),
        ("bpf_object__close", None, [vp]),
        ("bpf_object__next_program", vp, [vp, vp]),
        ("bpf_program__set_autoload", ctypes.c_int, [vp, ctypes.c_bool]),
        ("bpf_program__set_type", ctypes.c_int, [vp, ctypes.c_int]),
        ("libbpf_set_print", vp, [vp])):
    fn = getattr(lib, name)
    fn.restype, fn.argtypes = res, args
lib.libbpf_set_print(None)

def load(autoload):
    opts = Opts(sz=ctypes.sizeof(Opts))
    t0 = time.perf_counter()
    obj = lib.bpf_object__open_file({obj!r}.encode(), ctypes.byref(opts))
    prog = None
    while True:
        prog = lib.bpf_object__next_program(obj, prog)
        if not prog:
            break
        lib.bpf_program__set_autoload(prog, autoload)
        lib.bpf_program__set_type(prog, 0x7fff)
    t1 = time.perf_counter()
    err = lib.bpf_object__load(obj)
    t2 = time.perf_counter()
    lib.bpf_object__close(obj)
    assert (err == 0) != autoload, err
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3

mode = sys.argv[1]
print(*load(mode == "core"))
"""


def _stats(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3)}


def _python(code: str, env: dict[str, str], *args: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return [float(x) for x in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="fresh processes per measurement")
    ap.add_argument("--warm-runs", type=int, default=50, help="in-process repetitions")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO / "tests"))
    from bpfbuild import compile_bpf
    from vmlinux import vmlinux_include_dir

    obj = str(compile_bpf("core_fields", extra_flags=[f"-I{vmlinux_include_dir()}"]))
    code = OURS.format(repo=str(REPO), obj=obj, warm_runs=args.warm_runs)
    result: dict[str, Any] = {"object": "tests/bpf/core_fields.c", "runs": args.runs}

    env = dict(os.environ, EBPF_BTF_CACHE="0")
    cold, warm_min, warm_med, nrelos = [], [], [], 0
    for _ in range(args.runs):
        c, wmin, wmed, n = _python(code, env)
        cold.append(c)
        warm_min.append(wmin)
        warm_med.append(wmed)
        nrelos = int(n)
    result["relocations"] = nrelos

    import tempfile

    with tempfile.TemporaryDirectory() as cache_dir:
        env_cached = dict(os.environ, EBPF_BTF_CACHE=cache_dir)
        _python(code, env_cached)  # primes the index cache (written at exit)
        cold_cached = [_python(code, env_cached)[0] for _ in range(args.runs)]

    split = [_python(code, env, "split") for _ in range(args.runs)]
    result["ebpf_ms"] = {
        "cold": _stats(cold),
        "cold_kernel_btf_load": _stats([x[0] for x in split]),
        "cold_after_kernel_btf_load": _stats([x[1] for x in split]),
        "cold_cached": _stats(cold_cached),
        "warm": {"min": round(min(warm_min), 3), "median": round(statistics.median(warm_med), 3)},
    }

    try:
        lib_code = LIBBPF.format(obj=obj)
        with_core = [_python(lib_code, dict(os.environ), "core") for _ in range(args.runs)]
        without = [_python(lib_code, dict(os.environ), "nocore") for _ in range(args.runs)]
    except subprocess.CalledProcessError as e:
        result["libbpf_ms"] = {"error": (e.stderr or "").strip().splitlines()[-1:]}
    else:
        load_core = [x[1] for x in with_core]
        load_nocore = [x[1] for x in without]
        result["libbpf_ms"] = {
            "open": _stats([x[0] for x in with_core]),
            "load_failfast": _stats(load_core),
            "load_without_core": _stats(load_nocore),
            "core_estimate": {
                "min": round(min(load_core) - min(load_nocore), 3),
                "median": round(statistics.median(load_core)
                                - statistics.median(load_nocore), 3),
            },
        }
    result["compared"] = (
        "ebpf: relocate() of every CO-RE relocation of the object against the running "
        "kernel's BTF (cold includes loading/indexing vmlinux BTF); libbpf 1.1: "
        "bpf_object__load with CO-RE minus without (each also parses vmlinux BTF, probes "
        "features and creates maps; the program is rejected before verification)")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
