"""Object lifetimes against the real kernel: close() racing other threads, ClosedError,
and what a child process made by fork() can and cannot use.

The races are made likely rather than certain: the interpreter switches threads every
microsecond during them (sys.setswitchinterval), and each round closes an object while
other threads hammer it, then at once creates an object of the same kind, which gets
the lowest free descriptor number, i.e. the one just freed. The tests check that the
number really was reused in some rounds, so that they test what they claim to.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import importlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires

import ebpf
from ebpf import asm
from ebpf.errors import ClosedError, ReaderClosedError, ReaderForkedError

pytestmark = [pytest.mark.kernel, pytest.mark.hostonly]

ROUNDS = 30
WRITERS = 3
PACKET = b"\0" * 64


def hash_map(name: str = "race") -> ebpf.Map:
    return ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.HASH, key_size=4, value_size=8,
                                 max_entries=64, name=name))


def returning(value: int, name: str = "ret") -> ebpf.Program:
    return ebpf.Program(ebpf.ProgramSpec(
        type=ebpf.ProgramType.SOCKET_FILTER, license="GPL", name=name,
        instructions=[asm.mov_imm(asm.R0, value), asm.exit()]))


def ringbuf_map(size: int = 1 << 12) -> ebpf.Map:
    return ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.RINGBUF, max_entries=size, name="rb"))


def ringbuf_writer(rb: ebpf.Map) -> ebpf.Program:
    """A program whose test run outputs one 8-byte record (the value 42) to `rb`."""
    return ebpf.Program(ebpf.ProgramSpec(
        type=ebpf.ProgramType.SOCKET_FILTER, license="GPL", name="rb_out",
        instructions=[
            asm.mov_imm(asm.R1, 42), asm.store_mem(asm.R10, -8, asm.R1, asm.Size.DW),
            asm.ld_map_fd(asm.R1, "rb"),
            asm.mov_reg(asm.R2, asm.R10), asm.add_imm(asm.R2, -8),
            asm.mov_imm(asm.R3, 8), asm.mov_imm(asm.R4, 0),
            asm.call("ringbuf_output"),
            asm.mov_imm(asm.R0, 0), asm.exit(),
        ]), maps={"rb": rb})


def perf_writer(events: ebpf.Map) -> ebpf.Program:
    """A program whose test run outputs one 8-byte sample (42) to `events` on the
    current CPU and returns what bpf_perf_event_output returned (0, or -ENOENT when the
    CPU's slot is empty)."""
    return ebpf.Program(ebpf.ProgramSpec(
        type=ebpf.ProgramType.SOCKET_FILTER, license="GPL", name="pb_out",
        instructions=[
            asm.mov_imm(asm.R2, 42), asm.store_mem(asm.R10, -8, asm.R2, asm.Size.DW),
            asm.ld_map_fd(asm.R2, "events"),
            asm.mov_imm32(asm.R3, -1),                     # BPF_F_CURRENT_CPU
            asm.mov_reg(asm.R4, asm.R10), asm.add_imm(asm.R4, -8),
            asm.mov_imm(asm.R5, 8),
            asm.call("perf_event_output"),
            asm.exit(),
        ]), maps={"events": events})


def event_array() -> ebpf.Map:
    return ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.PERF_EVENT_ARRAY, key_size=4,
                                 value_size=4, name="events"))


class Hammer:
    """Threads running `op` in a loop until it raises; records how each one ended."""

    def __init__(self, n: int, op: Callable[[int], Any]) -> None:
        self.op = op
        self.done = [0] * n
        self.ended: list[BaseException | None] = [None] * n
        self.results: list[Any] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(n)]

    def _run(self, i: int) -> None:
        while True:
            try:
                self.results.append(self.op(i))
            except BaseException as e:
                self.ended[i] = e
                return
            self.done[i] += 1

    def start(self) -> None:
        for t in self.threads:
            t.start()
        deadline = time.monotonic() + 10
        while min(self.done) < 3:  # every thread is in its loop
            assert time.monotonic() < deadline, "the threads did not get going"
            time.sleep(0.0005)

    def join(self) -> None:
        for t in self.threads:
            t.join(10)
            assert not t.is_alive(), "a thread kept running after close()"


# --------------------------------------------------------------------------- races


def test_map_writes_racing_close_never_reach_a_new_map(fast_switching: None) -> None:
    reused = sum(_map_race_round(0xC0FFEE00 + rnd) for rnd in range(ROUNDS))
    assert reused > 0, "the descriptor number was never reused: the race was not tested"


