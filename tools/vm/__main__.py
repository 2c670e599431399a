"""python3 -m tools.vm {fetch,run,shell} ... (see tools/vm/__init__.py)."""

from __future__ import annotations

import signal
import sys


def main(argv: list[str]) -> int:
    # A SIGTERM (CI timeout, make killed) unwinds like ^C, so running VMs are killed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    cmds = ("fetch", "run", "shell")
    if not argv or argv[0] not in cmds:
        print(f"usage: python3 -m tools.vm {{{','.join(cmds)}}} [options] (-h for help)",
              file=sys.stderr)
        return 2
    if argv[0] == "fetch":
        from .kernels import main as fetch_main
        return fetch_main(argv[1:])
    from . import runner
    if argv[0] == "run":
        return runner.main(argv[1:])
    return runner.shell_main(argv[1:])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("kmatrix: interrupted", file=sys.stderr)
        sys.exit(130)
