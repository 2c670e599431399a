"""Legacy map definitions of a BPF object (section ``maps``): libbpf's `struct bpf_map_def`
and iproute2's `struct bpf_elf_map`. Their own module: few objects have them (process
start)."""

from __future__ import annotations

from .._sys.types import MapType
from ..elffile import Section
from ..errors import ELFError
from ..spec.maps import MapSpec, PinType
from .maps import _map_type
from .state import STT_NOTYPE, STT_OBJECT, ObjectState

__all__ = ["read_legacy_maps"]

# libbpf's `struct bpf_map_def` and iproute2's `struct bpf_elf_map` (both u32 fields).
_LEGACY_FIELDS = ("type", "key_size", "value_size", "max_entries", "flags")
_IPROUTE2_FIELDS = (*_LEGACY_FIELDS, "id", "pinning", "inner_id", "inner_idx")


def read_legacy_maps(state: ObjectState, sec: Section) -> None:
    """The map definitions of section ``maps``: libbpf's `struct bpf_map_def` or iproute2's
    `struct bpf_elf_map` (pinning, map-in-map by index)."""
    data = bytes(sec.data())
    syms = sorted((s for s in state.symbols if s.section_index == sec.index and s.name
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
        vals = dict(zip(fields, (state.u32.unpack_from(data, s.value + 4 * i)[0]
                                 for i in range(min(len(fields), size // 4))), strict=False))
        ms = MapSpec(name=s.name, type=_map_type(vals["type"]), key_size=vals["key_size"],
                     value_size=vals["value_size"], max_entries=vals["max_entries"],
                     flags=vals["flags"])
        pinning = vals.get("pinning", 0)
        if pinning == 2:  # iproute2 PIN_GLOBAL_NS
            ms.pinning = PinType.BY_NAME
        state.maps[s.name] = ms
        state.map_at[(sec.index, s.value)] = s.name
    # iproute2 map-in-map: inner_idx refers to another map definition's index
    by_id = {}
    for idx, s in enumerate(syms):
        by_id[idx] = s.name
    for s in syms:
        vals = {f: state.u32.unpack_from(data, s.value + 4 * i)[0]
                for i, f in enumerate(fields) if 4 * i < size}
        ms = state.maps[s.name]
        if ms.type in (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS) and "inner_idx" in vals:
            inner = by_id.get(vals["inner_idx"])
            if inner is None:
                raise ELFError(f"map {s.name!r}: inner_idx {vals['inner_idx']} unknown",
                               "maps", s.value)
            ms.inner_map = state.maps[inner].copy()
