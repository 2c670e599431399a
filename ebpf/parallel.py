"""Loading many programs or collections at once, on all CPUs.

Most of the time of a load is the kernel's: the verifier and the JIT run inside the
``bpf(BPF_PROG_LOAD)`` system call, during which the library does not hold the GIL
(it calls ``syscall(2)`` through `ctypes.CDLL`). `load_many` therefore loads its specs
from a pool of threads: the kernel verifies several programs at the same time while
Python prepares the next ones. What Python does for each load holds the GIL, so
it is kept short: each thread takes the next spec from the iterable when it is free
(a generator makes each copy just before its load, while the other threads' programs
are being verified), the calling thread loads too (no third thread wants the GIL), and
copies made with `CollectionSpec.copy(share_programs=True)` share the template's
programs, so that no load copies or compares their instructions.

```python
specs = []
for i, cfg in enumerate(configs):
    s = template.copy(share_programs=True)   # its own data, the template's programs
    s.variables["endpoint_id"].set(i)
    specs.append(s)
collections = ebpf.load_many(specs)          # same order as `specs`
```

On any failure every object already created is closed and the error of the first
failing spec (in the order of `specs`) is raised, keeping its type (a `VerifierError`
stays a `VerifierError`) with the spec's index and name in front of its message.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Mapping, Sized
from typing import TYPE_CHECKING, Any, Union

from .errors import Error, InvalidArgumentError, prefixed
from .programs import Program
from .spec.collection import CollectionSpec
from .spec.programs import ProgramSpec

if TYPE_CHECKING:
    from .btf import Spec as BTFSpec
    from .collection import Collection
    from .maps import Map
    from .programs import Program

__all__ = ["load_many"]

Loaded = Union["Program", "Collection"]


def _describe(i: int, spec: Any) -> str:
    if isinstance(spec, ProgramSpec):
        return f"spec {i} (program {spec.name!r})"
    names = ", ".join(spec.programs) or "no programs"
    return f"spec {i} (collection of {names})"


def _prewarm(spec: Any, seen: set[int]) -> None:
    """Build the per-object BTF cache of `spec` once (the first spec with this BTF),
    before worker threads would race to build it."""
    from .programs import object_btf_blob  # Program is loaded anyway by the first load

    b = spec.btf
    if b is not None and id(b) not in seen:
        seen.add(id(b))
        with contextlib.suppress(Exception):  # the load itself reports what is wrong
            object_btf_blob(b)


def _checked(i: int, spec: object) -> ProgramSpec | CollectionSpec:
    if not isinstance(spec, (ProgramSpec, CollectionSpec)):
        raise InvalidArgumentError(
            f"load_many: spec {i} must be a ProgramSpec or a CollectionSpec, got "
            f"{type(spec).__name__}")
    return spec


def _worker_count(workers: int | None) -> int:
    if workers is None:
        try:
            return len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidArgumentError(f"load_many: workers must be an int >= 1, got {workers!r}")
    return workers


def load_many(
    specs: Iterable[ProgramSpec | CollectionSpec],
    workers: int | None = None,
    *,
    maps: Mapping[str, Map] | None = None,
    map_replacements: Mapping[str, Map] | None = None,
    kernel_btf: BTFSpec | None = None,
    log_level: int = 0,
) -> list[Any]:
    """Load every spec from a pool of `workers` threads; returns the loaded objects in
    the order of `specs`: a `Program` for each `ProgramSpec`, a `Collection` for each
    `CollectionSpec`.

    workers           threads (default: the CPUs this process may run on, at most
                      the number of specs); 1 loads one after the other
    maps              map references of `ProgramSpec`s, by name (as `Program(maps=)`)
    map_replacements  existing maps shared by every `CollectionSpec` (as
                      `Collection(map_replacements=)`), e.g. statistics maps that
                      every version of a template program writes to
    kernel_btf, log_level  passed to every load

    `specs` may be any iterable: a generator is consumed as the loads go, so that the
    first specs are being verified while the next ones are still being made (copies of
    one template with their configurations, say). Each spec is loaded as given: load
    copies (`CollectionSpec.copy(share_programs=True)`: the data copied, the programs
    shared) to load one template with different configurations. On failure (of a
    load, of the iterable, or a spec of the wrong type), the specs not started yet are
    skipped, those in flight finish, everything created is closed, and the error of
    the first failing spec in `specs` order is raised with its type kept and its
    message prefixed with the spec's index and name ("spec 7 (program 'xdp_prog'):
    ..."); errors that are not the library's are raised as they are.

    Each thread takes the next spec from `specs` when it is free (one thread at a time
    runs the iterable's code), so a generator makes each spec just before it loads.
    """
    workers = _worker_count(workers)
    if isinstance(specs, Sized):
        if not len(specs):
            return []
        workers = min(workers, len(specs))

    from .collection import Collection  # the kernel-object layer, above this module

    def load(spec: ProgramSpec | CollectionSpec) -> Any:
        if isinstance(spec, ProgramSpec):
            return Program(spec, maps=maps, kernel_btf=kernel_btf, log_level=log_level)
        return Collection(spec, map_replacements=map_replacements, kernel_btf=kernel_btf,
                          log_level=log_level)

    if workers == 1:
        loaded: list[Any] = []
        try:
            for i, s in enumerate(specs):
                loaded.append(_load_one(load, i, _checked(i, s)))
        except BaseException:
            _close_all(loaded)
            raise
        return loaded
    return _Pool(specs, load).run(workers)


class _Pool:
    """The threads of one `load_many` call: `workers - 1` threads and the calling one
    each take the next spec when they are free (under a lock: the iterable's code runs
    in one thread at a time) and load it; each result lands at its spec's index.
    Lighter than an executor with futures: no third thread wanting the GIL while two
    load, no queue, and each spec is made just before its load."""

    def __init__(self, specs: Iterable[Any], load: Any) -> None:
        self.specs = iter(specs)
        self.load = load
        self.lock = threading.Lock()
        self.taken = 0  # specs taken from the iterable
        self.stop = False  # after a failure: take no more
        self.results: dict[int, Any] = {}
        self.errors: dict[int, BaseException] = {}
        self.seen: set[int] = set()  # the BTF specs `_prewarm` saw

    def run(self, workers: int) -> list[Any]:
        threads = [threading.Thread(target=self.work, args=(False,), name=f"ebpf-load-{n}",
                                    daemon=True) for n in range(workers - 1)]
        try:
            for t in threads:
                t.start()
            self.work(True)
            for t in threads:
                t.join()
        except BaseException:  # KeyboardInterrupt, or a thread that could not start
            self.stop = True
            for t in threads:
                if t.ident is not None:
                    t.join()
            _close_all(list(self.results.values()))
            raise
        loaded = [self.results.get(i) for i in range(self.taken)]
        if self.errors:
            _close_all(loaded)
            raise self.errors[min(self.errors)]
        return loaded

    def work(self, calling_thread: bool) -> None:
        """Take and load specs until there are none left or one failed."""
        while True:
            with self.lock:
                if self.stop:
                    return
                i = self.taken
                try:
                    s = next(self.specs)
                except StopIteration:
                    self.stop = True
                    return
                except BaseException as e:  # the iterable failed: raised as it is
                    self._fail(i, e)
                    return
                self.taken = i + 1
                try:
                    if isinstance(_checked(i, s), CollectionSpec):
                        _prewarm(s, self.seen)
                except BaseException as e:
                    self._fail(i, e)
                    return
            try:
                self.results[i] = _load_one(self.load, i, s)
            except BaseException as e:
                with self.lock:
                    self._fail(i, e)
                if calling_thread and not isinstance(e, Exception):
                    raise  # KeyboardInterrupt: stop the others at once (run)
                return

    def _fail(self, i: int, e: BaseException) -> None:
        """Record spec `i`'s error and take no more specs (the lock is held)."""
        self.errors[i] = e
        self.stop = True


def _load_one(load: Any, i: int, spec: ProgramSpec | CollectionSpec) -> Any:
    try:
        return load(spec)
    except Error as e:
        raise prefixed(f"load_many: {_describe(i, spec)}", e) from None


def _close_all(objs: list[Any]) -> None:
    for obj in reversed(objs):
        if obj is not None:
            with contextlib.suppress(Exception):
                obj.close()
