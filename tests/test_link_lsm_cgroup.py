"""cgroup LSM programs (``SEC("lsm_cgroup/<hook>")``, BPF_LSM_CGROUP, Linux 6.0+): a
socket_bind hook that denies binds to one port, for sockets of the cgroup it is
attached to only, triggered by child processes inside a network namespace.

They are trampoline programs: a kernel that refuses trampolines (the 6.18 development
VM) skips these tests with the library's NotSupportedError message; in the kernel matrix
that refusal fails them instead (tests/trampolines.py). The hook only runs with the BPF
LSM active (the `bpf_lsm` fixture)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
import trampolines
from bpfbuild import compile_bpf
from kernelmatrix import requires
from test_link_net_util import run_child
from vmlinux import vmlinux_include_dir

import ebpf
import ebpf.btf
from ebpf import AttachType, LinkType, ProgramType
from ebpf.link import CgroupAttachFlags, CgroupLink, ProgAttachLink, cgroup_programs
from ebpf.link import cgroup as cg_attach

pytestmark = pytest.mark.kernel

PORT = 9400   # denied by the program
OTHER = 9401  # allowed (denied by the second program of the update tests)
CALLS, DENIED = 0, 1  # keys of the program's `counts` map


def kernel_knows_lsm_cgroup() -> bool:
    """BPF_LSM_CGROUP is in the kernel's enum bpf_attach_type (Linux 6.0+)."""
    attach_types = ebpf.btf.load_kernel_spec().type_by_name("bpf_attach_type", ebpf.btf.Enum)
    return any(v.name == "BPF_LSM_CGROUP" for v in attach_types.values)


# Not min_kernel="6.0", nor the "program_type:LSM" probe: the 6.18 development VM
# (CONFIG_BPF_LSM=y) refuses LSM programs, and must skip (with the library's message,
# from loading) rather than fail. In the matrix's guests a refusal fails anyway.
lsm_cgroup = requires(kernel_knows_lsm_cgroup, config="CONFIG_BPF_LSM")


@pytest.fixture(scope="module")
def spec() -> ebpf.CollectionSpec:
    return ebpf.load_collection_spec(
        compile_bpf("lsm_cgroup", extra_flags=[f"-I{vmlinux_include_dir()}"]))


@contextlib.contextmanager
def load(spec: ebpf.CollectionSpec, port: int) -> Iterator[ebpf.Collection]:
    """The program denying binds to `port`, loaded (skip where trampolines are refused)."""
    s = spec.copy()
    s.variables["port"].set(port)
    with trampolines.load(s) as coll:
        yield coll


def counts(coll: ebpf.Collection) -> tuple[int, int]:
    """(socket_bind calls, denials) seen by the program."""
    m = coll.maps["counts"]
    return int(m.lookup(CALLS)), int(m.lookup(DENIED))


# A child process binds sockets (each closed again) to the ports in argv.
BIND_CHILD = r"""
def bind(family, kind, port):
    def go():
        with socket.socket(family, kind) as s:
            s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    return go
result = {}
for p in map(int, sys.argv[1:]):
    for name, family, kind in (("udp", socket.AF_INET, socket.SOCK_DGRAM),
                               ("tcp", socket.AF_INET, socket.SOCK_STREAM),
                               ("tcp6", socket.AF_INET6, socket.SOCK_STREAM)):
        result[f"{name}:{p}"] = attempt(bind(family, kind, p))
"""
BINDS_PER_PORT = 3


def binds(netns: str, cgroup: str | None, *ports: int) -> dict[int, set[str]]:
    """For each port, the outcomes ("ok", "EPERM", ...) of binding UDP, TCP and TCPv6
    sockets to it in a child process (inside `cgroup` when given)."""
    got = run_child(BIND_CHILD, netns=netns, cgroup=cgroup, args=tuple(map(str, ports)))
    return {p: {v for k, v in got.items() if k.endswith(f":{p}")} for p in ports}


