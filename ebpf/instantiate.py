"""CollectionSpec -> kernel objects: maps first, then programs, then struct_ops maps and
the contents that refer to programs (see `ebpf.Collection`, which owns the result).

Below the collection: this module makes kernel objects from specs and knows nothing
of `Collection` itself."""

from __future__ import annotations

import _thread  # (threading's lock, without importing threading: process start)
import functools
import mmap
from collections.abc import Mapping

from . import btf as _btf
from ._objcache import attached
from ._sys import log
from ._sys.btf import blob_buffer
from ._sys.types import MapType
from .btf.handle import Handle
from .btf.kernel import find_kernel_type
from .errors import (
    Error,
    InvalidArgumentError,
    KeyNotFoundError,
    NotSupportedError,
    prefixed,
)
from .maps import Map
from .programs import Program, meta_key_indexes, object_btf_blob
from .spec.collection import CollectionSpec, Extern, Maps, Programs
from .spec.maps import MapSpec
from .spec.programs import ProgramSpec

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["KernelObjects", "instantiate"]


class KernelObjects:
    """What `instantiate` made: the maps and programs by name, and `owned`, the objects
    it created (not the replacements it was given) in creation order."""

    # a plain class, not a dataclass: `dataclasses` costs process start ~1 ms a class
    __slots__ = ("maps", "owned", "programs")

    def __init__(self, maps: Maps, programs: Programs, owned: list[Any]) -> None:
        self.maps = maps
        self.programs = programs
        self.owned = owned

    def __repr__(self) -> str:
        return (f"KernelObjects(maps={self.maps!r}, programs={self.programs!r}, "
                f"owned={self.owned!r})")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, KernelObjects)
        return (self.maps, self.programs, self.owned) == (
            other.maps, other.programs, other.owned)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def close(self) -> None:
        """Close what was created, newest first (errors are ignored)."""
        for obj in reversed(self.owned):
            try:  # (not contextlib.suppress: ~4k instructions an object at every reload)
                obj.close()
            except Exception:
                pass
        self.owned.clear()


