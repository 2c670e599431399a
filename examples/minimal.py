#!/usr/bin/env python3
"""minimal: bpf_printk from a tracepoint, read back through trace_pipe.

A tracepoint program on sys_enter_write prints "BPF triggered from PID <pid>." when
this process writes to one file descriptor (pid and descriptor are .rodata constants
set before loading). The script writes a byte to /dev/null through that descriptor
every second and prints the trace_pipe lines that result, as `bpftool prog tracelog`
(or `cat /sys/kernel/tracing/trace_pipe`) shows them.

    sudo python3 examples/minimal.py [--duration 5]
"""

from __future__ import annotations

import os
import time

from common import Clock, load_spec, parser, tracefs

import ebpf
import ebpf.tracing


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__).parse_args(argv)
    spec = load_spec("minimal")
    devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    spec.variables["target_pid"].set(os.getpid())
    spec.variables["target_fd"].set(devnull)
    marker = f"BPF triggered from PID {os.getpid()}."
    seen = 0
    with tracefs(), ebpf.Collection(spec) as coll, \
            ebpf.link.tracepoint(coll.programs["handle_write"], "syscalls",
                                 "sys_enter_write"), \
            ebpf.tracing.trace_pipe() as pipe:
        print("Successfully started! Reading trace_pipe (Ctrl-C to stop).", flush=True)
        clock = Clock(args.duration)
        try:
            while clock.running:
                os.write(devnull, b".")                # the write(2) the program sees
                tick = time.monotonic() + 1.0
                while (wait := min(tick - time.monotonic(), clock.left(1.0))) > 0:
                    try:
                        rec = pipe.read(timeout=wait)
                    except ebpf.DeadlineExceededError:
                        break
                    if rec.message.endswith(marker):   # the buffer is system-wide
                        print(rec.raw, flush=True)
                        seen += 1
        except KeyboardInterrupt:
            pass
    os.close(devnull)
    return 0 if seen else 1


if __name__ == "__main__":
    raise SystemExit(main())
