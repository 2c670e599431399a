"""Socket-level hooks in a network namespace: socket filters, SO_REUSEPORT selection,
and sockmap verdict programs (sk_msg on send, sk_skb on receive), with redirects."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from collections.abc import Iterator

import pytest
from kernelmatrix import requires
from test_link_net_util import A_ADDR, load, recv_count, send_udp, udp_socket, warm_arp

import ebpf
from ebpf.link import in_netns, reuseport, socket_filter, sockmap

pytestmark = pytest.mark.kernel

PORT = 9500


def test_socket_filter(netns: str) -> None:
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_sock", ["keep_first_char"]) as keep_k, \
            load("net_sock", ["keep_first_char"], keep_char=ord("z")) as keep_z, \
            contextlib.closing(udp_socket(netns, A_ADDR, PORT)) as rx:
        with socket_filter(keep_k.programs["keep_first_char"], rx) as link:
            for word in (b"keep", b"drop", b"kite", b"zoo"):
                send_udp(peer, A_ADDR, PORT, 1, payload=word)
            got = [rx.recv(100) for _ in range(2)]
            assert got == [b"keep", b"kite"]
            assert recv_count(rx, 1, timeout=0.3) == 0
            assert (keep_k.variables["kept"].get(), keep_k.variables["dropped"].get()) == (2, 2)
            link.update(keep_z.programs["keep_first_char"])
            for word in (b"keep", b"zoo"):
                send_udp(peer, A_ADDR, PORT, 1, payload=word)
            assert rx.recv(100) == b"zoo"
            with pytest.raises(ebpf.errors.NotSupportedError):
                link.pin("/sys/fs/bpf/x")
        assert link.closed
        send_udp(peer, A_ADDR, PORT, 1, payload=b"drop")
        assert rx.recv(100) == b"drop"


def test_socket_filter_update_racing_close_leaves_none_attached() -> None:
    """`close()` while an `update()` runs in another thread: no filter is left on the
    socket. The update used to attach its program right after close's detach."""
    from ebpf.link.socket import SO_ATTACH_BPF, SO_DETACH_BPF

    main = threading.current_thread()
    inside, detached = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    class Watched(socket.socket):
        def setsockopt(self, level: int, opt: int, value: int) -> None:  # type: ignore[override]
            if opt == SO_ATTACH_BPF and threading.current_thread() is not main:
                inside.set()
                detached.wait(0.5)  # (until close() has detached, if it can)
            super().setsockopt(level, opt, value)
            if opt == SO_DETACH_BPF:
                detached.set()
                updating.join(0.5)  # (done by now, unless it waits for this close)

    with load("net_sock", ["keep_first_char"]) as c1, \
            load("net_sock", ["keep_first_char"]) as c2, \
            contextlib.closing(Watched(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        link = socket_filter(c1.programs["keep_first_char"], sock)

        def update() -> None:
            try:
                link.update(c2.programs["keep_first_char"])
            except BaseException as e:
                errors.append(e)

        updating = threading.Thread(target=update)
        updating.start()
        assert inside.wait(5)
        link.close()
        updating.join(5)
        with pytest.raises(OSError) as none:  # nothing left to detach
            socket.socket.setsockopt(sock, socket.SOL_SOCKET, SO_DETACH_BPF, 0)
        assert none.value.errno == errno.ENOENT
        assert all(isinstance(e, ebpf.errors.ClosedError) for e in errors), errors


def test_reuseport_select(netns: str) -> None:
    """A SO_REUSEPORT group of two UDP sockets: the program picks the socket that
    `target_index` names in a REUSEPORT_SOCKARRAY, for every datagram."""
    peer = netns + "-peer"
    warm_arp(netns)
    with load("net_sock", ["select_sock"]) as coll:
        socks = []
        for _ in range(2):
            with in_netns(netns):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((A_ADDR, PORT))
            socks.append(s)
        with contextlib.ExitStack() as stack:
            for s in socks:
                stack.enter_context(s)
            for i, s in enumerate(socks):
                coll.maps["reuse_socks"][i] = s.fileno()
            target = coll.variables["target_index"]
            with reuseport(coll.programs["select_sock"], socks[0]):
                for want in (1, 0, 1):
                    target.set(want)
                    for sport in range(20000, 20010):  # different flows
                        send_udp(peer, A_ADDR, PORT, 1, src_port=sport)
                    assert recv_count(socks[want], 10) == 10
                    assert recv_count(socks[1 - want], 1, timeout=0.2) == 0
            assert coll.variables["selected"].get() == 30


@contextlib.contextmanager
def tcp_pair(netns: str) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, accepted server side) of a TCP connection on the namespace's loopback."""
    with in_netns(netns):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with srv, cli:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        cli.connect(srv.getsockname())
        conn, _ = srv.accept()
        with conn:
            for s in (cli, conn):
                s.settimeout(2)
            yield cli, conn


def recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def need_sockmap_links(use_link: bool) -> None:
    if use_link and not ebpf.features.have_link_type(ebpf.LinkType.SOCKMAP):
        pytest.skip("kernel without sockmap links (6.10+)")


@pytest.mark.parametrize("use_link", [True, False], ids=["link", "prog_attach"])
def test_sk_msg_verdict(netns: str, use_link: bool) -> None:
    need_sockmap_links(use_link)
    with load("net_sock", ["msg_verdict"]) as counting, \
            load("net_sock", ["msg_verdict"], redirect_key=1) as redirecting:
        m = counting.maps["sock_map"]
        with sockmap(counting.programs["msg_verdict"], m, link=use_link) as link, \
                tcp_pair(netns) as (c1, a1):
            assert isinstance(link, ebpf.link.SockmapLink if use_link else
                              ebpf.link.ProgAttachLink)
            m[0] = c1.fileno()
            c1.sendall(b"hello")
            assert recv_exact(a1, 5) == b"hello"
            assert counting.variables["msgs"].get() == 1
            assert counting.variables["msg_bytes"].get() == 5
            del m[0]
        # redirect: what c1 sends lands in a2's receive queue (BPF_F_INGRESS)
        m = redirecting.maps["sock_map"]
        with sockmap(redirecting.programs["msg_verdict"], m, link=use_link), \
                tcp_pair(netns) as (c1, a1), tcp_pair(netns) as (_, a2):
            m[0] = c1.fileno()
            m[1] = a2.fileno()
            c1.sendall(b"redirected")
            assert recv_exact(a2, 10) == b"redirected"
            a1.settimeout(0.2)
            with pytest.raises((TimeoutError, socket.timeout)):
                a1.recv(10)
            del m[0], m[1]


@pytest.mark.parametrize("use_link", [True, False], ids=["link", "prog_attach"])
def test_sk_skb_stream_verdict(netns: str, use_link: bool) -> None:
    need_sockmap_links(use_link)
    with load("net_sock", ["skb_verdict"]) as counting, \
            load("net_sock", ["skb_verdict"], redirect_key=1) as redirecting:
        m = counting.maps["sock_map"]
        with sockmap(counting.programs["skb_verdict"], m, link=use_link) as link, \
                tcp_pair(netns) as (c1, a1):
            assert link.attach_type == ebpf.AttachType.SK_SKB_STREAM_VERDICT
            m[0] = a1.fileno()
            c1.sendall(b"stream data")
            assert recv_exact(a1, 11) == b"stream data"
            assert counting.variables["skb_bytes"].get() == 11
            del m[0]
        m = redirecting.maps["sock_map"]
        with sockmap(redirecting.programs["skb_verdict"], m, link=use_link) as link, \
                tcp_pair(netns) as (c1, a1), tcp_pair(netns) as (c2, _):
            m[0] = a1.fileno()
            m[1] = c2.fileno()
            c1.sendall(b"to c2")
            assert recv_exact(c2, 5) == b"to c2"
            assert redirecting.variables["skbs"].get() >= 1
            del m[0], m[1]


@requires("sockmap links", min_kernel="6.10")
def test_sockmap_link_update(netns: str) -> None:
    if not ebpf.features.have_link_type(ebpf.LinkType.SOCKMAP):
        pytest.skip("kernel without sockmap links (6.10+)")
    with load("net_sock", ["msg_verdict"]) as first, load("net_sock", ["msg_verdict"]) as second:
        m = first.maps["sock_map"]
        with sockmap(first.programs["msg_verdict"], m) as link:
            assert link.info().sockmap.map_id == m.id
            link.update(second.programs["msg_verdict"])
            with tcp_pair(netns) as (c1, a1):
                m[0] = c1.fileno()
                c1.sendall(b"x")
                assert recv_exact(a1, 1) == b"x"
                del m[0]
            assert (first.variables["msgs"].get(), second.variables["msgs"].get()) == (0, 1)


def test_sockmap_argument_errors() -> None:
    with load("net_sock", ["msg_verdict", "skb_verdict"]) as coll:
        if not ebpf.features.have_link_type(ebpf.LinkType.SOCKMAP):
            with pytest.raises(ebpf.errors.NotSupportedError, match=r"6\.10"):
                sockmap(coll.programs["msg_verdict"], coll.maps["sock_map"], link=True)
        with pytest.raises(ebpf.errors.InvalidArgumentError, match="not a SOCKMAP"):
            sockmap(coll.programs["msg_verdict"], coll.maps[".bss"])
        with pytest.raises(ebpf.errors.InvalidArgumentError, match="not a sockmap attach"):
            sockmap(coll.programs["msg_verdict"], coll.maps["sock_map"], ebpf.AttachType.XDP)