def _map_race_round(magic: int) -> bool:
    """One round: True when the new map got the closed map's descriptor number."""
    made = threading.Event()
    box: list[ebpf.Map] = []
    owner_ended: list[BaseException] = []

    def owner() -> None:
        # the creating thread takes the map's preallocated fast path for m[k] = v
        m = hash_map()
        box.append(m)
        made.set()
        while True:
            try:
                m[100] = magic
            except BaseException as e:
                owner_ended.append(e)
                return

    t = threading.Thread(target=owner, daemon=True)
    t.start()
    assert made.wait(10)
    m = box[0]
    writers = Hammer(WRITERS, lambda i: m.__setitem__(i, magic))
    writers.start()
    number = m.fileno()
    m.close()
    new = hash_map()
    try:
        reused = new.fileno() == number
        writers.join()
        t.join(10)
        assert not t.is_alive()
        # every racing thread saw its map closed, with the map's name ...
        for e in [*writers.ended, *owner_ended]:
            assert isinstance(e, ClosedError), repr(e)
            assert str(e) == "map 'race' is closed"
        # ... and none of their writes landed in the map that took the number
        assert dict(new.items()) == {}, "writes reached the new map"
    finally:
        new.close()
    return reused


def test_test_run_racing_close_never_runs_a_new_program(fast_switching: None) -> None:
    reused = sum(_test_run_race_round() for _ in range(ROUNDS))
    assert reused > 0, "the descriptor number was never reused: the race was not tested"


def _test_run_race_round() -> bool:
    one = returning(1, "ret_one")
    runs = Hammer(WRITERS, lambda i: one.test_run(PACKET).retval)
    runs.start()
    number = one.fileno()
    one.close()
    two = returning(2, "ret_two")
    try:
        reused = two.fileno() == number
        runs.join()
        assert set(runs.results) == {1}, "a test run reached the program that took the fd"
        for e in runs.ended:
            assert isinstance(e, ClosedError), repr(e)
            assert str(e) == "program 'ret_one' is closed"
        assert two.test_run(PACKET).retval == 2
    finally:
        two.close()
    return reused


def test_iteration_and_lookups_racing_close(fast_switching: None) -> None:
    """Slow paths (typed lookups from other threads, key walks, batches) race close()
    too: they end with ClosedError and never read another map's contents."""
    for _ in range(10):
        _slow_paths_round()


def _slow_paths_round() -> None:
    m = hash_map()
    for k in range(32):
        m[k] = 7
    seven = (7).to_bytes(8, "little")
    # each returns True when what it read is the old map's content
    ops: list[Callable[[], bool]] = [
        lambda: m.lookup(3) == seven,
        lambda: len(list(m.keys())) == 32,
        lambda: len(m.lookup_batch().keys) == 32,
        lambda: m.get(5) == seven,
        lambda: 4 in m,
    ]
    hammer = Hammer(len(ops), lambda i: ops[i]())
    hammer.start()
    m.close()
    new = hash_map()  # holds only key 3 -> 99: reading it fails every check above
    try:
        new[3] = 99
        hammer.join()
        for e in hammer.ended:
            assert isinstance(e, ClosedError), repr(e)
        assert all(hammer.results), "an operation read the map that took the fd"
    finally:
        new.close()


@requires("map_type:RINGBUF", min_kernel="5.8")
def test_ringbuf_read_blocked_in_another_thread_wakes_on_close() -> None:
    with ringbuf_map() as rb:
        rd = ebpf.ringbuf.Reader(rb)
        got: list[BaseException] = []
        started = threading.Event()

        def reader() -> None:
            started.set()
            try:
                rd.read()  # no timeout: only close() can end it
            except BaseException as e:
                got.append(e)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        assert started.wait(5)
        time.sleep(0.05)
        assert t.is_alive(), "read() returned without a record"
        t0 = time.monotonic()
        rd.close()
        t.join(5)
        assert not t.is_alive(), "close() did not wake the blocked read"
        assert time.monotonic() - t0 < 2
        assert len(got) == 1 and isinstance(got[0], ReaderClosedError), got
        assert isinstance(got[0], ClosedError)
        assert str(got[0]) == "ring buffer reader is closed"


def test_perf_read_blocked_in_another_thread_wakes_on_close() -> None:
    with event_array() as events:
        rd = ebpf.perf.Reader(events, per_cpu_buffer=4096)
        got: list[BaseException] = []
        t = threading.Thread(target=lambda: got.append(_raises(rd.read)), daemon=True)
        t.start()
        time.sleep(0.05)
        assert t.is_alive()
        rd.close()
        t.join(5)
        assert not t.is_alive(), "close() did not wake the blocked read"
        assert len(got) == 1 and isinstance(got[0], ReaderClosedError), got
        assert str(got[0]) == "perf reader is closed"


