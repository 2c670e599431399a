"""Kernel matrix: boot Debian kernels in QEMU (TCG) and run the kernel-dependent tests.

    python3 -m tools.vm fetch            # download + unpack the matrix kernels
    python3 -m tools.vm run              # host + every kernel; prints the table
    python3 -m tools.vm shell 6.12 -- uname -a

See tools/vm/runner.py for the details and docs in the Makefile target test-kernels.
"""
