"""The whole-kernel `btf dump` stays fast: deterministic guards (a dump makes no type
objects), a loose CPU-time guard against bpftool in the same run, and the raw
dump's record-reading path checked against the type-object path (same text, and
BTFError for the same malformed blobs)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from conftest import need_tool
from hypothesis import assume, given
from test_btf_fuzz import MUTATIONS, SETTINGS, marshal, mutate, type_graphs

from ebpf import btf
from ebpf.btf.kernel import VMLINUX, read_btf_file
from ebpf.btf.raw import raw_chunks, raw_lines, type_ids
from ebpf.btf.spec import Spec
from ebpf.errors import BTFError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_vmlinux = pytest.mark.skipif(not os.path.exists(VMLINUX), reason="no kernel BTF")


def fresh_kernel_spec() -> Spec:
    """The kernel's BTF parsed anew (not the process-wide spec other tests decode)."""
    return Spec(read_btf_file(VMLINUX))


def fast_text(spec: Spec) -> str:
    return "".join(line + "\n" for chunk in raw_chunks(spec) for line in chunk)


def object_text(spec: Spec) -> str:
    """The raw text through type objects (raw_lines with explicit ids takes that path)."""
    return "".join(line + "\n" for line in raw_lines(spec, list(type_ids(spec))))


def outcome(fn: Callable[[], str]) -> str | type[BTFError]:
    try:
        return fn()
    except BTFError:
        return BTFError


# -- deterministic guards ------------------------------------------------------------------


@needs_vmlinux
def test_c_dump_makes_no_type_objects() -> None:
    # the C printer reads the type records by id: nothing is decoded into Type objects
    spec = fresh_kernel_spec()
    text = btf.dump_c(spec)
    assert spec._by_id == {}
    assert "struct task_struct {" in text


@needs_vmlinux
def test_raw_dump_makes_no_type_objects() -> None:
    spec = fresh_kernel_spec()
    nlines = sum(len(chunk) for chunk in raw_chunks(spec))
    assert nlines > len(spec)  # members, parameters, enumerators on lines of their own
    assert spec._by_id == {}


# -- the record-reading raw path is the type-object path ----------------------------------


@needs_vmlinux
def test_raw_text_of_the_kernel_is_the_object_path_text() -> None:
    assert fast_text(fresh_kernel_spec()) == object_text(fresh_kernel_spec())


@SETTINGS
@given(type_graphs())
def test_raw_text_of_built_types(types: list[btf.Type]) -> None:
    data, _, _ = marshal(types)
    assert fast_text(Spec(data, lazy=True)) == object_text(Spec(data, lazy=True))


@SETTINGS
@given(type_graphs(), MUTATIONS)
def test_raw_text_of_mutated_blobs(types: list[btf.Type],
                                   ops: list[tuple[str, int, int]]) -> None:
    data, _, _ = marshal(types)
    bad = mutate(data, ops)
    assume(bad != data)
    try:
        Spec(bad, lazy=True)
    except BTFError:
        return
    # the same text, or BTFError from both
    assert outcome(lambda: fast_text(Spec(bad, lazy=True))) == \
        outcome(lambda: object_text(Spec(bad, lazy=True)))


# -- a loose CPU-time guard against bpftool ------------------------------------------------


def cpu_seconds(argv: list[str]) -> float:
    """User + system CPU time of running `argv` (its output read from a pipe)."""
    env = dict(os.environ, EBPF_BTF_CACHE="0", PYTHONPATH=REPO)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    while proc.stdout.read(1 << 20):
        pass
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, argv
    proc.returncode = 0
    return usage.ru_utime + usage.ru_stime


@needs_vmlinux
@pytest.mark.parametrize("fmt, limit", [("c", 4.0), ("raw", 4.0)])
def test_kernel_dump_cpu_time_against_bpftool(fmt: str, limit: float) -> None:
    need_tool("bpftool")
    # Today ~2x (c) and ~1.1x (raw) on a busy 2-CPU machine: the limits only catch a
    # dump that got much slower (best of three runs each, interleaved).
    ours_argv = [sys.executable, "-m", "ebpf", "btf", "dump", "file", VMLINUX, "format", fmt]
    theirs_argv = ["bpftool", "btf", "dump", "file", VMLINUX, "format", fmt]
    ours, theirs = [], []
    for _ in range(3):
        ours.append(cpu_seconds(ours_argv))
        theirs.append(cpu_seconds(theirs_argv))
    assert min(ours) <= limit * min(theirs), (ours, theirs)