# ----------------------------------------------- attachments that are not bpf_links, variables
#
# Each round attaches with one program (or to one map), lets threads hand the kernel a second
# one again and again, closes that second object and at once creates a third of the same
# kind, which gets the closed one's descriptor number. The third must never be attached:
# every thread ends with ClosedError.


def _flow_dissector(value: int, name: str) -> ebpf.Program:
    return ebpf.Program(ebpf.ProgramSpec(
        type=ebpf.ProgramType.FLOW_DISSECTOR, license="GPL", name=name,
        instructions=[asm.mov_imm(asm.R0, value), asm.exit()]))


def _typed(ptype: ebpf.ProgramType, name: str) -> ebpf.Program:
    return ebpf.Program(ebpf.ProgramSpec(
        type=ptype, license="GPL", name=name,
        instructions=[asm.mov_imm(asm.R0, 0), asm.exit()]))


def _replace(attachment: Any, program: ebpf.Program,
             attached_prog: Callable[[Any], int]) -> None:
    """Attach `program` in place of whatever is attached now (maybe a closed program,
    opened again by its id: netlink XDP names the program it replaces)."""
    with ebpf.Program.from_id(attached_prog(attachment)) as current:
        attachment.update(program, old=current)


def _update_race(attached_prog: Callable[[Any], int], attachment: Any,
                 make: Callable[[str], ebpf.Program], *, again_is_einval: bool = False) -> bool:
    """One round of `attachment.update(two)` in threads racing `two.close()`; True when the
    program made right after the close got two's descriptor number. `again_is_einval`:
    the hook refuses the program already attached with EINVAL (the flow dissector)."""
    two = make("race_two")
    _replace(attachment, two, attached_prog)

    def update(_: int) -> None:
        try:
            attachment.update(two)
        except ebpf.SyscallError as e:
            if not again_is_einval or e.errno != errno.EINVAL:
                raise
        # a pause outside the call: a close lands between calls in some rounds (the number
        # is reused at once) and inside one in others (the call finishes first)
        time.sleep(0.0001)

    updates = Hammer(WRITERS, update)
    updates.start()
    number = two.fileno()
    two.close()
    three = make("race_three")
    try:
        reused = three.fileno() == number
        updates.join()
        for e in updates.ended:
            assert isinstance(e, ClosedError), repr(e)
            assert str(e) == "program 'race_two' is closed"
        assert attached_prog(attachment) != three.id, "an update attached the new program"
    finally:
        three.close()
    return reused


def test_prog_attach_update_racing_program_close(fast_switching: None, netns: str) -> None:
    """BPF_PROG_ATTACH attachments (here the flow dissector of a namespace) hold the
    programs they hand the kernel."""
    one = _flow_dissector(0, "race_one")
    with one, ebpf.link.flow_dissector(one, netns, link=False) as att:
        def attached(_: Any) -> int:
            ids = ebpf.link.netns_programs(ebpf.AttachType.FLOW_DISSECTOR, netns).prog_ids
            return ids[0] if ids else 0

        reused = sum(_update_race(attached, att, lambda n: _flow_dissector(0, n),
                                  again_is_einval=True)
                     for _ in range(ROUNDS))
        assert reused > 0, "the descriptor number was never reused: the race was not tested"
        _replace(att, one, attached)  # so that close() detaches
    assert ebpf.link.netns_programs(ebpf.AttachType.FLOW_DISSECTOR, netns).prog_ids == ()


def test_netlink_xdp_update_racing_program_close(fast_switching: None, netns: str) -> None:
    one = _typed(ebpf.ProgramType.XDP, "race_one")
    with ebpf.link.in_netns(netns):
        att = ebpf.link.xdp(one, "veth0", "generic", netlink=True)
    with one, att:
        def attached(a: Any) -> int:
            return int(a.info().generic_prog_id)

        reused = sum(_update_race(attached, att, lambda n: _typed(ebpf.ProgramType.XDP, n))
                     for _ in range(ROUNDS))
        assert reused > 0, "the descriptor number was never reused: the race was not tested"
        _replace(att, one, attached)  # so that close() detaches
    with ebpf.link.in_netns(netns):
        assert ebpf.link.xdp_info("veth0").prog_ids == ()


def test_tc_filter_update_racing_program_close(fast_switching: None, netns: str) -> None:
    one = _typed(ebpf.ProgramType.SCHED_CLS, "race_one")
    with ebpf.link.in_netns(netns):
        att = ebpf.link.tc(one, "veth0", "ingress")
    with one, att:
        def attached(a: Any) -> int:
            return int(a.info().prog_id)

        reused = sum(_update_race(attached, att,
                                  lambda n: _typed(ebpf.ProgramType.SCHED_CLS, n))
                     for _ in range(ROUNDS))
        assert reused > 0, "the descriptor number was never reused: the race was not tested"
    with ebpf.link.in_netns(netns):
        assert ebpf.link.tc_filters("veth0") == []


