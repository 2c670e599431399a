"""The examples gallery (examples/, docs/examples/): each example runs briefly as a
user runs it (`--duration`/`--count`), as a subprocess, and its output is checked
against activity the test makes itself. Networking examples run inside the test's
network namespaces; hooks this kernel lacks are declared with `requires` (the kernel
matrix runs them)."""

from __future__ import annotations

import contextlib
import pathlib
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest
from gallery import EXAMPLES, REPO, Running, run, start, started

sys.path.insert(0, str(REPO / "tools"))

import gen_examples
from kernelmatrix import requires

# The examples run on the host; the kernel matrix's VMs leave them out (too slow under TCG).
pytestmark = pytest.mark.hostonly


@pytest.fixture
def running() -> Iterator[list[Running]]:
    """Examples started by the test, killed if the test fails before they end."""
    yield from started()


READY_THEN_MORE = """
import sys, time
sys.stdout.write("ready\\nafter 1\\nafter 2\\n")   # one write: read in one chunk
sys.stdout.flush()
time.sleep(0.2)
print("last")
"""


def test_running_keeps_lines_read_ahead(running: list[Running]) -> None:
    """Lines that reached the pipe with the one `wait_for` waited for are part of
    what `finish` returns (they were lost once: read into a buffer `finish` ignored)."""
    r = start(running, "-c", READY_THEN_MORE)
    assert r.wait_for("^ready$") == "ready\n"
    assert r.finish() == "ready\nafter 1\nafter 2\nlast\n"


def test_running_wait_for_keeps_to_its_timeout(running: list[Running]) -> None:
    import time

    r = start(running, "-c", "import time; time.sleep(20)")
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match=r"no line matching 'x' within 0\.5 s"):
        r.wait_for("x", timeout=0.5)
    assert time.monotonic() - t0 < 5 and r.proc.poll() is not None   # and killed


def test_every_example_has_help_and_a_page() -> None:
    for script in sorted(EXAMPLES.glob("*.py")):
        if script.name in ("common.py", "demo.py", "device_filter.py", "execsnoop.py") \
                or script.name.endswith("_bpf.py"):
            continue
        r = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                           text=True, cwd=REPO)
        assert r.returncode == 0 and "--duration" in r.stdout, (script, r.stderr)
        assert (REPO / "docs" / "examples" / f"{script.stem}.md").exists(), script
        assert (EXAMPLES / "bpf" / f"{script.stem}.bpf.c").exists(), script
        assert "clang-19" not in script.read_text()


def test_docs_quote_the_examples_verbatim() -> None:
    """A page's titled code blocks are excerpts of the file they name."""
    fence = re.compile(r'^```\w+ title="(examples/[^"]+)"\n(.*?)^```$', re.M | re.S)
    quoted = 0
    for page in sorted((REPO / "docs" / "examples").glob("*.md")):
        for m in fence.finditer(page.read_text()):
            text = (REPO / m.group(1)).read_text()
            body = m.group(2)
            assert body in text or textwrap.dedent(body) in textwrap.dedent(text), \
                f"{page.name}: the block titled {m.group(1)} is not an excerpt of it"
            quoted += 1
    assert quoted


@pytest.mark.parametrize("name", gen_examples.GENERATED)
def test_generated_bindings_are_up_to_date(name: str) -> None:
    assert gen_examples.stale(name) is None, gen_examples.stale(name)


def test_minimal() -> None:
    r = Running(["examples/minimal.py", "--duration", "2"])
    out = r.finish()
    pid = r.pid
    lines = re.findall(rf"^\s*\S+-{pid}\s+\[\d+\] \S+\s+[\d.]+: bpf_trace_printk: "
                       rf"BPF triggered from PID {pid}\.$", out, re.M)
    assert 1 <= len(lines) <= 3, out   # one write(2) a second, to the chosen descriptor


