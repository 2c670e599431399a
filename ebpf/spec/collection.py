"""`CollectionSpec`: every map, program and variable of an object, before anything
is loaded (plain data, editable, cheap to copy, no fds)."""

from __future__ import annotations

import ebpf._lazyattr as _lazyattr

from .._sys.fastclass import Record
from ..errors import ELFError, Error, InvalidArgumentError, KeyNotFoundError

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

    from .. import btf
    from ..btf import Spec as BTFSpec  # (`btf` is also a parameter name)
    from .struct_ops import StructOpsSpec

__all__ = ["CollectionSpec", "Extern", "Maps", "NamedDict", "Programs", "VariableSpec",
           "Variables"]


class NamedDict(dict[str, "Any"]):  # (a name: no typing at run time, process start)
    """A dict whose missing keys raise KeyNotFoundError listing what exists."""

    what = "item"

    def __missing__(self, key: str) -> Any:
        have = ", ".join(sorted(self)) or "none"
        raise KeyNotFoundError(f"no {self.what} named {key!r} (have: {have})")


class Programs(NamedDict):
    """Programs by name (an unknown name raises `KeyNotFoundError` listing the known ones)."""

    what = "program"


class Maps(NamedDict):
    """Maps by name (an unknown name raises `KeyNotFoundError` listing the known ones)."""

    what = "map"


class Variables(NamedDict):
    """Variables by name (an unknown name raises `KeyNotFoundError` listing the known ones)."""

    what = "variable"


class Extern(Record):
    """An extern the object needs from the kernel: a `.kconfig` value or a `__ksym`.

    `section` is ".kconfig" or ".ksyms"; `offset` is the value's offset in the
    `.kconfig` map; `type` the BTF type of the variable (or the `Func` of a kfunc).
    """

    # Records, not dataclasses: `dataclasses` costs process start ~8 ms
    _FIELDS = ("name", "section", "type", "weak", "offset", "size", "is_func")
    __slots__ = _FIELDS

    name: str
    section: str
    type: btf.Type | None
    weak: bool
    offset: int
    size: int
    is_func: bool

    def __init__(self, name: str, section: str, type: btf.Type | None = None,
                 weak: bool = False, offset: int = 0, size: int = 0,
                 is_func: bool = False) -> None:
        self.name = name
        self.section = section
        self.type = type
        self.weak = weak
        self.offset = offset
        self.size = size
        self.is_func = is_func

    def __deepcopy__(self, memo: dict[int, Any]) -> Extern:
        """A deep copy sharing the parsed BTF type (see `CollectionSpec.copy`)."""
        from ._copies import btf_of, deep_copy  # on the first deep copy (process start)

        new: Extern = deep_copy(self, memo, btf_of(self.type))
        return new


