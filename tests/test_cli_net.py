"""`ebpf net show`, `ebpf cgroup tree` and `ebpf perf show` against bpftool on the same
attachments (networking inside a test namespace, run by both tools with `ip netns
exec`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires

import ebpf
from ebpf import link

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def coll() -> Iterator[ebpf.Collection]:
    spec = ebpf.load_collection_spec(str(compile_bpf("cli_objects")))
    with ebpf.Collection(spec) as c:
        yield c


def both(*argv: str, netns: str | None = None) -> tuple[Any, Any]:
    """(ours, bpftool's) JSON for the same command, in `netns` when given."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    env = dict(os.environ, PYTHONPATH=REPO)
    mine = subprocess.run([*prefix, sys.executable, "-m", "ebpf", *argv, "--json"],
                          capture_output=True, text=True, env=env, check=True)
    theirs = subprocess.run([*prefix, "bpftool", "-j", *argv], capture_output=True,
                            text=True, check=True)
    return json.loads(mine.stdout), json.loads(theirs.stdout)


@requires("tcx links", min_kernel="6.6", config="NET_XGRESS")
def test_net_show(coll: ebpf.Collection, netns: str) -> None:
    xdp_prog, tc_prog = coll.programs["xdp_count"], coll.programs["tc_count"]
    with link.in_netns(netns), link.xdp(xdp_prog, "veth0"), \
            link.tcx(tc_prog, "veth0", "ingress") as tcx, \
            link.tc(tc_prog, "veth0", "egress"):
        mine, theirs = both("net", "show", netns=netns)
        index = socket.if_nametoindex("veth0")
        (ours,), (bpftools,) = mine, theirs
        assert ours["xdp"] == bpftools["xdp"] == [
            {"devname": "veth0", "ifindex": index, "mode": "driver", "id": xdp_prog.id}]

        def clsact(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [r for r in rows if r["kind"].startswith("clsact/")]

        assert clsact(ours["tc"]) == clsact(bpftools["tc"])
        assert [(r["kind"], r["id"]) for r in clsact(ours["tc"])] == [
            ("clsact/egress", tc_prog.id)]
        assert [r for r in ours["tc"] if r["kind"].startswith("tcx/")] == [
            {"devname": "veth0", "ifindex": index, "kind": "tcx/ingress", "name": "tc_count",
             "prog_id": tc_prog.id, "link_id": tcx.id}]
        assert ours["flow_dissector"] == bpftools["flow_dissector"] == []
        one, _ = both("net", "show", "dev", "lo", netns=netns)
        assert one == [{"xdp": [], "tc": [], "flow_dissector": []}]


def test_cgroup_tree(coll: ebpf.Collection, cgroup: str) -> None:
    prog = coll.programs["cg_count"]
    with link.cgroup(prog, cgroup):
        root = os.path.dirname(cgroup)
        mine, theirs = both("cgroup", "tree", root)
        ours = next(n for n in mine if n["cgroup"] == cgroup)
        bpftools = next(n for n in theirs if n["cgroup"] == cgroup)
        fields = ("id", "attach_type", "attach_flags", "name")
        assert [{k: p[k] for k in fields} for p in ours["programs"]] == \
            [{k: p[k] for k in fields} for p in bpftools["programs"]] == \
            [{"id": prog.id, "attach_type": "cgroup_inet_ingress", "attach_flags": "multi",
              "name": "cg_count"}]


def test_perf_show(coll: ebpf.Collection, tracefs: str) -> None:
    prog = coll.programs["tp_count"]
    with prog.attach():
        mine, theirs = both("perf", "show")
        pid = os.getpid()
        ours = [r for r in mine if r["pid"] == pid]
        assert ours == [r for r in theirs if r["pid"] == pid]
        assert [(r["prog_id"], r["fd_type"], r["tracepoint"]) for r in ours] == [
            (prog.id, "tracepoint", "sys_enter_getppid")]
