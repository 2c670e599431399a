"""Member names decoded as one stretch of the string table (`SpecDecoder._load_span`)
are the names decoding them one by one gives: mid-string offsets, non-ASCII names,
names spread too thinly, split BTF."""

from __future__ import annotations

import struct

from ebpf import btf
from ebpf.btf.spec import Spec

HEADER = struct.Struct("<HBBIIIII")


def _blob(names: list[str], extra: tuple[str, ...] = ()) -> tuple[bytes, int]:
    """A struct with one int member per name (and the unused strings `extra`) and its
    type id."""
    b = btf.Builder()
    i = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    for s in extra:
        b.add_string(s)
    tid = b.add(btf.Struct("s", 4 * len(names),
                           [btf.Member(n, i, 32 * k) for k, n in enumerate(names)]))
    return b.marshal(), tid


def _names_one_by_one(data: bytes, tid: int) -> list[str]:
    spec = Spec(data)
    i, _ = spec._locate(tid - 1)
    w = spec._words
    vlen = w[i + 1] & 0xFFFF
    return [spec.string(o) for o in w[i + 3 : i + 3 + 3 * vlen : 3]]


def test_span_names_equal_string_by_string() -> None:
    names = [f"m{k}" for k in range(40)] + ["état", "x"]
    data, tid = _blob(names)
    t = Spec(data).type_by_id(tid)
    assert [m.name for m in t.members] == names == _names_one_by_one(data, tid)


def test_mid_string_offsets() -> None:
    names = [f"member_{k}" for k in range(30)]
    data, tid = _blob(names)
    raw = bytearray(data)
    _, _, _, hdr_len, type_off, _, _, _ = HEADER.unpack_from(raw)
    spec = Spec(bytes(raw))
    i, _ = spec._locate(tid - 1)
    # point the third member's name 7 bytes into "member_2": "2"
    at = hdr_len + type_off + 4 * (i + 3 + 3 * 2)
    (off,) = struct.unpack_from("<I", raw, at)
    struct.pack_into("<I", raw, at, off + 7)
    got = [m.name for m in Spec(bytes(raw)).type_by_id(tid).members]
    assert got[2] == "2"
    assert got == _names_one_by_one(bytes(raw), tid)


def test_names_spread_thinly_and_few_missing() -> None:
    filler = [f"unused_{k}" * 20 for k in range(200)]  # names far apart in the table
    names = [f"n{k}" for k in range(20)]
    data, tid = _blob(names, extra=tuple(filler))
    assert [m.name for m in Spec(data).type_by_id(tid).members] == names
    few = [f"f{k}" for k in range(3)]
    data, tid = _blob(few)
    assert [m.name for m in Spec(data).type_by_id(tid).members] == few