def instantiate(spec: CollectionSpec, *, pin_path: str | None = None,
                map_replacements: Mapping[str, Map] | None = None,
                only: set[str] | None = None, kernel_btf: _btf.Spec | None = None,
                log_level: int = 0) -> KernelObjects:
    """Create the maps of `spec` (or take them from `map_replacements`), load its
    programs (all autoloaded ones, or those named in `only`), create its struct_ops
    maps and fill in the contents that refer to other maps and programs.

    On any failure everything created so far is closed and the exception (of the
    original type) names the map or program that failed."""
    map_replacements = dict(map_replacements or {})
    maps, programs = Maps(), Programs()
    if not map_replacements.keys() <= spec.maps.keys():
        unknown = set(map_replacements) - set(spec.maps)
        raise KeyNotFoundError(f"map_replacements names unknown maps: {sorted(unknown)}")
    if only is not None:
        missing = only - set(spec.programs)
        if missing:
            raise KeyNotFoundError(f"no programs named {sorted(missing)} "
                                   f"(have: {', '.join(sorted(spec.programs))})")
    created: list[Any] = []
    handle = None
    try:
        use = _btf_use(spec)
        if use is not None:
            created.append(use)  # (released when the collection closes)
            handle = use.handle
        deferred: list[tuple[str, Any, str]] = []
        for name, ms in spec.maps.items():
            if name in map_replacements:
                m = map_replacements[name]
                ms.check_compatible(m)
                maps[name] = m
                continue
            freeze = False
            if _adjusted(ms):
                ms = _map_for_load(spec, ms)
                plain = [(k, v) for k, v in ms.contents if not isinstance(v, str)]
                deferred.extend((name, k, v) for k, v in ms.contents if isinstance(v, str))
                freeze = ms.freeze
                if len(plain) != len(ms.contents):
                    ms.freeze = False
                ms.contents = plain
            # (else the spec as it is: Map makes its own copy)
            try:
                m = Map(ms, btf_handle=handle, pin_path=pin_path)
            except BaseException as e:
                raise prefixed(f"map {name!r}", e) from None
            created.append(m)
            maps[name] = m
            if freeze and not ms.freeze:
                ms.freeze = True
        # map-in-map initial values, then programs, then prog array entries
        for name, key, target in deferred:
            if spec.maps[name].type != MapType.PROG_ARRAY:
                maps[name][key] = maps[target].fileno()
        autoload: dict[str, bool] = {}
        if spec.struct_ops:
            # struct_ops kernel objects only for objects that have struct_ops variables
            from .struct_ops import (
                check_struct_ops_members,
                resolve_struct_ops_programs,
                struct_ops_autoload,
            )

            autoload = struct_ops_autoload(spec)
            for name, ops in spec.struct_ops.items():
                # (with `only`, a map whose programs are not all wanted is not made)
                if ops.autocreate and (only is None or set(ops.programs.values()) <= only):
                    try:
                        check_struct_ops_members(ops)
                    except BaseException as e:
                        raise prefixed(f"struct_ops map {name!r}", e) from None
        wanted = [n for n, p in spec.programs.items()
                  if (n in only if only is not None else autoload.get(n, p.autoload))]
        if spec.struct_ops:
            resolve_struct_ops_programs(spec, wanted)
        for name in wanted:
            ps = _resolve_externs(spec, spec.programs[name])
            # one BTF object for the maps and the programs (kptr and graph types must
            # come from the BTF object of the map value that holds them)
            shared = handle if ps.btf is spec.btf else None
            try:
                prog = Program(ps, maps=maps, kernel_btf=kernel_btf, log_level=log_level,
                               btf_handle=shared)
            except BaseException as e:
                raise prefixed(f"program {name!r}", e) from None
            created.append(prog)
            programs[name] = prog
        if spec.struct_ops:
            from .struct_ops import StructOpsMap  # (see resolve_struct_ops_programs above)

            for name, ops in spec.struct_ops.items():
                if not ops.autocreate:
                    continue
                if only is not None and not set(ops.programs.values()) <= set(programs):
                    # a partial collection (e.g. `ebpf load --each`) without some of the
                    # map's programs: the programs load (libbpf 1.1 too), the map cannot
                    continue
                try:
                    m = StructOpsMap.create(ops, programs)
                except BaseException as e:
                    raise prefixed(f"struct_ops map {name!r}", e) from None
                maps[name] = m
                created.append(m)
        for name, key, target in deferred:
            if spec.maps[name].type == MapType.PROG_ARRAY and target in programs:
                maps[name][key] = programs[target].fileno()
        if deferred:  # maps frozen only once the contents naming programs are in
            for name, ms in spec.maps.items():
                if ms.freeze and name not in map_replacements and any(
                        isinstance(v, str) for _, v in ms.contents):
                    maps[name].freeze()
    except BaseException:
        KernelObjects(maps, programs, created).close()
        raise
    return KernelObjects(maps, programs, created)


_RINGBUFS = (MapType.RINGBUF, MapType.USER_RINGBUF)


def _adjusted(ms: MapSpec) -> bool:
    """Whether the load changes `ms` (`_map_for_load`; contents that name maps or
    programs are set later)."""
    return (ms.name == ".kconfig" or ms.inner_map is not None or ms.type in _RINGBUFS
            or any(isinstance(v, str) for _, v in ms.contents))


def _map_for_load(spec: CollectionSpec, ms: MapSpec) -> MapSpec:
    ms = ms.copy()
    if ms.name == ".kconfig":
        _fill_kconfig(spec, ms)
    _adjust_ringbuf_size(ms)
    return ms


