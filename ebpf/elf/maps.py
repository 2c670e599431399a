"""Maps of a BPF object: data sections (.data, .rodata, .bss and their named variants) as
array maps with their variables, BTF-defined maps (.maps), legacy and iproute2 map
definitions (maps: `legacy_maps.py`), ``__arena`` globals (`arena.py`), and the initial
values of map-in-map and program array slots (.values)."""

from __future__ import annotations

from .. import btf as _btf
from .._sys.types import BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, MapType
from ..errors import BTFError, ELFError
from ..spec.collection import VariableSpec
from ..spec.maps import MapSpec, PinType
from .state import (
    MAX_NOBITS,
    R_BPF_64_64,
    R_BPF_64_ABS64,
    SHF_ALLOC,
    SHF_EXECINSTR,
    STT_OBJECT,
    ObjectState,
)

_DATA_PREFIXES = (".data", ".rodata", ".bss")
ARENA_SECTION = ".addr_space.1"  # clang's section of __attribute__((address_space(1))) globals





class MapSections(ObjectState):
    """Reading the maps and data sections of the object."""

    def _read_data_sections(self) -> None:

        datasecs: dict[str, _btf.Datasec] = {}
        if self.btf is not None:
            for t in self.btf.types_of_kind(_btf.Kind.DATASEC):
                if isinstance(t, _btf.Datasec):
                    datasecs[t.name] = t
        for sec in self.elf.sections:
            if not sec.flags & SHF_ALLOC or not _is_data_section(sec.name):
                continue
            if sec.flags & SHF_EXECINSTR or sec.size == 0:
                continue
            if sec.is_nobits and sec.size > MAX_NOBITS:
                raise ELFError(f"section {sec.name} claims {sec.size} bytes; a BPF global "
                               f"data section holds at most {MAX_NOBITS} (one array map "
                               "value)", sec.name)
            try:
                data = bytearray(sec.size) if sec.is_nobits else bytearray(sec.data())
            except MemoryError:
                raise ELFError(f"section {sec.name} claims {sec.size} bytes: not enough "
                               "memory for its initial value", sec.name) from None
            readonly = sec.name.startswith(".rodata")
            flags = BPF_F_RDONLY_PROG if readonly else 0
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

    def _read_btf_maps(self) -> None:
        sec = self.elf.section_by_name(".maps")
        if sec is None:
            return
        if self.btf is None:
            raise ELFError("object has a .maps section but no BTF", ".maps")
        ds = next((t for t in self.btf.types_of_kind(_btf.Kind.DATASEC)
                   if isinstance(t, _btf.Datasec) and t.name == ".maps"), None)
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
                ms.map_extra = _ulong_member(m, what)
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
        from .legacy_maps import read_legacy_maps  # few objects have them (process start)

        read_legacy_maps(self, sec)

    def _read_arena_globals(self) -> None:
        sec = self.elf.section_by_name(ARENA_SECTION)
        if sec is None or sec.size == 0:
            return
        from .arena import read_arena_globals  # few objects have them (process start)

        read_arena_globals(self, sec)

    def _read_map_values(self) -> None:
        """`.values = { ... }` initializers: relocations in .maps pointing at programs
        (PROG_ARRAY) or maps (map-in-map)."""
        sec = self.elf.section_by_name(".maps")
        if sec is None:
            return
        starts = sorted(((off, name) for (idx, off), name in self.map_at.items()
                         if idx == sec.index))
        for rel_offset, rel_symbol, rel_type, _ in self.elf._relocation_rows(sec):
            if rel_type not in (R_BPF_64_64, R_BPF_64_ABS64):
                raise ELFError(f"unsupported relocation type {rel_type} in .maps",
                               ".maps", rel_offset)
            owner = None
            for off, name in starts:
                if off <= rel_offset:
                    owner = (off, name)
            if owner is None:
                raise ELFError("relocation outside any map", ".maps", rel_offset)
            ms = self.maps[owner[1]]
            base = getattr(ms, "_values_offset", None)
            if base is None:
                raise ELFError(f"map {owner[1]!r} has initial values but no __array(values)",
                               ".maps", rel_offset)
            rel_off = rel_offset - owner[0] - base
            if rel_off < 0 or rel_off % 8:
                raise ELFError(f"misaligned initial value of map {owner[1]!r}", ".maps",
                               rel_offset)
            sym = self._symbol(rel_symbol, ".maps")
            if ms.type == MapType.PROG_ARRAY:
                if (sym.section_index, sym.value) not in self.funcs:
                    raise ELFError(f"map {owner[1]!r}: initial value {sym.name!r} is not a "
                                   "program", ".maps", rel_offset)
                target = sym.name
            else:
                target_name = self.map_at.get((sym.section_index, sym.value))
                if target_name is None:
                    raise ELFError(f"map {owner[1]!r}: initial value {sym.name!r} is not a map",
                                   ".maps", rel_offset)
                target = target_name
            assert ms.contents is not None
            ms.contents.append((rel_off // 8, target))


def _is_data_section(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _DATA_PREFIXES)


def _uint_member(m: _btf.Member, what: str) -> int:
    """__uint(name, val) is `int (*name)[val]`: the value is the array's length."""
    t = _btf.skip_typedefs(m.type)
    if isinstance(t, _btf.Pointer):
        arr = _btf.skip_typedefs(t.type)
        if isinstance(arr, _btf.Array):
            return arr.nelems
    raise BTFError(f"{what}: {m.name} must be declared with __uint()")


def _ulong_member(m: _btf.Member, what: str) -> int:
    """__ulong(name, val) is an anonymous enum (ENUM64 for a value above 32 bits) with
    the one enumerator `val`; __uint() works too."""
    t = _btf.skip_typedefs(m.type)
    if isinstance(t, _btf.Enum):
        if len(t.values) != 1:
            raise BTFError(f"{what}: {m.name} must be declared with __ulong() or __uint()")
        return t.values[0].value & ((1 << 64) - 1)
    return _uint_member(m, what)


def _map_type(v: int) -> MapType:
    try:
        return MapType(v)
    except ValueError:
        return v  # type: ignore[return-value]  # unknown to us; the kernel decides
