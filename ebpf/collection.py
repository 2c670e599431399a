"""Collections: every map and program of an object, as specs and as kernel objects.

`load_collection_spec(path_or_bytes)` parses an ELF object into a
`CollectionSpec` (pure data, editable, cheap to copy). `Collection(spec)` creates
its maps, loads its programs against them and the running kernel, and owns them.
"""

from __future__ import annotations

import contextlib
import copy as _copy
import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .errors import ELFError, Error, InvalidArgumentError, KeyNotFoundError

if TYPE_CHECKING:
    from . import btf
    from .elf.struct_ops import StructOpsSpec
    from .link import Link
    from .maps import Map, MapSpec
    from .programs import Program, ProgramSpec


class _NamedDict(dict[str, Any]):
    """A dict whose missing keys raise KeyNotFoundError listing what exists."""

    what = "item"

    def __missing__(self, key: str) -> Any:
        have = ", ".join(sorted(self)) or "none"
        raise KeyNotFoundError(f"no {self.what} named {key!r} (have: {have})")


class Programs(_NamedDict):
    what = "program"


class Maps(_NamedDict):
    what = "map"


class Variables(_NamedDict):
    what = "variable"


@dataclasses.dataclass
class Extern:
    """An extern the object needs from the kernel: a `.kconfig` value or a `__ksym`.

    `section` is ".kconfig" or ".ksyms"; `offset` is the value's offset in the
    `.kconfig` map; `type` the BTF type of the variable (or the `Func` of a kfunc).
    """

    name: str
    section: str
    type: btf.Type | None = None
    weak: bool = False
    offset: int = 0
    size: int = 0
    is_func: bool = False


@dataclasses.dataclass
class VariableSpec:
    """A global variable of an object: `set()` rewrites its bytes in the data
    section before load (the verifier then sees `.rodata` constants); `get()` reads
    them back. `section` names the map holding it (".rodata", ".data.foo", ...)."""

    name: str
    section: str
    offset: int
    size: int
    type: btf.Type | None = None
    _spec: CollectionSpec | None = dataclasses.field(default=None, repr=False, compare=False)

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

    def _bounds(self, section_size: int) -> tuple[int, int]:
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
        start, end = self._bounds(len(buf))
        raw = bytes(buf[start:end])
        if self.type is None:
            return raw
        from .btf import values

        return values.decode(self.type, raw)

    def set(self, value: Any) -> None:
        """Set the value; checked against the variable's BTF type (ints, bools, enums,
        floats, strings for char arrays, sequences for arrays, dicts for structs, or
        raw bytes of the exact size). Raises ELFError when the variable lies outside
        its section."""
        buf = self._buffer()
        start, end = self._bounds(len(buf))
        if self.type is not None:
            from .btf import values

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


@dataclasses.dataclass
class CollectionSpec:
    """Everything an object file declares, before anything is loaded.

    All fields are plain, editable data. `copy()` is cheap and deep enough that
    editing the copy (variables, map sizes, instructions) leaves the original alone;
    parsed BTF is shared, never re-parsed.
    """

    programs: Programs = dataclasses.field(default_factory=Programs)
    maps: Maps = dataclasses.field(default_factory=Maps)
    variables: Variables = dataclasses.field(default_factory=Variables)
    externs: dict[str, Extern] = dataclasses.field(default_factory=dict)
    btf: btf.Spec | None = None
    byteorder: str = "little"
    struct_ops: dict[str, StructOpsSpec] = dataclasses.field(default_factory=dict)
    """`.struct_ops` / `.struct_ops.link` variables: kernel structs implemented by
    programs of the object (e.g. a TCP congestion control), registered by
    `Collection.attach_all()` or `ebpf.link.struct_ops(coll.maps[name])`."""

    def __post_init__(self) -> None:
        for v in self.variables.values():
            v._spec = self

    def copy(self) -> CollectionSpec:
        new = CollectionSpec(
            programs=Programs({k: p.copy() for k, p in self.programs.items()}),
            maps=Maps({k: m.copy() for k, m in self.maps.items()}),
            variables=Variables({k: dataclasses.replace(v) for k, v in self.variables.items()}),
            externs={k: _copy.copy(e) for k, e in self.externs.items()},
            btf=self.btf,
            byteorder=self.byteorder,
            struct_ops={k: v.copy() for k, v in self.struct_ops.items()},
        )
        return new


