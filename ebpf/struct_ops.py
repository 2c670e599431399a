"""struct_ops kernel objects: kernel interfaces implemented in BPF (e.g. a TCP congestion
control).

An object declares the implementation as a variable in a ``.struct_ops`` (or
``.struct_ops.link``) section, its function pointers set to programs in
``SEC("struct_ops/...")``::

    SEC(".struct_ops.link")
    struct tcp_congestion_ops pycc = { .init = (void *)pycc_init, ..., .name = "pycc" };

Three steps, as in libbpf:

1. `struct_ops_maps(spec, source)` reads those variables from the ELF object
   into `StructOpsSpec`s (`ebpf.elf.struct_ops.read_struct_ops`, no kernel access)
   and tells each referenced program which kernel struct and member it implements
   (its BTF id and member index, needed at load: `resolve_struct_ops_programs`);
2. after the programs are loaded (`ebpf.Collection`), `StructOpsMap.create(ops,
   programs)` (or `load_struct_ops(spec, coll.programs)` for all of them) creates
   the BPF_MAP_TYPE_STRUCT_OPS map and prepares the kernel's value (the struct
   with program fds in its function pointers);
3. `ebpf.link.struct_ops(map)` registers it (a link: that part is in `ebpf.link`).

Whether the kernel can take a struct_ops implementation at all is
`ebpf.features.require_struct_ops`.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import struct
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, cast

from . import btf as _btf
from ._sys import caps as _caps
from ._sys.fd import FD
from ._sys.syscall import bpf
from ._sys.types import (
    BPF_F_LINK,
    BPF_F_VTYPE_BTF_OBJ_FD,
    BPF_MAP_CREATE,
    AttachType,
    MapCreateAttr,
    MapType,
    ProgramType,
)
from .btf.kernel import (
    STRUCT_OPS_VALUE_PREFIX,
    StructOpsType,
    find_struct_ops_type,
    open_module_btf,
)
from .elf.struct_ops import read_struct_ops
from .errors import (
    InvalidArgumentError,
    KeyNotFoundError,
    NotSupportedError,
    SyscallError,
)
from .maps import Map
from .spec import kernel_name
from .spec.struct_ops import StructOpsSpec

if TYPE_CHECKING:
    from .elffile import ELFFile
    from .programs import Program
    from .spec.collection import CollectionSpec

__all__ = [
    "VALUE_PREFIX",
    "StructOpsMap",
    "StructOpsSpec",
    "check_struct_ops_members",
    "kernel_struct",
    "load_struct_ops",
    "resolve_struct_ops_programs",
    "struct_ops_autoload",
    "struct_ops_error",
    "struct_ops_maps",
]

VALUE_PREFIX = STRUCT_OPS_VALUE_PREFIX
"""The kernel's struct holding a struct_ops value is ``struct bpf_struct_ops_<name>``."""


def resolve_struct_ops_programs(spec: CollectionSpec,
                                names: Collection[str] | None = None) -> None:
    """Give every STRUCT_OPS program of `spec` (or those named in `names`) whose
    ``attach_to`` is ``"<struct>:<member>"`` (see `read_struct_ops`) the kernel BTF id
    of the struct (`attach_btf_id`) and the member's index in the running kernel's
    struct (as `attach_type`, which is what BPF_PROG_LOAD expects for struct_ops
    programs).

    A program that the struct_ops variables to be created (`StructOpsSpec.autocreate`)
    refer to implements the member they put it in, also after
    ``spec.struct_ops[v].programs[member]`` was changed to another program (libbpf's
    "shadow" assignment); its ``attach_to`` is updated.

    A struct defined by a kernel module (found in the module's BTF when vmlinux has
    none of that name) leaves `attach_btf_id` 0: its id is one in the module's BTF,
    which the program load finds again (with the module's BTF object).

    Raises NotSupportedError when the kernel lacks the struct or the member,
    InvalidArgumentError when created variables put one program in two members.
    """
    targets: dict[str, str] = {}
    for ops in spec.struct_ops.values():
        for member, prog_name in ops.programs.items() if ops.autocreate else ():
            target = f"{ops.type_name}:{member}"
            if targets.setdefault(prog_name, target) != target:
                raise InvalidArgumentError(
                    f"program {prog_name!r} implements two different struct_ops members "
                    f"({targets[prog_name]} and {target}); use one program per member")
    for name, ps in spec.programs.items():
        if ps.type != ProgramType.STRUCT_OPS:
            continue
        if names is not None and name not in names:
            continue
        ps.attach_to = targets.get(name, ps.attach_to)
        if ":" not in ps.attach_to:
            continue
        type_name, _, member = ps.attach_to.partition(":")
        found = _struct_ops_type(type_name)
        index = next((i for i, m in enumerate(found.struct.members) if m.name == member),
                     None)
        if index is None:
            raise NotSupportedError(f"struct_ops member {type_name}.{member}",
                                    "the running kernel's struct has no such member")
        ps.attach_btf_id = 0 if found.module else found.struct_id
        ps.attach_type = cast(AttachType, index)


