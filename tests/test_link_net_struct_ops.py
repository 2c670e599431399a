"""struct_ops: a TCP congestion control written in BPF, registered (with and without
a bpf_link), used by a TCP connection on a namespace's loopback through
setsockopt(TCP_CONGESTION), replaced atomically, then unregistered.

Kernels that refuse struct_ops (like trampolines) skip through the library's probe,
`ebpf.link.require_struct_ops`, and raise NotSupportedError on use."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf.errors import NotSupportedError
from ebpf.link import StructOpsMap, in_netns, require_struct_ops, struct_ops, struct_ops_maps

pytestmark = pytest.mark.kernel

AVAILABLE = "/proc/sys/net/ipv4/tcp_available_congestion_control"


@pytest.fixture(autouse=True)
def _need_struct_ops() -> None:
    try:
        require_struct_ops("tcp_congestion_ops")
    except NotSupportedError as e:
        pytest.skip(str(e))


def need_links() -> None:
    try:
        require_struct_ops("tcp_congestion_ops", link=True)
    except NotSupportedError as e:
        pytest.skip(str(e))


def available() -> list[str]:
    return Path(AVAILABLE).read_text().split()


def obj() -> Path:
    return compile_bpf("net_struct_ops", extra_flags=[f"-I{vmlinux_include_dir()}"])


@contextlib.contextmanager
def loaded() -> Iterator[tuple[ebpf.Collection, dict[str, ebpf.link.StructOpsSpec]]]:
    spec = ebpf.load_collection_spec(obj())
    ops = struct_ops_maps(spec, obj())
    spec.struct_ops = {}  # the tests create the struct_ops maps themselves
    try:
        coll = ebpf.Collection(spec)
    except NotSupportedError as e:  # refused at load, like trampolines
        pytest.skip(str(e))
    with coll:
        yield coll, ops


def tcp_with_cc(netns: str, cc: str, nbytes: int = 1 << 20) -> str:
    """Open a TCP connection on the namespace's loopback using congestion control `cc`,
    push `nbytes` through it, and return the connection's congestion control."""
    with in_netns(netns):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with srv, cli:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, cc.encode())
        cli.connect(srv.getsockname())
        conn, _ = srv.accept()
        with conn:
            chunk = b"\0" * 65536
            sent = 0
            conn.settimeout(5)
            while sent < nbytes:
                cli.sendall(chunk)
                sent += len(chunk)
                got = 0
                while got < len(chunk):
                    got += len(conn.recv(len(chunk) - got))
            return cli.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16) \
                .rstrip(b"\0").decode()


def test_spec_reading() -> None:
    spec = ebpf.load_collection_spec(obj())
    ops = struct_ops_maps(spec, obj())
    assert set(ops) == {"pycc", "pycc_nolink"}
    assert ops["pycc"].link and not ops["pycc_nolink"].link
    assert ops["pycc"].type_name == "tcp_congestion_ops"
    assert ops["pycc"].programs == {"init": "pycc_init", "ssthresh": "pycc_ssthresh",
                                    "undo_cwnd": "pycc_undo_cwnd",
                                    "cong_avoid": "pycc_cong_avoid"}
    kernel = ebpf.btf.load_kernel_spec()
    kt = kernel.type_by_name("tcp_congestion_ops", ebpf.btf.Struct)
    ps = spec.programs["pycc_cong_avoid"]
    assert ps.attach_btf_id == kernel.type_id(kt)
    assert int(ps.attach_type or 0) == [m.name for m in kt.members].index("cong_avoid")


@requires("struct_ops links", min_kernel="6.4", config="BPF_JIT")
def test_tcp_congestion_control_link(netns: str) -> None:
    need_links()
    with loaded() as (coll, ops):
        with StructOpsMap.create(ops["pycc"], coll.programs) as m:
            assert "pycc" not in available()
            with struct_ops(m) as link:
                assert "pycc" in available()
                assert link.info().type == ebpf.LinkType.STRUCT_OPS
                assert link.info().struct_ops.map_id == m.id
                assert tcp_with_cc(netns, "pycc") == "pycc"
                assert coll.variables["inits"].get() >= 1
                assert coll.variables["acks"].get() > 0
            assert "pycc" not in available()
        with pytest.raises(FileNotFoundError):
            tcp_with_cc(netns, "pycc")


