"""Loading many programs or collections at once, on all CPUs.

Most of the time of a load is the kernel's: the verifier and the JIT run inside the
``bpf(BPF_PROG_LOAD)`` system call, during which the library does not hold the GIL
(it calls ``syscall(2)`` through `ctypes.CDLL`). `load_many` therefore loads its specs
from a pool of threads: the kernel verifies several programs at the same time while
Python prepares the next ones. What Python does for each load holds the GIL, so
it is kept short: a spec is taken from the iterable only when a worker will soon be
free (a generator makes the next copy while the previous ones are being verified), and
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
from collections.abc import Iterable, Iterator, Mapping, Sized
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
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

    Specs are taken from `specs` two per worker ahead of the loads that have ended.
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

    stop = threading.Event()
    # Specs are taken from the iterable only when a worker will soon be free: a
    # generator then makes each spec while the previous ones are in the kernel, instead
    # of holding the GIL to make them all while the first loads wait for it.
    slots = threading.Semaphore(_LOOKAHEAD * workers)

    def task(i: int, s: ProgramSpec | CollectionSpec) -> Any:
        try:
            if stop.is_set():
                return None  # another spec failed: do not start this one
            return _load_one(load, i, s)
        finally:
            slots.release()

    def on_done(f: Future[Any]) -> None:
        if not f.cancelled() and f.exception() is not None:
            stop.set()

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ebpf-load")
    futures: list[Future[Any]] = []
    seen: set[int] = set()
    try:
        for i, s in enumerate(_paced(specs, slots, stop)):
            if isinstance(_checked(i, s), CollectionSpec):
                _prewarm(s, seen)
            f = pool.submit(task, i, s)
            f.add_done_callback(on_done)
            futures.append(f)
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() is not None for f in done):
            stop.set()
            for f in futures:
                f.cancel()
        wait(futures)
    except BaseException:  # the iterable failed, a wrong spec, or KeyboardInterrupt
        stop.set()
        for f in futures:
            f.cancel()
        pool.shutdown(wait=True)
        _close_all([f.result() for f in futures
                    if f.done() and not f.cancelled() and f.exception() is None])
        raise
    pool.shutdown(wait=True)
    results: list[Any] = [None] * len(futures)
    first: BaseException | None = None
    for i, f in enumerate(futures):
        if f.cancelled():
            continue
        exc = f.exception()
        if exc is not None:
            if first is None:
                first = exc
            continue
        results[i] = f.result()
    if first is not None:
        _close_all(results)
        raise first
    return results


# Specs taken from the iterable ahead of the loads, per worker: one being loaded, one
# ready for when it ends.
_LOOKAHEAD = 2


def _paced(specs: Iterable[Any], slots: threading.Semaphore,
           stop: threading.Event) -> Iterator[Any]:
    """The items of `specs`, each taken once a slot is free (`slots`), until `stop`."""
    it = iter(specs)
    while True:
        slots.acquire()  # released by the task of an earlier spec when it ends
        if stop.is_set():
            return
        try:
            s = next(it)
        except StopIteration:
            return
        yield s


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
