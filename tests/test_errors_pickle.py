"""Every exception class the library defines survives pickling (protocols 2 and 5),
`copy.copy` and `copy.deepcopy`: same class, `str()`, `args` and public attributes, as
when a worker process (`concurrent.futures.ProcessPoolExecutor`, `multiprocessing`)
sends back the exception its load raised. The classes are discovered by importing every
module of `ebpf`; each is built the way the library raises it (`CASES`), and a class
without an entry there fails."""

from __future__ import annotations

import copy
import errno
import importlib
import multiprocessing
import pickle
import pkgutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

import ebpf
import ebpf.errors as errors
from ebpf import asm

LOG = ("func#0 @0\n0: R1=ctx() R10=fp0\n0: (b7) r1 = 0                        ; R1_w=0\n"
       "1: (95) exit\nR0 !read_ok\nprocessed 2 insns (limit 1000000) max_states_per_insn 0 "
       "total_states 0 peak_states 0 mark_read 0\n")


def _discover() -> dict[str, type[BaseException]]:
    """Every exception class defined under `ebpf`, by `module.qualname`."""
    for info in pkgutil.walk_packages(ebpf.__path__, "ebpf."):
        if not info.name.endswith("__main__"):  # `python -m ebpf` would run the CLI
            importlib.import_module(info.name)
    for name in errors._LAZY:  # the classes made on first use
        getattr(errors, name)
    found: dict[str, type[BaseException]] = {}
    todo: list[type[BaseException]] = [BaseException]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__ == "ebpf" or sub.__module__.startswith("ebpf."):
                found[f"{sub.__module__}.{sub.__qualname__}"] = sub
    return found


CLASSES = _discover()

# The constructor arguments of each class, as the library's raise sites pass them.
CASES: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "ebpf.errors.Error": [(("something failed",), {})],
    "ebpf.errors.SyscallError": [((errno.EBADF, "bpf(BPF_MAP_LOOKUP_ELEM)"), {})],
    "ebpf.errors.NotSupportedError": [
        (("map type ARENA",), {}),
        (("tracefs", "not mounted on /sys/kernel/tracing"), {"errno": errno.ENOENT}),
        (("BPF_PROG_TEST_RUN of KPROBE programs",), {"errno": 524}),
    ],
    "ebpf.errors.ELFError": [
        (("truncated note header",), {"section": ".note.stapsdt", "offset": 0x40}),
        (("not an ELF file",), {}),
    ],
    "ebpf.errors.BTFError": [
        (("BTF is 4 bytes, shorter than its header", 0), {}),
        (("no BTF type named 'task_struct'",), {}),
    ],
    "ebpf.errors.InvalidArgumentError": [(("key of 3 bytes, expected 4",), {})],
    "ebpf.errors.AsmError": [(("unknown label 'out'",), {})],
    "ebpf.errors.KeyNotFoundError": [(("no program named 'x' (have: a, b)",), {}), ((), {})],
    "ebpf.errors.ClosedError": [(("map 'counts' is closed",), {})],
    "ebpf.errors.PermissionError": [((errno.EPERM, "bpf(BPF_PROG_LOAD) needs CAP_BPF"), {})],
    "ebpf.errors.KernelPolicyError": [
        (("trampoline programs", "program 'f': refused by the kernel's policy",
          errno.EPERM), {}),
        (("map type ARENA", "map 'a': refused"), {}),
    ],
    "ebpf.errors.LinkError": [(("a.o: symbol 'x' is defined in both a.o and b.o",), {})],
    "ebpf.errors.ReaderClosedError": [(("ring buffer 'events' is closed",), {}), ((), {})],
    "ebpf.errors.ReaderForkedError": [(("ring buffer 'events' was inherited through "
                                        "fork() from process 1",), {})],
    "ebpf.errors.DeadlineExceededError": [
        (("no trace_pipe line before the deadline",), {}), ((), {})],
    "ebpf.errors.VerifierError": [
        ((errno.EACCES, "bad_prog", LOG), {}),
        ((errno.EINVAL, "f", LOG, "int f(void) { return x; }"), {}),
        ((errno.ENOSPC, "empty", ""), {}),
    ],
    "ebpf.NotPicklableError": [(("map 'counts' is a kernel object of this process",), {})],
    "ebpf.maps.failures.KeyExistsError": [
        ((errno.EEXIST, "update in HASH map 'h': key 1 already exists (NOEXIST)"), {})],
    "ebpf.maps.iteration.IterationAbortedError": [
        (("iteration of map 'h' aborted after 100 steps",), {})],
    "ebpf.btf.handle.BTFLoadError": [
        ((errno.EINVAL, "magic: 0xeb9f\nversion: 1\nInvalid name\n"), {}),
        ((errno.EINVAL, ""), {})],
    "ebpf.btf.core.CoreError": [(("CO-RE relocation needs a target BTF",), {})],
    "ebpf.btf.core._Refused": [(("no such field",), {})],
    "ebpf._sys.perf.ReaderClosed": [((), {})],
    "ebpf.gen.build.BuildError": [(("build failed",), {})],
    "ebpf.gen.build.ToolchainNotFoundError": [(("no clang found on PATH", "clang"), {})],
    "ebpf.gen.build.CompileError": [
        (("prog.bpf.c", ["clang", "-target", "bpf", "-c", "prog.bpf.c"], 1,
          "prog.bpf.c:3:1: error: unknown type name 'u32'\n"), {}),
        (("prog.bpf.c", ("clang",), 139, ""), {}),
    ],
}


