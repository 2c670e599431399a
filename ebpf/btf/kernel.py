"""The running kernel's BTF (vmlinux and modules), parsed once per process."""

from __future__ import annotations

import _thread
import errno
import mmap
import os

import ebpf._lazyattr as _lazyattr

from ..errors import NotSupportedError, SyscallError
from .spec import Spec
from .types import Struct, Type

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from ._kernel_types import KernelType as KernelType
    from ._kernel_types import StructOpsType as StructOpsType
    from .handle import Handle

VMLINUX = "/sys/kernel/btf/vmlinux"
_lock = _thread.allocate_lock()
_kernel: Spec | None = None
_modules: dict[str, Spec] = {}
_module_btf_ids: dict[str, int] = {}  # module name -> id of its kernel BTF object


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
            # the index cache once the kernel's BTF is read
            from .cache import load_kernel_indexed

            _kernel = load_kernel_indexed(data)
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
    """Names of the kernel modules that have BTF (loaded now)."""
    try:
        names = os.listdir(os.path.dirname(VMLINUX))
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n != "vmlinux")


def find_kernel_type(name: str, kinds: tuple[type[Type], ...], module: str | None = None
                     ) -> KernelType | None:
    """The first type called `name` of one of `kinds` (tried in order) in vmlinux,
    else in the BTF of the loaded modules (by module name); None when none has it.
    With `module`, only in that module's BTF ("vmlinux": only in vmlinux's).

    A module's own types only: a module's split BTF also answers with vmlinux's."""
    kernel = load_kernel_spec()
    if module is None or module == "vmlinux":
        found = _own_type(kernel, name, kinds, 1)
        if found is not None:
            from ._kernel_types import KernelType  # its class on first use (process start)

            return KernelType("", *found)
        if module is not None:
            return None
    for mod in kernel_module_names() if module is None else [module]:
        try:
            spec = load_kernel_module_spec(mod)
        except NotSupportedError:  # unloaded since it was listed (or not loaded at all)
            continue
        found = _own_type(spec, name, kinds, len(kernel))
        if found is not None:
            from ._kernel_types import KernelType  # (as above)

            return KernelType(mod, *found)
    return None


STRUCT_OPS_VALUE_PREFIX = "bpf_struct_ops_"
"""The kernel's struct holding a struct_ops value is ``struct bpf_struct_ops_<name>``."""


def find_struct_ops_type(name: str) -> StructOpsType | None:
    """The struct_ops type ``struct <name>``: vmlinux's if vmlinux has the struct,
    else that of the first loaded module whose BTF has ``struct
    bpf_struct_ops_<name>`` (a module defining a struct_ops type), else the first
    module's with the struct; None when no BTF has ``struct <name>``."""
    found = find_kernel_type(name, (Struct,), "vmlinux")
    if found is None:
        value = find_kernel_type(STRUCT_OPS_VALUE_PREFIX + name, (Struct,))
        if value is not None:
            found = find_kernel_type(name, (Struct,), value.module or "vmlinux")
    if found is None:
        found = find_kernel_type(name, (Struct,))
    if found is None:
        return None
    spec = load_kernel_module_spec(found.module) if found.module else load_kernel_spec()
    assert isinstance(found.type, Struct)
    value = find_kernel_type(STRUCT_OPS_VALUE_PREFIX + name, (Struct,),
                             found.module or "vmlinux")
    from ._kernel_types import StructOpsType  # its class on first use (process start)

    if value is None:
        return StructOpsType(found.module, spec, found.type, found.type_id, None, 0)
    assert isinstance(value.type, Struct)
    return StructOpsType(found.module, spec, found.type, found.type_id, value.type,
                         value.type_id)


def _own_type(spec: Spec, name: str, kinds: tuple[type[Type], ...],
              first_id: int) -> tuple[int, Type] | None:
    ids = [i for i in spec.ids_by_name(name) if i >= first_id]
    for kind in kinds:
        for i in ids:
            t = spec.type_by_id(i)
            if isinstance(t, kind):
                return i, t
    return None


def open_module_btf(module: str) -> Handle:
    """A new fd of the kernel's BTF object of the loaded module `module`: the
    object whose name is the module's among the kernel BTF objects, found by id
    (BPF_BTF_GET_NEXT_ID, BPF_BTF_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD). The id is
    remembered and checked again on the next call (a module reloaded has a new one).
    NotSupportedError when no loaded module of that name has BTF."""
    with _lock:
        known = _module_btf_ids.get(module)
    if known is not None:
        handle = _open_kernel_btf(known, module)
        if handle is not None:
            return handle
    from .._sys.btf import btf_get_next_id  # syscalls only here: parsing BTF needs none

    btf_id = 0
    while True:
        next_id = btf_get_next_id(btf_id)
        if next_id is None:
            break
        btf_id = next_id
        handle = _open_kernel_btf(btf_id, module)
        if handle is not None:
            with _lock:
                _module_btf_ids[module] = btf_id
            return handle
    with _lock:
        _module_btf_ids.pop(module, None)
    raise NotSupportedError(f"BTF of kernel module {module!r}",
                            "no kernel BTF object has that name (is the module loaded?)")


def _open_kernel_btf(btf_id: int, module: str) -> Handle | None:
    """The BTF object `btf_id` when it is the kernel's BTF of `module`, else None."""
    from .handle import Handle  # BTF objects by fd only when a program uses module BTF

    try:
        handle = Handle.from_id(btf_id)
    except SyscallError as e:
        if e.errno == errno.ENOENT:  # freed since it was listed
            return None
        raise
    try:
        info = handle.info()
    except BaseException:
        handle.close()
        raise
    if info.kernel_btf and info.name == module:
        return handle
    handle.close()
    return None


# KernelType and StructOpsType on first use (process start): see _kernel_types.py
__getattr__ = _lazyattr.lazy_attributes(globals(), {
    "KernelType": "._kernel_types", "StructOpsType": "._kernel_types"})
