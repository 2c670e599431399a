"""ebpf.hist: histograms read from maps a BPF program filled, printed as BCC prints them.

tests/bpf/hist.c counts each value it is test-run with into a log2 array, a per-CPU
log2 array, a linear hash and a log2 hash keyed by {section, slot}. The expected
texts are BCC's print_log2_hist / print_linear_hist output for the same counts.
"""

from __future__ import annotations

import io
import struct
import sys
from collections.abc import Iterator

import pytest
from bpfbuild import compile_bpf

import ebpf
from ebpf import hist

pytestmark = pytest.mark.kernel

# (value, section, times)
RUNS = [(0, 7, 3), (1, 7, 1), (2, 42, 2), (3, 42, 2), (5, 7, 1), (100, 42, 10), (1000, 7, 5)]

LOG2_TEXT = """\
     usecs               : count     distribution
         0 -> 1          : 4        |****************                        |
         2 -> 3          : 4        |****************                        |
         4 -> 7          : 1        |****                                    |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 0        |                                        |
        32 -> 63         : 0        |                                        |
        64 -> 127        : 10       |****************************************|
       128 -> 255        : 0        |                                        |
       256 -> 511        : 0        |                                        |
       512 -> 1023       : 5        |********************                    |
"""

SECTIONS_TEXT = """\

pid = 7
     usecs               : count     distribution
         0 -> 1          : 4        |********************************        |
         2 -> 3          : 0        |                                        |
         4 -> 7          : 1        |********                                |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 0        |                                        |
        32 -> 63         : 0        |                                        |
        64 -> 127        : 0        |                                        |
       128 -> 255        : 0        |                                        |
       256 -> 511        : 0        |                                        |
       512 -> 1023       : 5        |****************************************|

pid = 42
     usecs               : count     distribution
         0 -> 1          : 0        |                                        |
         2 -> 3          : 4        |****************                        |
         4 -> 7          : 0        |                                        |
         8 -> 15         : 0        |                                        |
        16 -> 31         : 0        |                                        |
        32 -> 63         : 0        |                                        |
        64 -> 127        : 10       |****************************************|
"""

LINEAR_TEXT = """\
     slots         : count     distribution
        0          : 3        |****************************************|
        1          : 1        |*************                           |
        2          : 2        |**************************              |
        3          : 2        |**************************              |
        4          : 0        |                                        |
        5          : 1        |*************                           |
"""

# one value of 2**40 more: bucket 41, so BCC's wide layout (20-digit ranges, 20 stars)
WIDE_TEXT = """\
               usecs                         : count     distribution
                   0 -> 1                    : 4        |********            |
                   2 -> 3                    : 4        |********            |
                   4 -> 7                    : 1        |**                  |
                   8 -> 15                   : 0        |                    |
                  16 -> 31                   : 0        |                    |
                  32 -> 63                   : 0        |                    |
                  64 -> 127                  : 10       |********************|
                 128 -> 255                  : 0        |                    |
                 256 -> 511                  : 0        |                    |
                 512 -> 1023                 : 5        |**********          |
                1024 -> 2047                 : 0        |                    |
                2048 -> 4095                 : 0        |                    |
                4096 -> 8191                 : 0        |                    |
                8192 -> 16383                : 0        |                    |
               16384 -> 32767                : 0        |                    |
               32768 -> 65535                : 0        |                    |
               65536 -> 131071               : 0        |                    |
              131072 -> 262143               : 0        |                    |
              262144 -> 524287               : 0        |                    |
              524288 -> 1048575              : 0        |                    |
             1048576 -> 2097151              : 0        |                    |
             2097152 -> 4194303              : 0        |                    |
             4194304 -> 8388607              : 0        |                    |
             8388608 -> 16777215             : 0        |                    |
            16777216 -> 33554431             : 0        |                    |
            33554432 -> 67108863             : 0        |                    |
            67108864 -> 134217727            : 0        |                    |
           134217728 -> 268435455            : 0        |                    |
           268435456 -> 536870911            : 0        |                    |
           536870912 -> 1073741823           : 0        |                    |
          1073741824 -> 2147483647           : 0        |                    |
          2147483648 -> 4294967295           : 0        |                    |
          4294967296 -> 8589934591           : 0        |                    |
          8589934592 -> 17179869183          : 0        |                    |
         17179869184 -> 34359738367          : 0        |                    |
         34359738368 -> 68719476735          : 0        |                    |
         68719476736 -> 137438953471         : 0        |                    |
        137438953472 -> 274877906943         : 0        |                    |
        274877906944 -> 549755813887         : 0        |                    |
        549755813888 -> 1099511627775        : 0        |                    |
       1099511627776 -> 2199023255551        : 1        |**                  |
"""


def _packet(value: int, section: int) -> bytes:
    return bytes(14) + struct.pack("<QI", value, section) + bytes(16)