def test_closed_attachments_raise_closed_error(netns: str) -> None:
    """An attachment that is not a bpf_link says it is closed like a Link does."""
    prog = _typed(ebpf.ProgramType.SCHED_CLS, "tc_prog")
    xprog = _typed(ebpf.ProgramType.XDP, "xdp_prog")
    fprog = _flow_dissector(0, "fd_prog")
    with prog, xprog, fprog:
        with ebpf.link.in_netns(netns):
            tc = ebpf.link.tc(prog, "veth0", "ingress")
            xdp = ebpf.link.xdp(xprog, "veth0", "generic", netlink=True)
        fd = ebpf.link.flow_dissector(fprog, netns, link=False)
        for att, op, message in (
                (tc, lambda: tc.update(prog), r"^tc filter .* on interface \d+ ingress is closed$"),
                (tc, tc.info, r"^tc filter .* is closed$"),
                (xdp, lambda: xdp.update(xprog), r"^XDP attachment to interface \d+ is closed$"),
                (xdp, xdp.info, r"^XDP attachment to interface \d+ is closed$"),
                (fd, lambda: fd.update(fprog), r"^attachment of program 'fd_prog' to network "
                                               r"namespace .* is closed$")):
            att.close()
            with pytest.raises(ClosedError, match=message):
                op()


def test_closed_links_of_every_kind_report_closed_alike(netns: str, tmp_path: Any) -> None:
    """After close(), every kind of link answers the same misuse the same way:
    `update()` raises `ClosedError`, `pin()`/`info()` raise `ClosedError` (or
    `NotSupportedError` where the kind has no such operation at all), `detach()` and
    `close()` again are harmless or raise `ClosedError`. A socket filter's update raised
    InvalidArgumentError."""
    import socket

    sprog = returning(0, "sock_prog")
    prog = _typed(ebpf.ProgramType.SCHED_CLS, "tc_prog")
    xprog = _typed(ebpf.ProgramType.XDP, "xdp_prog")
    fprog = _flow_dissector(0, "fd_prog")
    with sprog, prog, xprog, fprog, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s1, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s2:
        s2.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s2.bind(("127.0.0.1", 0))

        def in_ns(attach: Callable[[], Any]) -> Callable[[], Any]:
            def made() -> Any:
                with ebpf.link.in_netns(netns):
                    return attach()
            return made

        kinds: list[tuple[Callable[[], Any], ebpf.Program]] = [
            (lambda: ebpf.link.socket_filter(sprog, s1), sprog),
            (lambda: ebpf.link.reuseport(sprog, s2), sprog),
            (lambda: ebpf.link.flow_dissector(fprog, netns, link=False), fprog),
            (lambda: ebpf.link.flow_dissector(fprog, netns, link=True), fprog),
            (in_ns(lambda: ebpf.link.tc(prog, "veth0", "ingress")), prog),
            (in_ns(lambda: ebpf.link.xdp(xprog, "veth0", "generic", netlink=True)), xprog),
            (in_ns(lambda: ebpf.link.xdp(xprog, "veth0", "generic")), xprog),
        ]
        for attach, program in kinds:
            link = attach()
            link.close()
            with pytest.raises(ClosedError, match=r" is closed$"):
                link.update(program)
            pin = tmp_path / "pin"
            for op, args in ((link.pin, (str(pin),)), (link.info, ()), (link.detach, ()),
                             (link.close, ())):
                try:
                    op(*args)
                except (ClosedError, ebpf.NotSupportedError):
                    pass
            assert link.closed, link


@requires("link_type:SOCKMAP", min_kernel="6.10")
def test_sockmap_link_racing_map_close(fast_switching: None) -> None:
    """A sockmap bpf_link holds the map it hands the kernel: an attach racing the map's
    close never attaches to the map that took the number."""
    prog = _typed(ebpf.ProgramType.SK_MSG, "sk_msg")

    def sockmap() -> ebpf.Map:
        return ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.SOCKMAP, key_size=4, value_size=4,
                                     max_entries=2, name="race_sm"))

    reused = 0
    with prog:
        for _ in range(ROUNDS):
            old = sockmap()

            def attach_once(_: int, m: ebpf.Map = old) -> None:
                ebpf.link.sockmap(prog, m).close()

            # one thread: the hook takes one program per map and attach type
            attach = Hammer(1, attach_once)
            attach.start()
            number = old.fileno()
            old.close()
            new = sockmap()
            try:
                reused += new.fileno() == number
                attach.join()
                e = attach.ended[0]
                assert isinstance(e, ClosedError) and str(e) == "map 'race_sm' is closed", e
                q = ebpf.link._attach.query(target_fd=new.fileno(),
                                    attach_type=ebpf.AttachType.SK_MSG_VERDICT)
                assert q.prog_ids == (), "an attach reached the map that took the number"
            finally:
                new.close()
    assert reused > 0, "the descriptor number was never reused: the race was not tested"