def struct_ops_autoload(spec: CollectionSpec) -> dict[str, bool]:
    """Whether each program that a struct_ops variable of `spec` refers to should
    load: exactly when one of the variables referring to it is created
    (`StructOpsSpec.autocreate`), whatever the program's own autoload (libbpf's
    rule). Programs no variable refers to are not in the result."""
    out: dict[str, bool] = {}
    for ops in spec.struct_ops.values():
        for prog_name in ops.programs.values():
            out[prog_name] = out.get(prog_name, False) or ops.autocreate
    return out


def check_struct_ops_members(ops: StructOpsSpec) -> None:
    """Check, before anything is loaded, that every member of `ops` the running
    kernel's struct lacks is zero/NULL (a flavored local type may declare more members
    than this kernel has). Raises NotSupportedError naming the first member set."""
    kstruct = _struct_ops_type(ops.type_name).struct
    _check_absent_members(ops, {m.name for m in kstruct.members})


def _check_absent_members(ops: StructOpsSpec, kernel_members: Collection[str]) -> None:
    for lm in ops.type.members:
        if lm.name in kernel_members:
            continue
        off = lm.offset_bits // 8
        if lm.name in ops.programs or any(ops.data[off:off + _btf.sizeof(lm.type)]):
            what = ("is set to program " + repr(ops.programs[lm.name])
                    if lm.name in ops.programs else "is not zero")
            raise NotSupportedError(
                f"struct_ops member {ops.type_name}.{lm.name}",
                f"struct_ops {ops.name!r}: the running kernel's struct has no such member "
                f"and it {what} (members the kernel lacks must be zero/NULL)")


def struct_ops_maps(spec: CollectionSpec, source: str | os.PathLike[str] | bytes | ELFFile
                    ) -> dict[str, StructOpsSpec]:
    """`read_struct_ops` then `resolve_struct_ops_programs`: after this the
    programs of `spec` load (``ebpf.Collection(spec)``), and `StructOpsMap.create`
    makes the maps from the returned specs."""
    out = read_struct_ops(source, spec)
    resolve_struct_ops_programs(spec)
    return out


def load_struct_ops(spec: CollectionSpec, programs: Mapping[str, Program]
                    ) -> dict[str, StructOpsMap]:
    """A `StructOpsMap` for every struct_ops variable of `spec` (``spec.struct_ops``),
    with the loaded `programs` (e.g. ``coll.programs``); closes what it made on error."""
    made: dict[str, StructOpsMap] = {}
    try:
        for name, ops in spec.struct_ops.items():
            made[name] = StructOpsMap.create(ops, programs)
    except BaseException:
        for m in made.values():
            m.close()
        raise
    return made


def kernel_struct(kernel: _btf.Spec, name: str) -> tuple[_btf.Struct, int]:
    """The kernel's ``struct <name>`` and its BTF id; NotSupportedError when it has none."""
    try:
        t = kernel.type_by_name(name, _btf.Struct)
    except KeyNotFoundError:
        raise NotSupportedError(f"struct_ops type {name}",
                                f"struct {name} is not in the kernel's BTF") from None
    assert isinstance(t, _btf.Struct)
    return t, kernel.type_id(t)


def _struct_ops_type(name: str) -> StructOpsType:
    """The kernel's struct_ops type `name` (vmlinux's, else a loaded module's);
    NotSupportedError when no kernel BTF has the struct."""
    found = find_struct_ops_type(name)
    if found is None:
        raise NotSupportedError(f"struct_ops type {name}",
                                f"struct {name} is not in the kernel's BTF (vmlinux or a "
                                "loaded module's)")
    return found


def _is_func_ptr(t: _btf.Type) -> bool:
    t = _btf.skip_typedefs(_btf.strip_qualifiers(t))
    if not isinstance(t, _btf.Pointer):
        return False
    return isinstance(_btf.skip_typedefs(_btf.strip_qualifiers(t.type)), _btf.FuncProto)


