#!/usr/bin/env python3
"""fentry: fentry and fexit programs on do_unlinkat(), the kernel side of unlink(2).

Like libbpf-bootstrap's fentry: BPF trampolines call the programs with the function's
typed arguments; the fentry program prints the pid and file name on entry, the fexit
program the pid, file name and result on return, with bpf_printk; the script shows
those lines from trace_pipe. Try `touch x; rm x` in another terminal. Needs a kernel
that allows BPF trampolines (x86_64 from Linux 5.5, arm64 from 6.0).

    sudo python3 examples/fentry.py [--duration 5] [--pid PID] [--count N]
"""

from __future__ import annotations

import contextlib

from common import follow_trace, load_spec, parser, tracefs

import ebpf
import ebpf.tracing


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    p.add_argument("-p", "--pid", type=int, default=0, help="only this process")
    args = p.parse_args(argv)

    spec = load_spec("fentry")
    spec.variables["target_tgid"].set(args.pid)
    with tracefs(), ebpf.Collection(spec) as coll, contextlib.ExitStack() as links, \
            ebpf.tracing.trace_pipe() as pipe:
        # the target function is part of the program (its SEC name, resolved in the
        # kernel's BTF at load time): attaching needs nothing more
        for link in coll.attach_all():
            links.enter_context(link)
        print("Successfully started! Reading trace_pipe (Ctrl-C to stop).", flush=True)
        follow_trace(pipe, lambda rec: rec.message.startswith(("fentry: ", "fexit: ")),
                     args.duration, args.count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