@pytest.fixture
def coll() -> Iterator[ebpf.Collection]:
    spec = ebpf.load_collection_spec(compile_bpf("hist"))
    with ebpf.Collection(spec) as c:
        prog = c.programs["count_value"]
        for value, section, times in RUNS:
            prog.test_run(_packet(value, section), repeat=times)
        yield c


def test_log2_from_array(coll: ebpf.Collection) -> None:
    h = hist.log2_hist(coll.maps["log2_array"])
    assert list(h.counts[:11]) == [0, 4, 4, 1, 0, 0, 0, 10, 0, 0, 5]
    assert len(h.counts) == hist.LOG2_BUCKETS and h.total == 24 and not h.sections
    assert h.format("usecs") == LOG2_TEXT
    out = io.StringIO()
    h.print("usecs", file=out)
    assert out.getvalue() == LOG2_TEXT
    assert h.ranges()[7] == (64, 127) and h.ranges()[1] == (0, 1)


def test_log2_strip_leading_zero(coll: ebpf.Collection) -> None:
    h = hist.log2_hist(coll.maps["log2_array"])
    # no empty bucket before the first count here: the same text
    assert h.format("usecs", strip_leading_zero=True) == LOG2_TEXT
    only_high = hist.from_counts([0, 0, 0, 2, 0, 1])
    assert only_high.format(strip_leading_zero=True) == (
        "     value               : count     distribution\n"
        "         4 -> 7          : 2        |****************************************|\n"
        "         8 -> 15         : 0        |                                        |\n"
        "        16 -> 31         : 1        |********************                    |\n")
    assert only_high.format().count("\n") == 6  # leading empty buckets 1 and 2 shown


def test_log2_per_cpu_summed(coll: ebpf.Collection) -> None:
    m = coll.maps["log2_percpu"]
    assert m.is_per_cpu
    h = hist.log2_hist(m)
    assert h.format("usecs") == LOG2_TEXT


def test_log2_sections(coll: ebpf.Collection) -> None:
    h = hist.log2_hist(coll.maps["log2_sections"])
    assert sorted(h.sections) == [7, 42]
    assert list(h.sections[42].counts[:8]) == [0, 0, 4, 0, 0, 0, 0, 10]
    assert list(h.counts[:11]) == [0, 4, 4, 1, 0, 0, 0, 10, 0, 0, 5]  # summed
    assert h.format("usecs", section_header="pid", section_format=str) == SECTIONS_TEXT
    # BCC's default header and repr of the section
    assert h.format("usecs").startswith("\nBucket ptr = 7\n")


def test_key_callable(coll: ebpf.Collection) -> None:
    h = hist.log2_hist(coll.maps["log2_sections"],
                       key=lambda raw: (None, int.from_bytes(raw[4:8], "little")))
    assert list(h.counts[:11]) == [0, 4, 4, 1, 0, 0, 0, 10, 0, 0, 5]
    assert h.sections == {}  # no section but None: a plain histogram
    by_parity = hist.log2_hist(
        coll.maps["log2_sections"],
        key=lambda raw: (raw[0] % 2, int.from_bytes(raw[4:8], "little")))
    assert sorted(by_parity.sections) == [0, 1]


def test_linear_from_hash(coll: ebpf.Collection) -> None:
    h = hist.linear_hist(coll.maps["linear_hash"])
    assert list(h.counts) == [3, 1, 2, 2, 0, 1]
    assert h.format("slots") == LINEAR_TEXT
    assert h.ranges()[5] == (5, 5)


def test_wide_layout(coll: ebpf.Collection) -> None:
    coll.programs["count_value"].test_run(_packet(1 << 40, 7))
    h = hist.log2_hist(coll.maps["log2_array"])
    assert h.counts[41] == 1
    assert h.format("usecs") == WIDE_TEXT


def test_numpy_counts(coll: ebpf.Collection) -> None:
    np = pytest.importorskip("numpy")
    h = hist.log2_hist(coll.maps["log2_array"])
    assert isinstance(h.counts, np.ndarray) and h.counts.dtype == np.uint64


def test_list_counts_without_numpy(coll: ebpf.Collection,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)  # numpy is an optional extra
    h = hist.log2_hist(coll.maps["log2_array"])
    assert isinstance(h.counts, list)
    assert h.format("usecs") == LOG2_TEXT


def test_refuses_odd_maps() -> None:
    m = ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.HASH, key_size=12, value_size=8,
                              max_entries=4, name="hist_odd"))
    with m, pytest.raises(ebpf.InvalidArgumentError, match="key="):
        hist.log2_hist(m)
    big = ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.HASH, key_size=4, value_size=8,
                                max_entries=4, name="hist_big"))
    with big:
        big[70] = 1
        with pytest.raises(ebpf.InvalidArgumentError, match="bucket 70"):
            hist.log2_hist(big)
        assert list(hist.linear_hist(big).counts)[70] == 1
