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
# The kernel matrix (single-vCPU TCG guests; tools/vm) runs alongside the host's pytest,
# which leaves most of a CPU idle: ~4 minutes less than one after the other (started
# before the lint and the docs build too, it measured a minute slower: more contention).
# Its output is printed once it ends. The host kernel's row is the pytest run here (same
# `requires` checks), so only the VMs run there; `make test-kernels` runs all three.
# KMATRIX=0 skips it (quick local runs).
mpid=
if [ "${KMATRIX:-1}" != 0 ]; then
    mkdir -p .cache/kernelmatrix
    mlog=.cache/kernelmatrix/test-sh.log
    $PY -m tools.vm run --no-host >"$mlog" 2>&1 &
    mpid=$!
    echo "test.sh: the kernel matrix runs alongside (output: $mlog, printed at the end)"
fi
# ^C or a CI timeout stops the matrix: it unwinds like ^C (its VMs are killed).
stop_matrix() { if [ -n "$mpid" ]; then kill -TERM "$mpid" 2>/dev/null || :; fi; }
trap stop_matrix EXIT
trap 'stop_matrix; exit 130' INT
trap 'stop_matrix; exit 143' TERM
prc=0
$PY -m pytest -q "$@" || prc=$?
if [ -z "$mpid" ]; then
    echo "test.sh: kernel matrix skipped (KMATRIX=0)"
    exit "$prc"
fi
echo "test.sh: pytest done (exit $prc); waiting for the kernel matrix..."
# Exit 1: a test failed, or a guest crashed or timed out: the suite fails. Exit 3: only
# infrastructure errors (a VM that could not start twice, kernels that could not be
# fetched): reported loudly, with the console logs, but not a test failure.
rc=0
wait "$mpid" || rc=$?
mpid=
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
