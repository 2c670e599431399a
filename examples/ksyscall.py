#!/usr/bin/env python3
"""ksyscall: who sends which signal to whom, from kprobes on kill(2) and tgkill(2).

Like libbpf-bootstrap's ksyscall: SEC("ksyscall/kill") and SEC("ksyscall/tgkill")
programs print the sender's pid and command, the target and the signal with
bpf_printk (signal 0, which only checks that a process exists, is left out); the
script shows those lines from trace_pipe. Try `kill -USR1 <pid>` in another terminal.
Needs a kernel with kprobes (CONFIG_KPROBES).

    sudo python3 examples/ksyscall.py [--duration 5] [--pid SENDER] [--count N]
"""

from __future__ import annotations

import contextlib

from common import follow_trace, load_spec, parser, tracefs

import ebpf
import ebpf.tracing


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    p.add_argument("-p", "--pid", type=int, default=0, help="only signals this process sends")
    args = p.parse_args(argv)

    spec = load_spec("ksyscall")
    spec.variables["target_tgid"].set(args.pid)
    with tracefs(), ebpf.Collection(spec) as coll, contextlib.ExitStack() as links, \
            ebpf.tracing.trace_pipe() as pipe:
        # "ksyscall/kill" names the system call; attaching finds this architecture's
        # function for it (__x64_sys_kill on x86_64, __arm64_sys_kill on arm64)
        for link in coll.attach_all():
            links.enter_context(link)
        print("Successfully started! Reading trace_pipe (Ctrl-C to stop).", flush=True)
        follow_trace(pipe, lambda rec: rec.message.startswith(("KILL syscall ",
                                                               "tgkill syscall ")),
                     args.duration, args.count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
