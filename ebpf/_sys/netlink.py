"""rtnetlink (NETLINK_ROUTE) for the attachments that predate bpf_link, and setns(2).

- tc: the ``clsact`` qdisc and ``cls_bpf`` filters (direct-action), added,
  replaced, listed and deleted with RTM_{NEW,DEL,GET}{QDISC,TFILTER};
- XDP through ``IFLA_XDP`` (RTM_SETLINK / RTM_GETLINK) for kernels without XDP
  bpf_links, and to query what is attached to an interface;
- `setns` to enter a network namespace (the calling thread only).

A netlink socket belongs to the network namespace of the thread that created
it; ifindexes are resolved there. Errors become `ebpf.errors` exceptions
carrying the kernel's extended-ack message when it sends one.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import ClosedError, InvalidArgumentError, SyscallError
from . import forking, validate
from .consts import XDP_FLAGS_REPLACE
from .syscall import from_errno

__all__ = [
    "CLONE_NEWNET",
    "TC_H_CLSACT",
    "TC_H_INGRESS",
    "TC_H_MIN_EGRESS",
    "TC_H_MIN_INGRESS",
    "NetlinkSocket",
    "QdiscInfo",
    "TcFilterInfo",
    "XdpInfo",
    "clsact_parent",
    "setns",
]

# -- netlink ------------------------------------------------------------------------

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_ECHO = 0x08
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200  # in an NLMSG_ERROR header: extended ack attributes follow

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSGERR_ATTR_MSG = 1

NLA_F_NESTED = 1 << 15
NLA_F_NET_BYTEORDER = 1 << 14
NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF

RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWQDISC = 36
RTM_DELQDISC = 37
RTM_GETQDISC = 38
RTM_NEWTFILTER = 44
RTM_DELTFILTER = 45
RTM_GETTFILTER = 46

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_NLATTR = struct.Struct("=HH")
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info

# -- tc -----------------------------------------------------------------------------

TCA_KIND = 1
TCA_OPTIONS = 2
TCA_CHAIN = 11

TCA_BPF_CLASSID = 3
TCA_BPF_FD = 6
TCA_BPF_NAME = 7
TCA_BPF_FLAGS = 8
TCA_BPF_FLAGS_GEN = 9
TCA_BPF_TAG = 10
TCA_BPF_ID = 11
TCA_BPF_FLAG_ACT_DIRECT = 1

TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1
TC_H_CLSACT = TC_H_INGRESS
TC_H_MIN_INGRESS = 0xFFF2
TC_H_MIN_EGRESS = 0xFFF3
ETH_P_ALL = 0x0003

# -- XDP over rtnetlink -------------------------------------------------------------

IFLA_XDP = 43
IFLA_XDP_FD = 1
IFLA_XDP_ATTACHED = 2
IFLA_XDP_FLAGS = 3
IFLA_XDP_PROG_ID = 4
IFLA_XDP_DRV_PROG_ID = 5
IFLA_XDP_SKB_PROG_ID = 6
IFLA_XDP_HW_PROG_ID = 7
IFLA_XDP_EXPECTED_FD = 8

XDP_ATTACHED_NONE = 0
XDP_ATTACHED_DRV = 1
XDP_ATTACHED_SKB = 2
XDP_ATTACHED_HW = 3
XDP_ATTACHED_MULTI = 4


IFINDEX_MAX = (1 << 31) - 1
FD_MAX = (1 << 31) - 1


def _tcmsg(ifindex: int, handle: int, parent: int, priority: int = 0,
           protocol: int = 0) -> bytes:
    """A struct tcmsg, every field checked (`InvalidArgumentError` naming it)."""
    validate.integer(ifindex, "ifindex", 0, IFINDEX_MAX)
    validate.unsigned(handle, "handle", 32)
    validate.unsigned(parent, "parent", 32)
    validate.unsigned(priority, "priority", 16)
    validate.unsigned(protocol, "protocol", 16)
    info = (priority << 16) | socket.htons(protocol)
    return _TCMSG.pack(socket.AF_UNSPEC, ifindex, handle, parent, info)


def _name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a str, got {type(value).__name__} {value!r}")
    if "\0" in value:
        raise InvalidArgumentError(f"{what} {value!r} contains a NUL byte")
    return value


def _align4(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute (header, payload, padding to 4 bytes)."""
    size = _NLATTR.size + len(payload)
    return _NLATTR.pack(size, kind) + payload + b"\0" * (_align4(size) - size)


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value & 0xFFFFFFFF))