def _kernel_value(ops: StructOpsSpec, programs: Mapping[str, Program]
                  ) -> tuple[bytes, int, int, str]:
    """(value bytes, value size, value type id, module) of ``struct
    bpf_struct_ops_<name>``, laid out from the BTF that defines it (`module`: "" for
    vmlinux, else the module's split BTF, where the id is)."""
    found = _struct_ops_type(ops.type_name)
    kstruct, vt = found.struct, found.value
    if vt is None:
        raise NotSupportedError(f"struct_ops type {ops.type_name}",
                                f"the kernel has no struct {VALUE_PREFIX}{ops.type_name} "
                                "(it cannot be implemented in BPF)")
    vsize = _btf.sizeof(vt)
    data_off = vt.member("data").offset_bits // 8
    value = bytearray(vsize)
    local = {m.name: m for m in ops.type.members}
    for km in kstruct.members:
        lm = local.pop(km.name, None)
        if lm is None:
            continue
        koff = data_off + km.offset_bits // 8
        loff = lm.offset_bits // 8
        if _is_func_ptr(km.type):
            prog_name = ops.programs.get(km.name)
            if prog_name is None:
                if any(ops.data[loff:loff + 8]):
                    raise InvalidArgumentError(f"struct_ops {ops.name!r}: {km.name} is set "
                                               "but not to a program")
                continue
            prog = programs.get(prog_name)
            if prog is None:
                raise KeyNotFoundError(f"struct_ops {ops.name!r}: program {prog_name!r} "
                                       f"(for {km.name}) is not loaded")
            struct.pack_into("<Q", value, koff, prog.fileno())
            continue
        if km.bitfield_size or lm.bitfield_size:
            if any(ops.data[loff:loff + 8]):
                raise NotSupportedError(f"struct_ops bitfield member {km.name}",
                                        "bitfields cannot be initialized")
            continue
        ksize = _btf.sizeof(km.type)
        lsize = _btf.sizeof(lm.type)
        raw = ops.data[loff:loff + lsize]
        if ksize != lsize:
            if any(raw):
                raise InvalidArgumentError(
                    f"struct_ops {ops.name!r}: member {km.name} is {lsize} bytes here but "
                    f"{ksize} bytes in the kernel")
            continue
        value[koff:koff + ksize] = raw
    _check_absent_members(ops, {m.name for m in kstruct.members})  # (local: those left)
    return bytes(value), vsize, found.value_id, found.module


class StructOpsMap(Map):
    """A BPF_MAP_TYPE_STRUCT_OPS map with its kernel value prepared (program fds
    filled in), ready for `struct_ops()`."""

    __slots__ = ("_kern_value", "ops")
    ops: StructOpsSpec
    _kern_value: bytes

    @classmethod
    def create(cls, ops: StructOpsSpec, programs: Mapping[str, Program]) -> StructOpsMap:
        """Create the map for `ops`, with the programs of `programs` (name ->
        Program, e.g. ``coll.programs``) in its function pointers. Nothing is
        registered yet."""
        value, vsize, vtype_id, module = _kernel_value(ops, programs)
        btf_fd = _tiny_btf()
        module_btf: _btf.Handle | None = None
        try:
            attr = MapCreateAttr(map_type=int(MapType.STRUCT_OPS), key_size=4,
                                 value_size=vsize, max_entries=1,
                                 map_flags=BPF_F_LINK if ops.link else 0)
            attr.btf_fd = btf_fd.fileno()
            attr.btf_vmlinux_value_type_id = vtype_id
            if module:  # the value type is in the module's BTF (Linux 6.9+)
                module_btf = open_module_btf(module)
                attr.value_type_btf_obj_fd = module_btf.fileno()
                attr.map_flags |= BPF_F_VTYPE_BTF_OBJ_FD
            name = kernel_name(ops.name).encode()
            ctypes.memmove(ctypes.addressof(attr) + MapCreateAttr.map_name.offset, name,
                           len(name))
            try:
                fd = bpf(BPF_MAP_CREATE, attr)
            except SyscallError as e:
                raise struct_ops_error(e, f"create struct_ops map {ops.name!r} ({ops.type_name})") \
                    from None
        finally:
            btf_fd.close()
            if module_btf is not None:
                module_btf.close()
        m = cast(StructOpsMap, cls.from_fd(FD(fd, f"map {ops.name!r}")))
        m.ops = ops
        m._kern_value = value
        return m

    @property
    def value(self) -> bytes:
        """The kernel value written when registering."""
        return self._kern_value


def _tiny_btf() -> FD:
    """A BTF object (one int type): struct_ops map creation needs some BTF fd."""
    b = _btf.Builder()
    b.add(_btf.Int("int", 4, _btf.IntEncoding.SIGNED))
    h = _btf.Handle(b.marshal())
    return h.fd


def struct_ops_error(e: SyscallError, what: str) -> SyscallError:
    """`e`, from creating or registering a struct_ops map, as the error that says why
    (a kernel refusing struct_ops by policy, a kernel without struct_ops)."""
    from .errors import KernelPolicyError  # on a failure only (process start)
    if isinstance(e, KernelPolicyError):  # EPERM with every capability it needs
        return _caps.eperm_error(what, err=e.errno, prog_type=ProgramType.STRUCT_OPS,
                                 feature="struct_ops", policy_message=(
            f"{what}: this kernel refuses struct_ops by policy (EPERM although the process "
            "has {held}), as it refuses trampoline programs; use a kernel with BPF "
            "trampolines"))
    if e.errno in (_errno.EOPNOTSUPP, 524):
        exc = NotSupportedError("struct_ops", errno=e.errno)
        exc.strerror = f"{what}: struct_ops is not supported by this kernel ({e.strerror})"
        exc.args = (e.errno, exc.strerror)
        return exc
    e.strerror = f"{what}: {e.strerror}"
    e.args = (e.errno, e.strerror)
    return e