class VariableSpec(Record):
    """A global variable of an object: `set()` rewrites its bytes in the data
    section before load (the verifier then sees `.rodata` constants); `get()` reads
    them back. `section` names the map holding it (".rodata", ".data.foo", ...)."""

    _FIELDS = ("name", "section", "offset", "size", "type", "_spec")
    _COMPARE = ("name", "section", "offset", "size", "type")  # not the collection
    __slots__ = _FIELDS

    name: str
    section: str
    offset: int
    size: int
    type: btf.Type | None
    _spec: CollectionSpec | None

    def __init__(self, name: str, section: str, offset: int, size: int,
                 type: btf.Type | None = None, _spec: CollectionSpec | None = None) -> None:
        self.name = name
        self.section = section
        self.offset = offset
        self.size = size
        self.type = type
        self._spec = _spec

    def __repr__(self) -> str:
        from .reprs import variable_repr  # the repr helpers on first repr

        return variable_repr(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> VariableSpec:
        """A deep copy sharing the parsed BTF type (see `CollectionSpec.copy`)."""
        from ._copies import btf_of, deep_copy  # on the first deep copy (process start)

        new: VariableSpec = deep_copy(self, memo, btf_of(self.type))
        return new

    def _buffer(self) -> bytearray:
        if self._spec is None:
            raise Error(f"variable {self.name!r} is not part of a CollectionSpec")
        m = self._spec.maps[self.section]
        if not m.contents:
            m.contents = [(0, bytearray(m.value_size))]
        key, value = m.contents[0]
        if not isinstance(value, bytearray):
            value = bytearray(value)
            m.contents[0] = (key, value)
        return value

    @property
    def constant(self) -> bool:
        """True for variables in read-only sections (frozen after load)."""
        return self.section.startswith(".rodata")

    def bounds(self, section_size: int) -> tuple[int, int]:
        """(start, end) of the variable in its section; ELFError when it lies outside."""
        off, size = self.offset, self.size
        if not (isinstance(off, int) and isinstance(size, int)) or off < 0 or size < 0 \
                or off + size > section_size:
            raise ELFError(f"variable {self.name!r} at offset {off!r} size {size!r} lies "
                           f"outside its section ({section_size} bytes)", section=self.section)
        return off, off + size

    def get(self) -> Any:
        """The variable's current value, decoded via BTF (raw bytes without BTF).

        Raises ELFError when the variable lies outside its section."""
        buf = self._buffer()
        start, end = self.bounds(len(buf))
        raw = bytes(buf[start:end])
        if self.type is None:
            return raw
        from ..btf import values  # on first use: `import ebpf.maps` stays free of the codecs

        return values.decode(self.type, raw)

    def set(self, value: Any) -> None:
        """Set the value; checked against the variable's BTF type (ints, bools, enums,
        floats, strings for char arrays, sequences for arrays, dicts for structs, or
        raw bytes of the exact size). Raises ELFError when the variable lies outside
        its section."""
        buf = self._buffer()
        start, end = self.bounds(len(buf))
        if value.__class__ in (bytes, bytearray) and len(value) == end - start and (
                self.type is None or _bytes_as_is(self.type, end - start)):
            buf[start:end] = value  # (what the checks below make of exactly its bytes)
            return
        if self.type is not None:
            from ..btf import values  # on first use: `import ebpf.maps` stays free of the codecs

            data = values.encode(self.type, value, what=self.name)
        else:
            if not isinstance(value, (bytes, bytearray)):
                raise InvalidArgumentError(
                    f"variable {self.name!r} has no BTF; pass {self.size} raw bytes")
            data = bytes(value)
        if len(data) != self.size:
            raise InvalidArgumentError(
                f"variable {self.name!r} is {self.size} bytes, got {len(data)}")
        buf[start:end] = data


# the BTF types module, on first use (as for the codecs), then kept: see set()
_btf_types = _lazyattr.on_first_use("ebpf.btf.types")


def _bytes_as_is(t: btf.Type, size: int) -> bool:
    """Whether `btf.values.encode(t, b)` is `b` itself for any `size` bytes `b`: `t` is
    a struct or union of that size (a char array would take them as a string)."""
    types = _btf_types()
    inner = types.skip_typedefs(t)
    return (inner.__class__ in (types.Struct, types.Union) and inner.size.__class__ is int
            and inner.size == size)


class CollectionSpec(Record):
    """Everything an object file declares, before anything is loaded.

    All fields are plain, editable data. `copy()` is cheap and deep enough that
    editing the copy (variables, map sizes, instructions) leaves the original alone;
    parsed BTF is shared, never re-parsed.
    """

    _FIELDS = ("programs", "maps", "variables", "externs", "btf", "byteorder", "struct_ops")
    __slots__ = (*_FIELDS, "__weakref__")

    programs: Programs
    maps: Maps
    variables: Variables
    externs: dict[str, Extern]
    btf: btf.Spec | None
    byteorder: str
    struct_ops: dict[str, StructOpsSpec]
    """`.struct_ops` / `.struct_ops.link` variables: kernel structs implemented by
    programs of the object (e.g. a TCP congestion control), registered by
    `Collection.attach_all()` or `ebpf.link.struct_ops(coll.maps[name])`."""

    def __init__(
        self,
        programs: Programs | None = None,  # None: new empty dicts
        maps: Maps | None = None,
        variables: Variables | None = None,
        externs: dict[str, Extern] | None = None,
        btf: BTFSpec | None = None,
        byteorder: str = "little",
        struct_ops: dict[str, StructOpsSpec] | None = None,
    ) -> None:
        self.programs = Programs() if programs is None else programs
        self.maps = Maps() if maps is None else maps
        self.variables = Variables() if variables is None else variables
        self.externs = {} if externs is None else externs
        self.btf = btf
        self.byteorder = byteorder
        self.struct_ops = {} if struct_ops is None else struct_ops
        self._bind_variables()

    def _bind_variables(self) -> None:
        """Make every variable's `get`/`set` use this spec's data (after `variables`
        was assigned)."""
        for v in self.variables.values():
            v._spec = self

    def copy(self, *, share_programs: bool = False) -> CollectionSpec:
        """A deep copy: its programs, maps and variables can be edited (and loaded)
        without affecting this spec.

        share_programs  the copy holds this spec's `ProgramSpec` objects themselves,
                        not copies of their thousands of instructions: for loading the
                        same programs with other variable values or maps (one copy per
                        configuration of a template, e.g. for `ebpf.load_many`); an
                        edit of one of its programs then shows in both specs
        """
        externs: dict[str, Extern] = {}
        if self.externs:
            import copy  # on first copy of an object with externs (process start)

            externs = {k: copy.copy(e) for k, e in self.externs.items()}
        new = CollectionSpec(
            programs=Programs(self.programs) if share_programs
            else Programs({k: p.copy() for k, p in self.programs.items()}),
            maps=Maps({k: m.copy() for k, m in self.maps.items()}),
            # (what v.replace() makes, by a positional call: a template's copy per
            # configuration makes these at every load)
            variables=Variables({k: v.__class__(v.name, v.section, v.offset, v.size, v.type)
                                 for k, v in self.variables.items()}),
            externs=externs,
            btf=self.btf,
            byteorder=self.byteorder,
            struct_ops={k: v.copy() for k, v in self.struct_ops.items()},
        )
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> CollectionSpec:
        """A deep copy that, like `copy()`, shares the parsed BTF and its types (a
        load finds them by identity in it). Pickles carry them along instead."""
        from ._copies import deep_copy  # on the first deep copy (process start)

        new: CollectionSpec = deep_copy(self, memo, (self.btf,))
        return new

    def __repr__(self) -> str:
        from .reprs import collection_repr  # the repr helpers on first repr

        return collection_repr(self)
