"""`ebpf perf show`: programs attached through perf events (tracepoints, kprobes,
uprobes, raw tracepoints) found among every process's descriptors, as bpftool's `perf`
shows them (BPF_TASK_FD_QUERY over /proc/*/fd)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .common import add_json, emit

__all__ = ["perf_attachments", "register"]


def perf_attachments() -> list[dict[str, Any]]:
    """bpftool's `perf show` records: pid, fd, prog_id, fd_type and the target."""
    # on use: a subcommand loads only what it needs
    from .._sys.taskfd import FD_TYPES, task_fd_query

    out = []
    for pid_name in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        pid = int(pid_name)
        fd_dir = f"/proc/{pid_name}/fd"
        try:
            fds = sorted(int(f) for f in os.listdir(fd_dir))
        except OSError:
            continue  # exited, or not ours to see
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if not target.startswith("anon_inode:"):
                continue
            found = task_fd_query(pid, fd)
            if found is None:
                continue
            kind = FD_TYPES[found.fd_type] if found.fd_type < len(FD_TYPES) else str(
                found.fd_type)
            rec: dict[str, Any] = {"pid": pid, "fd": fd, "prog_id": found.prog_id,
                                   "fd_type": kind}
            if kind in ("raw_tracepoint", "tracepoint"):
                rec["tracepoint"] = found.name
            elif kind in ("kprobe", "kretprobe"):
                if found.name:
                    rec.update(func=found.name, offset=found.probe_offset)
                else:
                    rec["addr"] = found.probe_addr
            else:
                rec.update(filename=found.name, offset=found.probe_offset)
            out.append(rec)
    return out


def _text(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        line = f"pid {r['pid']}  fd {r['fd']}: prog_id {r['prog_id']}  {r['fd_type']}  "
        if "tracepoint" in r:
            line += r["tracepoint"]
        elif "func" in r:
            line += f"func {r['func']}  offset {r['offset']}"
        elif "addr" in r:
            line += f"addr {r['addr']:x}"
        else:
            line += f"filename {r['filename']}  offset {r['offset']}"
        out.append(line)
    return "\n".join(out)


def _cmd_show(args: argparse.Namespace) -> int:
    emit(args, perf_attachments(), _text)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `perf` and its verbs to the command line."""
    p = sub.add_parser("perf", help="programs attached to perf events (bpftool perf)")
    verbs = p.add_subparsers(dest="verb", required=True)
    for verb in ("show", "list"):
        s = verbs.add_parser(verb, help="list perf-event attachments of every process")
        add_json(s)
        s.set_defaults(func=_cmd_show)
