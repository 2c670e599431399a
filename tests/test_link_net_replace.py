"""Atomic replacement under traffic (bench/replace.py, small): endpoints running the
template program get new configurations and programs through Link.update while
UDP datagrams stream to them; every datagram that reached its socket was counted by
some version of the program, i.e. no packet ever passed while no program was
attached, and none was lost."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from typing import Any

import pytest
from kernelmatrix import requires

import ebpf

pytestmark = pytest.mark.kernel

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench" / "replace.py"


def bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_replace", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_replace"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _need_tcx() -> None:
    if not ebpf.features.have_link_type(ebpf.LinkType.TCX):
        pytest.skip("kernel without tcx links (6.6+)")


@requires("tcx links", min_kernel="6.6", config="NET_XGRESS")
def test_no_packet_passes_without_a_program() -> None:
    b = bench()
    res = b.run(6, 8, 4, 3000.0, quiet=True)
    out = b.summarize(res, 6, 8, 4)
    assert out["replacements"] == 24
    assert res.sent > 500
    # every datagram that reached a socket was counted by some version of the program
    # (received - counted <= 0 per endpoint); the last few counted ones may still be in
    # flight when the receivers stop (seen in a slow guest: -6 on each endpoint)
    assert all(x <= 0 for x in res.per_endpoint_uncounted), out
    assert res.received <= res.counted <= res.sent, out
    assert res.received >= res.sent - 10 * 6, out
    assert out["never_without_program"]


def test_template_configuration_takes_effect() -> None:
    """A replaced program runs the new configuration: the statistics it writes for
    the next packets carry the new generation."""
    import struct
    import time

    b = bench()
    t = b.Template(4)
    try:
        with b.endpoints_topology(2) as (a, peer):
            eps = b.attach_all(t, a, 2)
            try:
                timing = b.Timing()
                b.replace_all(t, eps, 7, timing)
                assert len(timing.wall) == 2
                assert all(ep.link.info().prog_id == ep.program.id for ep in eps)
                assert all(ep.rodata.frozen for ep in eps)
                def stats(i: int) -> tuple[int, int]:
                    raw = t.shared["ep_stats"].lookup(i, raw=True)
                    return (struct.unpack_from("<Q", raw, 0)[0],
                            struct.unpack_from("<I", raw, 80)[0])

                sender = b.Child(peer, b.SENDER, "2", str(b.SERVICE_PORT), "200")
                deadline = time.monotonic() + 30  # the sender's start is slow when busy
                while time.monotonic() < deadline and not all(stats(i)[0] for i in range(2)):
                    time.sleep(0.05)
                sender.stop()
                for i in range(2):
                    packets, generation = stats(i)
                    assert packets > 0 and generation == 7
            finally:
                b.close_all(eps)
    finally:
        t.close()
