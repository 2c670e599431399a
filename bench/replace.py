"""Atomic replacement benchmark (references/000): per-endpoint template programs.

    sudo python3 bench/replace.py [--endpoints 200] [--rules 256] [--rounds 1] [--pps 4000]

Builds N "endpoints": veth pairs ep<i> (namespace A, 10.201.i.1/24) <-> ep<i>p
(namespace B, 10.201.i.2/24). Each A-side interface gets a tcx ingress link running
the same template (tests/bpf/net_template.c: parse, connection table, a policy of
`--rules` port/protocol rules, per-endpoint statistics) with its own `.rodata`
constants (endpoint id, address, service port, rules, generation). Then, while a
sender in B streams UDP datagrams to every endpoint's service port and a receiver
in A counts them, every endpoint's configuration is changed (new generation, new
rules) and its program is rebuilt from the one parsed spec and swapped in with
`Link.update` (BPF_LINK_UPDATE).

Per endpoint it reports the wall time and the CPU time of the replacement, split
into the kernel's BPF_PROG_LOAD (verifier + JIT; timed around the raw syscall, in
wall and in thread CPU time), other kernel time (map creation, link update, ...)
and userspace time (RUSAGE_THREAD user CPU: configuration encoding, program
preparation, bookkeeping). Target: userspace overhead < 10% of the total.

Packets flowing during the replacement must never be dropped for lack of a
program: every datagram to an endpoint's service port is counted by whichever
program version is attached, in a statistics map shared by all versions, so
`received - counted` (datagrams that reached the socket uncounted) must be 0;
`sent - received` shows any other loss. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))

import ebpf  # noqa: E402
from ebpf._sys import prog as _prog  # noqa: E402
from ebpf.link import in_netns, tcx  # noqa: E402

SERVICE_PORT = 7000
STATS_SERVICE_OFFSET = 40  # struct ep_stats: packets, bytes, allowed, denied, established, service
IPPROTO_TCP, IPPROTO_UDP = 6, 17


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def template_object() -> str:
    from bpfbuild import compile_bpf  # type: ignore[import-not-found,unused-ignore]

    return str(compile_bpf("net_template"))


def ep_addr(i: int, host: int) -> str:
    return f"10.{201 + i // 256}.{i % 256}.{host}"


def inet(addr: str) -> int:
    """An IPv4 address as the u32 a BPF program compares with (network order in memory)."""
    return int.from_bytes(bytes(int(x) for x in addr.split(".")), "little")


# -- topology ----------------------------------------------------------------------------

@contextlib.contextmanager
def endpoints_topology(n: int) -> Iterator[tuple[str, str]]:
    """Namespaces A and B with n veth pairs; yields their names, deletes them after."""
    a = f"ebpf-bench-{uuid.uuid4().hex[:6]}"
    b = a + "-peer"
    subprocess.run(["ip", "netns", "add", a], check=True)
    subprocess.run(["ip", "netns", "add", b], check=True)
    try:
        cmds_a = ["link set lo up"]
        cmds_b = ["link set lo up"]
        for i in range(n):
            cmds_a.append(f"link add ep{i} type veth peer name ep{i}p netns {b}")
            cmds_a.append(f"addr add {ep_addr(i, 1)}/24 dev ep{i}")
            cmds_a.append(f"link set ep{i} up")
            cmds_b.append(f"addr add {ep_addr(i, 2)}/24 dev ep{i}p")
            cmds_b.append(f"link set ep{i}p up")
        for ns, cmds in ((a, cmds_a), (b, cmds_b)):
            subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(cmds) + "\n",
                           text=True, check=True)
        yield a, b
    finally:
        subprocess.run(["ip", "netns", "del", a], check=False)
        subprocess.run(["ip", "netns", "del", b], check=False)


# -- traffic -----------------------------------------------------------------------------

SENDER = r"""
import json, socket, sys, time, select
n, port, pps = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
addrs = [f"10.{201 + i // 256}.{i % 256}.1" for i in range(n)]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = [0] * n
payload = b"p" * 64
gap = 1.0 / pps if pps > 0 else 0.0
print("ready", flush=True)
t = time.perf_counter()
i = 0
while True:
    if select.select([sys.stdin], [], [], 0)[0]:
        break
    for _ in range(max(1, min(n, 50))):
        s.sendto(payload, (addrs[i], port))
        sent[i] += 1
        i = (i + 1) % n
        t += gap
    delay = t - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
print(json.dumps({"sent": sent}), flush=True)
"""

RECEIVER = r"""
import json, socket, sys, select
n, port = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:  # past net.core.rmem_max (~208 KiB: ~270 datagrams), as root may: a receiver starved
    # of CPU for a while (a busy single-vCPU guest) must not drop what was counted
    s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 1 << 24)
