"""The `ebpf` command: what a user types, what comes back (text, JSON, exit status)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from bpfbuild import compile_bpf

import ebpf
from ebpf.cli import main


@pytest.fixture(scope="module")
def obj() -> str:
    return str(compile_bpf("loader_globals"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_inspect_json(capsys: pytest.CaptureFixture[str], obj: str) -> None:
    rc, out, _ = run(capsys, "inspect", obj, "--json")
    assert rc == 0
    d = json.loads(out)
    progs = {p["name"]: p for p in d["programs"]}
    assert progs["read_config"]["type"] == "syscall"
    assert progs["read_config"]["section"] == "syscall"
    vs = {v["name"]: v for v in d["variables"]}
    assert vs["cfg_magic"]["value"] == 0x1234 and vs["cfg_magic"]["section"] == ".rodata"
    assert vs["cfg_name"]["value"] == "default"
    assert vs["cfg_pair"]["value"] == {"a": 1, "b": 2, "c": 3}
    assert {m["name"] for m in d["maps"]} >= {".rodata", ".data", ".bss"}


def test_inspect_text(capsys: pytest.CaptureFixture[str], obj: str) -> None:
    rc, out, _ = run(capsys, "inspect", obj)
    assert rc == 0
    assert out.startswith("Programs:\n")
    assert "read_config" in out and "Variables:" in out and "cfg_magic" in out


def test_load_with_set(capsys: pytest.CaptureFixture[str], obj: str) -> None:
    rc, out, _ = run(capsys, "load", obj, "--json", "--set", "cfg_magic=7",
                     "--set", 'cfg_name="x"')
    assert rc == 0
    d = json.loads(out)
    assert d["open"]["ok"]
    assert {p["name"]: p["ok"] for p in d["programs"]} == {"check_defaults": True,
                                                          "read_config": True}


def test_load_each_text(capsys: pytest.CaptureFixture[str], obj: str) -> None:
    rc, out, _ = run(capsys, "load", obj, "--each")
    assert rc == 0
    assert [ln.split()[0] for ln in out.splitlines()] == ["check_defaults", "read_config"]
    assert all(ln.rstrip().endswith("ok") for ln in out.splitlines())


@pytest.mark.parametrize("setting, message", [
    ("nope=1", "no variable named 'nope'"),
    ("cfg_pad=300", "cfg_pad=300 does not fit"),
    ("cfg_magic", "--set wants NAME=VALUE"),
])
def test_load_bad_set_fails_with_the_reason(capsys: pytest.CaptureFixture[str], obj: str,
                                            setting: str, message: str) -> None:
    rc, out, _ = run(capsys, "load", obj, "--json", "--set", setting)
    assert rc == 1
    d = json.loads(out)
    assert not d["open"]["ok"] and message in d["open"]["error"]


def test_bad_files_are_one_line_errors(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    rc, out, err = run(capsys, "inspect", str(tmp_path / "missing.o"))
    assert (rc, out) == (1, "")
    assert err.startswith("ebpf: ") and "No such file" in err and "Traceback" not in err
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"\x7fELF" + b"\0" * 20)
    rc, _, err = run(capsys, "inspect", str(junk))
    assert rc == 1 and err.startswith("ebpf: ") and err.count("\n") == 1


def test_btf_dump_one_type_compiles(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    rc, out, _ = run(capsys, "btf", "dump", "--type", "iphdr")
    assert rc == 0
    assert "struct iphdr {" in out and out.startswith("#ifndef __VMLINUX_H__")
    (tmp_path / "v.h").write_text(out)
    src = tmp_path / "t.c"
    src.write_text('#include "v.h"\nint f(struct iphdr *h) { return h->ttl; }\n')
    subprocess.run(["clang-19", "-target", "bpf", "-O2", "-c", str(src), "-o",
                    str(tmp_path / "t.o")], check=True)


def test_btf_dump_of_an_object(capsys: pytest.CaptureFixture[str], obj: str) -> None:
    rc, out, _ = run(capsys, "btf", "dump", obj, "--type", "pair")
    assert rc == 0 and "struct pair {" in out and "__u16 b;" in out
    rc, _, err = run(capsys, "btf", "dump", obj, "--type", "nope")
    assert rc == 1 and "no BTF type named 'nope'" in err


def test_lists_show_what_we_loaded(capsys: pytest.CaptureFixture[str], obj: str) -> None:
    with ebpf.Collection(ebpf.load_collection_spec(obj)) as coll:
        prog = coll.programs["read_config"]
        rc, out, _ = run(capsys, "prog", "list", "--json")
        assert rc == 0
        row = next(r for r in json.loads(out) if r["id"] == prog.id)
        assert row["type"] == "syscall" and row["name"] == "read_config"
        rodata = coll.maps[".rodata"]
        rc, out, _ = run(capsys, "map", "list", "--json")
        mrow = next(r for r in json.loads(out) if r["id"] == rodata.info().id)
        assert mrow["type"] == "array" and mrow["max_entries"] == 1


def test_feature_probe_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "feature", "probe", "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["program_types"]["have_socket_filter_prog_type"] is True   # bpftool's names
    assert d["map_types"]["have_hash_map_type"] is True


def test_the_installed_command() -> None:
    """`python -m ebpf` is the same command, with a usage error for nothing."""
    r = subprocess.run([sys.executable, "-m", "ebpf"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert r.returncode == 2 and "usage: ebpf" in r.stderr
