"""The library logs its decisions through the standard `logging` module (logger
"ebpf"): here, the verifier log at DEBUG."""

from __future__ import annotations

import logging

import pytest

import ebpf
from ebpf import asm

pytestmark = pytest.mark.kernel


def _spec(insns: list[asm.Instruction], name: str) -> ebpf.ProgramSpec:
    return ebpf.ProgramSpec(type=ebpf.ProgramType.SOCKET_FILTER, license="GPL", name=name,
                            instructions=insns)


def test_verifier_log_of_refused_program(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ebpf")
    bad = _spec([asm.exit()], "no_r0")  # R0 is never set
    with pytest.raises(ebpf.VerifierError) as exc:
        ebpf.Program(bad)
    recs = [r for r in caplog.records if r.name == "ebpf" and r.levelno == logging.DEBUG
            and "verifier log of program 'no_r0'" in r.getMessage()]
    assert len(recs) == 1
    assert exc.value.log.strip() in recs[0].getMessage()
    assert "refused" in recs[0].getMessage()


def test_verifier_log_of_loaded_program(caplog: pytest.LogCaptureFixture) -> None:
    good = _spec([asm.mov_imm(asm.R0, 0), asm.exit()], "ok_prog")
    with caplog.at_level(logging.INFO, logger="ebpf"), ebpf.Program(good, log_level=1):
        pass
    assert not [r for r in caplog.records if "verifier log" in r.getMessage()]  # DEBUG only
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="ebpf"), ebpf.Program(good, log_level=1) as p:
        log = p.verifier_log
    msgs = [r.getMessage() for r in caplog.records if "verifier log of program 'ok_prog'"
            in r.getMessage()]
    assert len(msgs) == 1 and "loaded" in msgs[0] and log.strip() in msgs[0]