def test_bootstrap(running: list[Running]) -> None:
    r = start(running, "examples/bootstrap.py", "--duration", "2")
    r.wait_for(r"^TIME\s+EVENT\s+COMM\s+PID\s+PPID\s+FILENAME/EXIT CODE$")
    sh = subprocess.run(["/bin/sh", "-c", "/bin/true; exit 3"])
    assert sh.returncode == 3
    out = r.finish()
    assert re.search(r"^\d\d:\d\d:\d\d EXEC  true\s+\d+\s+\d+\s+/bin/true$", out, re.M), out
    assert re.search(r"^\d\d:\d\d:\d\d EXIT  true\s+\d+\s+\d+\s+\[0\] \(\d+ms\)$", out, re.M)
    assert re.search(rf"^\d\d:\d\d:\d\d EXIT  sh\s+{sh_pid(out)}\s+\d+\s+\[3\]", out, re.M)


def sh_pid(out: str) -> str:
    m = re.search(r"^\S+ EXEC  sh\s+(\d+)\s+\d+\s+/bin/sh$", out, re.M)
    assert m, out
    return m.group(1)


SEND = """
import socket, sys
for src in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    for _ in range(25):
        s.sendto(b"x" * 100, ("10.77.0.1", 9))
"""


def test_xdp_drop(netns: str, running: list[Running]) -> None:
    peer = netns + "-peer"
    subprocess.run(["ip", "-n", peer, "addr", "add", "10.77.0.3/24", "dev", "veth1"],
                   check=True)
    r = start(running, "examples/xdp_drop.py", "--iface", "veth0", "--block", "10.77.0.2",
              "--duration", "1.5", "--interval", "0.5", netns=netns)
    r.wait_for(r"^XDP program attached to veth0, dropping 10\.77\.0\.2")
    subprocess.run(["ip", "netns", "exec", peer, sys.executable, "-c", SEND, "10.77.0.2",
                    "10.77.0.3"], check=True)
    out = r.finish()
    last = out.rsplit("XDP-action\n", 1)[1]
    drop = re.search(r"^XDP_DROP\s+(\d+) pkts \(\s*\d+ pps\)", last, re.M)
    passed = re.search(r"^XDP_PASS\s+(\d+) pkts", last, re.M)
    assert drop and passed, out
    assert int(drop.group(1)) == 25 and int(passed.group(1)) >= 25, out
    assert re.search(r"^  blocked 10\.77\.0\.2\s+25 packets dropped$", last, re.M), out


LOOKUPS = """
import socket
socket.getaddrinfo("localhost", 80)
try:
    socket.getaddrinfo("no-such-host.invalid", None)
except OSError:
    pass
"""


def test_gethostlatency(running: list[Running]) -> None:
    r = start(running, "examples/gethostlatency.py", "--duration", "1.5")
    r.wait_for(r"^TIME\s+PID\s+COMM\s+LATms\s+RET\s+HOST$")
    child = subprocess.Popen([sys.executable, "-c", LOOKUPS])
    assert child.wait() == 0
    out = r.finish()
    pid = child.pid
    assert re.search(rf"^\S+\s+{pid}\s+python3?\S*\s+\d+\.\d\d\s+0 localhost$", out, re.M), out
    assert re.search(rf"^\S+\s+{pid}\s+\S+\s+\d+\.\d\d\s+-\d+ no-such-host\.invalid$",
                     out, re.M), out


def test_pythongc(running: list[Running]) -> None:
    r = start(running, "examples/pythongc.py", "--binary", "/usr/bin/python3",
              "--duration", "1.5")
    r.wait_for(r"^START\s+PID\s+TIME \(us\) DESCRIPTION$")
    child = subprocess.Popen(["/usr/bin/python3", "-c",
                              "import gc\nfor g in (0, 1, 2): gc.collect(g)"])
    assert child.wait() == 0
    out = r.finish()
    gens = re.findall(rf"^[\d.]+\s+{child.pid}\s+[\d.]+ gen (\d) GC collected \d+ objects$",
                      out, re.M)
    assert {"0", "1", "2"} <= set(gens), out


