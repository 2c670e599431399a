"""Helpers for the networking hook tests (tests/test_link_net_*.py); no tests here.

Traffic flows inside the `netns` fixture's namespaces: NS (veth0, 10.77.0.1) and
NS-peer (veth1, 10.77.0.2). Sockets are created inside a namespace with
`ebpf.link.in_netns` and then used from the test thread; processes that must sit
in a cgroup run as `ip netns exec` children.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import ebpf
from ebpf.link import in_netns

sys.path.insert(0, os.path.dirname(__file__))

from bpfbuild import compile_bpf

A_ADDR = "10.77.0.1"
B_ADDR = "10.77.0.2"


def load(name: str, programs: list[str] | None = None, extra_flags: tuple[str, ...] = (),
         **variables: Any) -> ebpf.Collection:
    """Compile tests/bpf/<name>.c, set .rodata variables, load (only `programs`)."""
    spec = ebpf.load_collection_spec(compile_bpf(name, extra_flags=extra_flags))
    for k, v in variables.items():
        spec.variables[k].set(v)
    return ebpf.Collection(spec, programs=programs)


def udp_socket(netns: str, addr: str = "0.0.0.0", port: int = 0,
               timeout: float = 1.0) -> socket.socket:
    """A UDP socket created (and bound) inside `netns`."""
    with in_netns(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    if port or addr != "0.0.0.0":
        s.bind((addr, port))
    return s


def send_udp(netns: str, dst: str, port: int, n: int, payload: bytes = b"x" * 32,
             src_port: int = 0, gap: float = 0.0) -> None:
    """Send `n` UDP datagrams from inside `netns` to dst:port."""
    with contextlib.closing(udp_socket(netns, port=src_port)) as s:
        for _ in range(n):
            s.sendto(payload, (dst, port))
            if gap:
                time.sleep(gap)


def recv_count(sock: socket.socket, expect: int, timeout: float = 1.0) -> int:
    """Datagrams received on `sock` until `expect` arrived or nothing came for `timeout`."""
    sock.settimeout(timeout)
    n = 0
    while n < expect:
        try:
            sock.recv(65536)
        except TimeoutError:
            break
        n += 1
    return n


def warm_arp(netns_a: str) -> None:
    """Resolve the peers' MAC addresses both ways so that no test packet waits on ARP."""
    subprocess.run(["ip", "netns", "exec", netns_a, "ping", "-c", "1", "-W", "1", B_ADDR],
                   check=False, capture_output=True)


CHILD_PRELUDE = r"""
import json, os, socket, sys, errno
def join(cg):
    if cg:
        with open(cg + "/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
def attempt(fn):
    try:
        r = fn()
        return "ok" if r is None else r
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
"""


def run_child(code: str, *, netns: str | None = None, cgroup: str | None = None,
              args: tuple[str, ...] = (), timeout: float = 20) -> Any:
    """Run Python `code` in a child process (inside `netns` via nsenter,
    after joining `cgroup`); the code sets ``result``, returned decoded from JSON."""
    script = CHILD_PRELUDE + f"join({cgroup!r})\n" + code + \
        "\nprint(json.dumps(result))\n"
    cmd = [sys.executable, "-c", script, *args]
    if netns is not None:
        cmd = ["nsenter", f"--net=/run/netns/{netns}", *cmd]  # keeps /sys (cgroups)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def extra_veth(netns: str, a: str, b: str, peer_netns: str | None = None) -> Iterator[None]:
    """Another veth pair a <-> b in `netns` (b in `peer_netns` when given), both up."""
    ip = ["ip", "-n", netns]
    where = ["netns", peer_netns] if peer_netns else []
    subprocess.run([*ip, "link", "add", a, "type", "veth", "peer", "name", b, *where],
                   check=True, capture_output=True)
    try:
        subprocess.run([*ip, "link", "set", a, "up"], check=True, capture_output=True)
        bip = ["ip", "-n", peer_netns or netns]
        subprocess.run([*bip, "link", "set", b, "up"], check=True, capture_output=True)
        yield
    finally:
        subprocess.run([*ip, "link", "del", a], check=False, capture_output=True)


def link_stats(netns: str, dev: str) -> dict[str, int]:
    """rx/tx packet counters of `dev` in `netns`."""
    out = subprocess.run(["ip", "-n", netns, "-s", "-j", "link", "show", dev],
                         check=True, capture_output=True, text=True).stdout
    st = json.loads(out)[0]["stats64"]
    return {"rx_packets": st["rx"]["packets"], "tx_packets": st["tx"]["packets"],
            "rx_dropped": st["rx"]["dropped"]}


def ifindex_in(netns: str, dev: str) -> int:
    with in_netns(netns):
        return socket.if_nametoindex(dev)


CGROUP2 = "/sys/fs/cgroup/unified"


def _own_cgroup() -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return os.path.join(CGROUP2, line.strip()[3:].lstrip("/"))
    raise RuntimeError("not in a cgroup v2 hierarchy")


@contextlib.contextmanager
def in_cgroup(cgroup: str) -> Iterator[None]:
    """Move this process into `cgroup` for the block (sockets created meanwhile belong
    to it for good), then back where it was."""
    home = _own_cgroup()
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    try:
        yield
    finally:
        with open(os.path.join(home, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))


def tcp_listener(netns: str, addr: str, port: int) -> socket.socket:
    with in_netns(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(16)
    s.settimeout(2.0)
    return s
