#!/usr/bin/env python3
"""kprobe: a kprobe and a kretprobe on do_unlinkat(), the kernel side of unlink(2).

Like libbpf-bootstrap's kprobe: the entry probe prints the pid and the name of the
file being removed, the return probe the pid and the result (0, or -errno), both with
bpf_printk; the script shows those lines from trace_pipe. Try `touch x; rm x` in
another terminal. Needs a kernel with kprobes (CONFIG_KPROBES).

    sudo python3 examples/kprobe.py [--duration 5] [--pid PID] [--count N]
"""

from __future__ import annotations

from common import follow_trace, load_spec, parser, tracefs

import ebpf
import ebpf.tracing


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    p.add_argument("-p", "--pid", type=int, default=0, help="only this process")
    args = p.parse_args(argv)

    spec = load_spec("kprobe")
    spec.variables["target_tgid"].set(args.pid)
    with tracefs(), ebpf.Collection(spec) as coll, \
            ebpf.link.kprobe(coll.programs["unlink_entry"], "do_unlinkat"), \
            ebpf.link.kretprobe(coll.programs["unlink_exit"], "do_unlinkat"), \
            ebpf.tracing.trace_pipe() as pipe:
        print("Successfully started! Reading trace_pipe (Ctrl-C to stop).", flush=True)
        follow_trace(pipe, lambda rec: rec.message.startswith("KPROBE "),
                     args.duration, args.count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