OPENS = """
open("/etc/hostname").close()
try:
    open("/nonexistent/ebpf-gallery")
except OSError:
    pass
"""


def test_opensnoop(running: list[Running]) -> None:
    r = start(running, "examples/opensnoop.py", "--duration", "1.5")
    r.wait_for(r"^PID\s+COMM\s+FD\s+ERR\s+PATH$")
    child = subprocess.Popen([sys.executable, "-c", OPENS])
    assert child.wait() == 0
    out = r.finish()
    pid = child.pid
    assert re.search(rf"^{pid}\s+python3?\S*\s+\d+\s+0 /etc/hostname$", out, re.M), out
    assert re.search(rf"^{pid}\s+python3?\S*\s+-1\s+2 /nonexistent/ebpf-gallery$", out,
                     re.M), out


def test_runqlat() -> None:
    out = run("examples/runqlat.py", "--duration", "1")
    assert out.startswith("Tracing run queue latency... Hit Ctrl-C to end.\n"), out
    assert re.search(r"^\s+usecs\s+: count\s+distribution$", out, re.M), out
    rows = re.findall(r"^\s+(\d+) -> (\d+)\s+: (\d+)\s+\|(\**)\s*\|$", out, re.M)
    assert rows, out
    for low, high, _, _ in rows:
        assert int(high) == max(1, 2 * int(low) - 1 if int(low) else 1), rows
    total = int(re.search(r"^total: (\d+) wakeups$", out, re.M).group(1))  # type: ignore[union-attr]
    assert total == sum(int(c) for _, _, c, _ in rows) > 0, out
    assert max(len(stars) for *_, stars in rows) == 40


TRAFFIC = """
import socket, sys
sys.stdin.readline()        # started early, sends when told to
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("10.77.0.2", 4242))
for _ in range(5):
    u.sendto(b"x" * 32, ("10.77.0.1", 9))
t = socket.socket()
t.settimeout(5)
assert t.connect_ex(("10.77.0.1", 1)) != 0    # a SYN answered by a reset
"""


def traffic(netns: str, ready: Callable[[], object]) -> None:
    """Send TRAFFIC from the peer namespace once `ready()` returned (the sender starts
    first, so that sending takes milliseconds of the example's run)."""
    sender = subprocess.Popen(["ip", "netns", "exec", netns + "-peer", sys.executable, "-c",
                               TRAFFIC], stdin=subprocess.PIPE, text=True)
    try:
        ready()
        sender.communicate("go\n", timeout=10)
        assert sender.returncode == 0
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()


def test_sockfilter(netns: str, running: list[Running]) -> None:
    r = start(running, "examples/sockfilter.py", "--iface", "veth0", "--duration", "2",
              netns=netns)
    traffic(netns, lambda: r.wait_for(r"^Filtering IPv4 packets on veth0 \(Ctrl-C to stop\)\.$"))
    out = r.finish()
    udp = re.findall(r"^interface: veth0\tprotocol: UDP\t10\.77\.0\.2:4242\(src\) -> "
                     r"10\.77\.0\.1:9\(dst\)$", out, re.M)
    tcp = re.findall(r"^interface: veth0\tprotocol: TCP\t10\.77\.0\.2:\d+\(src\) -> "
                     r"10\.77\.0\.1:1\(dst\)$", out, re.M)
    assert len(udp) == 5 and len(tcp) == 1, out
    table = out.rsplit("PROTOCOL", 1)[1]
    assert re.findall(r"^(\w+)\s+(\d+)$", table, re.M) == [("TCP", "1"), ("UDP", "5")], out


