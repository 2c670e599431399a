"""ebpf.load_many: many configurations of one template loaded from a thread pool, in
order, each working; a failing spec closes everything and is named in the error."""

from __future__ import annotations

import os
import socket
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires
from soakcycle import kernel_objects, open_fds, settled_kernel_objects

import ebpf
from ebpf import asm

pytestmark = [pytest.mark.kernel, pytest.mark.hostonly]

N = 20
TCX_PASS, TCX_DROP = 0, 2
PORT = 9999  # matched by no rule: the configured default action decides
RULE = struct.Struct("<BBHHHII")
CONFIG = struct.Struct("<IIIHBB")


def udp_frame(dport: int) -> bytes:
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    payload = b"x" * 16
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(payload), 0, 0, 64, 17, 0,
                     socket.inet_aton("10.0.0.2"), socket.inet_aton("10.0.0.1"))
    udp = struct.pack("!HHHH", 1234, dport, 8 + len(payload), 0)
    return eth + ip + udp + payload


def config(i: int) -> bytes:
    """Endpoint i: id i, generation 100 + i, default DROP for odd i, a few rules (none
    of them for PORT)."""
    rules = [(17, TCX_PASS, 7000, 7000 + i, 0, 0, 0), (6, TCX_DROP, 1, 1000 + i, 0, 0, 0)]
    raw = bytearray(CONFIG.pack(i, 100 + i, 0, 7000, TCX_DROP if i % 2 else TCX_PASS,
                                len(rules)))
    for r in rules:
        raw += RULE.pack(*r)
    raw += bytes(RULE.size * (48 - len(rules)))
    return bytes(raw)


def template(prefix: str) -> ebpf.CollectionSpec:
    spec = ebpf.load_collection_spec(str(compile_bpf("tc_template")))
    spec.programs["endpoint"].name = f"{prefix}_ep"
    for name, ms in spec.maps.items():
        ms.name = f"{prefix}_{name.strip('.')[:4]}"
    return spec


def specs(prefix: str, n: int = N) -> list[ebpf.CollectionSpec]:
    base = template(prefix)
    out = []
    for i in range(n):
        s = base.copy()
        s.variables["cfg"].set(config(i))
        out.append(s)
    return out


@requires("tcx attach type for SCHED_CLS programs", min_kernel="6.6")
def test_load_many_collections_in_order() -> None:
    prefix = "lm" + uuid.uuid4().hex[:6]
    loaded = ebpf.load_many(specs(prefix), workers=4)
    try:
        assert len(loaded) == N
        assert all(isinstance(c, ebpf.Collection) for c in loaded)
        frame = udp_frame(PORT)
        for i, coll in enumerate(loaded):
            res = coll.programs["endpoint"].test_run(frame)
            assert res.retval == (TCX_DROP if i % 2 else TCX_PASS), i
            # the program counted into its own endpoint's slot: its configuration
            per_cpu = coll.maps["stats"].lookup(i, raw=True)
            packets = sum(struct.unpack_from("<Q", v)[0] for v in per_cpu)
            generation = max(struct.unpack_from("<Q", v, 40)[0] for v in per_cpu)
            assert (packets, generation) == (1, 100 + i), i
            assert coll.variables["cfg"].get()["endpoint_id"] == i
        assert kernel_objects(prefix)["progs"] == N
    finally:
        for c in loaded:
            c.close()
    assert settled_kernel_objects(prefix) == {"progs": 0, "maps": 0, "links": 0}


@requires("tcx attach type for SCHED_CLS programs", min_kernel="6.6")
@pytest.mark.parametrize("workers", [1, 3])
def test_load_many_failure_closes_everything(workers: int) -> None:
    prefix = "lm" + uuid.uuid4().hex[:6]
    todo = specs(prefix)
    bad = N // 2
    ps = todo[bad].programs["endpoint"]
    ps.instructions = ps.instructions[:-1]  # no exit at the end: the verifier refuses it
    fds = open_fds()
    with pytest.raises(ebpf.VerifierError) as info:
        ebpf.load_many(todo, workers=workers)
    msg = str(info.value)
    assert f"spec {bad} (collection of endpoint)" in msg
    assert f"program {prefix}_ep" in msg or "program 'endpoint'" in msg
    assert open_fds() == fds
    assert settled_kernel_objects(prefix) == {"progs": 0, "maps": 0, "links": 0}


def test_load_many_program_specs_share_maps() -> None:
    counts = ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.ARRAY, key_size=4, value_size=8,
                                   max_entries=8, name="lm_counts"))
    try:
        progs = []
        for i in range(8):  # each program adds i + 1 to slot i
            progs.append(ebpf.ProgramSpec(
                name=f"lm_p{i}", type=ebpf.ProgramType.SOCKET_FILTER, license="GPL",
                instructions=asm.assemble([
                    asm.store_imm(asm.R10, -4, i, asm.W),
                    asm.mov_reg(asm.R2, asm.R10),
                    asm.add_imm(asm.R2, -4),
                    asm.ld_map_fd(asm.R1, "counts"),
                    asm.call("map_lookup_elem"),
                    asm.jeq_imm(asm.R0, 0, "out"),
                    asm.mov_imm(asm.R1, i + 1),
                    asm.atomic_add(asm.R0, 0, asm.R1),
                    asm.label("out"),
                    asm.mov_imm(asm.R0, 0),
                    asm.exit(),
                ])))
        loaded = ebpf.load_many(progs, maps={"counts": counts})
        try:
            assert [p.name for p in loaded] == [f"lm_p{i}" for i in range(8)]
            for p in loaded:
                p.test_run(b"\0" * 64)
            assert [counts[i] for i in range(8)] == [
                (i + 1).to_bytes(8, "little") for i in range(8)]
        finally:
            for p in loaded:
                p.close()
    finally:
        counts.close()


