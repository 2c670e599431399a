#!/usr/bin/env python3
"""execsnoop: every exec on the system, live, from a CO-RE BPF program.

examples/bpf/execsnoop.bpf.c reads task_struct fields with BPF_CORE_READ; this
script compiles it once with `ebpf build` (clang; cached by content in ~/.cache/ebpf),
parses the object, sets its .rodata configuration (a template: no recompiling per
setting), loads it with CO-RE relocations against the running kernel's BTF,
attaches it by its section name, and prints the ring buffer's events, decoded
through the object's BTF (`struct event`), plus a per-uid counter map.

    sudo python3 examples/execsnoop.py [--seconds 5] [--ppid PID] [--min-uid UID]
                                       [--no-spawn]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import ebpf  # noqa: E402
from ebpf import ringbuf  # noqa: E402

SOURCE = os.path.join(HERE, "bpf", "execsnoop.bpf.c")
TRACEFS = "/sys/kernel/tracing"


def build_object() -> str:
    """Compile the BPF C source (`ebpf build`: clang, vmlinux.h for this kernel and the
    CO-RE flags; cached by content in the user's cache directory)."""
    from ebpf.gen.build import build

    return str(build(SOURCE))


def ensure_tracefs() -> bool:
    """Mount tracefs if it is not mounted (tracepoints need it); True if we mounted it."""
    with open("/proc/self/mounts") as f:
        if any(line.split()[1] == TRACEFS for line in f):
            return False
    subprocess.run(["mount", "-t", "tracefs", "tracefs", TRACEFS], check=True)
    return True


def spawn_execs(stop: threading.Event) -> None:
    """A little activity of our own so that there is something to see."""
    cmds = [["/bin/true"], ["/bin/echo", "-n"], ["/bin/ls", "/"], ["/bin/uname", "-r"]]
    i = 0
    while not stop.is_set():
        subprocess.run(cmds[i % len(cmds)], stdout=subprocess.DEVNULL)
        i += 1
        stop.wait(0.3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--ppid", type=int, default=0, help="only children of this pid")
    ap.add_argument("--min-uid", type=int, default=0)
    ap.add_argument("--no-spawn", action="store_true", help="do not run commands ourselves")
    args = ap.parse_args(argv)

    obj = build_object()
    spec = ebpf.load_collection_spec(obj)
    spec.variables["target_ppid"].set(args.ppid)   # .rodata: the verifier sees constants
    spec.variables["min_uid"].set(args.min_uid)
    mounted = ensure_tracefs()
    stop = threading.Event()
    seen = 0
    try:
        with ebpf.Collection(spec) as coll:
            links = coll.attach_all()
            try:
                with ringbuf.Reader(coll.maps["events"], btf=spec.btf,
                                    record_type="struct event") as reader:
                    if not args.no_spawn:
                        threading.Thread(target=spawn_execs, args=(stop,), daemon=True).start()
                    print(f"{'time':>8} {'pid':>7} {'ppid':>7} {'uid':>5} {'comm':<16} filename")
                    start = time.monotonic()
                    while (left := args.seconds - (time.monotonic() - start)) > 0:
                        try:
                            rec = reader.read(timeout=min(left, 0.5))
                        except ringbuf.DeadlineExceededError:
                            continue
                        e = reader.decode(rec)
                        name = bytes(e.filename[: max(e.filename_len - 1, 0)]).decode(
                            errors="replace")
                        comm = bytes(e.comm).split(b"\0")[0].decode(errors="replace")
                        print(f"{time.monotonic() - start:8.3f} {e.pid:>7} {e.ppid:>7} "
                              f"{e.uid:>5} {comm:<16} {name}")
                        seen += 1
            finally:
                stop.set()
                for link in links:
                    link.close()
            print("\nexecs by uid:", dict(coll.maps["execs_by_uid"].items()),
                  " dropped:", coll.variables["dropped"].get())
    finally:
        if mounted:
            subprocess.run(["umount", TRACEFS], check=False)
    if seen == 0 and not args.no_spawn:
        print("no events were received", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