except OSError:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
s.bind(("0.0.0.0", port))
got = [0] * n
print("ready", flush=True)
stop = False
while True:
    r, _, _ = select.select([s, sys.stdin], [], [], 0.2)
    if s in r:
        while True:
            try:
                _, (addr, _) = s.recvfrom(2048, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            a, b, c, _ = (int(x) for x in addr.split("."))
            got[(b - 201) * 256 + c] += 1
    elif stop:
        break
    if sys.stdin in r and not stop:
        sys.stdin.readline()
        stop = True  # drain what is queued, then report
print(json.dumps({"received": got}), flush=True)
"""


class Child:
    """A helper script in a network namespace: started, told to stop via stdin, and its
    JSON report read from stdout."""

    def __init__(self, netns: str, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.kill()
            raise RuntimeError(f"helper failed to start: {line!r}")

    def stop(self) -> dict[str, Any]:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write("stop\n")
        stdin.flush()
        out, _ = self.proc.communicate(timeout=30)  # closes the pipes
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


# -- endpoints -------------------------------------------------------------------------------

_RULE = struct.Struct("<BBHHHII")  # struct rule of net_template.c


def rule_table(i: int, generation: int, nrules: int) -> list[dict[str, int]]:
    """An endpoint's policy: UDP to the service port allowed, plus a mix of TCP/UDP port
    ranges (some restricted to a source prefix) that differ per endpoint and generation."""
    rng = random.Random(i * 7919 + generation)
    rules = [{"proto": IPPROTO_UDP, "allow": 1, "port_lo": SERVICE_PORT,
              "port_hi": SERVICE_PORT, "pad": 0, "src_net": 0, "src_mask": 0}]
    for _ in range(nrules - 1):
        lo = rng.randrange(1, 60000)
        restricted = rng.random() < 0.3
        rules.append({"proto": rng.choice((IPPROTO_TCP, IPPROTO_UDP, 0)),
                      "allow": int(rng.random() < 0.7), "port_lo": lo,
                      "port_hi": lo + rng.randrange(0, 200), "pad": 0,
                      "src_net": inet(f"10.{rng.randrange(256)}.0.0") if restricted else 0,
                      "src_mask": inet("255.255.0.0") if restricted else 0})
    return rules


def pack_rules(rules: list[dict[str, int]], max_rules: int) -> bytes:
    """The rules array as the program's .rodata holds it (unused slots zero)."""
    out = bytearray(_RULE.size * max_rules)
    for k, r in enumerate(rules):
        _RULE.pack_into(out, k * _RULE.size, r["proto"], r["allow"], r["port_lo"],
                        r["port_hi"], 0, r["src_net"], r["src_mask"])
    return bytes(out)


@dataclass
class Endpoint:
    index: int
    link: Any
    program: ebpf.Program
    rodata: ebpf.Map


@dataclass
class Timing:
    """Per-endpoint replacement costs, in milliseconds."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    prog_load_wall: list[float] = field(default_factory=list)
    prog_load_cpu: list[float] = field(default_factory=list)
    syscall_cpu: list[float] = field(default_factory=list)
    config_packed: float = 0.0
    config_dicts: float = 0.0


class SyscallClock:
    """Thread CPU time spent inside bpf(2): wraps the library's two syscall entry
    points (``ebpf._sys.syscall.raw_syscall`` behind bpf()/bpf_errno(), and the map
    fast path) for the duration of a `with` block."""

    def __init__(self) -> None:
        self.cpu = 0.0

    def _wrap(self, fn: Any) -> Any:
        def timed(*args: Any) -> Any:
            c = time.thread_time()
            try:
                return fn(*args)
            finally:
                self.cpu += time.thread_time() - c
        return timed

    def __enter__(self) -> SyscallClock:
        import ebpf._sys.syscall as sc
        import ebpf.maps.elements
        import ebpf.maps.iteration

        # the map fast path: each part of Map that calls it holds its own reference
        self._fast: list[Any] = [ebpf.maps.elements, ebpf.maps.iteration]
        self._saved = (sc.raw_syscall, [m._syscall for m in self._fast])
        sc.raw_syscall = self._wrap(sc.raw_syscall)
        for m in self._fast:
            m._syscall = self._wrap(m._syscall)
        return self

    def __exit__(self, *exc: object) -> None:
        import ebpf._sys.syscall as sc

        sc.raw_syscall, fast = self._saved
        for m, fn in zip(self._fast, fast, strict=True):
            m._syscall = fn


class Template:
    """The parsed template and the maps every endpoint's program shares."""

    def __init__(self, nrules: int) -> None:
        self.spec = ebpf.load_collection_spec(template_object())
        self.max_rules = len(self.spec.variables["rules"].get())
        if not 1 <= nrules <= self.max_rules:
            raise SystemExit(f"--rules must be in 1..{self.max_rules}")
        self.nrules = nrules
        self.base = ebpf.Collection(self.spec)  # creates the shared maps (and one program)
        self.shared = {"ep_stats": self.base.maps["ep_stats"],
                       "conntrack": self.base.maps["conntrack"]}
        self.prog_load_wall = 0.0
        self.prog_load_cpu = 0.0
        self._orig = _prog.prog_load

    def timed_prog_load(self, attr: Any) -> int:
        w, c = time.perf_counter(), time.thread_time()
        try:
            return self._orig(attr)
        finally:
            self.prog_load_wall += time.perf_counter() - w
            self.prog_load_cpu += time.thread_time() - c

    def build(self, i: int, generation: int) -> tuple[ebpf.Program, ebpf.Map]:
        """Configure the template for endpoint i and load it: its .rodata map and program."""
        v = self.spec.variables
        v["endpoint_id"].set(i)
        v["generation"].set(generation)
        v["ep_addr"].set(inet(ep_addr(i, 1)))
        v["service_port"].set(SERVICE_PORT)
        v["nrules"].set(self.nrules)
        # the control plane hands over the policy as a packed table (the bench reports
        # what encoding it from dicts through BTF would cost separately)
        v["rules"].set(pack_rules(rule_table(i, generation, self.nrules), self.max_rules))
        rodata = ebpf.Map(self.spec.maps[".rodata"])
        try:
            prog = ebpf.Program(self.spec.programs["endpoint"],
                                maps={**self.shared, ".rodata": rodata})
        except BaseException:
            rodata.close()
            raise
        return prog, rodata

    def service_counts(self, n: int) -> list[int]:
        st = self.shared["ep_stats"]
        return [struct.unpack_from("<Q", st.lookup(i, raw=True), STATS_SERVICE_OFFSET)[0]
                for i in range(n)]

    def close(self) -> None:
        self.base.close()


def attach_all(t: Template, netns: str, n: int) -> list[Endpoint]:
    eps: list[Endpoint] = []
    try:
        for i in range(n):
            prog, rodata = t.build(i, 0)
            with in_netns(netns):
                link = tcx(prog, f"ep{i}", "ingress")
            eps.append(Endpoint(i, link, prog, rodata))
    except BaseException:
        close_all(eps)
        raise
    return eps


def close_all(eps: list[Endpoint]) -> None:
    for ep in eps:
        ep.link.close()
        ep.program.close()
        ep.rodata.close()


def replace_all(t: Template, eps: list[Endpoint], generation: int, timing: Timing) -> None:
    """Change every endpoint's configuration and swap its program in with Link.update."""
    _prog.prog_load = t.timed_prog_load
    try:
        with SyscallClock() as clock:
            for ep in eps:
                t.prog_load_wall = t.prog_load_cpu = clock.cpu = 0.0
                w, c = time.perf_counter(), time.thread_time()
                prog, rodata = t.build(ep.index, generation)
                ep.link.update(prog)  # atomic: the old program runs until this returns
                old_prog, old_rodata = ep.program, ep.rodata
                ep.program, ep.rodata = prog, rodata
                old_prog.close()
                old_rodata.close()
                timing.wall.append((time.perf_counter() - w) * 1e3)
                timing.cpu.append((time.thread_time() - c) * 1e3)
                timing.prog_load_wall.append(t.prog_load_wall * 1e3)
                timing.prog_load_cpu.append(t.prog_load_cpu * 1e3)
                timing.syscall_cpu.append(clock.cpu * 1e3)
    finally:
        _prog.prog_load = t._orig


def config_cost(t: Template, n: int) -> tuple[float, float]:
    """Thread CPU ms per endpoint of setting the rules variable from a packed table and
    from a list of dicts (encoded through BTF by `VariableSpec.set`)."""
    v = t.spec.variables["rules"]
    tables = [rule_table(i, 99, t.nrules) for i in range(n)]
    c = time.thread_time()
    for rules in tables:
        v.set(pack_rules(rules, t.max_rules))
    packed = (time.thread_time() - c) * 1e3 / n
    c = time.thread_time()
    for rules in tables:
        v.set(rules + [dict.fromkeys(rules[0], 0)] * (t.max_rules - len(rules)))
    return packed, (time.thread_time() - c) * 1e3 / n


@dataclass
class Result:
    timing: Timing
    sent: int
    received: int
    counted: int
    per_endpoint_uncounted: list[int]


def run(n: int, nrules: int, rounds: int, pps: float, *, quiet: bool = False) -> Result:
    """Set up n endpoints, replace every program `rounds` times under traffic."""
    say = (lambda _m: None) if quiet else log
    t = Template(nrules)
    try:
        with endpoints_topology(n) as (a, b):
            say(f"topology: {n} veth pairs in {a} <-> {b}")
            c = time.perf_counter()
            eps = attach_all(t, a, n)
            say(f"attached {n} tcx links in {time.perf_counter() - c:.1f}s")
            try:
                # resolve ARP on every pair before counting
                warm = Child(b, SENDER, str(n), str(SERVICE_PORT + 1), "0")
                time.sleep(0.3)
                warm.stop()
                time.sleep(0.2)
                receiver = Child(a, RECEIVER, str(n), str(SERVICE_PORT))
                try:
                    base = t.service_counts(n)
                    sender = Child(b, SENDER, str(n), str(SERVICE_PORT), str(pps))
                    try:
                        time.sleep(0.3)
                        timing = Timing()
                        for r in range(rounds):
                            c = time.perf_counter()
                            replace_all(t, eps, r + 1, timing)
                            say(f"round {r + 1}: replaced {n} programs in "
                                f"{time.perf_counter() - c:.1f}s")
                        time.sleep(0.3)
                    finally:
                        sent = sender.stop()["sent"]
                    time.sleep(0.5)
                finally:
                    received = receiver.stop()["received"]
                final = t.service_counts(n)
            finally:
                close_all(eps)
    finally:
        t.close()
    counted = [f - b0 for f, b0 in zip(final, base, strict=True)]
    timing.config_packed, timing.config_dicts = config_cost(t, min(n, 20))
    return Result(timing, sum(sent), sum(received), sum(counted),
                  [r - c for r, c in zip(received, counted, strict=True)])


def summarize(res: Result, n: int, nrules: int, rounds: int) -> dict[str, Any]:
    tm = res.timing
    k = len(tm.wall) or 1
    wall, cpu = sum(tm.wall), sum(tm.cpu)
    prog_wall, prog_cpu = sum(tm.prog_load_wall), sum(tm.prog_load_cpu)
    sys_cpu = sum(tm.syscall_cpu)
    user = max(cpu - sys_cpu, 0.0)
    return {
        "endpoints": n,
        "rules": nrules,
        "rounds": rounds,
        "replacements": len(tm.wall),
        "wall_ms_per_endpoint": wall / k,
        "wall_ms_per_endpoint_median": statistics.median(tm.wall) if tm.wall else 0,
        "wall_ms_per_endpoint_p99": sorted(tm.wall)[int(0.99 * (k - 1))] if tm.wall else 0,
        "prog_load_wall_ms_per_endpoint": prog_wall / k,
        "prog_load_share_of_wall": prog_wall / wall if wall else 0,
        "cpu_ms_per_endpoint": cpu / k,
        "kernel_prog_load_cpu_ms_per_endpoint": prog_cpu / k,
        "kernel_other_bpf_cpu_ms_per_endpoint": (sys_cpu - prog_cpu) / k,
        "userspace_cpu_ms_per_endpoint": user / k,
        "verifier_share_of_cpu": prog_cpu / cpu if cpu else 0,
        "userspace_share_of_cpu": user / cpu if cpu else 0,
        "target_userspace_share": 0.10,
        "userspace_target_met": (user / cpu < 0.10) if cpu else False,
        "config_rules_packed_cpu_ms_per_endpoint": tm.config_packed,
        "config_rules_as_dicts_via_btf_cpu_ms_per_endpoint": tm.config_dicts,
        "packets_sent": res.sent,
        "packets_received": res.received,
        "packets_counted_by_a_program": res.counted,
        "received_uncounted": sum(max(x, 0) for x in res.per_endpoint_uncounted),
        "lost_in_flight": res.sent - res.received,
        "never_without_program": all(x <= 0 for x in res.per_endpoint_uncounted),
        "notes": "CPU figures are this thread's CPU time (time.thread_time), robust to "
                 "other load on the machine; kernel time is measured around every bpf(2) "
                 "call (BPF_PROG_LOAD = verifier + JIT), userspace is the rest (configuration, "
                 "program preparation, link update bookkeeping, closing the old objects). "
                 "Wall figures include waiting for a CPU.",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoints", type=int, default=200)
    ap.add_argument("--rules", type=int, default=256, help="policy rules per endpoint")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--pps", type=float, default=4000, help="packets per second, all endpoints")
    args = ap.parse_args()
    if not ebpf.features.have_link_type(ebpf.LinkType.TCX):
        log("this kernel has no tcx links (6.6+)")
        return 2
    res = run(args.endpoints, args.rules, args.rounds, args.pps)
    print(json.dumps(summarize(res, args.endpoints, args.rules, args.rounds), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