@requires("struct_ops", min_kernel="5.6", config="BPF_JIT")
def test_tcp_congestion_control_without_link(netns: str) -> None:
    with loaded() as (coll, ops):
        with StructOpsMap.create(ops["pycc_nolink"], coll.programs) as m:
            link = struct_ops(m)
            with link:
                assert "pycc_nolink" in available()
                assert tcp_with_cc(netns, "pycc_nolink") == "pycc_nolink"
                assert coll.variables["inits"].get() >= 1
                with pytest.raises(NotSupportedError):
                    link.update(m)
            assert "pycc_nolink" not in available()


@requires("struct_ops links", min_kernel="6.4", config="BPF_JIT")
def test_struct_ops_link_update(netns: str) -> None:
    """BPF_LINK_UPDATE swaps the registered implementation for another map of the
    same name atomically: new connections get the new programs."""
    need_links()
    with loaded() as (c1, ops1), loaded() as (c2, ops2):
        with StructOpsMap.create(ops1["pycc"], c1.programs) as m1, \
                StructOpsMap.create(ops2["pycc"], c2.programs) as m2:
            with struct_ops(m1) as link:
                assert tcp_with_cc(netns, "pycc", 1 << 16) == "pycc"
                link.update(m2)
                assert link.info().struct_ops.map_id == m2.id
                before = c1.variables["inits"].get()
                assert tcp_with_cc(netns, "pycc", 1 << 16) == "pycc"
                assert c1.variables["inits"].get() == before
                assert c2.variables["inits"].get() >= 1
            assert "pycc" not in available()


def test_read_without_kernel_then_load_all(netns: str) -> None:
    """The split the ELF loader/collection can use: parse (no kernel access), resolve
    kernel ids, load the programs, make every struct_ops map."""
    from ebpf.link import load_struct_ops, read_struct_ops, resolve_struct_ops_programs

    spec = ebpf.load_collection_spec(obj())
    ops = read_struct_ops(obj().read_bytes(), spec)
    assert spec.programs["pycc_init"].attach_to == "tcp_congestion_ops:init"
    assert spec.programs["pycc_init"].attach_btf_id == 0
    assert spec.struct_ops is ops  # type: ignore[attr-defined]
    resolve_struct_ops_programs(spec)
    assert spec.programs["pycc_init"].attach_btf_id != 0
    want = {"pycc", "pycc_nolink"}
    try:
        require_struct_ops(link=True)
    except NotSupportedError:
        del ops["pycc"]  # a .struct_ops.link map cannot be created before 6.4
        want = {"pycc_nolink"}
    with ebpf.Collection(spec) as coll:
        maps = load_struct_ops(spec, coll.programs)
        try:
            assert set(maps) == want
            assert all(m.type == ebpf.MapType.STRUCT_OPS for m in maps.values())
            with struct_ops(maps["pycc_nolink"]):
                assert tcp_with_cc(netns, "pycc_nolink", 1 << 16) == "pycc_nolink"
        finally:
            for m in maps.values():
                m.close()


def test_collection_creates_and_attach_all_registers(netns: str) -> None:
    """The loader reads .struct_ops by itself; Collection creates the maps and
    attach_all() registers them (libbpf's skeleton attach), closing unregisters."""
    need_links()  # the object has a .struct_ops.link variable
    spec = ebpf.load_collection_spec(obj())
    assert set(spec.struct_ops) >= {"pycc", "pycc_nolink"}
    assert spec.copy().struct_ops["pycc"] is not spec.struct_ops["pycc"]
    try:
        coll = ebpf.Collection(spec)
    except NotSupportedError as e:
        pytest.skip(str(e))
    with coll:
        assert isinstance(coll.maps["pycc"], StructOpsMap)
        links = coll.attach_all()
        try:
            assert {"pycc", "pycc_nolink"} <= set(available())
            assert tcp_with_cc(netns, "pycc", 1 << 16) == "pycc"
        finally:
            for link in links:
                link.close()
        assert "pycc" not in available() and "pycc_nolink" not in available()
