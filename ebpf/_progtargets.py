"""What a program load looks up in, or declares for, the kernel's BTF beyond the
object's own types: kernel symbols (kfuncs and ksyms, in vmlinux or a module:
`kernel_btf_id`), the extern kfunc declarations made loadable (`declare_extern_func`),
and the struct and member a struct_ops program implements (`struct_ops_target`). A
module of its own that `ebpf.programs` imports only for programs that need it, so that
other loads do not unmarshal it (process start, issue 15)."""

from __future__ import annotations

from .errors import KeyNotFoundError, NotSupportedError

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .btf import Func as BTFFunc
    from .btf.builder import Builder
    from .spec.programs import ProgramSpec

__all__ = ["declare_extern_func", "kernel_btf_id", "struct_ops_target"]


def kernel_btf_id(name: str, kinds: Sequence[str], prog_name: str) -> tuple[str, int]:
    """(module, BTF id) of the kernel symbol `name` of one of `kinds`: in vmlinux
    (module ""), else in a loaded module's BTF."""
    from . import btf  # BTF code on first use: programs without BTF never load it
    from .btf.kernel import find_kernel_type  # (same)

    found = find_kernel_type(name, tuple(getattr(btf, k) for k in kinds))
    if found is None:
        raise KeyNotFoundError(
            f"program {prog_name!r} references kernel symbol {name!r}, which is neither in "
            "vmlinux BTF nor in the BTF of a loaded module (is its module loaded?)")
    return found.module, found.type_id


def struct_ops_target(spec: ProgramSpec) -> tuple[int, int, str]:
    """(kernel BTF id of the struct, index of the member, module) for a struct_ops
    program whose `attach_to` is ``"<struct>:<member>"`` (set by the ELF loader from the
    object's ``.struct_ops`` variables): what BPF_PROG_LOAD wants as attach_btf_id and
    expected_attach_type, as libbpf fills them in at load. `module` is "" for a struct
    of vmlinux, else the module defining it (the id is one in its BTF, whose object
    goes in attach_btf_obj_fd)."""
    from .btf.kernel import find_struct_ops_type  # BTF code on first use (see above)

    type_name, _, member = spec.attach_to.partition(":")
    found = find_struct_ops_type(type_name)
    if found is None:
        raise NotSupportedError(f"struct_ops type {type_name}",
                                f"struct {type_name} is not in the kernel's BTF (vmlinux "
                                "or a loaded module's)")
    for index, m in enumerate(found.struct.members):
        if m.name == member:
            return found.struct_id, index, found.module
    raise NotSupportedError(f"struct_ops member {type_name}.{member}",
                            "the running kernel's struct has no such member")


def declare_extern_func(b: Builder, tid: int, func: BTFFunc) -> None:
    """Make the extern FUNC `func` (a kfunc declared in .ksyms, id `tid`) acceptable
    to BPF_BTF_LOAD, keeping its id: the kernel allows only static and global linkage
    (extern is "Invalid func linkage") and wants every parameter of a FUNC's
    prototype named ("Invalid arg#N"). The prototype is replaced in place when it
    has unnamed parameters; a trailing void parameter (varargs) stays unnamed."""
    from . import btf  # BTF code on first use: programs without BTF never load it

    proto = func.type
    if isinstance(proto, btf.FuncProto) and any(
            not p.name and not isinstance(p.type, btf.Void) for p in proto.params):
        named = btf.FuncProto(proto.return_type, [
            btf.FuncParam(p.name or ("" if isinstance(p.type, btf.Void) else f"arg{i}"),
                          p.type)
            for i, p in enumerate(proto.params)])
        b.replace(b.type_id(proto), named)
    b.replace(tid, btf.Func(func.name, proto, btf.Linkage.GLOBAL))
