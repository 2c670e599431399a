"""Network-namespace hooks: sk_lookup steering connections to a chosen socket, and the
BPF flow dissector, with real traffic between two namespaces."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
from test_link_net_util import A_ADDR, load, send_udp, tcp_listener, warm_arp

import ebpf
from ebpf.link import flow_dissector, in_netns, sk_lookup

pytestmark = pytest.mark.kernel

LISTEN_PORT = 7777
FD_PORT = 9400


def connect(netns: str, addr: str, port: int) -> socket.socket:
    with in_netns(netns):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(2)
    try:
        c.connect((addr, port))
    except BaseException:
        c.close()
        raise
    return c


def test_sk_lookup_steers_port_range(netns: str) -> None:
    """Connections to 10.77.0.1:8000-8100, where nothing listens, land on one socket
    listening on port 7777; update() to a program for another range stops it."""
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_netns", ["steer"]) as coll, \
            load("net_netns", ["steer"], port_lo=9000, port_hi=9001) as other, \
            contextlib.closing(tcp_listener(netns, A_ADDR, LISTEN_PORT)) as server:
        coll.maps["target"][0] = server.fileno()
        other.maps["target"][0] = server.fileno()
        with sk_lookup(coll.programs["steer"], netns) as link:
            info = link.info()
            assert info.type == ebpf.LinkType.NETNS
            assert info.netns.attach_type == ebpf.AttachType.SK_LOOKUP
            for port in (8000, 8050, 8100):
                with connect(peer, A_ADDR, port) as c:
                    conn, _ = server.accept()
                    with conn:
                        assert conn.getsockname() == (A_ADDR, port)
                        c.sendall(b"hi")
                        assert conn.recv(2) == b"hi"
            assert coll.variables["steered"].get() == 3
            with pytest.raises(ConnectionRefusedError):
                connect(peer, A_ADDR, 8101).close()
            link.update(other.programs["steer"])
            with pytest.raises(ConnectionRefusedError):
                connect(peer, A_ADDR, 8050).close()
            with connect(peer, A_ADDR, 9001):
                server.accept()[0].close()
            assert other.variables["steered"].get() == 1
        with pytest.raises(ConnectionRefusedError):
            connect(peer, A_ADDR, 9001).close()


def test_sk_lookup_by_path_and_multiple(netns: str) -> None:
    """Two programs on one namespace (by /proc/<pid>/ns/net path and by fd) run in
    order: the first one that assigns a socket wins."""
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_netns", ["steer"]) as first, load("net_netns", ["steer"]) as second, \
            contextlib.closing(tcp_listener(netns, A_ADDR, LISTEN_PORT)) as s1, \
            contextlib.closing(tcp_listener(netns, A_ADDR, LISTEN_PORT + 1)) as s2:
        first.maps["target"][0] = s1.fileno()
        second.maps["target"][0] = s2.fileno()
        import os

        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with sk_lookup(first.programs["steer"], fd), \
                    sk_lookup(second.programs["steer"], f"/run/netns/{netns}"):
                with connect(peer, A_ADDR, 8001):
                    s1.accept()[0].close()
        finally:
            os.close(fd)
        assert first.variables["steered"].get() == 1
        assert second.variables["steered"].get() == 0


def _fanout_socket(netns: str) -> socket.socket:
    """An AF_PACKET socket in a hash fanout group on veth0: hashing each packet runs
    the namespace's flow dissector."""
    with in_netns(netns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind(("veth0", 0))
    s.setsockopt(263, 18, 4242)  # SOL_PACKET, PACKET_FANOUT, id 4242 | PACKET_FANOUT_HASH
    return s


@pytest.mark.parametrize("use_link", [True, False], ids=["link", "prog_attach"])
def test_flow_dissector(netns: str, use_link: bool) -> None:
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_netns", ["dissect"], port=FD_PORT) as coll, \
            load("net_netns", ["dissect"], port=FD_PORT) as other, \
            contextlib.closing(_fanout_socket(netns)) as _:
        link = flow_dissector(coll.programs["dissect"], netns, link=use_link)
        with link:
            assert isinstance(link, ebpf.link.NetNsLink if use_link else
                              ebpf.link.ProgAttachLink)
            send_udp(peer, A_ADDR, FD_PORT, 8)
            time.sleep(0.1)
            assert coll.variables["dissected"].get() == 8
            if use_link:  # one per netns (BPF_PROG_ATTACH would replace it instead)
                with in_netns(netns), pytest.raises(ebpf.errors.SyscallError):
                    flow_dissector(other.programs["dissect"])
            link.update(other.programs["dissect"])
            send_udp(peer, A_ADDR, FD_PORT, 3)
            time.sleep(0.1)
            assert other.variables["dissected"].get() == 3
        send_udp(peer, A_ADDR, FD_PORT, 3)
        time.sleep(0.1)
        assert coll.variables["dissected"].get() == 8
        assert other.variables["dissected"].get() == 3


def test_sk_lookup_wrong_type() -> None:
    with load("net_netns", ["dissect"]) as coll, pytest.raises(ebpf.errors.InvalidArgumentError):
        sk_lookup(coll.programs["dissect"])