def attr_s32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=i", value))


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def nested(kind: int, *attrs: bytes, flag: bool = True) -> bytes:
    """A nested attribute holding `attrs` (NLA_F_NESTED set unless `flag` is False)."""
    return attr(kind | (NLA_F_NESTED if flag else 0), b"".join(attrs))


def parse_attrs(data: bytes | memoryview, offset: int = 0) -> dict[int, bytes]:
    """Attributes of a message body from `offset`: type (flags masked off) -> payload.
    The last of repeated types wins."""
    out: dict[int, bytes] = {}
    view = memoryview(data)
    end = len(view)
    while offset + _NLATTR.size <= end:
        size, kind = _NLATTR.unpack_from(view, offset)
        if size < _NLATTR.size or offset + size > end:
            break
        out[kind & NLA_TYPE_MASK] = bytes(view[offset + _NLATTR.size:offset + size])
        offset += _align4(size)
    return out


def _u32(raw: bytes | None, default: int = 0) -> int:
    return struct.unpack("=I", raw[:4])[0] if raw and len(raw) >= 4 else default


def _cstr(raw: bytes | None) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace") if raw else ""


class NetlinkSocket:
    """A NETLINK_ROUTE socket (close-on-exec) bound to the network namespace of the
    thread that created it. Requests are synchronous (one thread at a time); a context
    manager. A forked child's copy gets a fresh lock."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   NETLINK_ROUTE)
        try:
            for opt in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
                try:
                    self._sock.setsockopt(SOL_NETLINK, opt, 1)
                except OSError:
                    pass  # old kernel: plain errors
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._sock.bind((0, 0))
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0
        # a child forked during another thread's request must still close its copy
        # (a tc filter's or netlink XDP attachment's close, at exit too)
        self._lock = forking.new_lock(self, "_lock", threading.Lock)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        """Close the socket, after a request in flight in another thread is answered."""
        with self._lock:
            self._sock.close()

    def __enter__(self) -> NetlinkSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg_type: int, flags: int, body: bytes, what: str,
                dump: bool = False) -> list[tuple[int, bytes]]:
        """Send one request; return the (type, payload) of every reply message.

        A dump (`dump`) collects messages until NLMSG_DONE; otherwise the request
        carries NLM_F_ACK and returns once the kernel acknowledges it (replies sent
        before the ack, e.g. for NLM_F_ECHO, are returned). A negative ack raises the
        matching `ebpf.errors` exception, with the kernel's message appended.
        """
        with self._lock:
            if self._sock.fileno() < 0:
                raise ClosedError(f"{what}: the netlink socket is closed")
            self._seq += 1
            seq = self._seq
            flags |= NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
            msg = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags, seq, 0) + body
            self._sock.sendto(msg, (0, 0))
            out: list[tuple[int, bytes]] = []
            while True:
                data = self._sock.recv(1 << 20)
                off = 0
                while off + _NLMSGHDR.size <= len(data):
                    length, mtype, mflags, mseq, _ = _NLMSGHDR.unpack_from(data, off)
                    if length < _NLMSGHDR.size:
                        raise SyscallError(_errno.EPROTO, f"{what}: malformed netlink reply")
                    payload = data[off + _NLMSGHDR.size:off + length]
                    off += _align4(length)
                    if mseq != seq:
                        continue  # a stale reply to an earlier request
                    if mtype == NLMSG_DONE:
                        return out
                    if mtype == NLMSG_ERROR:
                        err = struct.unpack_from("=i", payload)[0]
                        if err == 0:
                            if not dump:
                                return out
                            continue
                        raise _error(-err, what, payload, mflags)
                    if mtype != NLMSG_NOOP:
                        out.append((mtype, payload))

    # -- tc qdiscs ----------------------------------------------------------------------

    def qdiscs(self, ifindex: int) -> list[QdiscInfo]:
        """The qdiscs of interface `ifindex`."""
        body = _tcmsg(ifindex, 0, 0)
        out = []
        for mtype, payload in self.request(RTM_GETQDISC, 0, body, "list qdiscs", dump=True):
            if mtype != RTM_NEWQDISC or len(payload) < _TCMSG.size:
                continue
            _, idx, handle, parent, _ = _TCMSG.unpack_from(payload)
            if idx != ifindex:
                continue
            attrs = parse_attrs(payload, _TCMSG.size)
            out.append(QdiscInfo(idx, _cstr(attrs.get(TCA_KIND)), handle, parent))
        return out

    def add_clsact(self, ifindex: int) -> None:
        """Create the clsact qdisc on `ifindex` (FileExistsError-like SyscallError EEXIST
        when there is one already)."""
        body = _tcmsg(ifindex, 0xFFFF0000, TC_H_CLSACT)
        body += attr_str(TCA_KIND, "clsact")
        self.request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, body,
                     f"add clsact qdisc to interface {ifindex}")

    def del_clsact(self, ifindex: int) -> None:
        """Delete the clsact qdisc of `ifindex` (and every filter on it)."""
        body = _tcmsg(ifindex, 0xFFFF0000, TC_H_CLSACT)
        body += attr_str(TCA_KIND, "clsact")
        self.request(RTM_DELQDISC, 0, body, f"delete clsact qdisc of interface {ifindex}")

    # -- tc filters ---------------------------------------------------------------------

    def add_bpf_filter(self, ifindex: int, parent: int, *, prog_fd: int, name: str,
                       priority: int = 0, handle: int = 0, protocol: int = ETH_P_ALL,
                       direct_action: bool = True, classid: int = 0, chain: int | None = None,
                       replace: bool = False) -> TcFilterInfo:
        """Add (or with `replace`, atomically replace) a cls_bpf filter running
        `prog_fd`; returns the filter as the kernel created it (its priority and
        handle when they were left to the kernel)."""
        body = _tcmsg(ifindex, handle, parent, priority, protocol)
        body += attr_str(TCA_KIND, "bpf")
        if chain is not None:
            body += attr_u32(TCA_CHAIN, validate.unsigned(chain, "chain", 32))
        opts = [attr_u32(TCA_BPF_FD, validate.integer(prog_fd, "prog_fd", 0, FD_MAX)),
                attr_str(TCA_BPF_NAME, _name(name, "filter name"))]
        if direct_action:
            opts.append(attr_u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT))
        if validate.unsigned(classid, "classid", 32):
            opts.append(attr_u32(TCA_BPF_CLASSID, classid))
        body += nested(TCA_OPTIONS, *opts, flag=False)
        flags = NLM_F_CREATE | NLM_F_ECHO | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        what = (f"{'replace' if replace else 'add'} bpf filter on interface {ifindex} "
                f"(parent {parent:#x}, priority {priority}, handle {handle:#x})")
        for mtype, payload in self.request(RTM_NEWTFILTER, flags, body, what):
            if mtype == RTM_NEWTFILTER:
                f = _parse_filter(payload)
                if f is not None:
                    return f
        # no echo (old kernel): find it by listing
        for f in self.bpf_filters(ifindex, parent):
            if (not priority or f.priority == priority) and (not handle or f.handle == handle) \
                    and f.name == name:
                return f
        raise SyscallError(_errno.ENOENT, f"{what}: the new filter is not listed")

    def del_filter(self, ifindex: int, parent: int, priority: int, handle: int,
                   protocol: int = ETH_P_ALL, kind: str = "bpf") -> None:
        """Delete one filter (priority and handle as listed)."""
        body = _tcmsg(ifindex, handle, parent, priority, protocol)
        if kind:
            body += attr_str(TCA_KIND, kind)
        self.request(RTM_DELTFILTER, 0, body,
                     f"delete filter on interface {ifindex} (parent {parent:#x}, priority "
                     f"{priority}, handle {handle:#x})")

    def bpf_filters(self, ifindex: int, parent: int) -> list[TcFilterInfo]:
        """The cls_bpf filters under `parent` of `ifindex`, in the kernel's order."""
        return [f for f in self.filters(ifindex, parent) if f.kind == "bpf"]

    def filters(self, ifindex: int, parent: int) -> list[TcFilterInfo]:
        """Every filter under `parent` of `ifindex` (all kinds)."""
        body = _tcmsg(ifindex, 0, parent)
        out = []
        try:
            replies = self.request(RTM_GETTFILTER, 0, body, "list filters", dump=True)
        except SyscallError as e:
            if e.errno == _errno.EINVAL:  # no such qdisc/parent
                return []
            raise
        for mtype, payload in replies:
            if mtype != RTM_NEWTFILTER:
                continue
            f = _parse_filter(payload)
            if f is not None and f.ifindex == ifindex:
                out.append(f)
        return out

    # -- XDP ------------------------------------------------------------------------------

    def set_xdp(self, ifindex: int, prog_fd: int, flags: int, expected_fd: int | None = None
                ) -> None:
        """Attach (`prog_fd`), replace or detach (`prog_fd` -1) the XDP program of
        `ifindex` through IFLA_XDP. With `expected_fd`, only if that program is the one
        attached (XDP_FLAGS_REPLACE)."""
        validate.integer(ifindex, "ifindex", 1, IFINDEX_MAX)
        attrs = [attr_s32(IFLA_XDP_FD, validate.integer(prog_fd, "prog_fd", -1, FD_MAX))]
        flags = validate.unsigned(flags, "flags", 32)
        if expected_fd is not None:
            flags |= XDP_FLAGS_REPLACE
            attrs.append(attr_s32(IFLA_XDP_EXPECTED_FD,
                                  validate.integer(expected_fd, "expected_fd", 0, FD_MAX)))
        if flags:
            attrs.append(attr_u32(IFLA_XDP_FLAGS, flags))
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0) + nested(IFLA_XDP, *attrs)
        what = f"{'detach' if prog_fd < 0 else 'attach'} XDP on interface {ifindex}"
        self.request(RTM_SETLINK, 0, body, what)

    def xdp_info(self, ifindex: int) -> XdpInfo:
        """Which XDP programs are attached to `ifindex`, by mode."""
        validate.integer(ifindex, "ifindex", 1, IFINDEX_MAX)
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, ifindex, 0, 0)
        for mtype, payload in self.request(RTM_GETLINK, 0, body,
                                           f"query interface {ifindex}"):
            if mtype != RTM_NEWLINK or len(payload) < _IFINFOMSG.size:
                continue
            attrs = parse_attrs(payload, _IFINFOMSG.size)
            raw = attrs.get(IFLA_XDP)
            if raw is None:
                return XdpInfo(ifindex)
            x = parse_attrs(raw)
            attached = x.get(IFLA_XDP_ATTACHED, b"\0")[0]
            prog = _u32(x.get(IFLA_XDP_PROG_ID))
            drv = _u32(x.get(IFLA_XDP_DRV_PROG_ID))
            skb = _u32(x.get(IFLA_XDP_SKB_PROG_ID))
            hw = _u32(x.get(IFLA_XDP_HW_PROG_ID))
            if attached == XDP_ATTACHED_DRV:
                drv = drv or prog
            elif attached == XDP_ATTACHED_SKB:
                skb = skb or prog
            elif attached == XDP_ATTACHED_HW:
                hw = hw or prog
            return XdpInfo(ifindex, attached, drv, skb, hw)
        return XdpInfo(ifindex)