def _adjust_ringbuf_size(ms: MapSpec) -> None:
    """Like libbpf, round a (user) ring buffer's size up to a power-of-2 multiple of the
    page size, which the kernel requires (objects often say e.g. 1000 or 256 * 1024 - 1);
    also for the inner map of a map-in-map."""
    if ms.inner_map is not None:
        _adjust_ringbuf_size(ms.inner_map)
    if ms.type not in (MapType.RINGBUF, MapType.USER_RINGBUF):
        return
    size = ms.max_entries
    page = mmap.PAGESIZE
    if size <= 0 or (size % page == 0 and (size // page) & (size // page - 1) == 0):
        return  # zero stays an error the kernel reports; a valid size passes through
    mul = 1
    while mul * page <= size and mul * page <= 0xFFFFFFFF:
        mul <<= 1
    if mul * page <= 0xFFFFFFFF:
        ms.max_entries = mul * page


def _btf_use(spec: CollectionSpec) -> _BTFUse | None:
    """The object's BTF loaded into the kernel (for map key/value types and the programs'
    func/line info), or None when the object has none or the kernel refuses it (maps
    then load without BTF)."""
    if spec.btf is None:
        return None
    try:
        blob = object_btf_blob(spec.btf)
        # (the blob is the same object while the spec's kernel-ready BTF is unchanged)
        cache = attached(spec.btf, "_instantiate_btf")
        shared: _SharedBTF | None = cache.get("blob")
        if shared is None or shared.blob is not blob:
            new = _SharedBTF(blob)  # (made outside the lock: see _shared_lock)
            with _shared_lock:  # (threads loading copies at once make one, not one each)
                shared = cache.get("blob")
                if shared is None or shared.blob is not blob:
                    shared = cache["blob"] = new
        return _BTFUse(shared)
    except Error as e:
        log.warning(
            "the kernel refused the object's BTF (%s): maps are created without BTF types",
            e)
        return None


# Guards the `_SharedBTF` entries and use counts. Nothing made under it is tracked by the
# garbage collector, so no collection (whose `_BTFUse.__del__` takes it) runs while it is
# held; reentrant all the same, against a signal handler dropping a collection there.
# (Reset in a forked child: ebpf._sys.forking.)
_shared_lock = _thread.RLock()


class _SharedBTF:
    """One BTF blob of a spec and the BTF object loaded from it, which every collection
    loaded from that blob uses while any of them is open (libbpf keeps an object's BTF
    while the object is loaded too): a template reloaded while its previous version still
    runs loads its BTF once, not at each reload (~45 us of kernel work). Closed when the
    last of those collections closes: nothing stays in the kernel that no open
    collection holds."""

    __slots__ = ("blob", "buffer", "handle", "users")

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.buffer = blob_buffer(blob)  # what the kernel reads, made once
        self.handle: Handle | None = None
        self.users = 0

    def take(self) -> Handle:
        """The loaded BTF object, loaded now if no collection holds it; one more user."""
        with _shared_lock:
            h = self.handle
            if h is not None:
                self.users += 1
                return h
        new = Handle._from_buffer(self.buffer)  # (outside the lock: a system call)
        with _shared_lock:
            h = self.handle
            if h is None:
                h = self.handle = new
            self.users += 1
        if h is not new:  # another thread loaded it meanwhile
            new.close()
        return h

    def give_back(self) -> None:
        """One user less; the last one closes the BTF object."""
        with _shared_lock:
            self.users -= 1
            if self.users:
                return
            h, self.handle = self.handle, None
        if h is not None:
            h.close()


class _BTFUse:
    """A collection's use of a `_SharedBTF`, given back by `close()` (once) or when
    the collection is garbage collected unclosed."""

    __slots__ = ("handle", "shared")

    def __init__(self, shared: _SharedBTF) -> None:
        self.shared = shared
        self.handle: Handle | None = None
        self.handle = shared.take()

    def close(self) -> None:
        if self.handle is not None:
            self.handle = None
            self.shared.give_back()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # (at interpreter exit too)
            pass


# -- externs -------------------------------------------------------------------------


def _fill_kconfig(spec: CollectionSpec, ms: MapSpec) -> None:
    from . import kconfig  # the kernel config reader, only for .kconfig externs
    from .btf import values  # the BTF codecs, only for .kconfig externs

    buf = bytearray(ms.value_size)
    for ext in spec.externs.values():
        if ext.section != ".kconfig":
            continue
        assert ext.type is not None
        value = _kconfig_value(ext, kconfig)
        if value is None:
            if not ext.weak:
                raise NotSupportedError(
                    f"kconfig extern {ext.name}", "the running kernel's config does not set "
                    "it; declare it __weak to default to zero")
            continue
        buf[ext.offset : ext.offset + ext.size] = values.encode(ext.type, value, ext.name)
    ms.contents = [(0, buf)]


def _kconfig_value(ext: Extern, kconfig: Any) -> Any:
    if ext.name in kconfig.VIRTUAL:
        return kconfig.virtual_value(ext.name)
    if ext.name.startswith("LINUX_"):
        # a virtual extern this library does not know: zero when __weak (libbpf too)
        if ext.weak:
            return None
        raise InvalidArgumentError(f"unrecognized virtual kconfig extern {ext.name!r} "
                                   "(declare it __weak to default to zero)")
    if not ext.name.startswith("CONFIG_"):
        raise InvalidArgumentError(f"unknown kconfig extern {ext.name!r}")
    raw = kconfig.kernel_config().get(ext.name)
    if raw is None:
        return None
    assert ext.type is not None
    t = _btf.skip_typedefs(ext.type)
    if isinstance(t, _btf.Enum):  # enum libbpf_tristate
        return {"y": 1, "m": 2, "n": 0}.get(raw, 0)
    if isinstance(t, _btf.Array):  # char[N]: a quoted string
        return raw.strip('"')
    # (4: IntEncoding.BOOL, read raw: no IntEncoding class made)
    if isinstance(t, _btf.Int) and (t._encoding & 4 or t.size == 1) and \
            raw in ("y", "m", "n"):
        return raw != "n"
    if raw in ("y", "m"):
        return 1 if raw == "y" else 2
    try:
        return int(raw, 0)
    except ValueError:
        raise InvalidArgumentError(f"kconfig {ext.name}={raw} does not fit its "
                                   f"declared type {t.type_name}") from None


@functools.cache
def _kallsyms() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    out.setdefault(parts[2], int(parts[0], 16))
    except OSError:
        pass
    return out


@functools.cache
def _kallsyms_hidden() -> bool:
    """True when /proc/kallsyms shows every address as zero (kptr_restrict)."""
    return not any(_kallsyms().values())


def _resolve_externs(spec: CollectionSpec, ps: ProgramSpec) -> ProgramSpec:
    """Typeless ksyms get their kallsyms address; weak ksyms missing from the kernel
    become zero. Typed ksyms and kfuncs are left for the program loader (BTF ids)."""
    if not spec.externs:
        return ps
    needs = meta_key_indexes(ps, "extern")  # (known from the last load: no pass)
    if not needs:
        return ps
    # what changes, by instruction index: a copy of the spec only when something does, so
    # that a spec with kfuncs or typed ksyms (left to the loader) keeps its prepared
    # template from one load to the next
    changes: list[tuple[int, dict[str, Any]]] = []
    for i in needs:
        ins = ps.instructions[i]
        assert ins.meta is not None
        ext = spec.externs[ins.meta["extern"]]
        if ins.opcode == 0x18 and ins.src == 0:  # typeless ksym
            addr = _kallsyms().get(ext.name)
            # a listed symbol may really be at 0 (x86-64's per-CPU symbols such as
            # __per_cpu_start): only all-zero addresses mean kptr_restrict hides them
            if addr is None or (addr == 0 and _kallsyms_hidden()):
                if not ext.weak:
                    raise NotSupportedError(f"kernel symbol {ext.name}",
                                            "not in /proc/kallsyms (or addresses hidden)")
                addr = 0
            changes.append((i, {"imm": addr - (1 << 64) if addr >= (1 << 63) else addr,
                                "reference": None}))
            continue
        if ext.weak:
            kinds = (_btf.Func,) if ext.is_func else (_btf.Var,)
            # vmlinux, then the loaded modules' BTF
            if find_kernel_type(ext.name, kinds) is None:
                # a missing weak kfunc: the guarded call is dead code
                changes.append((i, {"reference": None, "imm": 0, "src": 0} if ins.opcode == 0x18
                                else {"reference": None, "imm": 0, "off": 0}))
    if not changes:
        return ps
    ps = ps.copy()
    for i, fields in changes:
        for name, value in fields.items():
            setattr(ps.instructions[i], name, value)
    return ps

