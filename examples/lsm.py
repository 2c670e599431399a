#!/usr/bin/env python3
"""lsm: a BPF LSM program that refuses to open one file, reporting every attempt.

In the spirit of libbpf-bootstrap's lsm (which denies every bpf() call), but harmless:
an lsm/file_open program compares each opened file's inode and device with those of
FILE (.rodata constants set before loading) and returns -EPERM for it, so the open
fails with "Operation not permitted"; with --audit it allows the open and only
reports it. Attempts come through a ring buffer. Needs the BPF LSM active ("bpf" in
/sys/kernel/security/lsm: in CONFIG_LSM, or lsm=...,bpf on the kernel command line)
and BPF trampolines (x86_64 from Linux 5.7, arm64 from 6.0).

    sudo python3 examples/lsm.py FILE [--audit] [--duration 5] [--count N]
"""

from __future__ import annotations

import errno
import os
import sys
import time

from common import Clock, comm, load_spec, parser

import ebpf

LSM_LIST = "/sys/kernel/security/lsm"


def active_lsms() -> list[str] | None:
    """The active Linux security modules, in order; None when securityfs is not mounted."""
    try:
        with open(LSM_LIST) as f:
            return f.read().strip().split(",")
    except OSError:
        return None


def kernel_dev(st_dev: int) -> int:
    """The kernel's internal dev_t (``major << 20 | minor``, what ``sb->s_dev`` holds)
    for a device number as stat(2) reports it."""
    return os.major(st_dev) << 20 | os.minor(st_dev)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, count=True)
    p.add_argument("file", help="the file to protect")
    p.add_argument("-a", "--audit", action="store_true",
                   help="allow the opens, only report them")
    args = p.parse_args(argv)

    lsms = active_lsms()
    if lsms is not None and "bpf" not in lsms:
        print(f"the BPF LSM is not active (lsm={','.join(lsms)}): boot with "
              f"lsm={','.join([*lsms, 'bpf'])}", file=sys.stderr)
        return 1
    st = os.stat(args.file)
    spec = load_spec("lsm")
    spec.variables["target_ino"].set(st.st_ino)
    spec.variables["target_dev"].set(kernel_dev(st.st_dev))
    spec.variables["verdict"].set(0 if args.audit else -errno.EPERM)
    shown = 0
    with ebpf.Collection(spec) as coll, \
            ebpf.link.lsm(coll.programs["check_open"]), \
            ebpf.ringbuf.Reader(coll.maps["events"], btf=spec.btf,
                                record_type="struct event") as reader:
        what = "Reporting" if args.audit else "Denying"
        print(f"{what} opens of {args.file} (inode {st.st_ino} on device "
              f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}); Ctrl-C to stop.")
        print(f"{'TIME':<8} {'PID':<7} {'COMM':<16} {'ACTION':<7} FILE", flush=True)

        def show(rec: ebpf.ringbuf.Record) -> None:
            nonlocal shown
            if args.count and shown >= args.count:
                return
            e = reader.decode(rec)
            action = "DENIED" if e.ret else "ALLOWED"
            print(f"{time.strftime('%H:%M:%S'):<8} {e.pid:<7} {comm(e.comm):<16} "
                  f"{action:<7} {comm(e.name)}", flush=True)
            shown += 1

        clock = Clock(args.duration)
        try:
            while clock.running and not (args.count and shown >= args.count):
                reader.poll(show, timeout=clock.left())
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
