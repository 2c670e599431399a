"""Collections: every map and program of an object, as specs and as kernel objects.

`load_collection_spec(path_or_bytes)` parses an ELF object into a
`CollectionSpec` (pure data, editable, cheap to copy). `Collection(spec)` creates
its maps, loads its programs against them and the running kernel, and owns them.
"""

from __future__ import annotations

import _thread  # (threading's lock, without importing threading: process start)
import errno
import os
from collections.abc import Iterable, Iterator, Mapping

from ._sys import validate as _validate
from ._sys.types import BPF_F_MMAPABLE, MapType
from .elf.parse import load_collection_spec
from .errors import ClosedError, InvalidArgumentError, SyscallError
from .instantiate import instantiate
from .spec.collection import CollectionSpec, Extern, Maps, Programs, Variables, VariableSpec

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from . import btf
    from .link import Link
    from .maps import Map
    from .token import Token

_ENOTSUPP = 524  # the kernel's internal "not supported" (what mmap of such maps returns)
# Variable.set of a section served by lookups reads, changes and writes back the whole
# section: one at a time, or a set in between is lost (replaced in a forked child)
_rewrite_lock = _thread.allocate_lock()

__all__ = ["Collection", "CollectionSpec", "Extern", "Maps", "Programs", "Variable", "VariableSpec",
           "Variables", "load_collection_spec"]


class Variable:
    """A global variable of a loaded collection, read and written live.

    `.data`/`.bss` variables go through the data map's mmap (or map lookups when
    the map is not mmapable); `.rodata` variables are frozen: read-only here;
    ``__arena`` globals are read and written in the arena's memory.

    Once the collection is closed, `get`/`set` raise `ClosedError`; one that started
    before (in another thread) finishes on the old map's memory, never on a map that
    reused the descriptor number (the mapping is released when its last reader is done).
    """

    def __init__(self, spec: VariableSpec, map: Map) -> None:
        self.spec = spec
        self.map = map
        self._view: memoryview | None = None
        self._unmappable = False
        self._closed = False

    def _mmap(self) -> memoryview | None:
        """The data map's memory (made on first use), None where lookups serve instead;
        `ClosedError` once closed."""
        view = self._view
        if view is not None:
            return view
        if self._closed:
            raise ClosedError(f"variable {self.name!r} is closed")
        if self._unmappable or self.constant or not self.map.info().flags & BPF_F_MMAPABLE:
            return None
        try:
            # an __arena global: the arena's pages, mapped with the map
            view = self.map.memory() if self.map.type == MapType.ARENA else self.map.mmap()
        except SyscallError as e:
            # the kernel maps no memory holding a bpf_spin_lock, a timer, a kptr
            # (ENOTSUPP): such a section is read and written through lookups
            if e.errno not in (_ENOTSUPP, errno.EOPNOTSUPP):
                raise
            self._unmappable = True
            return None
        if not self._closed:  # closed meanwhile: this access uses it, nobody keeps it
            self._view = view
        return view

    @property
    def name(self) -> str:
        """The variable's name."""
        return self.spec.name

    @property
    def constant(self) -> bool:
        """Whether it lives in `.rodata` (frozen after loading: read-only)."""
        return self.spec.constant

    def _section_size(self) -> int:
        if self.map.type == MapType.ARENA:  # __arena globals: the arena's pages
            return self.map.max_entries * os.sysconf("SC_PAGE_SIZE")
        return self.map.value_size

    def _raw(self) -> bytes:
        off, end = self.spec.bounds(self._section_size())
        size = end - off
        if self._closed:
            raise ClosedError(f"variable {self.name!r} is closed")
        mv = self._mmap()
        if mv is not None:
            return bytes(mv[off : off + size])
        value: bytes = self.map.lookup(0, raw=True)
        return bytes(value[off : off + size])

    def close(self) -> None:
        """Release the memory mapping (the collection does this when it closes); later
        `get`/`set` raise `ClosedError`. The view is dropped, not released: a `get`/`set`
        in flight in another thread still holds it and finishes on it; the memory is
        unmapped when the last of them lets go (at once when none is running)."""
        self._closed = True
        self._view = None

    def get(self) -> Any:
        """The current value, decoded through its BTF type (bytes without BTF)."""
        raw = self._raw()
        if self.spec.type is None:
            return raw
        from .btf import values  # the BTF codecs on first use, as for VariableSpec

        return values.decode(self.spec.type, raw)

    def set(self, value: Any) -> None:
        """Write a new value; programs see it at once (`.rodata`: `InvalidArgumentError`).

        In a section the kernel does not map (one holding a spin lock, a timer, a kptr),
        the whole section is read and written back: sets from this process's threads
        take turns, but a program's writes to the section in between are overwritten."""
        if self.constant:
            raise InvalidArgumentError(
                f"variable {self.name!r} is a constant in {self.spec.section} (frozen after "
                "load); set it on the CollectionSpec before loading")
        if self.spec.type is not None:
                from .btf import values  # (see get)

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
        self.spec.bounds(self._section_size())
        if self._closed:
            raise ClosedError(f"variable {self.name!r} is closed")
        mv = self._mmap()
        if mv is not None:
            mv[self.spec.offset : self.spec.offset + self.spec.size] = data
            return
        with _rewrite_lock:
            whole = bytearray(self.map.lookup(0, raw=True))
            whole[self.spec.offset : self.spec.offset + self.spec.size] = data
            self.map[0] = bytes(whole)

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        """Refused with `NotPicklableError` (also by `copy.deepcopy`): pickle its spec
        (`spec`) or its value (`get()`)."""
        from ._sys.nopickle import refuse  # on a refusal only (process start)

        refuse(f"variable {self.name!r}",
               "pickle its VariableSpec (Variable.spec) or its value (Variable.get())")

    def __copy__(self) -> Variable:
        """A shallow copy sharing the map (what `copy.copy` always made)."""
        from ._sys.nopickle import shallow_copy  # on a copy only (process start)

        return shallow_copy(self)

    def __repr__(self) -> str:
        return f"<Variable {self.name} in {self.spec.section}>"