def test_load_many_arguments() -> None:
    assert ebpf.load_many([]) == []
    with pytest.raises(ebpf.InvalidArgumentError, match="spec 0 must be"):
        ebpf.load_many(["x"])  # type: ignore[list-item]
    with pytest.raises(ebpf.InvalidArgumentError, match="workers"):
        ebpf.load_many([], workers=0)
    assert os.cpu_count()


@requires("tcx attach type for SCHED_CLS programs", min_kernel="6.6")
@pytest.mark.parametrize("share_programs", [False, True])
def test_load_many_consumes_a_generator_while_loading(share_programs: bool) -> None:
    prefix = "lm" + uuid.uuid4().hex[:6]
    base = template(prefix)
    made: list[int] = []

    def copies() -> Iterator[ebpf.CollectionSpec]:
        for i in range(N):
            s = base.copy(share_programs=share_programs)
            s.variables["cfg"].set(config(i))
            made.append(i)
            yield s

    loaded = ebpf.load_many(copies(), workers=2)
    try:
        assert made == list(range(N)) and len(loaded) == N
        frame = udp_frame(PORT)
        for i, coll in enumerate(loaded):  # in the generator's order, each its own config
            assert coll.variables["cfg"].get()["endpoint_id"] == i
            assert coll.programs["endpoint"].test_run(frame).retval == (
                TCX_DROP if i % 2 else TCX_PASS), i
    finally:
        for c in loaded:
            c.close()
    assert settled_kernel_objects(prefix) == {"progs": 0, "maps": 0, "links": 0}


@requires("tcx attach type for SCHED_CLS programs", min_kernel="6.6")
@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_load_many_generator_failure_closes_what_it_loaded(
        workers: int, error: type[BaseException]) -> None:
    prefix = "lm" + uuid.uuid4().hex[:6]
    base = template(prefix)

    def copies() -> Iterator[Any]:
        for i in range(6):
            s = base.copy()
            s.variables["cfg"].set(config(i))
            yield s
        raise error("no more configurations")  # (^C: whichever thread runs the generator)

    fds = open_fds()
    with pytest.raises(error, match="no more configurations"):
        ebpf.load_many(copies(), workers=workers)
    assert open_fds() == fds
    assert settled_kernel_objects(prefix) == {"progs": 0, "maps": 0, "links": 0}

    def wrong() -> Iterator[Any]:
        yield base.copy()
        yield "not a spec"

    with pytest.raises(ebpf.InvalidArgumentError, match="spec 1 must be"):
        ebpf.load_many(wrong(), workers=workers)
    assert open_fds() == fds
    assert settled_kernel_objects(prefix) == {"progs": 0, "maps": 0, "links": 0}


def _counter_specs(prefix: str, n: int) -> list[ebpf.ProgramSpec]:
    return [ebpf.ProgramSpec(
        name=f"{prefix}{i}", type=ebpf.ProgramType.SOCKET_FILTER, license="GPL",
        instructions=asm.assemble([asm.mov_imm(asm.R0, i), asm.exit()]))
        for i in range(n)]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_load_many_takes_specs_as_workers_free_up(workers: int) -> None:
    prefix = "lm" + uuid.uuid4().hex[:6]
    todo = _counter_specs(prefix, 12)
    loaded_when_taken: list[int] = []

    def paced() -> Iterator[ebpf.ProgramSpec]:
        for s in todo:
            loaded_when_taken.append(kernel_objects(prefix)["progs"])
            yield s

    loaded = ebpf.load_many(paced(), workers=workers)
    try:
        assert [p.name for p in loaded] == [s.name for s in todo]
        # spec k is taken by a free thread, once k + 1 - workers loads have ended (the
        # other threads' loads at most in flight), not all at once before the first
        for k, done in enumerate(loaded_when_taken):
            assert done >= k + 1 - workers, (k, loaded_when_taken)
    finally:
        for p in loaded:
            p.close()
    assert settled_kernel_objects(prefix) == {"progs": 0, "maps": 0, "links": 0}


def test_copy_sharing_programs() -> None:
    base = template("lm" + uuid.uuid4().hex[:6])
    base.variables["cfg"].set(config(1))
    dup = base.copy(share_programs=True)
    assert dup.programs is not base.programs and dup.programs == base.programs
    assert all(dup.programs[k] is p for k, p in base.programs.items())
    assert dup.maps[".rodata"] is not base.maps[".rodata"]
    dup.variables["cfg"].set(config(2))  # its own data: the template keeps its values
    assert base.variables["cfg"].get()["endpoint_id"] == 1
    assert dup.variables["cfg"].get()["endpoint_id"] == 2
    assert dup.variables["cfg"]._spec is dup
