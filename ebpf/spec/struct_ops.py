"""`StructOpsSpec`: a struct_ops variable of an object (``.struct_ops``,
``.struct_ops.link``), as parsed; `ebpf.struct_ops` makes kernel objects of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._sys.fastclass import Record

if TYPE_CHECKING:
    from typing import Any

    from .. import btf

__all__ = ["StructOpsSpec"]


class StructOpsSpec(Record):
    """One struct_ops variable of an object: the kernel struct it implements
    (`type_name`, e.g. "tcp_congestion_ops"; a local type named with a flavor,
    ``struct tcp_congestion_ops___v2``, implements the kernel struct named without it),
    its local BTF type, its initial bytes, which program implements which function
    pointer member (`programs`: member name -> program name), and whether it
    registers through a bpf_link (``.struct_ops.link``).

    `autocreate`: whether loading the collection creates the map (False for a
    variable in ``SEC("?.struct_ops")`` or ``SEC("?.struct_ops.link")``; settable
    before loading). As in libbpf, a struct_ops program that some struct_ops variable
    refers to loads exactly when one of the variables referring to it is created,
    whatever its own `autoload`; members the running kernel's struct lacks must be
    zero/NULL in the variables that are created.
    """

    # a Record, not a dataclass: `dataclasses` costs process start ~8 ms
    _FIELDS = ("name", "type_name", "type", "data", "programs", "link", "section",
               "autocreate")
    __slots__ = _FIELDS

    name: str
    type_name: str
    type: btf.Struct
    data: bytes
    programs: dict[str, str]
    link: bool
    section: str
    autocreate: bool

    def __init__(self, name: str, type_name: str, type: btf.Struct, data: bytes,
                 programs: dict[str, str], link: bool, section: str,
                 autocreate: bool = True) -> None:
        self.name = name
        self.type_name = type_name
        self.type = type
        self.data = data
        self.programs = programs
        self.link = link
        self.section = section
        self.autocreate = autocreate

    def copy(self) -> StructOpsSpec:
        """A copy whose program assignments can be edited independently."""
        return self.replace(programs=dict(self.programs))

    def __deepcopy__(self, memo: dict[int, Any]) -> StructOpsSpec:
        """A deep copy sharing the parsed BTF type, as `CollectionSpec.copy` does."""
        from ._copies import btf_of, deep_copy  # on the first deep copy (process start)

        new: StructOpsSpec = deep_copy(self, memo, btf_of(self.type))
        return new
