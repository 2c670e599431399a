"""`python -m ebpf` is the `ebpf` command."""

from .cli import main

raise SystemExit(main())