@pytest.mark.parametrize("mode", ["auto", "classic"])
def test_tc(netns: str, running: list[Running], mode: str) -> None:
    import ebpf.features
    from ebpf import LinkType

    how = "tcx" if mode == "auto" and ebpf.features.have_link_type(LinkType.TCX) \
        else "tc clsact"
    r = start(running, "examples/tc.py", "--iface", "veth0", "--duration", "2",
              *(["--classic"] if mode == "classic" else []), netns=netns)
    traffic(netns, lambda: r.wait_for(rf"^Successfully started! Attached to veth0 ingress "
                                      rf"\({how}\)"))
    out = r.finish()
    lines = re.findall(r"^\s*\S+-\d+\s+\[\d+\] \S+\s+[\d.]+: bpf_trace_printk: "
                       r"Got IP packet: tot_len: (\d+), ttl: 64$", out, re.M)
    # five UDP datagrams and a SYN, each 60 bytes of IP. The trace buffer is system-wide
    # and reading consumes it: another reader at the same time may take lines
    assert 1 <= len(lines) <= 6 and set(lines) == {"60"}, out
    table = out.rsplit("PROTOCOL", 1)[1]
    rows = re.findall(r"^(\w+)\s+(\d+)\s+(\d+)$", table, re.M)
    assert [(name, packets) for name, packets, _ in rows] == [("TCP", "1"), ("UDP", "5")], out
    assert rows[1][2] == str(5 * (14 + 20 + 8 + 32)), out    # Ethernet + IP + UDP + payload
    qdiscs = subprocess.run(["ip", "netns", "exec", netns, "tc", "qdisc", "show", "dev",
                             "veth0"], capture_output=True, text=True, check=True).stdout
    assert "clsact" not in qdiscs, qdiscs    # removed on exit


SLEEPER = """
import threading, time
threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
print("ready", flush=True)
time.sleep(30)
"""


@requires("iter_target:task", min_kernel="5.8")
def test_task_iter() -> None:
    import os

    r = Running(["examples/task_iter.py"])
    out = r.finish()
    assert out.startswith("    PID    PPID S COMMAND\n"), out
    assert re.search(rf"^\s+{r.pid}\s+{os.getpid()} R python3?\S*$", out, re.M), out

    child = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        out = run("examples/task_iter.py", "--threads", "--stacks")
    finally:
        child.kill()
        child.wait()
    assert out.startswith("    PID     TID    PPID S COMMAND\n"), out
    threads = re.findall(rf"^\s+{child.pid}\s+(\d+)\s+{os.getpid()} S python3?\S*\n"
                         r"((?:        \S+\n)+)", out, re.M)
    assert len(threads) == 2 and threads[0][0] == str(child.pid), out
    for _, stack in threads:    # both asleep in clock_nanosleep(2)
        assert "nanosleep" in stack and "do_syscall_64+0x" in stack, out


BUSY = """
import os, zlib
buf = b"x" * 16384
print("ready", flush=True)
while True:              # time in libz's crc32_z (user) and in stat(2) (kernel)
    zlib.crc32(buf)
    os.stat("/")
"""


def test_profile() -> None:
    child = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        out = run("examples/profile.py", "--pid", str(child.pid), "--frequency", "199",
                  "--duration", "1.5")
    finally:
        child.kill()
        child.wait()
    header, _, rest = out.partition("\n")
    assert header == "Sampling every CPU at 199 Hz... Hit Ctrl-C to end.", out
    samples = rest.split("\n\n")[:-1]
    assert samples and out.endswith("\n\n"), out
    for s in samples:
        assert re.match(rf"COMM: python3?\S* \(pid={child.pid}\) @ CPU \d+\n", s), out
    frame = r"\n  \d+ \[<[0-9a-f]{16}>\] "
    assert re.search(rf"^Userspace:{frame}crc32_z\+0x[0-9a-f]+ \[/\S*/libz\.so[\d.]*\]",
                     out, re.M), out
    assert re.search(rf"^Kernel:(?:{frame}\w+\+0x[0-9a-f]+)*{frame}do_syscall_64\+0x", out,
                     re.M), out


