"""BPF tokens (issue 12, cause 8): a process in its own user namespace, without CAP_BPF
in the initial one, cannot create maps, load programs or BTF; with a token made from a
BPF file system that a privileged process set up with delegation options for that user
namespace, it can (explicitly with `Token.use()` / ``Collection(token=)``, or through
``EBPF_BPF_TOKEN_PATH`` as libbpf does with ``LIBBPF_BPF_TOKEN_PATH``).

The child makes the file system context in its user namespace and passes it over a
unix socket to this (privileged) process, which sets the delegation options, creates
the file system and passes back the descriptor of its root (never mounted anywhere).
Tokens exist from 6.9 on (`ebpf.features.have_bpf_token`).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires

import ebpf
import ebpf.token
from ebpf import features
from ebpf._sys import mount as _mount
from ebpf.errors import NotSupportedError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENS = requires(features.have_bpf_token, min_kernel="6.9")

CHILD = r'''
import builtins, ctypes, json, os, socket, sys
import ebpf, ebpf.token, ebpf.btf, ebpf.collection
from ebpf import asm

libc = ctypes.CDLL(None, use_errno=True)
sock = socket.socket(fileno=int(sys.argv[1]))
spec = ebpf.load_collection_spec(sys.argv[2])
CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
assert libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0, ctypes.get_errno()

def context_to_parent():
    ctx = ebpf.token.bpffs_context()
    socket.send_fds(sock, [b"c"], [ctx.fileno()])
    ctx.close()
    return socket.recv_fds(sock, 1, 1)[1][0]

delegated, plain = context_to_parent(), context_to_parent()

def lru():
    m = ebpf.Map(ebpf.MapSpec(name="lru", type=ebpf.MapType.LRU_HASH, key_size=4,
                              value_size=8, max_entries=4))
    with m:
        m[1] = 5
        return int.from_bytes(m[1], "little")

def xdp():
    p = ebpf.Program(ebpf.ProgramSpec(name="pass", type=ebpf.ProgramType.XDP,
                     license="GPL", instructions=[asm.mov_imm(asm.R0, 2), asm.exit()]))
    with p:
        return p.test_run(data=bytes(64)).retval

def btf_object():
    b = ebpf.btf.Builder()
    b.add(ebpf.btf.Int("int", 4, ebpf.btf.IntEncoding.SIGNED))
    with ebpf.btf.Handle(b.marshal()) as h:
        return h.fd.fileno() >= 0

def collection_with_token():
    with ebpf.Token(f"/proc/self/fd/{delegated}") as token:
        return collection(token)

def collection(token=None):
    with ebpf.Collection(spec, token=token) as coll:
        retval = coll.programs["count_packets"].test_run(data=bytes(64)).retval
        return [retval, coll.maps["seen"][64], coll.variables["runs"].get()]

def with_token(fn):
    def run():
        with ebpf.Token(delegated) as token, token.use():
            return fn()
    return run

def with_env(path):
    def run():
        os.environ["EBPF_BPF_TOKEN_PATH"] = path
        try:
            return collection()
        finally:
            del os.environ["EBPF_BPF_TOKEN_PATH"]
    return run

OPS = {
    "map": lru, "map+token": with_token(lru),
    "prog": xdp, "prog+token": with_token(xdp),
    "btf": btf_object, "btf+token": with_token(btf_object),
    "collection": collection,
    "collection+token": collection_with_token,
    "collection+env": with_env(f"/proc/self/fd/{delegated}"),
    "env not bpffs": with_env("/proc"),
    "token without delegation": lambda: ebpf.Token(plain),
}
out = {}
for what, fn in OPS.items():
    try:
        out[what] = ["ok", fn()]
    except Exception as e:
        out[what] = [type(e).__qualname__, str(e), getattr(e, "errno", None)]
print(json.dumps(out, default=repr))
'''


def run_child(obj: str) -> dict[str, list[object]]:
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with parent, child:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(child.fileno()), obj], pass_fds=[child.fileno()],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
            env=dict(os.environ, PYTHONPATH=REPO))
        child.close()
        try:
            parent.settimeout(60)
            for options in (True, False):
                got = socket.recv_fds(parent, 1, 1)[1]
                if not got:
                    break  # the child failed before asking
                ctx = got[0]
                try:
                    if options:
                        mnt = ebpf.token.delegate(ctx)
                    else:  # the same file system without delegation options
                        mnt = ebpf._sys.fd.FD(_mount.fs_mount(ctx))
                    with mnt:
                        socket.send_fds(parent, [b"m"], [mnt.fileno()])
                finally:
                    os.close(ctx)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, stderr
    result: dict[str, list[object]] = json.loads(stdout)
    return result


@pytest.fixture(scope="module")
def child_results() -> dict[str, list[object]]:
    if not features.have_bpf_token():
        pytest.skip("the kernel has no BPF tokens (6.9+)")
    return run_child(str(compile_bpf("token")))


def refused(result: list[object]) -> None:
    assert result[0] == "PermissionError" and result[2] == errno.EPERM, result


@TOKENS
def test_without_token_nothing_loads(child_results: dict[str, list[object]]) -> None:
    for what in ("map", "prog", "btf", "collection"):
        refused(child_results[what])
    assert "CAP_BPF" in str(child_results["map"][1])


@TOKENS
def test_token_delegates_maps_programs_btf(child_results: dict[str, list[object]]) -> None:
    assert child_results["map+token"] == ["ok", 5]
    assert child_results["prog+token"] == ["ok", 2]  # XDP_PASS
    assert child_results["btf+token"] == ["ok", True]


@TOKENS
def test_collection_with_token_or_environment(child_results: dict[str, list[object]]) -> None:
    # XDP_PASS, the LRU hash counted the 64-byte packet, the .bss variable too
    assert child_results["collection+token"] == ["ok", [2, 1, 1]]
    assert child_results["collection+env"] == ["ok", [2, 1, 1]]
    kind, message, _ = child_results["env not bpffs"]
    assert kind == "SyscallError" and "EBPF_BPF_TOKEN_PATH" in str(message)
    assert "/proc" in str(message)


@TOKENS
def test_token_needs_delegation_options(child_results: dict[str, list[object]]) -> None:
    kind, message, err = child_results["token without delegation"]
    assert kind == "SyscallError" and err == errno.ENOENT
    assert "without delegation options" in str(message)


@TOKENS
def test_no_token_in_the_initial_user_namespace() -> None:
    with ebpf.token.delegate() as mnt:
        with pytest.raises(NotSupportedError, match="initial user namespace"):
            ebpf.Token(mnt.fileno())
