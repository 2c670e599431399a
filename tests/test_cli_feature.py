"""`ebpf feature probe --json` in bpftool's sections, against `bpftool feature probe`."""

from __future__ import annotations

import json
import subprocess

import pytest

from ebpf.cli import main


@pytest.fixture(scope="module")
def theirs() -> dict[str, dict[str, object]]:
    r = subprocess.run(["bpftool", "-j", "feature", "probe"], capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_sections_agree_with_bpftool(capsys: pytest.CaptureFixture[str],
                                     theirs: dict[str, dict[str, object]]) -> None:
    assert main(["feature", "probe", "--json", "--no-helpers"]) == 0
    mine = json.loads(capsys.readouterr().out)
    assert mine["system_config"] == theirs["system_config"]  # sysctls and kernel config
    assert mine["syscall_config"]["have_bpf_syscall"] is True
    for section in ("program_types", "map_types"):
        common = set(mine[section]) & set(theirs[section])
        assert len(common) >= 25, section
        assert {k: mine[section][k] for k in common} == \
            {k: theirs[section][k] for k in common}, section
    for k in ("have_large_insn_limit", "have_bounded_loops", "have_v2_isa_extension",
              "have_v3_isa_extension"):
        assert mine["misc"][k] == theirs["misc"][k]


def test_text_has_bpftools_lines(capsys: pytest.CaptureFixture[str]) -> None:
    r = subprocess.run(["bpftool", "feature", "probe"], capture_output=True, text=True,
                       check=True)
    assert main(["feature", "probe", "--no-helpers"]) == 0
    mine = capsys.readouterr().out.splitlines()
    head = r.stdout.split("\n\n")[0].splitlines()      # system configuration section
    assert mine[:len(head)] == head
    for line in r.stdout.splitlines():
        if line.startswith(("eBPF program_type ", "eBPF map_type ")):
            assert line in mine