def test_variables_racing_collection_close(fast_switching: None) -> None:
    """Variable get/set racing Collection.close(): they end with ClosedError (not an error
    about released memory) and never write the collection loaded right after."""
    spec = ebpf.load_collection_spec(compile_bpf("loader_globals"))
    magic = 0x5EED_F00D
    reused = 0
    for _ in range(ROUNDS):
        coll = ebpf.Collection(spec, programs=[])
        var = coll.variables["data_counter"]
        number = coll.maps[var.spec.section].fileno()
        def use(i: int, v: ebpf.collection.Variable = var) -> Any:
            return v.set(magic) if i % 2 else v.get()

        ops = Hammer(WRITERS, use)
        ops.start()
        coll.close()
        new = ebpf.Collection(spec, programs=[])
        try:
            reused += new.maps[var.spec.section].fileno() == number
            ops.join()
            for e in ops.ended:
                assert isinstance(e, ClosedError), repr(e)
                assert str(e) in ("variable 'data_counter' is closed",
                                  f"map '{var.spec.section}' is closed"), str(e)
            assert new.variables["data_counter"].get() == 100
        finally:
            new.close()
    assert reused > 0, "the descriptor number was never reused: the race was not tested"
    with pytest.raises(ClosedError, match=r"^variable 'data_counter' is closed$"):
        var.get()


def _raises(fn: Callable[[], Any]) -> BaseException | None:
    try:
        fn()
    except BaseException as e:
        return e
    return None


# --------------------------------------------------------------------------- ClosedError


def test_closed_error_hierarchy() -> None:
    assert issubclass(ebpf.ClosedError, ebpf.Error)
    assert issubclass(ebpf.ClosedError, ValueError)
    assert issubclass(ebpf.ReaderClosedError, ebpf.ClosedError)
    assert issubclass(ebpf.ReaderForkedError, ebpf.ReaderClosedError)
    assert ebpf.ClosedError is ClosedError


def test_closed_map_operations_raise_closed_error(tmp_path: Any) -> None:
    m = hash_map("counts")
    m[1] = 2
    m.close()
    m.close()  # idempotent
    ops: list[Callable[[], Any]] = [
        lambda: m[1], lambda: m.__setitem__(1, 3), lambda: m.lookup(1),
        lambda: m.update(1, 2), lambda: m.delete(1), lambda: m.get(1), lambda: 1 in m,
        lambda: list(m.keys()), lambda: list(m.items()), lambda: len(m),
        lambda: m.lookup_batch(), lambda: m.update_batch([1], [2]), lambda: m.info(),
        lambda: m.fileno(), lambda: m.freeze(), lambda: m.dup(), lambda: m.next_key(),
        lambda: m.pin(str(tmp_path / "x")),
    ]
    for op in ops:
        with pytest.raises(ClosedError) as exc:
            op()
        assert str(exc.value) == "map 'counts' is closed"
    assert m.closed and "closed" in repr(m)


def test_closed_program_operations_raise_closed_error() -> None:
    p = returning(0, "my_prog")
    p.close()
    for op in (lambda: p.test_run(PACKET), p.info, p.fileno, lambda: p.fd, p.clone,
               lambda: ebpf.link.socket_filter(p, None)):  # type: ignore[arg-type]
        with pytest.raises(ClosedError) as exc:
            op()
        assert str(exc.value) == "program 'my_prog' is closed"


def test_closed_link_operations_raise_closed_error() -> None:
    prog = ebpf.Program(ebpf.ProgramSpec(
        type=ebpf.ProgramType.RAW_TRACEPOINT, license="GPL", name="raw_noop",
        instructions=[asm.mov_imm(asm.R0, 0), asm.exit()]))
    with prog:
        link = ebpf.link.raw_tracepoint(prog, "sys_enter")
        assert link.info().prog_id == prog.id
        link.close()
        for op in (link.info, link.fileno, link.detach, lambda: link.update(prog)):
            with pytest.raises(ClosedError) as exc:
                op()
            assert str(exc.value) == "link of program 'raw_noop' is closed"


