#!/bin/sh
# The whole test suite: lint, types, then the tests against the running kernel.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m ruff check ebpf tests tools bench examples
$PY -m mypy --strict ebpf
$PY tools/gen_sys.py --check
$PY -m pytest -q "$@"