SERVER = """
import socket
l = socket.socket()
l.bind(("10.77.0.2", 8080))
l.listen()
print("ready", flush=True)
c, _ = l.accept()
n = 0
while n < 10240:
    n += len(c.recv(65536))
c.sendall(b"y" * 5000)
assert c.recv(1) == b""     # the client closes first
c.close()
"""

CLIENT = """
import socket, sys
sys.stdin.readline()        # started early, connects when told to
s = socket.create_connection(("10.77.0.2", 8080), timeout=5)
s.sendall(b"x" * 10240)
n = 0
while n < 5000:
    n += len(s.recv(65536))
s.close()
"""


def tcp_session(netns: str, tracing: Callable[[], object]) -> tuple[int, int]:
    """A TCP session from `netns` (10.77.0.1) to a server in its peer (10.77.0.2:8080):
    10 KiB sent, 5000 bytes received, closed by the client first. Both processes are
    started first, then `tracing()` (which starts the example), then the client
    connects: the session takes milliseconds of the example's run. (client, server)
    pids."""
    server = subprocess.Popen(["ip", "netns", "exec", netns + "-peer", sys.executable, "-c",
                               SERVER], stdout=subprocess.PIPE, text=True)
    client = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT],
                              stdin=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        tracing()
        client.communicate("go\n", timeout=10)
        assert client.returncode == 0
        assert server.wait(timeout=10) == 0
    finally:
        for proc in (client, server):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return client.pid, server.pid        # `ip netns exec` execs the command: same pid


def test_tcpconnect(netns: str, running: list[Running]) -> None:
    def tracing() -> None:
        r.wait_for(r"^PID\s+COMM\s+IP SADDR\s+DADDR\s+DPORT$")

    r = start(running, "examples/tcpconnect.py", "--duration", "1.5", netns=netns)
    client, server = tcp_session(netns, tracing)
    out = r.finish()
    assert re.search(rf"^{client}\s+python3?\S*\s+4\s+10\.77\.0\.1\s+10\.77\.0\.2\s+8080$",
                     out, re.M), out
    assert not re.search(rf"^{server}\s", out, re.M), out     # accept() is not a connect


def test_tcplife(netns: str, running: list[Running]) -> None:
    def tracing() -> None:
        r.wait_for(r"^PID\s+COMM\s+LADDR\s+LPORT\s+RADDR\s+RPORT\s+TX_KB\s+RX_KB\s+MS$")

    r = start(running, "examples/tcplife.py", "--duration", "1.5", netns=netns)
    client, server = tcp_session(netns, tracing)
    out = r.finish()
    # each side once: 10 KiB one way, 5000 bytes (4 KiB) the other
    assert len(re.findall(rf"^{client}\s+python3?\S*\s+10\.77\.0\.1\s+\d+\s+10\.77\.0\.2\s+"
                          r"8080\s+10\s+4\s+\d+\.\d\d$", out, re.M)) == 1, out
    assert len(re.findall(rf"^{server}\s+python3?\S*\s+10\.77\.0\.2\s+8080\s+10\.77\.0\.1\s+"
                          r"\d+\s+4\s+10\s+\d+\.\d\d$", out, re.M)) == 1, out


def direct_io(device: str, blocks: int) -> None:
    """`blocks` 4 KiB writes to `device` with O_DIRECT, an fsync, then as many reads:
    each its own request to the device (nothing cached, nothing merged)."""
    import mmap
    import os

    buf = mmap.mmap(-1, 4096)              # page-aligned, as O_DIRECT wants
    buf.write(b"\xa5" * 4096)
    fd = os.open(device, os.O_RDWR | os.O_DIRECT)
    try:
        for i in range(blocks):
            assert os.pwritev(fd, [buf], i * 4096) == 4096
        os.fsync(fd)
        for i in range(blocks):
            assert os.preadv(fd, [buf], i * 4096) == 4096
    finally:
        os.close(fd)
        buf.close()