def _instances() -> list[Any]:
    out = []
    for name, cls in sorted(CLASSES.items()):
        for i, (args, kwargs) in enumerate(CASES.get(name, [((), {})])):
            out.append(pytest.param(name, cls, args, kwargs, id=f"{name}-{i}"))
    return out


ROUND_TRIPS: dict[str, Callable[[Any], Any]] = {
    "pickle-2": lambda e: pickle.loads(pickle.dumps(e, 2)),
    "pickle-5": lambda e: pickle.loads(pickle.dumps(e, 5)),
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
}

# what an exception carries beyond its instance dict
_OSERROR_FIELDS = ("errno", "strerror", "filename", "filename2")


def view(e: BaseException) -> dict[str, Any]:
    """What a user sees of `e`: class, message, args, attributes, properties."""
    seen: dict[str, Any] = {"class": type(e), "str": str(e), "repr": repr(e), "args": e.args,
                            "dict": dict(vars(e))}
    if isinstance(e, OSError):
        seen.update({f: getattr(e, f) for f in _OSERROR_FIELDS})
    for klass in type(e).__mro__:
        for name, attr in vars(klass).items():
            if isinstance(attr, property) and not name.startswith("_"):
                seen[name] = getattr(e, name)
    return seen


def test_every_class_has_constructor_arguments() -> None:
    """A new exception class needs an entry in CASES (built as the library raises it)."""
    assert len(CLASSES) >= 25
    assert sorted(set(CLASSES) - set(CASES)) == [], "add these classes to CASES"
    assert sorted(set(CASES) - set(CLASSES)) == [], "these classes no longer exist"


@pytest.mark.parametrize("how", ROUND_TRIPS)
@pytest.mark.parametrize(("name", "cls", "args", "kwargs"), _instances())
def test_round_trip(name: str, cls: type[BaseException], args: tuple[Any, ...],
                    kwargs: dict[str, Any], how: str) -> None:
    assert name in CASES, f"{name}: add its constructor arguments to CASES"
    e = cls(*args, **kwargs)
    back = ROUND_TRIPS[how](e)
    assert back is not e
    assert view(back) == view(e)


@pytest.mark.parametrize("how", ROUND_TRIPS)
def test_changed_after_construction(how: str) -> None:
    """The state the instance has, not what `__init__` would make again: a prefixed
    message (`errors.prefixed`), an explained verifier summary, a note."""
    from ebpf.errors import VerifierError

    e = VerifierError(errno.EACCES, "f", LOG)
    e.summary = "CO-RE relocation failed\n" + e.summary
    e.strerror = "program 'f' rejected by the verifier:\n" + e.summary
    errors.prefixed("spec 1 (collection of f)", e)
    e.add_note("while loading spec 1")
    n = errors.prefixed("load", errors.NotSupportedError("map type ARENA", "no arena"))
    k = errors.prefixed("spec 0", errors.KeyNotFoundError("no map named 'm'"))
    for orig in (e, n, k):
        back = ROUND_TRIPS[how](orig)
        assert view(back) == view(orig)
    assert str(ROUND_TRIPS[how](e)).startswith("spec 1 (collection of f): program 'f'")
    assert ROUND_TRIPS[how](e).__notes__ == ["while loading spec 1"]


def test_still_caught_as_the_builtin() -> None:
    back = pickle.loads(pickle.dumps(errors.KernelPolicyError("x", "refused")))
    assert type(back) is errors.KernelPolicyError and isinstance(back, OSError)
    assert back.errno == errno.EPERM and str(back) == "refused"
    with pytest.raises(KeyError):
        raise pickle.loads(pickle.dumps(errors.KeyNotFoundError("no key 1")))


def _load_rejected(name: str) -> str:
    """Run in a worker process: load a program the verifier rejects (r0 never written)."""
    spec = ebpf.ProgramSpec(name=name, type=ebpf.ProgramType.SOCKET_FILTER, license="GPL",
                            instructions=[asm.mov_imm(asm.R1, 0), asm.exit()])
    with ebpf.Program(spec):
        return "loaded"


@pytest.mark.kernel
@pytest.mark.hostonly  # pickling across processes: the same on every kernel (a spawned
def test_verifier_error_from_worker_process() -> None:  # interpreter: ~20 s under TCG)
    # spawn: the exception is unpickled in a process that never made the class itself
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        future = pool.submit(_load_rejected, "bad_prog")
        with pytest.raises(ebpf.VerifierError) as ei:
            future.result(timeout=120)
    err = ei.value
    assert err.errno == errno.EACCES and err.program == "bad_prog"
    assert "R0 !read_ok" in err.log and "processed 2 insns" in err.log
    assert "R0 !read_ok" in err.summary and "R0 !read_ok" in str(err)
    assert err.args == (errno.EACCES, err.strerror)
