"""Programs of a BPF object: the functions of its executable sections with their BTF
func/line info and CO-RE relocations, every relocation recorded symbolically on the
instructions, and each program linked with the subprograms it calls."""

from __future__ import annotations

from .. import asm
from .. import btf as _btf
from .._objcache import CountingDict
from ..asm.opcodes import (
    LD_IMM64,
    PSEUDO_BTF_ID,
    PSEUDO_CALL,
    PSEUDO_FUNC,
    PSEUDO_KFUNC_CALL,
    PSEUDO_MAP_FD,
    PSEUDO_MAP_VALUE,
)
from ..elffile import SHN_ABS, SHN_COMMON, SHN_UNDEF, Section
from ..errors import BTFError, ELFError
from ..spec.collection import Programs
from ..spec.programs import ProgramSpec
from .sections import _program_types
from .state import (
    SHF_EXECINSTR,
    SHT_PROGBITS,
    STB_LOCAL,
    STT_FUNC,
    STT_SECTION,
    ElfSymbol,
    Function,
    ObjectState,
)

# The decl tag (`__exception_cb(f)`) naming a program's exception callback.
_EXCEPTION_CB_TAG = "exception_callback:"



class FunctionSections(ObjectState):
    """Reading, relocating and linking the functions of the object."""

    def _read_functions(self) -> None:
        exec_secs = [s for s in self.elf.sections
                     if s._sh_type == SHT_PROGBITS and s.flags & SHF_EXECINSTR and s.size > 0]
        # A statically linked object can hold several static functions of one name
        # (one per input file); the instructions refer to functions by name, so those
        # are named after their place as well.
        seen: dict[str, int] = {}
        for s in self.symbols:
            if s.type == STT_FUNC and s.name:
                seen[s.name] = seen.get(s.name, 0) + 1
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
                name = s.name
                if seen[name] > 1 and s.bind == STB_LOCAL:
                    name = f"{name}@{sec.name}+{s.value:#x}"
                f = Function(name, sec, s.value, size)
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

    def _relocate_functions(self) -> None:
        slot_maps: dict[int, tuple[list[asm.Instruction], dict[int, int]]] = getattr(
            self, "_slot_maps", {})
        for sec_idx, (insns, slot_to_idx) in slot_maps.items():
            sec = self.elf.section(sec_idx)
            relocated: set[int] = set()
            for offset, symbol, _, _ in self.elf._relocation_rows(sec):
                idx = slot_to_idx.get(offset // 8) if offset % 8 == 0 else None
                if idx is None:
                    raise ELFError("relocation does not point at an instruction", sec.name,
                                   offset)
                relocated.add(idx)
                self._relocate(sec, insns[idx], self._symbol(symbol, sec.name), offset)
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
            types = _program_types(f.section.name)
            insns = self._link(f, by_name, callbacks.get(f.name))
            _count_meta_edits(insns)
            if types is None:
                # Like libbpf: a section name it does not know leaves the program's type
                # unset (the caller may still set it); only loading such a program fails,
                # the rest of the object is usable.
                spec = ProgramSpec(
                    name=f.name, instructions=insns, license=self.license,
                    section=f.section.name, kernel_version=self.kernel_version,
                    btf=self.btf, autoload=not f.section.name.startswith("?"))
                programs[f.name] = spec
                continue
            ptype, atype, attach_to, flags, autoload = types
            spec = ProgramSpec(
                name=f.name, type=ptype, instructions=insns,
                license=self.license, attach_type=atype,
                attach_to=attach_to or "", section=f.section.name,
                kernel_version=self.kernel_version, flags=flags, btf=self.btf,
                autoload=autoload)
            programs[f.name] = spec
        return programs

    def _exception_callbacks(self) -> dict[str, str]:
        """{program: its exception callback}, from the BTF decl tags
        ``exception_callback:<function>`` on programs' FUNCs (``__exception_cb``)."""
        out: dict[str, str] = {}
        if self.btf is None:
            return out
        for t in self.btf.types_of_kind(_btf.Kind.DECL_TAG):
            if (isinstance(t, _btf.DeclTag) and t.component_idx == -1
                    and t.name.startswith(_EXCEPTION_CB_TAG)
                    and isinstance(t.type, _btf.Func)):
                out[t.type.name] = t.name[len(_EXCEPTION_CB_TAG):]
        return out

    def _link(self, f: Function, by_name: dict[str, Function],
              exception_cb: str | None = None) -> list[asm.Instruction]:
        """The function's instructions followed by every subprogram it reaches, and
        by its exception callback (which nothing calls: the kernel finds it through
        the decl tag and the func info) with what that reaches."""
        # (the function's own instructions, not copies: each function is one program's,
        # and a program that calls it links in copies, as of every subprogram)
        out = list(f.insns)
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


def _count_meta_edits(insns: list[asm.Instruction]) -> None:
    """Make the meta dicts of a program's `insns` count their edits: a template its load
    keeps then compares no copy of them at each reload (`_objcache.CountingDict`)."""
    for ins in insns:
        if ins.meta is not None:
            ins.meta = CountingDict(ins.meta)


def _callees(insns: list[asm.Instruction]) -> list[str]:
    out = []
    for ins in insns:
        if ins.reference is None:
            continue
        if (ins.opcode == asm.CALL and ins.src == PSEUDO_CALL) or (
                ins.opcode == LD_IMM64 and ins.src == PSEUDO_FUNC):
            out.append(ins.reference)
    return out