def test_biolatency(tmp_path: pathlib.Path, running: list[Running]) -> None:
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(4 << 20)
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        name = pathlib.Path(device).name
        r = start(running, "examples/biolatency.py", "--disks", "--disk", name,
                  "--duration", "2")
        r.wait_for(r"^Tracing block device I/O\.\.\. Hit Ctrl-C to end\.$")
        direct_io(device, 32)
        out = r.finish()
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)
    assert f"\ndisk = {name}\n" in out and "\ndisk = " not in out.split(name, 1)[1], out
    assert re.search(r"^\s+usecs\s+: count\s+distribution$", out, re.M), out
    rows = re.findall(r"^\s+(\d+) -> (\d+)\s+: (\d+)\s+\|(\**)\s*\|$", out, re.M)
    total = int(re.search(r"^total: (\d+) I/O requests$", out, re.M).group(1))  # type: ignore[union-attr]
    # 64 reads and writes, the flush of the fsync (if the device takes one), and where
    # udev runs, perhaps a few reads of its probe of the new device
    assert total == sum(int(c) for _, _, c, _ in rows) and 64 <= total <= 72, out
    assert max(len(stars) for *_, stars in rows) == 40, out


LISTENER = """
import socket, time
l = socket.socket()
l.bind(("10.77.0.2", 8080))
l.listen()
print("ready", flush=True)
c, _ = l.accept()
time.sleep(30)              # killed by the test
"""

SENDER = """
import socket, sys
s = socket.create_connection(("10.77.0.2", 8080), timeout=5)
print(s.getsockname()[1], flush=True)
sys.stdin.readline()        # sends when told to: once the peer drops everything
s.sendall(b"x" * 100)
sys.stdin.readline()        # and keeps the connection until then
"""


@contextlib.contextmanager
def dropping_everything(netns: str, iface: str) -> Iterator[None]:
    """An XDP program dropping every packet `iface` (in `netns`) receives."""
    import ebpf
    import ebpf.link
    from ebpf import asm

    prog = ebpf.Program(ebpf.ProgramSpec(
        name="drop_all", type=ebpf.ProgramType.XDP, license="GPL",
        instructions=[asm.mov_imm(asm.R0, 1), asm.exit()]))    # XDP_DROP
    with prog:
        with ebpf.link.in_netns(netns):
            link = ebpf.link.xdp(prog, iface)
        with link:
            yield


def test_tcpretrans(netns: str, running: list[Running]) -> None:
    peer = netns + "-peer"
    server = subprocess.Popen(["ip", "netns", "exec", peer, sys.executable, "-c", LISTENER],
                              stdout=subprocess.PIPE, text=True)
    client: subprocess.Popen[str] | None = None
    try:
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        client = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c",
                                   SENDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        assert client.stdout is not None and client.stdin is not None
        port = int(client.stdout.readline())        # connected
        r = start(running, "examples/tcpretrans.py", "--duration", "1.5")
        r.wait_for(r"^TIME\s+PID\s+IP LADDR:LPORT\s+T> RADDR:RPORT\s+STATE$")
        with dropping_everything(peer, "veth1"):
            client.stdin.write("go\n")              # 100 bytes that are never acked
            client.stdin.flush()
            out = r.finish()
    finally:
        for proc in (client, server):
            if proc is not None:
                proc.kill()
                proc.communicate()
    assert out.startswith("Tracing retransmits ... Hit Ctrl-C to end\n"), out
    # retransmitted by the timer (200 ms, doubling) and perhaps a tail loss probe first
    assert re.search(rf"^\d\d:\d\d:\d\d \d+\s+4\s+10\.77\.0\.1:{port}\s+R> "
                     r"10\.77\.0\.2:8080\s+ESTABLISHED$", out, re.M), out