@dataclass(frozen=True)
class QdiscInfo:
    """One qdisc: its kind ("clsact", "noqueue", ...), handle and parent."""

    ifindex: int
    kind: str
    handle: int
    parent: int


@dataclass(frozen=True)
class TcFilterInfo:
    """One tc filter as the kernel lists it. For cls_bpf filters `name`, `prog_id`,
    `tag` and `direct_action` describe the program."""

    ifindex: int
    parent: int
    priority: int
    protocol: int
    handle: int
    kind: str
    chain: int = 0
    name: str = ""
    prog_id: int = 0
    tag: str = ""
    direct_action: bool = False
    classid: int = 0


@dataclass(frozen=True)
class XdpInfo:
    """The XDP programs of an interface: ids per mode (0 for none)."""

    ifindex: int
    attached: int = XDP_ATTACHED_NONE
    driver_prog_id: int = 0
    generic_prog_id: int = 0
    offload_prog_id: int = 0

    @property
    def prog_ids(self) -> tuple[int, ...]:
        """Every attached program id (any mode)."""
        return tuple(i for i in (self.driver_prog_id, self.generic_prog_id,
                                 self.offload_prog_id) if i)


def _parse_filter(payload: bytes) -> TcFilterInfo | None:
    if len(payload) < _TCMSG.size:
        return None
    _, ifindex, handle, parent, info = _TCMSG.unpack_from(payload)
    attrs = parse_attrs(payload, _TCMSG.size)
    opts_raw = attrs.get(TCA_OPTIONS)
    if not handle or opts_raw is None:
        return None  # the header entry of a priority (no filter yet)
    opts = parse_attrs(opts_raw)
    kind = _cstr(attrs.get(TCA_KIND))
    tag = opts.get(TCA_BPF_TAG, b"")
    return TcFilterInfo(
        ifindex=ifindex, parent=parent, priority=info >> 16,
        protocol=socket.ntohs(info & 0xFFFF), handle=handle, kind=kind,
        chain=_u32(attrs.get(TCA_CHAIN)), name=_cstr(opts.get(TCA_BPF_NAME)),
        prog_id=_u32(opts.get(TCA_BPF_ID)), tag=tag.hex(),
        direct_action=bool(_u32(opts.get(TCA_BPF_FLAGS)) & TCA_BPF_FLAG_ACT_DIRECT),
        classid=_u32(opts.get(TCA_BPF_CLASSID)))