@requires("map_type:RINGBUF", min_kernel="5.8")
def test_closed_readers_raise_closed_error() -> None:
    with ringbuf_map() as rb:
        rd = ebpf.ringbuf.Reader(rb)
        rd.close()
        for op in (lambda: rd.read(timeout=0), lambda: rd.read_batch(timeout=0), rd.fileno,
                   lambda: rd.add(rb)):
            with pytest.raises(ClosedError, match=r"^ring buffer reader is closed$"):
                op()
        assert list(rd) == []  # iteration of a closed reader simply ends
    with event_array() as events:
        pr = ebpf.perf.Reader(events, per_cpu_buffer=4096)
        pr.close()
        for op in (lambda: pr.read(timeout=0), pr.pause, pr.fileno):
            with pytest.raises(ClosedError, match=r"^perf reader is closed$"):
                op()


# What each public member of a closed reader or writer is called with (every public
# name must be here, so a new one is swept too); one that needs an open reader must
# raise ReaderClosedError, the others (closed, close, decoding...) work harmlessly.
_CLOSED_READER_CALLS: dict[str, Callable[[Any, ebpf.Map], Any]] = {
    "add": lambda r, m: r.add(m),
    "available": lambda r, m: r.available(),
    "btf": lambda r, m: r.btf,
    "close": lambda r, m: r.close(),
    "closed": lambda r, m: r.closed,
    "cpus": lambda r, m: r.cpus,
    "ctype": lambda r, m: r.ctype(ctypes.c_uint64),
    "decode": lambda r, m: r.decode(bytes(8), ctypes.c_uint64),
    "decode_batch": lambda r, m: r.decode_batch([bytes(8)], ctypes.c_uint64),
    "dtype": lambda r, m: r.dtype("<u8"),
    "fileno": lambda r, m: r.fileno(),
    "lost_samples": lambda r, m: r.lost_samples,
    "overwritable": lambda r, m: r.overwritable,
    "pause": lambda r, m: r.pause(),
    "paused": lambda r, m: r.paused,
    "per_cpu_buffer": lambda r, m: r.per_cpu_buffer,
    "poll": lambda r, m: r.poll(lambda rec: None, timeout=0),
    "read": lambda r, m: r.read(timeout=0),
    "read_array": lambda r, m: r.read_array(timeout=0),
    "read_array_async": lambda r, m: asyncio.run(r.read_array_async(timeout=0)),
    "read_async": lambda r, m: asyncio.run(r.read_async(timeout=0)),
    "read_batch": lambda r, m: r.read_batch(timeout=0),
    "read_batch_async": lambda r, m: asyncio.run(r.read_batch_async(timeout=0)),
    "read_into": lambda r, m: r.read_into(bytearray(64), timeout=0),
    "reserve": lambda w, m: w.reserve(8),
    "resume": lambda r, m: r.resume(),
    "rings": lambda r, m: r.rings,
    "set_deadline": lambda r, m: r.set_deadline(None),
    "size": lambda r, m: r.size() if callable(r.size) else r.size,
    "write": lambda w, m: w.write(bytes(8)),
    "fd": lambda w, m: w.fd,
}


@pytest.mark.parametrize("kind", [
    pytest.param("ringbuf", marks=requires("map_type:RINGBUF", min_kernel="5.8")),
    "perf",
    pytest.param("writer", marks=requires("map_type:USER_RINGBUF", min_kernel="6.1")),
])
def test_every_member_of_a_closed_reader_or_writer_raises_reader_closed(kind: str) -> None:
    """After close(), each public method and property of a ring buffer reader, a perf
    reader and a user ring buffer writer either works harmlessly or raises
    `ReaderClosedError`: never the IndexError of an emptied ring list (`size`,
    `available`) or the ValueError of a released mapping (`Writer.available`)."""
    m = {"ringbuf": ringbuf_map,
         "perf": event_array,
         "writer": lambda: ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.USER_RINGBUF,
                                                 max_entries=4096, name="urb"))}[kind]()
    with m:
        obj: Any = {"ringbuf": ebpf.ringbuf.Reader,
                    "perf": lambda m: ebpf.perf.Reader(m, per_cpu_buffer=4096),
                    "writer": ebpf.ringbuf.Writer}[kind](m)
        if kind == "ringbuf":  # a ring the reader does not have: a typed error too
            with pytest.raises(ebpf.InvalidArgumentError, match=r"has no ring 1\b"):
                obj.size(1)
        obj.close()
        names = {n for n in dir(obj) if not n.startswith("_")}
        assert names <= set(_CLOSED_READER_CALLS), "add the new members to the table"
        wrong = []
        for name in sorted(names):
            try:
                _CLOSED_READER_CALLS[name](obj, m)
            except ReaderClosedError:
                pass
            except Exception as e:
                wrong.append(f"{name}: {type(e).__name__}: {e}")
        assert wrong == []
        assert obj.closed
        if kind != "writer":
            assert list(obj) == []  # iteration of a closed reader just ends