class Variable:
    """A global variable of a loaded collection, read and written live.

    `.data`/`.bss` variables go through the data map's mmap (or map lookups when
    the map is not mmapable); `.rodata` variables are frozen: read-only here.
    """

    def __init__(self, spec: VariableSpec, map: Map) -> None:
        self.spec = spec
        self.map = map
        self._view: memoryview | None = None

    def _mmap(self) -> memoryview | None:
        if self._view is None:
            from ._sys.types import BPF_F_MMAPABLE

            if self.constant or not self.map.info().flags & BPF_F_MMAPABLE:
                return None
            self._view = self.map.mmap()
        return self._view

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def constant(self) -> bool:
        return self.spec.constant

    def _raw(self) -> bytes:
        off, end = self.spec._bounds(self.map.value_size)
        size = end - off
        mv = self._mmap()
        if mv is not None:
            return bytes(mv[off : off + size])
        value: bytes = self.map.lookup(0, raw=True)
        return bytes(value[off : off + size])

    def close(self) -> None:
        """Release the memory mapping (the collection does this when it closes)."""
        view, self._view = self._view, None
        if view is not None:
            view.release()

    def get(self) -> Any:
        raw = self._raw()
        if self.spec.type is None:
            return raw
        from .btf import values

        return values.decode(self.spec.type, raw)

    def set(self, value: Any) -> None:
        if self.constant:
            raise InvalidArgumentError(
                f"variable {self.name!r} is a constant in {self.spec.section} (frozen after "
                "load); set it on the CollectionSpec before loading")
        if self.spec.type is not None:
            from .btf import values

            data = values.encode(self.spec.type, value, what=self.name)
        else:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise InvalidArgumentError(
                    f"variable {self.name!r} has no BTF; pass {self.spec.size} raw bytes, "
                    f"not {type(value).__name__}")
            data = bytes(value)
        if len(data) != self.spec.size:
            raise InvalidArgumentError(
                f"variable {self.name!r} is {self.spec.size} bytes, got {len(data)}")
        self.spec._bounds(self.map.value_size)
        mv = self._mmap()
        if mv is not None:
            mv[self.spec.offset : self.spec.offset + self.spec.size] = data
            return
        whole = bytearray(self.map.lookup(0, raw=True))
        whole[self.spec.offset : self.spec.offset + self.spec.size] = data
        self.map[0] = bytes(whole)

    def __repr__(self) -> str:
        return f"<Variable {self.name} in {self.spec.section}>"


def load_collection_spec(source: str | os.PathLike[str] | bytes) -> CollectionSpec:
    """Parse a clang-compiled BPF ELF object (a path or its bytes) into a CollectionSpec.

    No kernel access. Malformed input raises ELFError/BTFError naming section and
    offset.
    """
    from .elf.loader import load_elf

    if isinstance(source, (bytes, bytearray, memoryview)):
        return load_elf(bytes(source))
    from ._sys.validate import path

    with open(path(source, "object file path"), "rb") as f:
        return load_elf(f.read())


class Collection:
    """The kernel objects of a CollectionSpec: `programs`, `maps` and `variables`.

    Options:
      pin_path       directory on bpffs for maps with `pinning` BY_NAME (reused
                     when compatible, refused with a clear error when not)
      map_replacements  existing Maps to use instead of creating the named ones
      programs       names of the programs to load (default: all autoloaded ones)
      kernel_btf     BTF to relocate CO-RE against instead of the running kernel's
      log_level      verifier log level for every program

    On any failure everything created so far is closed and the exception says
    which map or program failed. Closing the collection closes its maps and
    programs (pinned objects stay pinned).
    """

    def __init__(
        self,
        spec: CollectionSpec,
        *,
        pin_path: str | None = None,
        map_replacements: Mapping[str, Map] | None = None,
        programs: Iterable[str] | None = None,
        kernel_btf: btf.Spec | None = None,
        log_level: int = 0,
    ) -> None:
        from ._sys.validate import path
        from .loader import load_collection

        if pin_path is not None:
            pin_path = path(pin_path, "pin_path")
        self.spec = spec
        self.programs: Programs = Programs()
        self.maps: Maps = Maps()
        self.variables: Variables = Variables()
        self._owned: list[Any] = []
        self._closed = False
        load_collection(self, spec, pin_path=pin_path,
                        map_replacements=dict(map_replacements or {}),
                        only=set(programs) if programs is not None else None,
                        kernel_btf=kernel_btf, log_level=log_level)

    def attach_all(self) -> list[Link]:
        """Attach every program whose section names its target (libbpf's auto-attach)
        and register every struct_ops map; returns the links. Programs that cannot
        auto-attach are skipped."""
        from .link.struct_ops import StructOpsMap, struct_ops

        links: list[Link] = []
        try:
            for prog in self.programs.values():
                link = prog.attach()
                if link is not None:
                    links.append(link)
            for m in self.maps.values():
                if isinstance(m, StructOpsMap):
                    links.append(struct_ops(m))
        except BaseException:
            for link in links:
                link.close()
            raise
        return links

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for v in self.variables.values():
            v.close()
        for obj in reversed(self._owned):
            obj.close()
        self._owned.clear()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        return iter(self.programs)

    def __repr__(self) -> str:
        return f"<Collection programs={list(self.programs)} maps={list(self.maps)}>"


@contextlib.contextmanager
def _closing_on_error(objs: list[Any]) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for o in reversed(objs):
            with contextlib.suppress(Exception):
                o.close()
        raise


if TYPE_CHECKING:
    _unused: tuple[type[MapSpec], type[ProgramSpec], type[Program]]