def _error(err: int, what: str, payload: bytes, flags: int) -> SyscallError:
    msg = ""
    if flags & NLM_F_ACK_TLVS and len(payload) >= 4 + _NLMSGHDR.size:
        # the original request header follows the errno; with NETLINK_CAP_ACK its
        # payload is left out, then come the extended-ack attributes
        orig_len = _NLMSGHDR.unpack_from(payload, 4)[0]
        off = 4 + (_NLMSGHDR.size if flags & 0x100 else _align4(orig_len))  # NLM_F_CAPPED
        msg = _cstr(parse_attrs(payload, off).get(NLMSGERR_ATTR_MSG))
    exc = from_errno(err, what)
    if msg:
        exc.strerror = f"{exc.strerror} ({msg})"
        exc.args = (err, exc.strerror)
    return exc


def clsact_parent(direction: str) -> int:
    """The clsact parent handle of "ingress" or "egress"."""
    if direction == "ingress":
        return (TC_H_CLSACT & 0xFFFF0000) | TC_H_MIN_INGRESS
    if direction == "egress":
        return (TC_H_CLSACT & 0xFFFF0000) | TC_H_MIN_EGRESS
    raise ValueError(f"direction must be 'ingress' or 'egress', not {direction!r}")


# -- setns ----------------------------------------------------------------------------

CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_setns = _libc.setns
_setns.argtypes = [ctypes.c_int, ctypes.c_int]
_setns.restype = ctypes.c_int


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """setns(2): move the calling thread into the namespace `fd` refers to."""
    if _setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise from_errno(err, "setns")


def open_netns(netns: str | os.PathLike[str] | int) -> int:
    """A new close-on-exec fd for a network namespace: an fd (duplicated), a path
    (``/proc/<pid>/ns/net``, a bind mount) or a name made by ``ip netns add``
    (``/run/netns/<name>``)."""
    if isinstance(netns, int) and not isinstance(netns, bool):
        fd = validate.integer(netns, "network namespace fd", 0, FD_MAX)
        try:
            return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        except OSError as e:
            raise InvalidArgumentError(
                f"network namespace fd {fd}: {os.strerror(e.errno or 0)}") from None
    path = validate.path(netns, "network namespace")
    if os.sep not in path:
        for base in ("/run/netns", "/var/run/netns"):
            candidate = os.path.join(base, path)
            if os.path.exists(candidate):
                path = candidate
                break
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def iter_attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Attributes in order (repeated types kept)."""
    off = 0
    while off + _NLATTR.size <= len(data):
        size, kind = _NLATTR.unpack_from(data, off)
        if size < _NLATTR.size or off + size > len(data):
            return
        yield kind & NLA_TYPE_MASK, data[off + _NLATTR.size:off + size]
        off += _align4(size)