@requires("map_type:RINGBUF", min_kernel="5.8")
def test_ringbuf_available_as_another_thread_closes_raises_closed() -> None:
    """`available()` reading a ring that a close() in another thread unmaps at that
    moment raises `ReaderClosedError`, not the released mapping's ValueError."""
    with ringbuf_map() as rb:
        rd = ebpf.ringbuf.Reader(rb)

        class ClosingFirst(list[Any]):
            def __getitem__(self, i: Any) -> Any:
                rd.close()  # (another thread's close, at this point)
                return super().__getitem__(i)

        rd._rings = ClosingFirst(rd._rings)
        with pytest.raises(ReaderClosedError, match=r"^ring buffer reader is closed$"):
            rd.available()


def test_reader_of_a_closed_map_raises_closed_error() -> None:
    rb = ringbuf_map()
    rb.close()
    with pytest.raises(ClosedError, match=r"^map 'rb' is closed$"):
        ebpf.ringbuf.Reader(rb)


# --------------------------------------------------------------------------- fork


def _wait_child(pid: int, timeout: float = 20.0) -> int:
    """The child's exit status; kills it and fails when it is still running (a
    deadlock) at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WIFEXITED(status), f"child died: status {status:#x}"
            return os.WEXITSTATUS(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child did not finish: deadlocked after fork()")
        time.sleep(0.01)


def _in_child(body: Callable[[], int]) -> int:
    """Fork; the child runs `body` and exits with its result (99 on an exception)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 99
        try:
            code = body()
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    return _wait_child(pid)


@requires("map_type:RINGBUF", min_kernel="5.8")
def test_fork_child_shares_maps_and_refuses_inherited_reader() -> None:
    with hash_map("shared") as m, ringbuf_map() as rb, ringbuf_writer(rb) as out:
        m[1] = 1234
        rd = ebpf.ringbuf.Reader(rb)
        try:
            # a parent thread blocked in read() holds the reader's lock at fork time
            parent_got: list[Any] = []

            def parent_read() -> None:
                try:
                    parent_got.append(rd.read(timeout=15))
                except BaseException as e:
                    parent_got.append(e)

            blocked = threading.Thread(target=parent_read, daemon=True)
            blocked.start()
            time.sleep(0.05)
            assert blocked.is_alive()

            def child() -> int:
                if m[1] != (1234).to_bytes(8, "little"):  # the child reads the parent's map
                    return 1
                m[2] = 5678       # ... and writes it
                if not rd.closed:
                    return 2
                for op in (lambda: rd.read(timeout=0), rd.fileno, lambda: list(rd)):
                    try:
                        op()
                        return 3
                    except ReaderForkedError as e:
                        if f"from process {os.getppid()}" not in str(e):
                            return 4
                rd.close()        # must neither deadlock nor wake the parent's read
                out.test_run(PACKET)  # a record for the parent's reader
                return 0

            assert _in_child(child) == 0
            assert m[2] == (5678).to_bytes(8, "little")
            # the parent's blocked read was not woken by the child: it gets the record
            blocked.join(10)
            assert not blocked.is_alive()
            assert parent_got and isinstance(parent_got[0], ebpf.ringbuf.Record), parent_got
            assert parent_got[0].sample == (42).to_bytes(8, "little")
            out.test_run(PACKET)
            assert rd.read(timeout=5).sample == (42).to_bytes(8, "little")
        finally:
            rd.close()


def test_fork_child_of_perf_reader_leaves_the_parents_rings_installed() -> None:
    with event_array() as events, perf_writer(events) as out, \
            ebpf.perf.Reader(events, per_cpu_buffer=4096) as rd:

        def child() -> int:
            try:
                rd.read(timeout=0)
                return 1
            except ReaderForkedError:
                pass
            rd.close()
            return 0

        assert _in_child(child) == 0
        # had the child's close() emptied the map's slots, the output would fail (-ENOENT)
        assert out.test_run(PACKET).retval == 0
        assert rd.read(timeout=5).sample[:8] == (42).to_bytes(8, "little")
        assert not rd.closed


def test_fork_child_map_op_with_parent_threads_mid_operation() -> None:
    """Threads hammering a map while the parent forks: the child's map works, and its
    close() really closes the descriptor (no use count left over from those threads)."""
    with hash_map("busy") as m:
        stop = threading.Event()
        hammer = Hammer(2, lambda i: (m.__setitem__(i, i), stop.is_set() and 1 / 0))
        hammer.start()
        try:
            for _ in range(5):
                def child() -> int:
                    number = m.fileno()
                    m[7] = 7
                    if m[7] != (7).to_bytes(8, "little"):
                        return 1
                    m.close()
                    try:
                        os.fstat(number)
                        return 2  # still open: a stale use count deferred the close
                    except OSError:
                        return 0

                assert _in_child(child) == 0
        finally:
            stop.set()
            hammer.join()
        assert m[7] == (7).to_bytes(8, "little")


