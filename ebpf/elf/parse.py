"""Relocatable BPF ELF object -> CollectionSpec, the way libbpf reads objects.

No kernel access happens here: maps become MapSpecs, programs ProgramSpecs
with their subprograms linked in and every reference (maps, global data,
externs, functions) recorded symbolically on the instructions, to be resolved
when the collection is loaded.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

from .. import asm
from .. import btf as _btf
from .._sys import validate as _validate
from .._sys.types import BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, MapType, ProgramType
from ..asm.opcodes import (
    LD_IMM64,
    PSEUDO_BTF_ID,
    PSEUDO_CALL,
    PSEUDO_FUNC,
    PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_VALUE,
)
from ..elffile import SHN_ABS, SHN_COMMON, SHN_UNDEF, ELFFile, Section, SectionFlags, SectionType
from ..elffile import Symbol as ElfSymbol
from ..errors import BTFError, ELFError
from ..spec.collection import CollectionSpec, Extern, Maps, Programs, Variables, VariableSpec
from ..spec.maps import MapSpec, PinType
from ..spec.programs import ProgramSpec
from .sections import lookup_section

EM_BPF = 247
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_32 = 10
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2

# libbpf's `struct bpf_map_def` and iproute2's `struct bpf_elf_map` (both u32 fields).
_LEGACY_FIELDS = ("type", "key_size", "value_size", "max_entries", "flags")
_IPROUTE2_FIELDS = (*_LEGACY_FIELDS, "id", "pinning", "inner_id", "inner_idx")

_DATA_PREFIXES = (".data", ".rodata", ".bss")
# The largest value an array map holds (the kernel refuses value_size > INT_MAX with
# E2BIG; older kernels stop at KMALLOC_MAX_SIZE and say so when the map is created):
# a zero-filled section claiming more is malformed, and is not allocated.
_MAX_NOBITS = (1 << 31) - 1
# The decl tag (`__exception_cb(f)`) naming a program's exception callback.
_EXCEPTION_CB_TAG = "exception_callback:"


def _is_data_section(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _DATA_PREFIXES)


class _Func:
    """A function (program or subprogram) inside an executable section."""

    __slots__ = ("insns", "name", "offset", "section", "size")

    def __init__(self, name: str, section: Section, offset: int, size: int) -> None:
        self.name = name
        self.section = section
        self.offset = offset
        self.size = size
        self.insns: list[asm.Instruction] = []


class _Loader:
    def __init__(self, data: bytes) -> None:
        self.elf = ELFFile(data)
        if self.elf.machine != EM_BPF:
            raise ELFError(f"not a BPF object (e_machine {self.elf.machine}, want {EM_BPF})")
        if self.elf.type != 1:
            raise ELFError(f"not a relocatable object (e_type {self.elf.type})")
        self.byteorder = "little" if self.elf.little_endian else "big"
        self.u32 = struct.Struct("<I" if self.elf.little_endian else ">I")
        self.symbols = self.elf.symbols()
        self.spec = CollectionSpec(byteorder=self.byteorder)
        self.btf: _btf.Spec | None = None
        self.ext: Any = None
        self.license = ""
        self.kernel_version = 0
        self.maps: dict[str, MapSpec] = {}
        # (section index, byte offset) -> map name, for map symbols in .maps / maps
        self.map_at: dict[tuple[int, int], str] = {}
        self.data_sections: dict[int, str] = {}
        self.funcs: dict[tuple[int, int], _Func] = {}
        self.externs: dict[str, Extern] = {}

    # -- top level ----------------------------------------------------------------

    def load(self) -> CollectionSpec:
        self._read_meta()
        self._read_btf()
        self._read_externs()
        self._read_data_sections()
        self._read_btf_maps()
        self._read_legacy_maps()
        self._read_functions()
        self._relocate_functions()
        programs = self._build_programs()
        self._read_map_values()
        spec = self.spec
        spec.btf = self.btf
        spec.programs = programs
        spec.maps = Maps(self.maps)
        spec.externs = self.externs
        spec.__post_init__()
        if any(sec.name in (".struct_ops", ".struct_ops.link") and sec.size
               for sec in self.elf.sections):
            # which struct and member each struct_ops program implements (libbpf does
            # this at open); no kernel access, the ids are resolved at load
            from .struct_ops import read_struct_ops

            read_struct_ops(self.elf, spec)
        return spec

    def _section_data(self, sec: Section) -> bytes:
        return bytes(sec.data())

    def _read_meta(self) -> None:
        lic = self.elf.section_by_name("license")
        if lic is not None:
            self.license = self._section_data(lic).split(b"\0", 1)[0].decode(errors="replace")
        ver = self.elf.section_by_name("version")
        if ver is not None:
            data = self._section_data(ver)
            if len(data) != 4:
                raise ELFError("version section must be 4 bytes", "version", ver.offset)
            self.kernel_version = self.u32.unpack(data)[0]

    def _read_btf(self) -> None:
        sec = self.elf.section_by_name(".BTF")
        if sec is None:
            return
        try:
            self.btf = _btf.Spec(self._section_data(sec), lazy=False)
        except BTFError as e:
            raise BTFError(f".BTF: {e}") from None
        ext = self.elf.section_by_name(".BTF.ext")
        if ext is not None:
            from ..btf.ext import parse_ext  # the .BTF.ext parser only for objects that have one

            self.ext = parse_ext(self._section_data(ext), self.btf)
        self._fixup_datasecs()
        self._fixup_func_linkage()

    def _fixup_func_linkage(self) -> None:
        """Hidden global functions (__hidden, STV_HIDDEN/INTERNAL) are static to the
        verifier, as libbpf marks them: otherwise their arguments are checked as if
        any caller could pass anything. Hidden global variables become static too (as
        libbpf marks them): a data section holding only static variables is not
        mmap()able, which lets it hold a bpf_spin_lock (the kernel refuses to map
        memory holding one)."""
        assert self.btf is not None
        hidden = {s.name for s in self.symbols
                  if s.type == STT_FUNC and s.bind in (STB_GLOBAL, STB_WEAK)
                  and s.visibility in (1, 2)}
        hidden_vars = {s.name for s in self.symbols
                       if s.type == STT_OBJECT and s.bind in (STB_GLOBAL, STB_WEAK)
                       and s.visibility in (1, 2) and s.section_index != SHN_UNDEF}
        if not hidden and not hidden_vars:
            return
        for t in self.btf:
            if isinstance(t, _btf.Func) and t.name in hidden:
                t.linkage = _btf.Linkage.STATIC
            elif (isinstance(t, _btf.Var) and t.name in hidden_vars
                  and t.linkage == _btf.Linkage.GLOBAL):
                t.linkage = _btf.Linkage.STATIC

    def _fixup_datasecs(self) -> None:
        """clang leaves DATASEC sizes and variable offsets zero; fill them from the ELF
        (libbpf's btf_fixup_datasec)."""
        assert self.btf is not None
        syms: dict[str, ElfSymbol] = {}
        for s in self.symbols:
            if s.type == STT_OBJECT or s.section_index == SHN_UNDEF:
                syms.setdefault(s.name, s)
        for t in self.btf:
            if not isinstance(t, _btf.Datasec):
                continue
            sec = self.elf.section_by_name(t.name)
            if sec is not None:
                t.size = sec.size
            elif t.name in (".kconfig", ".ksyms"):
                pass
            for vs in t.vars:
                var = vs.type
                if not isinstance(var, _btf.Var):
                    continue
                sym = syms.get(var.name)
                if sym is not None and sec is not None and sym.section_index == sec.index:
                    vs.offset = sym.value
                if var.linkage == _btf.Linkage.EXTERN:
                    continue
            t.vars.sort(key=lambda v: v.offset)

    # -- externs ------------------------------------------------------------------

    def _read_externs(self) -> None:
        undef = [s for s in self.symbols
                 if s.section_index == SHN_UNDEF and s.name and s.bind in (STB_GLOBAL, STB_WEAK)]
        if not undef:
            return
        btf_vars: dict[str, tuple[str, _btf.Type]] = {}
        if self.btf is not None:
            for t in self.btf:
                if isinstance(t, _btf.Datasec) and t.name in (".kconfig", ".ksyms"):
                    for vs in t.vars:
                        btf_vars[vs.type.name] = (t.name, vs.type)
        kconfig_off = 0
        for s in sorted(undef, key=lambda s: s.name):
            section, typ = btf_vars.get(s.name, (".ksyms", None))
            ext = Extern(name=s.name, section=section, weak=s.bind == STB_WEAK)
            if isinstance(typ, _btf.Func):
                ext.is_func = True
                ext.type = typ
            elif isinstance(typ, _btf.Var):
                ext.type = typ.type
            if section == ".kconfig":
                if ext.type is None:
                    raise ELFError(f"kconfig extern {s.name!r} has no BTF type", ".kconfig")
                size = _btf.sizeof(ext.type)
                align = _btf.alignof(ext.type)
                kconfig_off = (kconfig_off + align - 1) // align * align
                ext.offset, ext.size = kconfig_off, size
                kconfig_off += size
                if kconfig_off > _MAX_NOBITS:   # .kconfig is one array map value
                    raise ELFError(f"kconfig extern {s.name!r} of {size} bytes: .kconfig "
                                   f"would hold {kconfig_off}, at most {_MAX_NOBITS}",
                                   ".kconfig")
            self.externs[s.name] = ext
        if kconfig_off:

            size = (kconfig_off + 7) // 8 * 8
            self.maps[".kconfig"] = MapSpec(
                name=".kconfig", type=MapType.ARRAY, key_size=4, value_size=size,
                max_entries=1, flags=_rdonly_prog_flags(), contents=[(0, bytearray(size))],
                freeze=True)

    # -- data sections ------------------------------------------------------------

    def _read_data_sections(self) -> None:

        datasecs: dict[str, _btf.Datasec] = {}
        if self.btf is not None:
            for t in self.btf:
                if isinstance(t, _btf.Datasec):
                    datasecs[t.name] = t
        for sec in self.elf.sections:
            if not _is_data_section(sec.name) or not sec.flags & SectionFlags.ALLOC:
                continue
            if sec.flags & SectionFlags.EXECINSTR or sec.size == 0:
                continue
            if sec.is_nobits and sec.size > _MAX_NOBITS:
                raise ELFError(f"section {sec.name} claims {sec.size} bytes; a BPF global "
                               f"data section holds at most {_MAX_NOBITS} (one array map "
                               "value)", sec.name)
            data = bytearray(sec.size) if sec.is_nobits else bytearray(sec.data())
            readonly = sec.name.startswith(".rodata")
            flags = _rdonly_prog_flags() if readonly else 0
            ds = datasecs.get(sec.name)
            # like libbpf, a section whose BTF shows only static variables is not
            # mmap()able (a bpf_spin_lock, a timer, a kptr may live there only then)
            if ds is None or any(isinstance(v.type, _btf.Var)
                                 and v.type.linkage != _btf.Linkage.STATIC for v in ds.vars):
                flags |= BPF_F_MMAPABLE
            ms = MapSpec(name=sec.name, type=MapType.ARRAY, key_size=4, value_size=sec.size,
                         max_entries=1, flags=flags,
                         contents=[(0, data)], freeze=readonly)
            if ds is not None:
                ms.value = ds
                ms.key = None
            self.maps[sec.name] = ms
            self.data_sections[sec.index] = sec.name
            if ds is not None:
                for vs in ds.vars:
                    var = vs.type
                    if isinstance(var, _btf.Var) and not var.name.startswith("."):
                        if vs.size < _btf.sizeof(var.type):   # the kernel refuses it too
                            raise ELFError(f"variable {var.name!r} has {vs.size} bytes in "
                                           f"its DATASEC, less than its type's "
                                           f"{_btf.sizeof(var.type)}", sec.name, vs.offset)
                        self.spec.variables[var.name] = VariableSpec(
                            var.name, sec.name, vs.offset, vs.size, var.type)
            else:
                for s in self.symbols:
                    if s.section_index == sec.index and s.type == STT_OBJECT and s.name:
                        self.spec.variables[s.name] = VariableSpec(
                            s.name, sec.name, s.value, s.size, None)

    # -- maps ---------------------------------------------------------------------

    def _read_btf_maps(self) -> None:
        sec = self.elf.section_by_name(".maps")
        if sec is None:
            return
        if self.btf is None:
            raise ELFError("object has a .maps section but no BTF", ".maps")
        ds = next((t for t in self.btf if isinstance(t, _btf.Datasec) and t.name == ".maps"),
                  None)
        if ds is None:
            raise BTFError("no DATASEC .maps in the object's BTF")
        for vs in ds.vars:
            var = vs.type
            if not isinstance(var, _btf.Var):
                raise BTFError(f".maps entry at offset {vs.offset} is not a variable")
            ms = self._btf_map_def(var.name, var.type, f"map {var.name!r}")
            self.maps[var.name] = ms
            self.map_at[(sec.index, vs.offset)] = var.name

    def _btf_map_def(self, name: str, t: _btf.Type, what: str) -> MapSpec:

        st = _btf.skip_typedefs(t)
        if not isinstance(st, _btf.Struct):
            raise BTFError(f"{what}: definition must be a struct, got {st.type_name}")
        ms = MapSpec(name=name, type=MapType.UNSPEC, key_size=0, value_size=0, max_entries=0)
        for m in st.members:
            if m.name == "type":
                ms.type = _map_type(_uint_member(m, what))
            elif m.name == "max_entries":
                ms.max_entries = _uint_member(m, what)
            elif m.name == "map_flags":
                ms.flags = _uint_member(m, what)
            elif m.name == "numa_node":
                ms.numa_node = _uint_member(m, what)
            elif m.name == "key_size":
                ms.key_size = _uint_member(m, what)
            elif m.name == "value_size":
                ms.value_size = _uint_member(m, what)
            elif m.name == "map_extra":
                ms.map_extra = _uint_member(m, what)
            elif m.name == "pinning":
                pin = _uint_member(m, what)
                if pin not in (0, 1):
                    raise BTFError(f"{what}: unsupported pinning {pin}")
                ms.pinning = PinType(pin)
            elif m.name in ("key", "value"):
                pt = _btf.skip_typedefs(m.type)
                if not isinstance(pt, _btf.Pointer):
                    raise BTFError(f"{what}: {m.name} must be declared with __type()")
                target = pt.type
                size = _btf.sizeof(target)
                if m.name == "key":
                    ms.key, ms.key_size = target, size
                else:
                    ms.value, ms.value_size = target, size
            elif m.name == "values":
                arr = _btf.skip_typedefs(m.type)
                if not isinstance(arr, _btf.Array):
                    raise BTFError(f"{what}: values must be declared with __array()")
                elem = _btf.skip_typedefs(arr.type)
                if not isinstance(elem, _btf.Pointer):
                    raise BTFError(f"{what}: values must be an array of pointers")
                inner_t = _btf.skip_typedefs(elem.type)
                if isinstance(inner_t, _btf.Struct):
                    ms.inner_map = self._btf_map_def(name + ".inner", inner_t, what + " inner map")
                # PROG_ARRAY values point at programs (FuncProto): nothing to define.
                ms.contents = []
                ms._values_offset = m.offset_bits // 8  # type: ignore[attr-defined]
            else:
                raise BTFError(f"{what}: unknown map attribute {m.name!r}")
        if ms.inner_map is not None and ms.value_size == 0:
            ms.value_size = 4
        if ms.type in (MapType.PROG_ARRAY, MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS) \
                and ms.value_size == 0:
            ms.value_size = 4
        if ms.type == MapType.PERF_EVENT_ARRAY:
            ms.key_size = ms.key_size or 4
            ms.value_size = ms.value_size or 4
        return ms

    def _read_legacy_maps(self) -> None:

        sec = self.elf.section_by_name("maps")
        if sec is None:
            return
        data = self._section_data(sec)
        syms = sorted((s for s in self.symbols if s.section_index == sec.index and s.name
                       and s.type in (STT_OBJECT, STT_NOTYPE)), key=lambda s: s.value)
        if not syms:
            return
        size = syms[0].size or len(data) // len(syms)
        if size % 4 or size < 20:
            raise ELFError(f"legacy map definitions are {size} bytes; want >= 20", "maps")
        fields = _IPROUTE2_FIELDS if size >= 28 else _LEGACY_FIELDS
        for s in syms:
            if s.value + size > len(data):
                raise ELFError(f"map {s.name!r} extends past the section", "maps", s.value)
            vals = dict(zip(fields, (self.u32.unpack_from(data, s.value + 4 * i)[0]
                                     for i in range(min(len(fields), size // 4))), strict=False))
            ms = MapSpec(name=s.name, type=_map_type(vals["type"]), key_size=vals["key_size"],
                         value_size=vals["value_size"], max_entries=vals["max_entries"],
                         flags=vals["flags"])
            pinning = vals.get("pinning", 0)
            if pinning == 2:  # iproute2 PIN_GLOBAL_NS
                ms.pinning = PinType.BY_NAME
            self.maps[s.name] = ms
            self.map_at[(sec.index, s.value)] = s.name
        # iproute2 map-in-map: inner_idx refers to another map definition's index
        by_id = {}
        for idx, s in enumerate(syms):
            by_id[idx] = s.name
        for s in syms:
            vals = {f: self.u32.unpack_from(data, s.value + 4 * i)[0]
                    for i, f in enumerate(fields) if 4 * i < size}
            ms = self.maps[s.name]
            if ms.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS) and "inner_idx" in vals:
                inner = by_id.get(vals["inner_idx"])
                if inner is None:
                    raise ELFError(f"map {s.name!r}: inner_idx {vals['inner_idx']} unknown",
                                   "maps", s.value)
                ms.inner_map = self.maps[inner].copy()

    def _read_map_values(self) -> None:
        """`.values = { ... }` initializers: relocations in .maps pointing at programs
        (PROG_ARRAY) or maps (map-in-map)."""
        sec = self.elf.section_by_name(".maps")
        if sec is None:
            return
        starts = sorted(((off, name) for (idx, off), name in self.map_at.items()
                         if idx == sec.index))
        for rel in self.elf.relocations(sec):
            if rel.type not in (R_BPF_64_64, R_BPF_64_ABS64):
                raise ELFError(f"unsupported relocation type {rel.type} in .maps",
                               ".maps", rel.offset)
            owner = None
            for off, name in starts:
                if off <= rel.offset:
                    owner = (off, name)
            if owner is None:
                raise ELFError("relocation outside any map", ".maps", rel.offset)
            ms = self.maps[owner[1]]
            base = getattr(ms, "_values_offset", None)
            if base is None:
                raise ELFError(f"map {owner[1]!r} has initial values but no __array(values)",
                               ".maps", rel.offset)
            rel_off = rel.offset - owner[0] - base
            if rel_off < 0 or rel_off % 8:
                raise ELFError(f"misaligned initial value of map {owner[1]!r}", ".maps",
                               rel.offset)
            sym = self._symbol(rel.symbol, ".maps")
            if ms.type == MapType.PROG_ARRAY:
                if (sym.section_index, sym.value) not in self.funcs:
                    raise ELFError(f"map {owner[1]!r}: initial value {sym.name!r} is not a "
                                   "program", ".maps", rel.offset)
                target = sym.name
            else:
                target_name = self.map_at.get((sym.section_index, sym.value))
                if target_name is None:
                    raise ELFError(f"map {owner[1]!r}: initial value {sym.name!r} is not a map",
                                   ".maps", rel.offset)
                target = target_name
            assert ms.contents is not None
            ms.contents.append((rel_off // 8, target))

    # -- code ---------------------------------------------------------------------

    def _read_functions(self) -> None:
        exec_secs = [s for s in self.elf.sections
                     if s.type == SectionType.PROGBITS and s.flags & SectionFlags.EXECINSTR
                     and s.size > 0]
        for sec in exec_secs:
            if sec.size % 8:
                raise ELFError("code section size is not a multiple of 8", sec.name, sec.offset)
            funcs = sorted((s for s in self.symbols
                            if s.section_index == sec.index and s.type == STT_FUNC and s.name),
                           key=lambda s: s.value)
            if not funcs:
                continue
            try:
                insns = asm.decode(sec.data())
            except asm.AsmError as e:
                raise ELFError(f"cannot decode instructions: {e}", sec.name) from None
            # slot index -> instruction index
            slot_to_idx: dict[int, int] = {}
            slot = 0
            for i, ins in enumerate(insns):
                slot_to_idx[slot] = i
                slot += ins.size
            self._slot_maps = getattr(self, "_slot_maps", {})
            self._slot_maps[sec.index] = (insns, slot_to_idx)
            for s in funcs:
                if s.value % 8 or s.value + s.size > sec.size:
                    raise ELFError(f"function {s.name!r} is out of bounds", sec.name, s.value)
                size = s.size or (sec.size - s.value)
                f = _Func(s.name, sec, s.value, size)
                first, last = slot_to_idx.get(s.value // 8), slot_to_idx.get(
                    (s.value + size) // 8, len(insns))
                if first is None:
                    raise ELFError(f"function {s.name!r} starts inside an instruction",
                                   sec.name, s.value)
                f.insns = insns[first:last]
                self.funcs[(sec.index, s.value)] = f
            self._attach_ext(sec, insns, slot_to_idx)

    def _attach_ext(self, sec: Section, insns: list[asm.Instruction],
                    slot_to_idx: dict[int, int]) -> None:
        if self.ext is None:
            return

        def at(off: int, what: str) -> asm.Instruction:
            idx = slot_to_idx.get(off // 8) if off % 8 == 0 else None
            if idx is None:
                raise BTFError(f".BTF.ext {what} for {sec.name} at offset {off} does not "
                               "start an instruction")
            ins = insns[idx]
            if ins.meta is None:
                ins.meta = {}
            return ins

        for off, func in self.ext.func_infos.get(sec.name, ()):
            at(off, "func info").meta["func"] = func  # type: ignore[index]
        for off, line in self.ext.line_infos.get(sec.name, ()):
            at(off, "line info").meta["line"] = line  # type: ignore[index]
        for relo in self.ext.core_relos.get(sec.name, ()):
            at(relo.insn_off, "CO-RE relocation").meta["core"] = relo  # type: ignore[index]

    def _symbol(self, index: int, where: str) -> ElfSymbol:
        if not 0 <= index < len(self.symbols):
            raise ELFError(f"relocation refers to symbol {index} beyond the symbol table", where)
        return self.symbols[index]

    def _relocate_functions(self) -> None:
        slot_maps: dict[int, tuple[list[asm.Instruction], dict[int, int]]] = getattr(
            self, "_slot_maps", {})
        for sec_idx, (insns, slot_to_idx) in slot_maps.items():
            sec = self.elf.section(sec_idx)
            relocated: set[int] = set()
            for rel in self.elf.relocations(sec):
                idx = slot_to_idx.get(rel.offset // 8) if rel.offset % 8 == 0 else None
                if idx is None:
                    raise ELFError("relocation does not point at an instruction", sec.name,
                                   rel.offset)
                relocated.add(idx)
                self._relocate(sec, insns[idx], self._symbol(rel.symbol, sec.name), rel.offset)
            # Calls within the same section that carry no relocation.
            slot = 0
            for i, ins in enumerate(insns):
                if i not in relocated and ins.opcode == asm.CALL and ins.src == PSEUDO_CALL:
                    target = (slot + ins.imm + 1) * 8
                    f = self.funcs.get((sec_idx, target))
                    if f is None:
                        raise ELFError(f"call at slot {slot} to offset {target} is not a "
                                       "function", sec.name, slot * 8)
                    ins.reference = f.name
                slot += ins.size

    def _relocate(self, sec: Section, ins: asm.Instruction, sym: ElfSymbol, off: int) -> None:
        if sym.section_index == SHN_UNDEF and sym.name:
            ext = self.externs.get(sym.name)
            if ext is None:
                raise ELFError(f"undefined symbol {sym.name!r}", sec.name, off)
            if ext.section == ".kconfig":
                if ins.opcode != LD_IMM64:
                    raise ELFError(f"kconfig extern {sym.name!r} used by a non-load",
                                   sec.name, off)
                ins.src = PSEUDO_MAP_VALUE
                ins.imm = ext.offset << 32
                ins.reference = ".kconfig"
            else:
                ins.reference = sym.name
                if ins.opcode == asm.CALL:
                    ins.src, ins.imm, ins.off = PSEUDO_KFUNC_CALL, 0, 0
                elif ins.opcode == LD_IMM64:
                    typeless = ext.type is None or isinstance(
                        _btf.skip_typedefs(ext.type), _btf.Void)
                    # typeless ksyms get their kallsyms address at load time
                    ins.src, ins.imm = (0 if typeless else PSEUDO_BTF_ID), 0
                else:
                    raise ELFError(f"extern {sym.name!r} used by opcode {ins.opcode:#x}",
                                   sec.name, off)
                if ins.meta is None:
                    ins.meta = {}
                ins.meta["extern"] = sym.name
            return
        if ins.opcode == asm.CALL:
            if ins.src != PSEUDO_CALL:
                raise ELFError(f"relocated call to {sym.name!r} is not a bpf-to-bpf call",
                               sec.name, off)
            base = sym.value if sym.type != STT_SECTION else 0
            target = base + (ins.imm + 1) * 8 if sym.type != STT_SECTION else (ins.imm + 1) * 8
            f = self.funcs.get((sym.section_index, target))
            if f is None:
                raise ELFError(f"call target {sym.name}+{target} is not a function", sec.name,
                               off)
            ins.reference = f.name
            return
        if ins.opcode != LD_IMM64:
            raise ELFError(f"relocation against {sym.name!r} on opcode {ins.opcode:#x}",
                           sec.name, off)
        if sym.section_index in (SHN_ABS, SHN_COMMON):
            raise ELFError(f"unsupported symbol {sym.name!r} (absolute/common)", sec.name, off)
        key = (sym.section_index, sym.value)
        if key in self.map_at:
            ins.src = PSEUDO_MAP_FD
            ins.imm = 0
            ins.reference = self.map_at[key]
            return
        if sym.section_index in self.data_sections:
            value_off = (sym.value if sym.type != STT_SECTION else 0) + (ins.imm & 0xFFFFFFFF)
            ins.src = PSEUDO_MAP_VALUE
            ins.imm = value_off << 32
            ins.reference = self.data_sections[sym.section_index]
            return
        target_off = (sym.value if sym.type != STT_SECTION else 0) + ins.imm
        f = self.funcs.get((sym.section_index, target_off))
        if f is not None:
            ins.src = PSEUDO_FUNC
            ins.imm = 0
            ins.reference = f.name
            return
        secname = self.elf.section(sym.section_index).name if sym.section_index else "?"
        raise ELFError(f"relocation against {sym.name or secname!r} in section {secname!r} "
                       "is neither a map, global data nor a function", sec.name, off)

    def _build_programs(self) -> Programs:
        by_name = {f.name: f for f in self.funcs.values()}
        text = self.elf.section_by_name(".text")
        programs = Programs()
        callbacks = self._exception_callbacks()
        for f in self.funcs.values():
            if text is not None and f.section.index == text.index:
                continue
            sdef = lookup_section(f.section.name)
            insns = self._link(f, by_name, callbacks.get(f.name))
            if sdef is None:
                # Like libbpf: a section name it does not know leaves the program's type
                # unset (the caller may still set it); only loading such a program fails,
                # the rest of the object is usable.
                spec = ProgramSpec(
                    name=f.name, instructions=insns, license=self.license,
                    section=f.section.name, kernel_version=self.kernel_version,
                    btf=self.btf, autoload=not f.section.name.startswith("?"))
                programs[f.name] = spec
                continue
            spec = ProgramSpec(
                name=f.name, type=sdef.program_type, instructions=insns,
                license=self.license, attach_type=sdef.attach_type,
                attach_to=sdef.attach_to or "", section=f.section.name,
                kernel_version=self.kernel_version, flags=sdef.prog_flags, btf=self.btf,
                autoload=sdef.autoload)
            programs[f.name] = spec
        return programs

    def _exception_callbacks(self) -> dict[str, str]:
        """{program: its exception callback}, from the BTF decl tags
        ``exception_callback:<function>`` on programs' FUNCs (``__exception_cb``)."""
        out: dict[str, str] = {}
        if self.btf is None:
            return out
        for t in self.btf:
            if (isinstance(t, _btf.DeclTag) and t.component_idx == -1
                    and t.name.startswith(_EXCEPTION_CB_TAG)
                    and isinstance(t.type, _btf.Func)):
                out[t.type.name] = t.name[len(_EXCEPTION_CB_TAG):]
        return out

    def _link(self, f: _Func, by_name: dict[str, _Func],
              exception_cb: str | None = None) -> list[asm.Instruction]:
        """The function's instructions followed by every subprogram it reaches, and
        by its exception callback (which nothing calls: the kernel finds it through
        the decl tag and the func info) with what that reaches."""
        out = [ins.copy() for ins in f.insns]
        if out:
            out[0].symbol = f.name
        done = {f.name}
        pending = _callees(out)
        if exception_cb is not None:
            if exception_cb not in by_name:
                raise ELFError(f"{f.name}: exception callback {exception_cb!r} is not a "
                               "function of the object", f.section.name)
            pending.insert(0, exception_cb)   # popped last: after what the program calls
        while pending:
            name = pending.pop()
            if name in done:
                continue
            done.add(name)
            callee = by_name.get(name)
            if callee is None:
                raise ELFError(f"{f.name}: calls unknown function {name!r}", f.section.name)
            body = [ins.copy() for ins in callee.insns]
            body[0].symbol = name
            out.extend(body)
            pending.extend(n for n in _callees(body) if n not in done)
        return out


def _callees(insns: list[asm.Instruction]) -> list[str]:
    out = []
    for ins in insns:
        if ins.reference is None:
            continue
        if (ins.opcode == asm.CALL and ins.src == PSEUDO_CALL) or (
                ins.opcode == LD_IMM64 and ins.src == PSEUDO_FUNC):
            out.append(ins.reference)
    return out


def _uint_member(m: _btf.Member, what: str) -> int:
    """__uint(name, val) is `int (*name)[val]`: the value is the array's length."""
    t = _btf.skip_typedefs(m.type)
    if isinstance(t, _btf.Pointer):
        arr = _btf.skip_typedefs(t.type)
        if isinstance(arr, _btf.Array):
            return arr.nelems
    raise BTFError(f"{what}: {m.name} must be declared with __uint()")


def _map_type(v: int) -> MapType:
    try:
        return MapType(v)
    except ValueError:
        return v  # type: ignore[return-value]  # unknown to us; the kernel decides


def _rdonly_prog_flags() -> int:
    return BPF_F_RDONLY_PROG


def load_elf(data: bytes) -> CollectionSpec:
    """Parse a BPF ELF object into a CollectionSpec (see `ebpf.load_collection_spec`)."""
    try:
        return _Loader(data).load()
    except (ELFError, BTFError):
        raise
    except (struct.error, IndexError, KeyError, UnicodeDecodeError, ValueError) as e:
        raise ELFError(f"malformed object: {type(e).__name__}: {e}") from None


def load_collection_spec(source: str | os.PathLike[str] | bytes) -> CollectionSpec:
    """Parse a clang-compiled BPF ELF object (a path or its bytes) into a CollectionSpec.

    No kernel access. Malformed input raises ELFError/BTFError naming section and
    offset.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return load_elf(bytes(source))
    with open(_validate.path(source, "object file path"), "rb") as f:
        return load_elf(f.read())


_ = (ProgramType, Variables, Callable)
