#!/bin/sh
# The whole test suite: lint, types, the docs build, the tests against the running
# kernel and, alongside them, the kernel-dependent tests on Debian's 6.1 and 6.12 kernels
# in QEMU (the kernel matrix, tools/vm).
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
if [ "${KMATRIX:-1}" = 0 ]; then
    $PY -m pytest -q "$@"
    echo "test.sh: kernel matrix skipped (KMATRIX=0)"
    exit 0
fi
# The kernel matrix (single-vCPU TCG guests) runs alongside the host's pytest, which
# leaves most of a CPU idle: ~6 minutes less than one after the other. Its output is
# printed once it ends. The host kernel's row is the pytest run here (same `requires`
# checks), so only the VMs run there; `make test-kernels` runs all three.
mkdir -p .cache/kernelmatrix
mlog=.cache/kernelmatrix/test-sh.log
$PY -m tools.vm run --no-host >"$mlog" 2>&1 &
mpid=$!
# ^C or a CI timeout: the matrix unwinds like ^C too (its VMs are killed)
trap 'kill -TERM "$mpid" 2>/dev/null || :' INT TERM
echo "test.sh: the kernel matrix runs alongside pytest (output: $mlog, printed at the end)"
prc=0
$PY -m pytest -q "$@" || prc=$?
echo "test.sh: pytest done (exit $prc); waiting for the kernel matrix..."
# Exit 1: a test failed, or a guest crashed or timed out: the suite fails. Exit 3: only
# infrastructure errors (a VM that could not start twice, kernels that could not be
# fetched): reported loudly, with the console logs, but not a test failure.
rc=0
wait "$mpid" || rc=$?
trap - INT TERM
cat "$mlog"
if [ "$rc" = 3 ]; then
    echo "test.sh: WARNING: the kernel matrix hit an infrastructure error (see above and" \
         ".cache/kernelmatrix/); the kernel tests ran on the host kernel only" >&2
    rc=0
fi
if [ "$prc" != 0 ]; then
    exit "$prc"
fi
exit "$rc"
