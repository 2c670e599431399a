"""struct_ops: kernel interfaces implemented in BPF (e.g. a TCP congestion control).

An object declares the implementation as a variable in a ``.struct_ops`` (or
``.struct_ops.link``) section, its function pointers set to programs in
``SEC("struct_ops/...")``::

    SEC(".struct_ops.link")
    struct tcp_congestion_ops pycc = { .init = (void *)pycc_init, ..., .name = "pycc" };

Three steps, as in libbpf:

1. `struct_ops_maps(spec, source)` reads those variables from the ELF object
   into `StructOpsSpec`s (`read_struct_ops`, no kernel access) and tells each
   referenced program which kernel struct and member it implements (its BTF id
   and member index, needed at load: `resolve_struct_ops_programs`);
2. after the programs are loaded (`ebpf.Collection`), `StructOpsMap.create(ops,
   programs)` (or `load_struct_ops(spec, coll.programs)` for all of them) creates
   the BPF_MAP_TYPE_STRUCT_OPS map and prepares the kernel's value (the struct
   with program fds in its function pointers);
3. `struct_ops(map)` registers it: for ``.struct_ops.link`` maps a bpf_link
   (closing it unregisters, `update(new_map)` swaps implementations
   atomically), for plain ``.struct_ops`` maps the map update itself (closing
   the returned link deletes the element, which unregisters it).
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from .. import btf as _btf
from .._sys import caps as _caps
from .._sys.fd import FD
from .._sys.syscall import bpf
from .._sys.types import (
    BPF_F_LINK,
    AttachType,
    Cmd,
    LinkCreateAttr,
    MapCreateAttr,
    MapElemAttr,
    MapType,
    ProgramType,
)
from ..elf.struct_ops import StructOpsSpec, read_struct_ops
from ..errors import (
    InvalidArgumentError,
    KernelPolicyError,
    KeyNotFoundError,
    NotSupportedError,
    SyscallError,
)
from ..maps import Map
from .base import Link

if TYPE_CHECKING:
    from ..collection import CollectionSpec
    from ..elffile import ELFFile
    from ..programs import Program

__all__ = ["StructOpsLink", "StructOpsMap", "StructOpsSpec", "load_struct_ops",
           "read_struct_ops", "require_struct_ops", "resolve_struct_ops_programs",
           "struct_ops", "struct_ops_maps"]

_VALUE_PREFIX = "bpf_struct_ops_"


def resolve_struct_ops_programs(spec: CollectionSpec) -> None:
    """Give every STRUCT_OPS program of `spec` whose ``attach_to`` is
    ``"<struct>:<member>"`` (see `read_struct_ops`) the kernel BTF id of the struct
    (`attach_btf_id`) and the member's index in the running kernel's struct (as
    `attach_type`, which is what BPF_PROG_LOAD expects for struct_ops programs).

    Raises NotSupportedError when the kernel lacks the struct or the member.
    """
    kernel = _btf.load_kernel_spec()
    for ps in spec.programs.values():
        if ps.type != ProgramType.STRUCT_OPS or ":" not in ps.attach_to:
            continue
        type_name, _, member = ps.attach_to.partition(":")
        kstruct, kid = _kernel_struct(kernel, type_name)
        index = next((i for i, m in enumerate(kstruct.members) if m.name == member), None)
        if index is None:
            raise NotSupportedError(f"struct_ops member {type_name}.{member}",
                                    "the running kernel's struct has no such member")
        ps.attach_btf_id = kid
        ps.attach_type = cast(AttachType, index)


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


def _kernel_struct(kernel: _btf.Spec, name: str) -> tuple[_btf.Struct, int]:
    try:
        t = kernel.type_by_name(name, _btf.Struct)
    except KeyNotFoundError:
        raise NotSupportedError(f"struct_ops type {name}",
                                f"struct {name} is not in the kernel's BTF") from None
    assert isinstance(t, _btf.Struct)
    return t, kernel.type_id(t)


def _is_func_ptr(t: _btf.Type) -> bool:
    t = _btf.skip_typedefs(_btf.strip_qualifiers(t))
    if not isinstance(t, _btf.Pointer):
        return False
    return isinstance(_btf.skip_typedefs(_btf.strip_qualifiers(t.type)), _btf.FuncProto)


def _kernel_value(ops: StructOpsSpec, programs: Mapping[str, Program]
                  ) -> tuple[bytes, int, int]:
    """(value bytes, value size, value type id) of ``struct bpf_struct_ops_<name>``."""
    kernel = _btf.load_kernel_spec()
    kstruct, _ = _kernel_struct(kernel, ops.type_name)
    try:
        vt = kernel.type_by_name(_VALUE_PREFIX + ops.type_name, _btf.Struct)
    except KeyNotFoundError:
        raise NotSupportedError(f"struct_ops type {ops.type_name}",
                                f"the kernel has no struct {_VALUE_PREFIX}{ops.type_name} "
                                "(it cannot be implemented in BPF)") from None
    assert isinstance(vt, _btf.Struct)
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
    for name, lm in local.items():  # members the kernel does not have
        off = lm.offset_bits // 8
        if name in ops.programs or any(ops.data[off:off + _btf.sizeof(lm.type)]):
            raise NotSupportedError(f"struct_ops member {ops.type_name}.{name}",
                                    "the running kernel's struct has no such member")
    return bytes(value), vsize, kernel.type_id(vt)


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
        value, vsize, vtype_id = _kernel_value(ops, programs)
        btf_fd = _tiny_btf()
        try:
            attr = MapCreateAttr(map_type=int(MapType.STRUCT_OPS), key_size=4,
                                 value_size=vsize, max_entries=1,
                                 map_flags=BPF_F_LINK if ops.link else 0)
            attr.btf_fd = btf_fd.fileno()
            attr.btf_vmlinux_value_type_id = vtype_id
            name = "".join(c for c in ops.name if c.isalnum() or c in "_.")[:15].encode()
            ctypes.memmove(ctypes.addressof(attr) + MapCreateAttr.map_name.offset, name,
                           len(name))
            try:
                fd = bpf(Cmd.MAP_CREATE, attr)
            except SyscallError as e:
                raise _refused(e, f"create struct_ops map {ops.name!r} ({ops.type_name})") \
                    from None
        finally:
            btf_fd.close()
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


def _refused(e: SyscallError, what: str) -> SyscallError:
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


class StructOpsLink(Link):
    """A registered struct_ops map. `close()` unregisters it (unless the bpf_link is
    pinned). With a bpf_link (``.struct_ops.link`` maps), `update(new_map)` replaces
    the implementation atomically; `info()`/`pin()` work as for other links."""

    def __init__(self, fd: FD | None, map: Map) -> None:
        super().__init__(fd, None)
        self.map: Map | None = map
        self._registered = True

    def update(self, map: Map, *, old: Map | None = None) -> None:  # type: ignore[override]
        """Swap in another struct_ops map of the same type (bpf_link maps only)."""
        from .._sys import link as _syslink
        from .._sys.consts import BPF_F_REPLACE

        if self._fd is None:
            raise NotSupportedError("updating a struct_ops map registered without a link",
                                    "declare it in SEC(\".struct_ops.link\")")
        _write_value(map, allow_busy=True)
        _syslink.link_update(self._fd.fileno(), map.fileno(),
                             old.fileno() if old is not None else 0,
                             BPF_F_REPLACE if old is not None else 0)
        self.map = map

    def detach(self) -> None:
        if self._fd is not None:
            super().detach()
        else:
            self.close()

    def close(self) -> None:
        if not self._registered:
            return
        self._registered = False
        if self._fd is not None:
            self._fd.close()
            return
        m = self.map
        if m is not None and not m.closed:
            attr = MapElemAttr(map_fd=m.fileno())
            key = ctypes.c_uint32(0)
            attr.key = ctypes.addressof(key)
            try:
                bpf(Cmd.MAP_DELETE_ELEM, attr)
            except SyscallError as e:
                if e.errno != _errno.ENOENT:
                    raise

    @property
    def closed(self) -> bool:
        return not self._registered

    def __repr__(self) -> str:
        name = self.map.name if self.map is not None else "?"
        state = "closed" if self.closed else "registered"
        return f"<StructOpsLink {name!r} {state}>"


def _write_value(map: Map, value: bytes | None = None, allow_busy: bool = False) -> None:
    if value is None:
        value = getattr(map, "_kern_value", None)
    if value is None:
        raise InvalidArgumentError(f"struct_ops: map {map.name!r} has no prepared value; "
                                   "create it with StructOpsMap.create or pass value=")
    buf = ctypes.create_string_buffer(value, len(value))
    key = ctypes.c_uint32(0)
    attr = MapElemAttr(map_fd=map.fileno())
    attr.key = ctypes.addressof(key)
    attr.value = ctypes.addressof(buf)
    try:
        bpf(Cmd.MAP_UPDATE_ELEM, attr)
    except SyscallError as e:
        if allow_busy and e.errno == _errno.EBUSY:
            return  # already prepared (a link map is written once)
        raise _refused(e, f"register struct_ops map {map.name!r}") from None


def struct_ops(map: Map, *, value: bytes | None = None) -> StructOpsLink:
    """Register the struct_ops `map` (a `StructOpsMap`, or any STRUCT_OPS map with
    its kernel `value`). ``.struct_ops.link`` maps get a bpf_link; plain ones are
    registered by the map update and unregistered when the returned link closes.

    Raises NotSupportedError when the kernel refuses struct_ops.
    """
    if map.type != MapType.STRUCT_OPS:
        raise InvalidArgumentError(f"struct_ops: map {map.name!r} is {map.type.name}, not "
                                   "STRUCT_OPS")
    is_link = bool(int(map.flags) & BPF_F_LINK)
    _write_value(map, value, allow_busy=is_link)
    if not is_link:
        return StructOpsLink(None, map)
    from .._sys import link as _syslink

    attr = LinkCreateAttr(attach_type=int(AttachType.STRUCT_OPS))
    attr.map_fd = map.fileno()
    try:
        fd = FD(_syslink.link_create(attr), "link")
    except SyscallError as e:
        raise _refused(e, f"register struct_ops map {map.name!r}") from None
    return StructOpsLink(fd, map)


def require_struct_ops(type_name: str = "tcp_congestion_ops", *, link: bool = False) -> None:
    """Raise NotSupportedError (saying why) unless the kernel can take a BPF
    implementation of `type_name`: STRUCT_OPS programs and maps, and
    ``struct bpf_struct_ops_<type_name>`` in its BTF; with `link`, also struct_ops
    maps registered through a bpf_link (``.struct_ops.link``, 6.4+)."""
    from .. import features

    features.require_program_type(ProgramType.STRUCT_OPS)
    features.require_map_type(MapType.STRUCT_OPS)
    kernel = _btf.load_kernel_spec()
    _kernel_struct(kernel, type_name)
    try:
        vt = kernel.type_by_name(_VALUE_PREFIX + type_name, _btf.Struct)
    except KeyNotFoundError:
        raise NotSupportedError(f"struct_ops type {type_name}",
                                f"no struct {_VALUE_PREFIX}{type_name} in the kernel's "
                                "BTF") from None
    if link and not _probe_link_map(_btf.sizeof(vt), kernel.type_id(vt)):
        raise NotSupportedError("struct_ops bpf_links",
                                "BPF_F_LINK struct_ops maps need Linux 6.4+")


_link_probe: dict[int, bool] = {}


def _probe_link_map(vsize: int, vtype_id: int) -> bool:
    """Whether a BPF_F_LINK struct_ops map of this value type can be created."""
    if vtype_id in _link_probe:
        return _link_probe[vtype_id]
    btf_fd = _tiny_btf()
    try:
        attr = MapCreateAttr(map_type=int(MapType.STRUCT_OPS), key_size=4, value_size=vsize,
                             max_entries=1, map_flags=BPF_F_LINK)
        attr.btf_fd = btf_fd.fileno()
        attr.btf_vmlinux_value_type_id = vtype_id
        try:
            os.close(bpf(Cmd.MAP_CREATE, attr))
            ok = True
        except SyscallError as e:
            if e.errno != _errno.EINVAL:
                raise
            ok = False
    finally:
        btf_fd.close()
    _link_probe[vtype_id] = ok
    return ok
