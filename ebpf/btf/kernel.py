"""The running kernel's BTF (vmlinux and modules), parsed once per process."""

from __future__ import annotations

import _thread
import mmap
import os

from ..errors import NotSupportedError
from .spec import Spec

VMLINUX = "/sys/kernel/btf/vmlinux"
_lock = _thread.allocate_lock()
_kernel: Spec | None = None
_modules: dict[str, Spec] = {}


def read_btf_file(path: str) -> bytes | mmap.mmap:
    """The contents of a BTF file: a private read-only mapping when the file can be
    mapped (sysfs BTF files can, and that avoids copying megabytes), else bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size > 0:
            try:
                mm = mmap.mmap(fd, size, mmap.MAP_PRIVATE, mmap.PROT_READ)
            except (OSError, ValueError):
                pass
            else:
                if len(mm) == size:
                    return mm
                mm.close()
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_kernel_spec() -> Spec:
    """The running kernel's vmlinux BTF, indexed lazily and cached for the process."""
    global _kernel
    with _lock:
        if _kernel is None:
            try:
                data = read_btf_file(VMLINUX)
            except FileNotFoundError:
                raise NotSupportedError(
                    "kernel BTF", f"{VMLINUX} is missing (CONFIG_DEBUG_INFO_BTF); "
                    "pass an external BTF file instead") from None
            from .cache import load_indexed  # the index cache once the kernel's BTF is read

            _kernel = load_indexed(data)
        return _kernel


def load_kernel_module_spec(module: str) -> Spec:
    """BTF of a loaded kernel module (split BTF on top of vmlinux)."""
    base = load_kernel_spec()
    with _lock:
        spec = _modules.get(module)
        if spec is None:
            path = os.path.join(os.path.dirname(VMLINUX), module)
            try:
                spec = Spec(read_btf_file(path), base)
            except FileNotFoundError:
                raise NotSupportedError(f"BTF of kernel module {module!r}",
                                        f"{path} is missing") from None
            _modules[module] = spec
        return spec


def kernel_module_names() -> list[str]:
    """Names of the kernel modules that have BTF."""
    try:
        names = os.listdir(os.path.dirname(VMLINUX))
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n != "vmlinux")
