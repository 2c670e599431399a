# Developer entry points. The kernel matrix (tools/vm) needs: qemu-system-x86,
# busybox-static (apt) and the Debian kernel packages it downloads itself into
# .cache/kernels/ with apt-get download (never installed into /boot).

PYTHON ?= python3
# Extra options for tools.vm run, e.g. KMATRIX_ARGS="--kernels 6.12 --timeout 600"
KMATRIX_ARGS ?=
# Extra options for tools/conformance.py, e.g. CONFORMANCE_ARGS="--objects 'iters*' -j1"
CONFORMANCE_ARGS ?=
# pytest arguments for the kernel matrix, e.g. PYTEST_ARGS="tests/test_maps.py -k hash"
PYTEST_ARGS ?=

.PHONY: test test-kernels test-all kernels vm-deps clean-kernels conformance conformance-vm core-differential bench

test:
	$(PYTHON) -m pytest

# The kernel-dependent tests (-m kernel) on the host kernel natively and on each kernel of
# the matrix (Debian 6.1 and 6.12) in QEMU/TCG; prints kernel x passed/skipped/failed.
# Exit status: 0 all green, 1 test failures/crashes/timeouts, 3 infrastructure error.
test-kernels:
	$(PYTHON) -m tools.vm run $(KMATRIX_ARGS) $(if $(PYTEST_ARGS),-- $(PYTEST_ARGS))

test-all: test test-kernels

# Download + unpack the matrix kernels into .cache/kernels/ (test-kernels does it too).
kernels:
	$(PYTHON) -m tools.vm fetch

# Host packages the kernel matrix needs (Debian 12).
vm-deps:
	apt-get install -y -q --no-install-recommends qemu-system-x86 busybox-static

clean-kernels:
	rm -rf .cache/kernels .cache/kernelmatrix

# The conformance suite on the whole corpus: the kernel 6.12 BPF selftests (~800 objects,
# ~3500 programs) loaded program by program with libbpf 1.5 and with ebpf; writes
# docs/conformance.md and .cache/conformance/results.json. About 12 minutes on 2 CPUs the
# first time (unpack, libbpf, ~6 minutes of clang), then about 6 minutes (loading). Exit 1
# when ebpf fails to load a program libbpf loads. The test command runs a subset
# (tests/test_conformance.py).
conformance:
	nice -n 15 $(PYTHON) tools/conformance.py --all -j2 --markdown docs/conformance.md $(CONFORMANCE_ARGS)

# The conformance comparison for what this host refuses by policy (trampolines, struct_ops,
# LSM, arena, some iterators): the objects holding such programs in the host's newest
# whole-corpus results (.cache/conformance/results.json of `make conformance`) are loaded with both
# loaders in the 6.12 guest of the kernel matrix (compiled on the host, not in the
# guest), with the selftests' bpf_testmod built against Debian's linux-headers of the
# guest kernel (apt-get installs them) and inserted there; writes
# .cache/conformance/results-vm-6.12.json and the VM section of docs/conformance.md.
# About 7 minutes of one CPU (QEMU TCG, 225 objects, 1010 programs).
# Not part of the test command.
conformance-vm:
	nice -n 15 $(PYTHON) tools/conformance.py --vm 6.12 --markdown docs/conformance.md $(CONFORMANCE_ARGS)

# The CO-RE differential (ebpf.btf.core vs libbpf 1.5, relocation by relocation) over every
# object of the kernel 6.12 selftests that has CO-RE relocations, against the running
# kernel and the matrix kernels' BTF (the test command runs the conformance subset's).
core-differential:
	EBPF_CORE_SELFTESTS=all nice -n 15 $(PYTHON) -m pytest -q -s tests/test_core_differential.py -k selftests

# Every benchmark in bench/ (each under nice, in its own process) and one JSON summary of
# every ratio and whether it meets its target (bench/targets.json): .cache/bench/summary.json.
# Takes a long time (soak alone is minutes); BENCH_ARGS="--only map_ops,templates" for some.
BENCH_ARGS ?=
bench:
	$(PYTHON) bench/run_all.py $(BENCH_ARGS)
