"""A signal arriving while the verifier runs (it returns EAGAIN when one is pending) does
not fail the load: the library retries with the deferrable signals blocked. Only when the
signals that cannot be deferred (SIGINT, SIGTERM, SIGHUP, SIGQUIT) keep interrupting
does it give up, with a SyscallError that says so, never a VerifierError."""

from __future__ import annotations

import errno
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

import pytest

import ebpf
from ebpf import asm

ITERATIONS = 100_000  # a bounded loop the verifier walks once per iteration


def slow_spec(n: int = ITERATIONS) -> ebpf.ProgramSpec:
    insns = [asm.mov_imm(asm.R0, 0), asm.mov_imm(asm.R1, 0), asm.label("loop"),
             asm.add_reg(asm.R0, asm.R1), asm.add_imm(asm.R1, 1),
             asm.jlt_imm(asm.R1, n, "loop"), asm.mov_imm(asm.R0, 0), asm.exit()]
    return ebpf.ProgramSpec(name="slow_verify", type=ebpf.ProgramType.SOCKET_FILTER,
                            license="GPL", instructions=insns)


@pytest.fixture(scope="module")
def verify_seconds() -> float:
    """How long the slow program takes to load without signals (must be well over the
    timer period, or the tests below would prove nothing)."""
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        ebpf.Program(slow_spec()).close()
        best = min(best, time.perf_counter() - t)
    assert best > 0.1, f"the program verifies in {best:.3f} s: too fast to be interrupted"
    return best


@pytest.fixture
def interval_timer() -> Iterator[list[int]]:
    """SIGALRM every 10 ms (100 Hz) with a Python handler that counts; restored after."""
    hits: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        hits.append(signum)

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
    try:
        yield hits
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)


def test_load_survives_a_100hz_interval_timer(verify_seconds: float,
                                              interval_timer: list[int]) -> None:
    t = time.perf_counter()
    with ebpf.Program(slow_spec()) as prog:
        assert prog.fileno() >= 0
        assert prog.info().name == "slow_verify"
    elapsed = time.perf_counter() - t
    # the timer fired (its handler ran; SIGALRMs blocked during the retry coalesce)
    assert interval_timer
    assert elapsed < verify_seconds * 4 + 1  # one interrupted attempt or two, not a storm


def test_load_with_verifier_log_survives_the_timer(verify_seconds: float,
                                                   interval_timer: list[int]) -> None:
    with ebpf.Program(slow_spec(), log_level=1) as prog:
        assert prog.fileno() >= 0
    assert interval_timer


def test_signals_that_cannot_wait_end_in_an_interrupted_error(verify_seconds: float) -> None:
    """SIGHUP (not deferred) every millisecond: the retries run out, and the error says
    the load was interrupted, not that the verifier rejected it."""
    hits: list[int] = []
    stop = threading.Event()
    main = threading.get_ident()

    def handler(signum: int, frame: FrameType | None) -> None:
        hits.append(signum)

    def storm() -> None:
        while not stop.wait(0.001):
            signal.pthread_kill(main, signal.SIGHUP)

    old = signal.signal(signal.SIGHUP, handler)
    sender = threading.Thread(target=storm, daemon=True)
    sender.start()
    try:
        with pytest.raises(ebpf.SyscallError) as ei:
            ebpf.Program(slow_spec())
    finally:
        stop.set()
        sender.join()
        signal.signal(signal.SIGHUP, old)
    e = ei.value
    assert not isinstance(e, ebpf.VerifierError)
    assert e.errno in (errno.EAGAIN, errno.EINTR)
    assert str(e).startswith("bpf(BPF_PROG_LOAD) of program 'slow_verify': interrupted by a "
                             "signal 9 times in a row")
    assert hits


def test_retries_are_bounded_and_named() -> None:
    from ebpf._sys import syscall

    assert syscall.INTERRUPT_RETRIES == 8
    e = syscall.interrupted_error(errno.EINTR, "bpf(BPF_MAP_CREATE)")
    assert type(e) is ebpf.SyscallError and e.errno == errno.EINTR
    assert "interrupted by a signal 9 times in a row" in str(e)
