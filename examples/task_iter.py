#!/usr/bin/env python3
"""task_iter: list the system's processes like ps, from a BPF task iterator.

Like libbpf-bootstrap's task_iter: an `iter/task` program runs once per task each
time its iterator is read, and writes one binary record per process (per thread with
--threads) with bpf_seq_write. The script decodes the records with the C struct's
layout from the object's BTF and prints them as `ps -e -o pid,ppid,s,comm` does;
--stacks adds each task's kernel stack, symbolized with ebpf.symbols.

The listing is printed once; with --interval it is repeated every SECONDS until
--duration has passed (or Ctrl-C).

    sudo python3 examples/task_iter.py [--threads] [--stacks] [--count N]
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

from common import Clock, comm, load_spec, parser

import ebpf
import ebpf.btf
from ebpf import symbols

STATES = "RSDTtXZPI"   # the letters of ps's S column, by the kernel's state index
TASK_REPORT = 0x7F
TASK_IDLE = 0x402      # TASK_UNINTERRUPTIBLE | TASK_NOLOAD
TASK_RTLOCK_WAIT = 0x1000


def state_letter(state: int) -> str:
    """The letter ps shows for a task's ``__state | exit_state`` (the kernel's
    task_state_index: the highest reported bit, with idle kernel threads as I)."""
    if state & TASK_IDLE == TASK_IDLE:
        return "I"
    if state & TASK_RTLOCK_WAIT:
        return "D"
    return STATES[(state & TASK_REPORT).bit_length()]


def listing(link: ebpf.link.IterLink, record: Any, args: Any) -> None:
    """Read the iterator once (the program runs for every task) and print it."""
    data = link.read()
    size = ctypes.sizeof(record)
    tasks = [record.from_buffer_copy(data, off) for off in range(0, len(data), size)]
    if args.count:    # --count bounds the tasks listed
        tasks = tasks[:args.count]
    tid = f"{'TID':>7} " if args.threads else ""
    print(f"{'PID':>7} {tid}{'PPID':>7} S COMMAND")
    for t in tasks:
        tid = f"{t.tid:>7} " if args.threads else ""
        print(f"{t.pid:>7} {tid}{t.ppid:>7} {state_letter(t.state)} {comm(t.comm)}")
        if args.stacks and t.stack_bytes > 0:
            frames = [symbols.default_symbolizer().kernel(ip)
                      for ip in t.stack[:t.stack_bytes // 8]]
            print(symbols.format_stack(frames, indent="        "), end="")
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    p.add_argument("-t", "--threads", action="store_true", help="one line per thread")
    p.add_argument("-s", "--stacks", action="store_true", help="show kernel stacks")
    p.add_argument("-i", "--interval", type=float, default=0.0, metavar="SECONDS",
                   help="repeat the listing every SECONDS (default: list once)")
    args = p.parse_args(argv)

    spec = load_spec("task_iter")
    spec.variables["show_threads"].set(args.threads)
    assert spec.btf is not None          # clang -g: the object has BTF
    record = ebpf.btf.to_ctypes(spec.btf.type_by_name("task_info"))
    with ebpf.Collection(spec) as coll, ebpf.link.iter(coll.programs["list_tasks"]) as link:
        clock = Clock(args.duration)
        try:
            listing(link, record, args)
            while args.interval and clock.running:
                time.sleep(clock.left(args.interval) if clock.end else args.interval)
                if clock.running:
                    listing(link, record, args)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
