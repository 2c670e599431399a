"""``__arena`` globals of a BPF object (section ``.addr_space.1``). Their own module: few
objects have them (process start)."""

from __future__ import annotations

from .. import btf as _btf
from .._sys.types import MapType
from ..elffile import Section
from ..errors import ELFError
from ..spec.collection import VariableSpec
from .maps import ARENA_SECTION
from .state import MAX_NOBITS, ObjectState

__all__ = ["read_arena_globals"]


def read_arena_globals(state: ObjectState, sec: Section) -> None:
    """``__arena`` globals (section ``.addr_space.1``): like libbpf, they live at
    the start of the object's arena map, their initial bytes are that map's
    contents, and instructions referring to them address the arena (a map value
    reference into it: the kernel gives the arena's user address plus the offset)."""
    arenas = [n for n, ms in state.maps.items() if ms.type == MapType.ARENA]
    if len(arenas) != 1:
        raise ELFError(f"__arena globals need exactly one ARENA map in the object, "
                       f"it has {len(arenas)}" + (f" ({', '.join(arenas)})" if arenas
                                                  else ""), sec.name)
    if sec.is_nobits and sec.size > MAX_NOBITS:
        raise ELFError(f"section {sec.name} claims {sec.size} bytes", sec.name)
    data = bytes(sec.size) if sec.is_nobits else bytes(sec.data())
    state.maps[arenas[0]].contents = [(0, data)]
    state.data_sections[sec.index] = arenas[0]
    datasecs = state.btf.types_of_kind(_btf.Kind.DATASEC) if state.btf is not None else ()
    ds = next((t for t in datasecs if isinstance(t, _btf.Datasec)
               and t.name == ARENA_SECTION), None)
    for vs in ds.vars if ds is not None else ():
        var = vs.type
        if isinstance(var, _btf.Var) and vs.offset + vs.size <= len(data):
            # (the variable's section is the map holding it: the arena)
            state.spec.variables[var.name] = VariableSpec(
                var.name, arenas[0], vs.offset, vs.size, var.type)