def _check_options(spec: object, map_replacements: object, programs: object,
                   kernel_btf: object) -> set[str] | None:
    """`Collection`'s arguments checked for type (InvalidArgumentError naming the one that
    is wrong); returns the names in `programs` as a set (None: every autoloaded one)."""
    if not isinstance(spec, CollectionSpec):
        raise InvalidArgumentError(
            f"Collection needs a CollectionSpec (from ebpf.load_collection_spec), got "
            f"{type(spec).__name__}")
    if map_replacements is not None:
        if not isinstance(map_replacements, Mapping):
            raise InvalidArgumentError(
                "map_replacements must be a mapping of map names to ebpf.Map objects, got "
                f"{type(map_replacements).__name__}")
        for name, m in map_replacements.items():
            if not (hasattr(m, "fileno") and hasattr(m, "info")):
                raise InvalidArgumentError(
                    f"map_replacements[{name!r}] must be an ebpf.Map (a loaded map, not a "
                    f"MapSpec), got {type(m).__name__}")
    if kernel_btf is not None:
        from .btf import Spec  # (only with kernel_btf, which loads BTF anyway)

        if not isinstance(kernel_btf, Spec):
            raise InvalidArgumentError(
                f"kernel_btf must be an ebpf.btf.Spec, got {type(kernel_btf).__name__}")
    if programs is None:
        return None
    if isinstance(programs, (str, bytes)) or not isinstance(programs, Iterable):
        raise InvalidArgumentError(
            f"programs must be an iterable of program names (e.g. [{programs!r}]), got "
            f"{type(programs).__name__}")
    names = list(programs)
    for name in names:
        if not isinstance(name, str):
            raise InvalidArgumentError(
                f"programs must hold program names (str), got {type(name).__name__} {name!r}")
    return set(names)


class Collection:
    """The kernel objects of a CollectionSpec: `programs`, `maps` and `variables`.

    Options:
      pin_path       directory on bpffs for maps with `pinning` BY_NAME (reused
                     when compatible, refused with a clear error when not)
      map_replacements  existing Maps to use instead of creating the named ones
      programs       names of the programs to load (default: all autoloaded ones)
      kernel_btf     BTF to relocate CO-RE against instead of the running kernel's
      log_level      verifier log level for every program
      token          an `ebpf.Token` every map, program and BTF load carries; by
                     default one made from $EBPF_BPF_TOKEN_PATH when that is set
                     (see `ebpf.token`), else none

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
        token: Token | None = None,
    ) -> None:
        only = _check_options(spec, map_replacements, programs, kernel_btf)
        if pin_path is not None:
            pin_path = _validate.path(pin_path, "pin_path")
        own_token = token is None
        if token is None and os.environ.get("EBPF_BPF_TOKEN_PATH"):
            from .token import token_from_env  # ebpf.token only when asked for

            token = token_from_env()
        if token is None:
            made = instantiate(spec, pin_path=pin_path, map_replacements=map_replacements,
                               only=only,
                               kernel_btf=kernel_btf, log_level=log_level)
        else:
            try:
                with token.use():
                    made = instantiate(spec, pin_path=pin_path,
                                       map_replacements=map_replacements,
                                       only=only,
                                       kernel_btf=kernel_btf, log_level=log_level)
            finally:
                if own_token:
                    token.close()  # needed for loading only
        try:
            variables = Variables({name: Variable(vs, made.maps[vs.section])
                                   for name, vs in spec.variables.items()})
        except BaseException:
            made.close()
            raise
        self.spec = spec
        self.programs: Programs = made.programs
        self.maps: Maps = made.maps
        self.variables: Variables = variables
        self._owned: list[Any] = made.owned
        self._closed = False

    def attach_all(self) -> list[Link]:
        """Attach every program whose section names its target (libbpf's auto-attach)
        and register every struct_ops map; returns the links. Programs that cannot
        auto-attach are skipped."""
        from .link import struct_ops  # link sits above collection: the one call up
        from .struct_ops import StructOpsMap  # (ebpf.link has loaded it)

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
        """Close every program, map and variable mapping of the collection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for v in self.variables.values():
            v.close()
        for obj in reversed(self._owned):
            obj.close()
        self._owned.clear()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        """Refused with `NotPicklableError` (also by `copy.deepcopy`): pickle its spec
        (`spec`) and load it in the other process, or pin its maps and programs and
        open the pins there."""
        from ._sys.nopickle import refuse  # on a refusal only (process start)

        refuse("collection",
               "pickle its CollectionSpec (Collection.spec) and load it in the other process, or "
               "pin its maps and programs and open the pins there")

    def __copy__(self) -> Collection:
        """A shallow copy sharing the maps and programs (what `copy.copy` always made)."""
        from ._sys.nopickle import shallow_copy  # on a copy only (process start)

        return shallow_copy(self)

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        return iter(self.programs)

    def __repr__(self) -> str:
        return f"<Collection programs={list(self.programs)} maps={list(self.maps)}>"
