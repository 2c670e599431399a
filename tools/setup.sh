#!/bin/sh
# Idempotent setup for a fresh Debian 12 machine, as root: build-time tools for BPF
# objects (clang-19), peers for tests/benchmarks (bpftool, libbpf-dev), iproute2,
# and the package itself with its dev extras.
set -eu
cd "$(dirname "$0")/.."
need=""
# libbpf-tools, xdp-tools, libxdp1, xdp-tests, libknot13 and golang-github-cilium-ebpf-dev
# ship BPF objects other people compiled: the real-world corpus of tests/test_realworld.py.
# qemu-system-x86, busybox-static and zstd run the kernel matrix (tools/vm), which fetches
# the Debian kernels itself into .cache/kernels/.
# linux-source-6.12, libelf-dev and zlib1g-dev: the conformance suite (tools/conformance.py,
# tests/test_conformance.py) builds libbpf 1.5 and the BPF selftests from that tree.
for pkg in clang-19 llvm-19 bpftool libbpf-dev iproute2 gcc make systemtap-sdt-dev \
        binutils libbpf-tools xdp-tools libxdp1 xdp-tests libknot13 \
        golang-github-cilium-ebpf-dev qemu-system-x86 busybox-static zstd \
        linux-source-6.12 libelf-dev zlib1g-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $need >/dev/null
fi
PY=${PYTHON:-python3}
if ! $PY -c 'import ebpf, pytest, hypothesis, mypy, ruff, mkdocs, material, mkdocstrings' >/dev/null 2>&1 \
        || ! command -v ebpf >/dev/null 2>&1; then
    $PY -m pip install -q -e '.[dev,numpy]' 2>/dev/null \
        || $PY -m pip install -q --break-system-packages -e '.[dev,numpy]'
fi
