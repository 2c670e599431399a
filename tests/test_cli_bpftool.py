"""`ebpf prog|map|link|btf` against bpftool on the same kernel objects: the same JSON
fields and values, the same xlated listings and raw BTF lines, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from bpfbuild import compile_bpf

import ebpf
from ebpf.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def obj() -> str:
    return str(compile_bpf("cli_objects"))


@pytest.fixture(scope="module")
def coll(obj: str) -> Iterator[ebpf.Collection]:
    with ebpf.Collection(ebpf.load_collection_spec(obj),
                         programs=["xdp_count", "tc_count"]) as c:
        typed = c.maps["typed"]
        typed.update(bytes([1, 0, 0, 0, 2, 0, 0, 0]),
                     (5).to_bytes(8, "little") + b"ab\0\0\0\0\0\0"
                     + (1).to_bytes(4, "little") + (-1).to_bytes(4, "little", signed=True))
        c.maps["counters"][1] = 77
        yield c


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def ours(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    rc, out, err = run(capsys, *argv, "--json")
    assert rc == 0, err
    return json.loads(out)


def bpftool(*argv: str, json_out: bool = True) -> Any:
    r = subprocess.run(["bpftool", *(["-j"] if json_out else []), *argv],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout) if json_out else r.stdout


def test_version() -> None:
    r = subprocess.run([sys.executable, "-m", "ebpf", "--version"], capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert r.returncode == 0 and r.stdout == f"ebpf {ebpf.__version__}\n"


# -- prog ------------------------------------------------------------------------------------

PROG_FIELDS = ("id", "type", "name", "tag", "gpl_compatible", "uid", "bytes_xlated", "jited",
               "bytes_jited", "bytes_memlock", "map_ids", "btf_id")


@pytest.mark.parametrize("prog", ["xdp_count", "tc_count"])
def test_prog_show_json_matches_bpftool(capsys: pytest.CaptureFixture[str],
                                        coll: ebpf.Collection, prog: str) -> None:
    pid = coll.programs[prog].id
    mine = ours(capsys, "prog", "show", "id", str(pid))
    theirs = bpftool("prog", "show", "id", str(pid))
    assert {k: mine.get(k) for k in PROG_FIELDS} == {k: theirs.get(k) for k in PROG_FIELDS}
    assert abs(mine["loaded_at"] - theirs["loaded_at"]) <= 1
    listed = {r["id"]: r for r in ours(capsys, "prog", "list")}
    assert listed[pid]["name"] == theirs["name"]


def test_prog_show_text_and_selectors(capsys: pytest.CaptureFixture[str],
                                      coll: ebpf.Collection, pin_dir: str) -> None:
    prog = coll.programs["xdp_count"]
    rc, out, _ = run(capsys, "prog", "show", str(prog.id))
    assert rc == 0
    theirs = bpftool("prog", "show", "id", str(prog.id), json_out=False)
    # the first and third lines (identity; sizes, memlock, maps) are bpftool's exactly
    assert out.splitlines()[0] == theirs.splitlines()[0]
    assert out.splitlines()[2] == theirs.splitlines()[2]
    path = os.path.join(pin_dir, "xdp")
    assert run(capsys, "prog", "pin", "id", str(prog.id), path)[0] == 0
    assert bpftool("prog", "show", "pinned", path)["id"] == prog.id
    assert ours(capsys, "prog", "show", "pinned", path)["id"] == prog.id
    by_name = ours(capsys, "prog", "show", "name", "xdp_count")
    assert prog.id in [r["id"] for r in by_name]
    shown = {r["id"]: r for r in ours(capsys, "prog", "show", "-f")}
    assert shown[prog.id]["pinned"] == [path]


def test_prog_run_statistics(capsys: pytest.CaptureFixture[str],
                             coll: ebpf.Collection) -> None:
    prog = coll.programs["xdp_count"]
    with ebpf.enable_stats():
        prog.test_run(b"\0" * 64, repeat=3)
        mine = ours(capsys, "prog", "show", "id", str(prog.id))
        theirs = bpftool("prog", "show", "id", str(prog.id))
    assert mine["run_cnt"] == theirs["run_cnt"] >= 3
    assert mine["run_time_ns"] == theirs["run_time_ns"] > 0


@pytest.mark.parametrize("prog", ["xdp_count", "tc_count"])
@pytest.mark.parametrize("linum", [False, True])
def test_prog_dump_xlated_is_bpftools(capsys: pytest.CaptureFixture[str],
                                      coll: ebpf.Collection, prog: str, linum: bool) -> None:
    """Subprogram calls, kernel helper calls, map loads and source lines, as bpftool."""
    pid = str(coll.programs[prog].id)
    extra = ["linum"] if linum else []
    rc, out, _ = run(capsys, "prog", "dump", "xlated", "id", pid, *extra)
    assert rc == 0
    assert out == bpftool("prog", "dump", "xlated", "id", pid, *extra, json_out=False)
    assert ours(capsys, "prog", "dump", "xlated", "id", pid, *extra) == bpftool(
        "prog", "dump", "xlated", "id", pid, *extra)


def test_prog_dump_jited(capsys: pytest.CaptureFixture[str], coll: ebpf.Collection,
                         tmp_path: Any) -> None:
    prog = coll.programs["xdp_count"]
    code = prog.info().jited
    rc, out, _ = run(capsys, "prog", "dump", "jited", "id", str(prog.id), "file",
                     str(tmp_path / "code.bin"))
    assert rc == 0 and (tmp_path / "code.bin").read_bytes() == code
    funcs = ours(capsys, "prog", "dump", "jited", "id", str(prog.id))
    assert b"".join(bytes.fromhex(f["bytes"]) for f in funcs) == code
    assert len(funcs) == 2                       # xdp_count and its subprogram bump
    rc, out, _ = run(capsys, "prog", "dump", "jited", "id", str(prog.id), "opcodes")
    assert rc == 0 and out.splitlines()[1].startswith("   0: " + code[:1].hex())


def test_prog_loadall_pins_programs_and_maps(capsys: pytest.CaptureFixture[str], obj: str,
                                             pin_dir: str) -> None:
    progs, maps = os.path.join(pin_dir, "progs"), os.path.join(pin_dir, "maps")
    assert run(capsys, "prog", "loadall", obj, progs, "pinmaps", maps)[0] == 0
    assert sorted(os.listdir(progs)) == ["cg_count", "tc_count", "tp_count", "xdp_count"]
    assert bpftool("prog", "show", "pinned", os.path.join(progs, "tc_count"))["name"] == \
        "tc_count"
    assert bpftool("map", "show", "pinned", os.path.join(maps, "typed"))["name"] == "typed"
    one = os.path.join(pin_dir, "one")
    assert run(capsys, "prog", "load", obj, one)[0] == 0
    theirs = os.path.join(pin_dir, "theirs")
    bpftool("prog", "load", obj, theirs, json_out=False)     # bpftool pins its first program
    assert bpftool("prog", "show", "pinned", one)["name"] == \
        bpftool("prog", "show", "pinned", theirs)["name"]


# -- map -------------------------------------------------------------------------------------

MAP_FIELDS = ("id", "type", "name", "flags", "bytes_key", "bytes_value", "max_entries",
              "bytes_memlock", "frozen", "btf_id")


@pytest.mark.parametrize("name", ["typed", "counters"])
def test_map_show_and_dump_match_bpftool(capsys: pytest.CaptureFixture[str],
                                         coll: ebpf.Collection, name: str) -> None:
    mid = str(coll.maps[name].info().id)
    mine = ours(capsys, "map", "show", "id", mid)
    theirs = bpftool("map", "show", "id", mid)
    assert {k: mine.get(k) for k in MAP_FIELDS} == {k: theirs.get(k) for k in MAP_FIELDS}
    dumped = ours(capsys, "map", "dump", "id", mid)
    assert dumped == bpftool("map", "dump", "id", mid)
    if name == "typed":
        assert dumped[0]["formatted"] == {"key": {"a": 1, "b": 2},
                                          "value": {"count": 5, "name": "ab", "arr": [1, -1]}}


def test_map_update_lookup_delete(capsys: pytest.CaptureFixture[str],
                                  coll: ebpf.Collection) -> None:
    mid = str(coll.maps["counters"].info().id)
    rc, _, err = run(capsys, "map", "update", "id", mid, "key", "0x02", "0", "0", "0",
                     "value", "0x2a", "0", "0", "0", "0", "0", "0", "0")
    assert rc == 0, err
    assert run(capsys, "map", "update", "id", mid, "key", "3", "value", "0x1234")[0] == 0
    theirs = {int(e["formatted"]["key"]): e["formatted"]["value"]
              for e in bpftool("map", "dump", "id", mid)}
    assert theirs[2] == 42 and theirs[3] == 0x1234
    found = ours(capsys, "map", "lookup", "id", mid, "key", "2")
    assert found == bpftool("map", "lookup", "id", mid, "key", "2", "0", "0", "0")
    rc, out, _ = run(capsys, "map", "lookup", "id", mid, "key", "2")
    assert rc == 0 and out.strip() == json.dumps({"key": 2, "value": 42}, indent=4)
    typed = str(coll.maps["typed"].info().id)
    key = ["1", "0", "0", "0", "2", "0", "0", "0"]
    assert run(capsys, "map", "delete", "id", typed, "key", *key)[0] == 0
    assert bpftool("map", "dump", "id", typed) == []
    rc, _, err = run(capsys, "map", "lookup", "id", typed, "key", *key)
    assert rc == 1 and err.startswith("ebpf: ") and err.count("\n") == 1


def test_map_create_and_pin(capsys: pytest.CaptureFixture[str], pin_dir: str) -> None:
    path = os.path.join(pin_dir, "made")
    rc, _, err = run(capsys, "map", "create", path, "type", "hash", "key", "4", "value", "8",
                     "entries", "32", "name", "made")
    assert rc == 0, err
    shown = bpftool("map", "show", "pinned", path)
    assert (shown["type"], shown["bytes_key"], shown["bytes_value"], shown["max_entries"],
            shown["name"]) == ("hash", 4, 8, 32, "made")
    again = os.path.join(pin_dir, "again")
    assert run(capsys, "map", "pin", "pinned", path, again)[0] == 0
    assert bpftool("map", "show", "pinned", again)["id"] == shown["id"]
    rc, out, _ = run(capsys, "map", "dump", "pinned", path)
    assert (rc, out) == (0, "Found 0 elements\n")


def test_map_dump_text_without_btf(capsys: pytest.CaptureFixture[str]) -> None:
    with ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.HASH, key_size=4, value_size=8,
                               max_entries=4, name="plain")) as m:
        m[7] = 9
        mid = str(m.info().id)
        rc, out, _ = run(capsys, "map", "dump", "id", mid)
        assert rc == 0
        assert out == bpftool("map", "dump", "id", mid, json_out=False)
        assert ours(capsys, "map", "dump", "id", mid) == bpftool("map", "dump", "id", mid)


# -- link ------------------------------------------------------------------------------------


def test_link_show_pin_detach(capsys: pytest.CaptureFixture[str], coll: ebpf.Collection,
                              netns: str, pin_dir: str) -> None:
    from ebpf.link import in_netns, xdp, xdp_info

    with in_netns(netns), xdp(coll.programs["xdp_count"], "veth0") as link:
        lid = link.id
        mine = ours(capsys, "link", "show", "id", str(lid))
        theirs = bpftool("link", "show", "id", str(lid))
        assert {k: mine[k] for k in ("id", "type", "prog_id")} == \
            {k: theirs[k] for k in ("id", "type", "prog_id")}
        assert mine["prog_id"] == coll.programs["xdp_count"].id
        assert lid in [r["id"] for r in ours(capsys, "link", "list")]
        path = os.path.join(pin_dir, "link")
        assert run(capsys, "link", "pin", "id", str(lid), path)[0] == 0
        assert bpftool("link", "show", "pinned", path)["id"] == lid
        assert xdp_info("veth0").prog_ids == (coll.programs["xdp_count"].id,)
        assert run(capsys, "link", "detach", "pinned", path)[0] == 0
        assert xdp_info("veth0").prog_ids == ()
        os.unlink(path)


# -- btf -------------------------------------------------------------------------------------


def test_btf_raw_dump_of_an_object_is_bpftools(capsys: pytest.CaptureFixture[str],
                                               obj: str) -> None:
    rc, out, _ = run(capsys, "btf", "dump", "file", obj, "format", "raw")
    assert rc == 0
    assert out == bpftool("btf", "dump", "file", obj, "format", "raw", json_out=False)
    assert ours(capsys, "btf", "dump", "file", obj) == bpftool("btf", "dump", "file", obj)


def test_btf_raw_dump_of_loaded_objects(capsys: pytest.CaptureFixture[str],
                                        coll: ebpf.Collection) -> None:
    info = coll.maps["typed"].info()
    for words in (["id", str(info.btf_id)], ["map", "id", str(info.id)],
                  ["prog", "id", str(coll.programs["tc_count"].id)]):
        rc, out, _ = run(capsys, "btf", "dump", *words)
        assert rc == 0
        assert out == bpftool("btf", "dump", *words, json_out=False), words
    theirs = {r["id"]: r for r in bpftool("btf", "list")}
    mine = {r["id"]: r for r in ours(capsys, "btf", "list")}
    for bid in (1, info.btf_id):
        assert {k: mine[bid][k] for k in ("size", "kernel")} == \
            {k: theirs[bid][k] for k in ("size", "kernel")}
        assert sorted(mine[bid]["map_ids"]) == sorted(theirs[bid]["map_ids"])
        assert sorted(mine[bid]["prog_ids"]) == sorted(theirs[bid]["prog_ids"])
    assert mine[1]["name"] == "vmlinux"


def test_btf_raw_dump_of_the_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw")
    assert rc == 0
    mine = out.splitlines()
    theirs = bpftool("btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw",
                     json_out=False).splitlines()
    assert len(mine) == len(theirs)
    step = max(len(theirs) // 2000, 1)
    assert mine[::step] == theirs[::step]


def test_btf_dump_format_c(capsys: pytest.CaptureFixture[str], obj: str) -> None:
    rc, out, _ = run(capsys, "btf", "dump", "file", obj, "format", "c")
    assert rc == 0 and "struct val {" in out and "char name[8];" in out


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["prog", "show", "id", "4294967295"], "no program with id 4294967295"),
    (["prog", "dump", "xlated", "id", "4294967295"], "no program with id 4294967295"),
    (["map", "dump", "id", "4294967295"], "no map with id 4294967295"),
    (["link", "show", "id", "4294967295"], "no link with id 4294967295"),
    (["btf", "dump", "id", "4294967295"], "No such file"),
    (["prog", "show", "name", "no_such_prog_x"], "no program with name 'no_such_prog_x'"),
    (["map", "show", "id", "x"], "map id must be a number"),
    (["prog", "show", "pinned", "/sys/fs/bpf/no-such-pin"], "/sys/fs/bpf/no-such-pin"),
    (["link", "show", "pinned", "/sys/fs/bpf/no-such-pin"], "/sys/fs/bpf/no-such-pin"),
    (["map", "dump", "pinned", "/sys/fs/bpf/no-such-pin"], "/sys/fs/bpf/no-such-pin"),
])
def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                             message: str) -> None:
    rc, out, err = run(capsys, *argv)
    assert (rc, out) == (1, "")
    assert err.startswith("ebpf: ") and err.count("\n") == 1 and "Traceback" not in err
    assert message in err


def test_errors_from_the_installed_command(obj: str) -> None:
    r = subprocess.run([sys.executable, "-m", "ebpf", "map", "show", "id", "4294967295"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == "ebpf: no map with id 4294967295\n"
