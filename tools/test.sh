#!/bin/sh
# The whole test suite: lint, types, the tests against the running kernel, then the
# kernel-dependent tests on Debian's 6.1 and 6.12 kernels in QEMU (the kernel matrix,
# tools/vm; about 13 minutes on 2 CPUs, plus about 1 minute to fetch the kernels the
# first time).
# KMATRIX=0 skips the matrix (for quick local runs); CI always runs it.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m ruff check ebpf tests tools bench examples
$PY -m mypy --strict ebpf
# The documentation site (docs/, mkdocs.yml): no broken link or reference, every page
# of the API reference generated; built into a temporary directory, nothing written here.
site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 $PY -m mkdocs build --strict -d "$site" || { rm -rf "$site"; exit 1; }
rm -rf "$site"
$PY tools/gen_sys.py --check
$PY -m pytest -q "$@"
if [ "${KMATRIX:-1}" = 0 ]; then
    echo "test.sh: kernel matrix skipped (KMATRIX=0)"
    exit 0
fi
# The host kernel's row is the pytest run above (same `requires` checks), so only the VMs
# run here; `make test-kernels` runs all three. Exit 1: a test failed, or a guest crashed
# or timed out: the suite fails. Exit 3: only infrastructure errors (a VM that could not
# start twice, kernels that could not be fetched): reported loudly, with the console
# logs, but not a test failure.
rc=0
$PY -m tools.vm run --no-host || rc=$?
if [ "$rc" = 3 ]; then
    echo "test.sh: WARNING: the kernel matrix hit an infrastructure error (see above and" \
         ".cache/kernelmatrix/); the kernel tests ran on the host kernel only" >&2
    exit 0
fi
exit "$rc"
