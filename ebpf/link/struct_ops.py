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
import dataclasses
import errno as _errno
import os
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from .. import btf as _btf
from .._sys import prog as _sysprog
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
from ..errors import (
    ELFError,
    InvalidArgumentError,
    KeyNotFoundError,
    NotSupportedError,
    PermissionError,
    SyscallError,
)
from ..maps import Map
from .base import Link

if TYPE_CHECKING:
    from ..collection import CollectionSpec
    from ..elf.reader import ELFFile
    from ..programs import Program

__all__ = ["StructOpsLink", "StructOpsMap", "StructOpsSpec", "load_struct_ops",
           "read_struct_ops", "require_struct_ops", "resolve_struct_ops_programs",
           "struct_ops", "struct_ops_maps"]

_STRUCT_OPS_SECTIONS = (".struct_ops", ".struct_ops.link")
_VALUE_PREFIX = "bpf_struct_ops_"
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
STT_SECTION = 3


@dataclasses.dataclass
class StructOpsSpec:
    """One struct_ops variable of an object: the kernel struct it implements
    (`type_name`, e.g. "tcp_congestion_ops"), its local BTF type, its initial bytes,
    which program implements which function pointer member (`programs`: member name ->
    program name), and whether it registers through a bpf_link (``.struct_ops.link``).
    """

    name: str
    type_name: str
    type: _btf.Struct
    data: bytes
    programs: dict[str, str]
    link: bool
    section: str

    def copy(self) -> StructOpsSpec:
        return dataclasses.replace(self, programs=dict(self.programs))


def read_struct_ops(source: str | os.PathLike[str] | bytes | ELFFile, spec: CollectionSpec
                    ) -> dict[str, StructOpsSpec]:
    """Read the ``.struct_ops``/``.struct_ops.link`` variables of the ELF object
    `source` (the file `spec` was parsed from: a path, its bytes or an open
    `ELFFile`). No kernel access: each program a variable refers to only gets
    ``attach_to = "<struct>:<member>"``; `resolve_struct_ops_programs` adds the
    kernel's ids before load. The result is also stored as ``spec.struct_ops``.

    Raises ELFError for malformed sections.
    """
    from ..elf.reader import ELFFile

    if isinstance(source, ELFFile):
        out = _read(source, spec)
    else:
        elf = ELFFile(bytes(source) if isinstance(source, (bytes, bytearray, memoryview))
                      else source)
        try:
            out = _read(elf, spec)
        finally:
            elf.close()
    for ops in out.values():
        for member, prog_name in ops.programs.items():
            try:
                ps = spec.programs[prog_name]
            except KeyError:
                raise ELFError(f"struct_ops {ops.name!r}: member {member!r} refers to "
                               f"{prog_name!r}, which is not a program", ops.section) from None
            if ps.type != ProgramType.STRUCT_OPS:
                raise ELFError(f"struct_ops {ops.name!r}: program {prog_name!r} for "
                               f"{member!r} is not in a struct_ops section", ops.section)
            target = f"{ops.type_name}:{member}"
            # (the section name's suffix, "struct_ops/<name>", is only a label)
            if ":" in ps.attach_to and ps.attach_to != target:
                raise ELFError(f"program {prog_name!r} implements two different struct_ops "
                               f"members ({ps.attach_to} and {target}); use one program per "
                               "member", ops.section)
            ps.attach_to = target
    spec.struct_ops = out
    return out


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


def _read(elf: Any, spec: CollectionSpec) -> dict[str, StructOpsSpec]:
    out: dict[str, StructOpsSpec] = {}
    secs = [s for s in elf.sections if s.name in _STRUCT_OPS_SECTIONS and s.size]
    if not secs:
        return out
    if spec.btf is None:
        raise ELFError("object has struct_ops variables but no BTF", secs[0].name)
    symbols = elf.symbols()
    # functions by (section index, offset)
    funcs = {(s.section_index, s.value): s.name for s in symbols if s.type == 2 and s.name}
    for sec in secs:
        ds = next((t for t in spec.btf if isinstance(t, _btf.Datasec) and t.name == sec.name),
                  None)
        if ds is None:
            raise ELFError(f"no BTF DATASEC for {sec.name}", sec.name)
        data = bytes(sec.data())
        vars_: list[tuple[int, int, StructOpsSpec]] = []
        for vs in ds.vars:
            var = vs.type
            if not isinstance(var, _btf.Var):
                continue
            st = _btf.skip_typedefs(_btf.strip_qualifiers(var.type))
            if not isinstance(st, _btf.Struct):
                raise ELFError(f"struct_ops variable {var.name!r} is not a struct", sec.name,
                               vs.offset)
            # the offset may be missing from the DATASEC: take it from the symbol
            off = vs.offset
            for s in symbols:
                if s.name == var.name and s.section_index == sec.index:
                    off = s.value
                    break
            size = _btf.sizeof(st)
            if off + size > len(data):
                raise ELFError(f"struct_ops variable {var.name!r} extends past the section",
                               sec.name, off)
            ops = StructOpsSpec(name=var.name, type_name=st.name, type=st,
                                data=data[off:off + size], programs={},
                                link=sec.name.endswith(".link"), section=sec.name)
            out[var.name] = ops
            vars_.append((off, size, ops))
        for rel in elf.relocations(sec):
            if rel.type not in (R_BPF_64_64, R_BPF_64_ABS64):
                raise ELFError(f"unsupported relocation type {rel.type}", sec.name, rel.offset)
            owner = next(((o, v) for o, n, v in vars_ if o <= rel.offset < o + n), None)
            if owner is None:
                raise ELFError("relocation outside any struct_ops variable", sec.name,
                               rel.offset)
            sym = symbols[rel.symbol]
            if sym.type == STT_SECTION:
                addend = struct.unpack_from("<Q", data, rel.offset)[0]
                fname = funcs.get((sym.section_index, addend))
            else:
                fname = funcs.get((sym.section_index, sym.value), sym.name or None)
            if not fname:
                raise ELFError("struct_ops relocation does not point at a program", sec.name,
                               rel.offset)
            base, ops = owner
            bit = (rel.offset - base) * 8
            member = next((m for m in ops.type.members if m.offset_bits == bit), None)
            if member is None:
                raise ELFError(f"struct_ops {ops.name!r}: relocation at offset "
                               f"{rel.offset - base} is not a member", sec.name, rel.offset)
            ops.programs[member.name] = fname
    return out


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
    if isinstance(e, PermissionError) and _sysprog.bpf_privileged():
        exc = NotSupportedError("struct_ops", errno=e.errno)
        exc.strerror = (f"{what}: this kernel refuses struct_ops (EPERM although the "
                        "process has CAP_BPF and CAP_PERFMON or CAP_SYS_ADMIN), as it "
                        "refuses trampoline programs; use a kernel with BPF trampolines")
        exc.args = (e.errno, exc.strerror)
        return exc
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
