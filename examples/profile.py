#!/usr/bin/env python3
"""profile: sample what every CPU runs, with symbolized kernel and user stacks.

Like libbpf-bootstrap's profile: a perf event (the cpu-clock software timer) is
opened on every CPU at --frequency samples a second, each running a PERF_EVENT
program that records the current task and its kernel and user stacks into a ring
buffer. The script prints each sample with its stacks, kernel addresses symbolized
from /proc/kallsyms and user addresses from the ELF symbol tables of what the process
maps (ebpf.symbols). User stacks are walked through frame pointers, so code built
without them shows only its innermost frames. The profiler leaves itself out.

    sudo python3 examples/profile.py [--frequency 49] [--pid PID] [--duration 5] [--count N]
"""

from __future__ import annotations

import os
from typing import Any

from common import Clock, comm, load_spec, parser

import ebpf
from ebpf import symbols


def print_stack(title: str, addrs: Any, nbytes: int,
                resolve: Any) -> None:
    """One stack, innermost frame first, as ``  N [<address>] symbol+0xoff [module]``."""
    if nbytes <= 0:
        print(f"No {title} Stack")
        return
    print(f"{title}:")
    for i, addr in enumerate(addrs[:nbytes // 8]):
        print(f"  {i} [<{addr:016x}>] {resolve(addr)}")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    p.add_argument("-F", "--frequency", type=int, default=49, metavar="HZ",
                   help="samples a second on each CPU (default: 49)")
    p.add_argument("-p", "--pid", type=int, default=0, help="only this process")
    p.add_argument("-I", "--include-idle", action="store_true",
                   help="include the CPUs' idle tasks")
    args = p.parse_args(argv)

    spec = load_spec("profile")
    spec.variables["target_tgid"].set(args.pid)
    spec.variables["include_idle"].set(args.include_idle)
    spec.variables["self_tgid"].set(os.getpid())
    sym = symbols.Symbolizer(symbols.kernel_symbols())   # /proc/kallsyms, read now
    shown = 0
    with ebpf.Collection(spec) as coll, \
            ebpf.link.perf_event(coll.programs["profile"], frequency=args.frequency), \
            ebpf.ringbuf.Reader(coll.maps["samples"], btf=spec.btf,
                                record_type="struct profile_sample") as reader:
        print(f"Sampling every CPU at {args.frequency} Hz... Hit Ctrl-C to end.", flush=True)
        clock = Clock(args.duration)

        def show(rec: ebpf.ringbuf.Record) -> None:
            nonlocal shown
            if (args.count and shown >= args.count) or not clock.running:
                return
            s = reader.decode(rec)
            print(f"COMM: {comm(s.comm)} (pid={s.pid}) @ CPU {s.cpu}")
            print_stack("Kernel", s.kernel_stack, s.kernel_stack_bytes, sym.kernel)
            print_stack("Userspace", s.user_stack, s.user_stack_bytes,
                        lambda addr: sym.user(s.pid, addr))
            print(flush=True)
            shown += 1

        try:
            while clock.running and not (args.count and shown >= args.count):
                reader.poll(show, timeout=clock.left())
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
