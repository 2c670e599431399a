"""`ebpf load --each`: every program on its own, SEC("?...") ones included
(issue 12, cause 3); without --each, what the object loads by default."""

from __future__ import annotations

import json

import pytest
from bpfbuild import compile_bpf

from ebpf.cli import main


@pytest.fixture(scope="module")
def obj() -> str:
    return str(compile_bpf("cli_optional"))


def _load(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, bool]]:
    rc = main(["load", *argv, "--json"])
    out, _ = capsys.readouterr()
    d = json.loads(out)
    assert d["open"]["ok"], d
    return rc, {p["name"]: p["ok"] for p in d["programs"]}


def test_each_loads_programs_not_loaded_by_default(
        capsys: pytest.CaptureFixture[str], obj: str) -> None:
    rc, progs = _load(capsys, obj, "--each")
    assert rc == 0
    assert progs == {"loaded_by_default": True, "loaded_on_request": True}


def test_all_together_loads_the_default_set(capsys: pytest.CaptureFixture[str],
                                            obj: str) -> None:
    rc, progs = _load(capsys, obj)
    assert rc == 0
    assert progs == {"loaded_by_default": True}


def test_each_text_lists_every_program(capsys: pytest.CaptureFixture[str], obj: str) -> None:
    assert main(["load", obj, "--each"]) == 0
    out = capsys.readouterr().out
    assert "loaded_by_default" in out and "loaded_on_request" in out