def attached(cgroup: str) -> tuple[int, ...]:
    return cgroup_programs(cgroup, AttachType.LSM_CGROUP).prog_ids


@lsm_cgroup
def test_deny_bind(no_fd_leaks: None, bpf_lsm: None, netns: str, cgroup: str,
                   spec: ebpf.CollectionSpec) -> None:
    with load(spec, PORT) as coll:
        prog = coll.programs["deny_bind"]
        assert prog.type == ProgramType.LSM
        kernel = ebpf.btf.load_kernel_spec()
        hook = kernel.type_by_name("bpf_lsm_socket_bind", ebpf.btf.Func)
        assert prog.info().attach_btf_id == kernel.type_id(hook)
        assert prog.attach() is None  # like libbpf: no auto-attach (no cgroup in the name)
        with cg_attach(prog, cgroup) as link:
            assert isinstance(link, CgroupLink)
            assert link.attach_type == AttachType.LSM_CGROUP  # the program's, from its section
            info = link.info()
            assert info.type == LinkType.CGROUP
            assert info.prog_id == prog.id
            assert info.cgroup.attach_type == AttachType.LSM_CGROUP
            assert info.cgroup.cgroup_id == os.stat(cgroup).st_ino
            assert attached(cgroup) == (prog.id,)
            assert prog.id in cgroup_programs(cgroup, AttachType.LSM_CGROUP,
                                              effective=True).prog_ids

            assert binds(netns, cgroup, PORT, OTHER) == {PORT: {"EPERM"}, OTHER: {"ok"}}
            assert counts(coll) == (2 * BINDS_PER_PORT, BINDS_PER_PORT)
            # a process outside the cgroup is not affected (nor counted)
            assert binds(netns, None, PORT) == {PORT: {"ok"}}
            assert counts(coll) == (2 * BINDS_PER_PORT, BINDS_PER_PORT)
        assert attached(cgroup) == ()
        assert binds(netns, cgroup, PORT) == {PORT: {"ok"}}
        assert counts(coll) == (2 * BINDS_PER_PORT, BINDS_PER_PORT)


@lsm_cgroup
def test_update_and_multi_attach(no_fd_leaks: None, bpf_lsm: None, netns: str,
                                 cgroup: str, spec: ebpf.CollectionSpec) -> None:
    """A link updated to another program of the same hook; a BPF_PROG_ATTACH
    (ALLOW_MULTI) attachment next to a link: both programs run."""
    with load(spec, PORT) as c1, load(spec, OTHER) as c2:
        p1, p2 = c1.programs["deny_bind"], c2.programs["deny_bind"]
        with cg_attach(p1, cgroup, AttachType.LSM_CGROUP) as link:
            link.update(p2)
            assert attached(cgroup) == (p2.id,)
            assert binds(netns, cgroup, PORT, OTHER) == {PORT: {"ok"}, OTHER: {"EPERM"}}
            link.update(p1, old=p2)
            assert binds(netns, cgroup, PORT, OTHER) == {PORT: {"EPERM"}, OTHER: {"ok"}}
            with cg_attach(p2, cgroup, flags=CgroupAttachFlags.ALLOW_MULTI) as legacy:
                assert isinstance(legacy, ProgAttachLink)
                assert sorted(attached(cgroup)) == sorted([p1.id, p2.id])
                assert binds(netns, cgroup, PORT, OTHER) == {PORT: {"EPERM"},
                                                             OTHER: {"EPERM"}}
            assert attached(cgroup) == (p1.id,)
        assert attached(cgroup) == ()
        assert binds(netns, cgroup, PORT, OTHER) == {PORT: {"ok"}, OTHER: {"ok"}}
        # each denied its port's binds twice: alone, then next to the other (all run)
        assert counts(c1)[DENIED] == 2 * BINDS_PER_PORT
        assert counts(c2)[DENIED] == 2 * BINDS_PER_PORT
