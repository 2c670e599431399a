"""One reload cycle of a CO-RE object, and the process/kernel figures a soak compares.

    from soakcycle import Soak, open_fds, rss_bytes, kernel_objects
    soak = Soak()                 # compiles tests/bpf/soak.c (cached)
    soak.cycle()                  # parse + load + attach + read one event + close
    kernel_objects(soak.prefix)   # {"progs": 0, "maps": 0, "links": 0} once closed

Used by bench/soak.py (10,000 cycles) and tests/test_soak.py (a few hundred). Each cycle
parses the ELF again (a new CollectionSpec, BTF and all), sets the `.rodata` template
variable, loads it with CO-RE relocations against the kernel's BTF, attaches the
program to the ``sys_enter`` raw tracepoint (no tracefs needed), makes one ``getpid()``
and reads the event it produced from the ring buffer, then closes everything.

The kernel objects of a `Soak` carry names unique to this process (``s<pid>_...``), so
counting them is not disturbed by other processes creating programs and maps.
"""

from __future__ import annotations

import os
import sys
import time

from bpfbuild import compile_bpf
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf import link, ringbuf
from ebpf._sys import ops
from ebpf._sys.types import Cmd, MapInfo, ProgInfo
from ebpf._sys.types_link import LinkInfo

_PAGE = os.sysconf("SC_PAGE_SIZE")


def build_object() -> str:
    """tests/bpf/soak.c compiled against the running kernel's vmlinux.h (cached)."""
    return str(compile_bpf("soak", extra_flags=[f"-I{vmlinux_include_dir()}"]))


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def open_fds() -> int:
    """How many descriptors this process has open."""
    return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir used


def _names(get_next: int, get_fd: int, info_type: type[ProgInfo] | type[MapInfo],
           ) -> dict[int, str]:
    """id -> name of every object of one kind in the system."""
    out: dict[int, str] = {}
    cur = 0
    while (nxt := ops.get_next_id(get_next, cur)) is not None:
        cur = nxt
        try:
            fd = ops.get_fd_by_id(get_fd, nxt)
        except ebpf.Error:  # freed in between
            continue
        try:
            info = info_type()
            ops.obj_get_info(fd, info)
            out[nxt] = bytes(info.name).split(b"\0", 1)[0].decode(errors="replace")
        finally:
            os.close(fd)
    return out


def _link_progs() -> dict[int, int]:
    """link id -> the id of its program, for every link in the system."""
    out: dict[int, int] = {}
    cur = 0
    while (nxt := ops.get_next_id(Cmd.LINK_GET_NEXT_ID, cur)) is not None:
        cur = nxt
        try:
            fd = ops.get_fd_by_id(Cmd.LINK_GET_FD_BY_ID, nxt)
        except ebpf.Error:
            continue
        try:
            info = LinkInfo()
            ops.obj_get_info(fd, info)
            out[nxt] = int(info.prog_id)
        finally:
            os.close(fd)
    return out


def kernel_objects(prefix: str | None = None) -> dict[str, int]:
    """Programs, maps and links in the kernel (BPF_*_GET_NEXT_ID), or with `prefix` only
    the programs and maps whose name starts with it and the links of those programs."""
    progs = _names(Cmd.PROG_GET_NEXT_ID, Cmd.PROG_GET_FD_BY_ID, ProgInfo)
    maps = _names(Cmd.MAP_GET_NEXT_ID, Cmd.MAP_GET_FD_BY_ID, MapInfo)
    links = _link_progs()
    if prefix is None:
        return {"progs": len(progs), "maps": len(maps), "links": len(links)}
    ours = {i for i, name in progs.items() if name.startswith(prefix)}
    return {"progs": len(ours),
            "maps": sum(1 for name in maps.values() if name.startswith(prefix)),
            "links": sum(1 for prog_id in links.values() if prog_id in ours)}


def settled_kernel_objects(prefix: str | None = None, expect: dict[str, int] | None = None,
                           timeout: float = 10.0) -> dict[str, int]:
    """`kernel_objects(prefix)` once it equals `expect` (default: none of ours), or as it
    is after `timeout` seconds: the kernel frees closed programs and maps after an RCU
    grace period, from a workqueue, so they stay listed for a moment after close()."""
    want = expect if expect is not None else {"progs": 0, "maps": 0, "links": 0}
    deadline = time.monotonic() + timeout
    while True:
        now = kernel_objects(prefix)
        if now == want or time.monotonic() >= deadline:
            return now
        time.sleep(0.05)


class Soak:
    """The soak object and one cycle over it; `events` counts the events read."""

    PROGRAM = "soak_getpid"
    RING = "soak_events"

    def __init__(self, obj: str | None = None) -> None:
        self.obj = obj if obj is not None else build_object()
        self.pid = os.getpid()
        self.prefix = f"s{self.pid}_"  # at most 9 characters: names stay under 16
        self.events = 0

    def cycle(self) -> None:
        """Parse, load, attach, produce and read one event, close."""
        spec = ebpf.load_collection_spec(self.obj)
        for key, m in spec.maps.items():
            m.name = self.prefix + key.strip(".")[-6:]
        spec.programs[self.PROGRAM].name = self.prefix + "getpid"
        spec.variables["target_tgid"].set(self.pid)
        with ebpf.Collection(spec) as coll, \
                link.raw_tracepoint(coll.programs[self.PROGRAM], "sys_enter"), \
                ringbuf.Reader(coll.maps[self.RING], btf=spec.btf,
                               record_type="soak_event") as reader:
            os.getpid()  # a real syscall (glibc does not cache it)
            event = reader.decode(reader.read(timeout=5.0))  # a ctypes struct soak_event
            if event.tgid != self.pid:
                raise AssertionError(f"expected an event from pid {self.pid}, got one from "
                                     f"{event.tgid}")
            self.events += 1


if __name__ == "__main__":  # pragma: no cover - a quick manual check
    s = Soak()
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 10):
        s.cycle()
    print(s.events, rss_bytes() >> 20, open_fds(), kernel_objects(s.prefix),
          settled_kernel_objects(s.prefix))
