"""BPF trampoline programs: fentry/fexit/fmod_ret on kernel functions, an LSM program
denying an operation on a test file, freplace of a loaded program's global function
(references/002's dynamic program extensions) and fentry/fexit on a BPF program.

Kernels that refuse trampolines (the 6.18 development VM) skip these tests with the
library's NotSupportedError message; in the kernel matrix, whose Debian 6.1 and 6.12
kernels support them and the BPF LSM, that fails the test instead (tests/trampolines.py,
the `bpf_lsm` fixture of tests/conftest.py)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import trampolines
from bpfbuild import compile_bpf
from vmlinux import vmlinux_include_dir

import ebpf
import ebpf.link
from ebpf import LinkType, NotSupportedError
from ebpf.errors import InvalidArgumentError

pytestmark = pytest.mark.kernel

PACKET = b"\0" * 64  # tc_target returns get_value(skb->len): 65, or 164 when replaced


@pytest.fixture
def no_leaks(no_fd_leaks: None) -> Iterator[None]:
    """Descriptor leak check (tests/conftest.py)."""
    yield


def _include() -> list[str]:
    return [f"-I{vmlinux_include_dir()}"]


@pytest.fixture(scope="module")
def spec() -> ebpf.CollectionSpec:
    s = ebpf.load_collection_spec(compile_bpf("link_trampoline", extra_flags=_include()))
    s.variables["target_pid"].set(os.getpid())
    return s


@pytest.fixture(scope="module")
def target_spec() -> ebpf.CollectionSpec:
    return ebpf.load_collection_spec(compile_bpf("link_target", extra_flags=_include()))


@pytest.fixture
def target(target_spec: ebpf.CollectionSpec) -> Iterator[ebpf.Program]:
    with ebpf.Collection(target_spec.copy()) as c:
        yield c.programs["tc_target"]


@contextlib.contextmanager
def load(spec: ebpf.CollectionSpec, *names: str,
         attach_prog: ebpf.Program | None = None) -> Iterator[ebpf.Collection]:
    """Load `names` of the trampoline object, skipping when the kernel refuses them."""
    s = spec.copy()
    for n in names:
        if attach_prog is not None:
            s.programs[n].attach_prog = attach_prog
    with trampolines.load(s, list(names)) as coll:
        yield coll


def read_global(coll: ebpf.Collection, name: str) -> object:
    """A global's value through a map lookup (see test_link_uprobe.read_global)."""
    from ebpf.btf import values

    vs = coll.spec.variables[name]
    raw = coll.maps[vs.section].lookup(0, raw=True)[vs.offset:vs.offset + vs.size]
    return values.decode(vs.type, raw) if vs.type is not None else raw


def test_refusal_is_not_supported(spec: ebpf.CollectionSpec) -> None:
    """Where the kernel refuses trampolines, loading says so instead of EPERM."""
    try:
        with ebpf.Collection(spec.copy(), programs=["fentry_unlinkat"]):
            pass
    except NotSupportedError as e:
        assert "trampoline" in str(e)
    else:
        pytest.skip("this kernel supports BPF trampolines")


def test_fentry_fexit(no_leaks: None, spec: ebpf.CollectionSpec, tmp_path: Path) -> None:
    with load(spec, "fentry_unlinkat", "fexit_unlinkat") as c:
        with ebpf.link.tracing(c.programs["fentry_unlinkat"]) as fentry, \
                ebpf.link.tracing(c.programs["fexit_unlinkat"]):
            assert LinkType(fentry.info().type) == LinkType.TRACING
            for i in range(3):
                (tmp_path / f"f{i}").write_bytes(b"")
                os.unlink(tmp_path / f"f{i}")
            with pytest.raises(FileNotFoundError):
                os.unlink(tmp_path / "missing")
        assert read_global(c, "fentry_hits") == 4
        assert read_global(c, "fexit_hits") == 4
        assert read_global(c, "fexit_ret") == -errno.ENOENT
        (tmp_path / "after").write_bytes(b"")
        os.unlink(tmp_path / "after")
        assert read_global(c, "fentry_hits") == 4


def test_fmod_ret(no_leaks: None, spec: ebpf.CollectionSpec, tmp_path: Path) -> None:
    victim = tmp_path / "fmod"
    victim.write_text("hi")
    s = spec.copy()
    s.variables["target_ino"].set(os.stat(victim).st_ino)
    with load(s, "fmod_file_open") as c:
        with ebpf.link.tracing(c.programs["fmod_file_open"]) as link:
            assert LinkType(link.info().type) == LinkType.TRACING
            with pytest.raises(PermissionError):
                victim.read_text()
            os.stat(victim)  # other operations are not affected
        assert victim.read_text() == "hi"
        assert read_global(c, "fmod_hits") == 1


def test_lsm_denies_open(no_leaks: None, bpf_lsm: None, spec: ebpf.CollectionSpec,
                         tmp_path: Path) -> None:
    victim = tmp_path / "secret"
    victim.write_text("hello")
    s = spec.copy()
    s.variables["target_ino"].set(os.stat(victim).st_ino)
    with load(s, "deny_open") as c:
        with ebpf.link.tracing(c.programs["deny_open"]) as link:
            assert LinkType(link.info().type) == LinkType.TRACING
            with pytest.raises(PermissionError):
                victim.read_text()
        assert victim.read_text() == "hello"
        assert read_global(c, "lsm_denied") == 1
        with ebpf.link.lsm(c.programs["deny_open"]):
            with pytest.raises(PermissionError):
                victim.read_text()
        assert victim.read_text() == "hello"


def test_freplace(no_leaks: None, spec: ebpf.CollectionSpec, target: ebpf.Program,
                  target_spec: ebpf.CollectionSpec) -> None:
    assert target.test_run(PACKET).retval == 65
    with load(spec, "new_get_value", attach_prog=target) as c:
        ext = c.programs["new_get_value"]
        with ebpf.link.tracing(ext) as link:
            assert LinkType(link.info().type) == LinkType.TRACING
            assert target.test_run(PACKET).retval == 164
        assert target.test_run(PACKET).retval == 65
        # the same extension on another program with the same function
        with ebpf.Collection(target_spec.copy()) as other:
            second = other.programs["tc_target"]
            with ebpf.link.tracing(ext, target=second, target_function="get_value"):
                assert second.test_run(PACKET).retval == 164
            assert second.test_run(PACKET).retval == 65
        with pytest.raises(InvalidArgumentError):
            ebpf.link.tracing(ext, target=target)


def test_fentry_fexit_on_bpf_program(no_leaks: None, spec: ebpf.CollectionSpec,
                                     target: ebpf.Program) -> None:
    with load(spec, "prog_entry", "prog_exit", attach_prog=target) as c:
        with ebpf.link.tracing(c.programs["prog_entry"]), \
                ebpf.link.tracing(c.programs["prog_exit"]):
            for _ in range(3):
                assert target.test_run(PACKET).retval == 65
        assert read_global(c, "prog_entry_hits") == 3
        assert read_global(c, "prog_exit_hits") == 3
        assert read_global(c, "prog_exit_ret") == 65


def test_auto_attach_trampolines(no_leaks: None, spec: ebpf.CollectionSpec,
                                 tmp_path: Path) -> None:
    with load(spec, "fentry_unlinkat") as c:
        link = ebpf.link.attach_program(c.programs["fentry_unlinkat"],
                                        spec.programs["fentry_unlinkat"])
        assert link is not None
        with link:
            (tmp_path / "x").write_bytes(b"")
            os.unlink(tmp_path / "x")
        assert read_global(c, "fentry_hits") == 1
