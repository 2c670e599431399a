# Developer entry points. The kernel matrix (tools/vm) needs: qemu-system-x86,
# busybox-static (apt) and the Debian kernel packages it downloads itself into
# .cache/kernels/ with apt-get download (never installed into /boot).

PYTHON ?= python3
# Extra options for tools.vm run, e.g. KMATRIX_ARGS="--kernels 6.12 --timeout 600"
KMATRIX_ARGS ?=
# pytest arguments for the kernel matrix, e.g. PYTEST_ARGS="tests/test_maps.py -k hash"
PYTEST_ARGS ?=

.PHONY: test test-kernels test-all kernels vm-deps clean-kernels

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
