"""The externs of a BPF object (its undefined global symbols): ``.kconfig`` values, laid out
in the ``.kconfig`` map, and ``.ksyms`` (kernel variables and kfuncs). Their own module:
most objects have none (process start)."""

from __future__ import annotations

from .. import btf as _btf
from .._sys.types import BPF_F_RDONLY_PROG, MapType
from ..errors import ELFError
from ..spec.collection import Extern
from ..spec.maps import MapSpec
from .state import MAX_NOBITS, STB_WEAK, ElfSymbol, ObjectState

__all__ = ["read_externs"]


def read_externs(state: ObjectState, undef: list[ElfSymbol]) -> None:
    """Record the externs named by the undefined symbols `undef`, and the ``.kconfig``
    map that holds the kconfig ones."""
    btf_vars: dict[str, tuple[str, _btf.Type]] = {}
    if state.btf is not None:
        for t in state.btf.types_of_kind(_btf.Kind.DATASEC):
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
            if kconfig_off > MAX_NOBITS:   # .kconfig is one array map value
                raise ELFError(f"kconfig extern {s.name!r} of {size} bytes: .kconfig "
                               f"would hold {kconfig_off}, at most {MAX_NOBITS}",
                               ".kconfig")
        state.externs[s.name] = ext
    if kconfig_off:
        size = (kconfig_off + 7) // 8 * 8
        # no initial contents here: the values are the running kernel's, written
        # when the map is created (a zeroed copy of a huge extern would only cost)
        state.maps[".kconfig"] = MapSpec(
            name=".kconfig", type=MapType.ARRAY, key_size=4, value_size=size,
            max_entries=1, flags=BPF_F_RDONLY_PROG, freeze=True)