@pytest.mark.parametrize("close_inside", [False, True])
def test_fork_inside_a_hold_leaves_the_childs_map_usable_and_closable(
        close_inside: bool) -> None:
    """A child forked by a thread inside ``with m.fd.hold():`` leaves the block (whose
    operation began before the fork) without error, then uses and closes the map: the
    descriptor is really closed, at close() or (closed inside the block) when the block
    ends, and stays open until then. Leaving the block raised IndexError (the child's
    reset had emptied the use count the block then released)."""
    import traceback

    with hash_map("held") as m:
        pid = -1
        try:
            with m.fd.hold() as number:
                pid = os.fork()
                if pid == 0 and close_inside:  # pragma: no cover - runs in the child
                    m.close()
                    os.fstat(number)  # still open: the block holds it
            if pid == 0:  # pragma: no cover - runs in the child
                code = 1
                if close_inside:
                    try:
                        os.fstat(number)
                        code = 3  # still open: the end of the block did not close it
                    except OSError:
                        code = 0
                else:
                    m[1] = 2
                    if m[1] == (2).to_bytes(8, "little"):
                        m.close()
                        try:
                            os.fstat(number)
                            code = 2  # still open: a stale use count deferred the close
                        except OSError:
                            code = 0
                os._exit(code)
        except BaseException:
            if pid == 0:  # pragma: no cover - runs in the child
                traceback.print_exc()
                os._exit(99)
            raise
        assert _wait_child(pid) == 0
        m[1] = 3  # the parent's map and its use count are untouched
        assert not m.fd._users


def test_fork_tracking_forgets_dead_objects_and_keeps_live_ones() -> None:
    """Every FD is registered for the fork reset: the registry drops the dead ones as it
    grows (a process that opens and closes descriptors forever stays bounded) and keeps
    every live one."""
    from ebpf._sys import forking
    from ebpf._sys.fd import FD

    def null_fd() -> FD:
        return FD(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))

    live = [null_fd() for _ in range(300)]
    try:
        for _ in range(5000):
            null_fd().close()
        assert len(forking._tracked) < 2000
        tracked = {id(r()) for r in forking._tracked}
        assert all(id(f) in tracked for f in live)
    finally:
        for f in live:
            f.close()


def test_fork_while_another_thread_holds_library_locks() -> None:
    """Locks a parent thread holds at fork time are fresh in the child: the kernel BTF
    (a cached object that serializes its lazy indexing) and module-level locks."""
    tc = importlib.import_module("ebpf.link.tc")  # the module (ebpf.link.tc is a function)
    kernel = ebpf.btf.load_kernel_spec()
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with kernel._lock, tc._qdisc_lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder, daemon=True)
    t.start()
    assert held.wait(10)
    try:
        def child() -> int:
            for lock in (kernel._lock, tc._qdisc_lock):
                if not lock.acquire(timeout=5):
                    return 1
                lock.release()
            return 0 if kernel.type_by_name("task_struct").size > 0 else 2

        assert _in_child(child) == 0
    finally:
        release.set()
        t.join(10)


def test_fork_reset_that_fails_leaves_the_other_resets_done_and_is_logged(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock whose replacement fails in a forked child (its factory raises) is logged
    on the ``ebpf`` logger; the locks and tracked objects after it are reset all the
    same (a failure used to end the child's resets there)."""
    import logging
    import sys
    import types

    from ebpf._sys import forking

    class Owner:
        lock: Any = None

    class Tracked:
        resets = 0

        def _after_fork_in_child(self) -> None:
            self.resets += 1

    class Records(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    def failing() -> Any:
        raise RuntimeError("no lock")

    module = types.ModuleType("ebpf_test_failing_reset")  # a module lock that fails first
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(module, "lock", None, raising=False)
    monkeypatch.setitem(forking._MODULE_LOCKS, module.__name__, {"lock": failing})
    bad, good, tracked = Owner(), Owner(), Tracked()
    forking.reset_lock(bad, "lock", failing)  # (registered before `good`: reset before it)
    good.lock = threading.Lock()
    forking.reset_lock(good, "lock")
    forking.track(tracked)
    logged = Records()
    logging.getLogger("ebpf").addHandler(logged)
    good.lock.acquire()  # held by the parent at fork time
    try:
        def child() -> int:
            if not good.lock.acquire(blocking=False):
                return 1  # not replaced
            if tracked.resets != 1:
                return 2
            failures = [r for r in logged.records
                        if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
            return 0 if len(failures) == 2 else 3

        assert _in_child(child) == 0
    finally:
        logging.getLogger("ebpf").removeHandler(logged)
        good.lock.release()
