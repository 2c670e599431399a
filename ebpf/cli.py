"""The `ebpf` command: inspect and load objects, probe features, list kernel objects."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from .errors import Error


def _feature_probe(args: argparse.Namespace) -> int:
    from . import features

    result = features.probe_all()
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(features.format_text(result))
    return 0


def _not_yet(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(f"ebpf {name}: not available in this version", file=sys.stderr)
        return 2

    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebpf", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    feat = sub.add_parser("feature", help="kernel feature probes")
    fsub = feat.add_subparsers(dest="action", required=True)
    probe = fsub.add_parser("probe", help="probe program/map types, helpers and misc features")
    probe.add_argument("--json", action="store_true")
    probe.set_defaults(func=_feature_probe)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except Error as e:
        print(f"ebpf: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1
