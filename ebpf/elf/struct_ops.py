"""struct_ops variables of an ELF object (``.struct_ops``, ``.struct_ops.link``).

Parse only, no kernel access: which kernel struct each variable implements, its initial
bytes, and which program implements which function pointer member. Loading and
registering them is `ebpf.link.struct_ops`.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any

from .. import btf as _btf
from .._sys.types import ProgramType
from ..btf.core import essential_name
from ..elffile import ELFFile
from ..errors import ELFError
from ..spec.struct_ops import StructOpsSpec

if TYPE_CHECKING:
    from ..elffile import ELFFile
    from ..spec.collection import CollectionSpec

__all__ = ["STRUCT_OPS_SECTIONS", "StructOpsSpec", "read_struct_ops"]

# "?" in front: the map is not created by default (StructOpsSpec.autocreate)
STRUCT_OPS_SECTIONS = (".struct_ops", ".struct_ops.link", "?.struct_ops", "?.struct_ops.link")
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
STT_SECTION = 3


def read_struct_ops(source: str | os.PathLike[str] | bytes | ELFFile, spec: CollectionSpec
                    ) -> dict[str, StructOpsSpec]:
    """Read the ``.struct_ops``/``.struct_ops.link`` variables of the ELF object
    `source` (the file `spec` was parsed from: a path, its bytes or an open
    `ELFFile`). No kernel access: each program a variable refers to only gets
    ``attach_to = "<struct>:<member>"``; `ebpf.link.resolve_struct_ops_programs` adds the
    kernel's ids before load. The result is also stored as ``spec.struct_ops``.

    Raises ELFError for malformed sections.
    """
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


def _read(elf: Any, spec: CollectionSpec) -> dict[str, StructOpsSpec]:
    out: dict[str, StructOpsSpec] = {}
    secs = [s for s in elf.sections if s.name in STRUCT_OPS_SECTIONS and s.size]
    if not secs:
        return out
    if spec.btf is None:
        raise ELFError("object has struct_ops variables but no BTF", secs[0].name)
    symbols = elf.symbols()
    # functions by (section index, offset)
    funcs = {(s.section_index, s.value): s.name for s in symbols if s.type == 2 and s.name}
    for sec in secs:
        ds = next((t for t in spec.btf.types_of_kind(_btf.Kind.DATASEC)
                   if isinstance(t, _btf.Datasec) and t.name == sec.name), None)
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
            # a flavored local type (tcp_congestion_ops___v2) names the kernel's
            # struct without its flavor
            ops = StructOpsSpec(name=var.name, type_name=essential_name(st.name), type=st,
                                data=data[off:off + size], programs={},
                                link=sec.name.endswith(".link"), section=sec.name,
                                autocreate=not sec.name.startswith("?"))
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
