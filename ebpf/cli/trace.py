"""`ebpf trace`: the kernel's trace_pipe (what ``bpf_printk`` writes), line by line, as
bpftool's ``prog tracelog`` prints it, or as JSON records (`ebpf.tracing.TraceRecord`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .common import add_json, wants_json

__all__ = ["register"]


def _cmd_trace(args: argparse.Namespace) -> int:
    from ..tracing import trace_pipe  # on use: a subcommand loads only what it needs

    as_json = wants_json(args)
    try:
        with trace_pipe(tracefs=args.tracefs, mount=args.mount, timeout=args.timeout) as pipe:
            for rec in pipe:
                if as_json:
                    fields = dataclasses.asdict(rec)
                    del fields["raw"]
                    print(json.dumps(fields), flush=True)
                else:
                    print(rec.raw, flush=True)
    except KeyboardInterrupt:
        sys.stdout.flush()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `trace` to the command line."""
    p = sub.add_parser("trace", help="print the kernel's trace_pipe (bpf_printk output)",
                       description="Print the lines of tracefs' trace_pipe as they come "
                       "(reading consumes them), until --timeout or Ctrl-C. tracefs is "
                       "mounted only with --mount.")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop after this many seconds (default: run until interrupted)")
    p.add_argument("--mount", action="store_true",
                   help="mount tracefs on /sys/kernel/tracing (or --tracefs) if it is not")
    p.add_argument("--tracefs", default=None, metavar="DIR",
                   help="where tracefs is mounted (default: /sys/kernel/tracing, then "
                   "/sys/kernel/debug/tracing)")
    add_json(p)
    p.set_defaults(func=_cmd_trace)
