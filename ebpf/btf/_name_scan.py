"""Finding a `Spec`'s names without an index: the scan for one name (the strings equal
to it, then the type records that point at one), and the indexes built from every named
type at once (the in-memory name index, the on-disk cache's name buckets). A module of
its own that `ebpf.btf.names` loads on first use: a process that finds the kernel's index
cached looks names up by hash (process start, issue 15)."""

from __future__ import annotations

import struct
import zlib
from array import array
from bisect import bisect_left
from itertools import compress, repeat
from operator import and_, itemgetter, lshift, or_, rshift

from ..errors import BTFError
from .layout import _NAMED_KINDS, NAME_ID_BITS, string_starts
from .names import _name_tag

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from .names import SpecNames

__all__ = ["build_name_index", "name_buckets", "scan_name"]


def _string_offsets(self: SpecNames, bname: bytes) -> list[int]:
    """Offsets (absolute in the split string table) of every string equal to `bname`."""
    buf, s0, s1 = self._buf, self._str_start, self._str_end
    found = []
    if buf[s0 : s0 + len(bname) + 1] == bname + b"\0":
        found.append(s0)
    needle = b"\0" + bname + b"\0"
    # One pass in the common case of a unique string: find from the front,
    # rfind from the back; search between the two only when they differ.
    first = buf.find(needle, s0, s1)
    if first >= 0:
        last = buf.rfind(needle, s0, s1)
        pos = first
        while pos >= 0:
            found.append(pos + 1)
            if pos == last:
                break
            pos = buf.find(needle, pos + 1, last + len(needle))
    return [p - s0 + self._str_base for p in found]



def scan_name(self: SpecNames, name: str) -> list[int]:
    """Ids of this spec's own types called `name`: the strings equal to it, then the
    type records whose name points at one (no index)."""
    try:
        bname = name.encode()
    except UnicodeEncodeError:
        return []
    if b"\0" in bname:
        return []
    str_offs = _string_offsets(self, bname)
    if not str_offs:
        return []
    buf, start, end = self._buf, self._type_start, self._type_end
    fmt = "<I" if self.byteorder == "little" else ">I"
    cands: list[int] = []
    import re  # re's literal search beats bytes.find here (the pattern ends in NULs)

    for soff in str_offs:
        for m in re.compile(re.escape(struct.pack(fmt, soff))).finditer(buf, start, end):
            rel = m.start() - start
            if rel % 4 == 0:
                cands.append(rel // 4)
    # Most hits are other words that happen to hold the same number: keep only
    # those followed by a plausible info word of a kind that has a name, so
    # the walk below need not go further than the real records.
    words, n = self._words, self._nwords
    plausible = []
    for word in cands:
        info = words[word + 1] if word + 1 < n else 0
        if info & 0x60FF0000 == 0 and (info >> 24) & 0x1F in _NAMED_KINDS:
            plausible.append(word)
    found: list[int] = []
    if plausible:
        self._walk_to_word(max(plausible) + 1)
        for word in plausible:
            tid = self._is_record_start(word)
            if tid:
                found.append(tid)
    found.sort()
    return found



def _named_types(self: SpecNames) -> tuple[list[int], list[bytes]]:
    """(ids, names) of every named type of this spec, in id order (C-speed bulk work)."""
    self._ensure_complete()
    offsets = self._offsets
    if not offsets:
        return [], []
    name_offs = itemgetter(*offsets)(self._words) if len(offsets) > 1 else (
        self._words[offsets[0]],)
    ids = list(compress(range(self._first_id, self._first_id + len(offsets)), name_offs))
    named_offs = list(filter(None, name_offs))
    strings = bytes(self._buf[self._str_start : self._str_end])
    parts = strings.split(b"\0")
    starts = string_starts(parts, self._str_base)
    table = dict(zip(starts, parts, strict=False))
    names: list[bytes | None] = list(map(table.get, named_offs))
    if None in names:
        for k, (off, nm) in enumerate(zip(named_offs, names, strict=True)):
            if nm is None:  # points into the middle of a string, or into the base
                names[k] = self.string(off).encode()
    return ids, names  # type: ignore[return-value]



def name_buckets(self: SpecNames, bits: int, tagged: bool) -> tuple[array[int], array[int]]:
    """`SpecNames.name_buckets`."""
    ids, names = _named_types(self)
    if tagged and ids and ids[-1] >> NAME_ID_BITS:
        raise BTFError(f"type ids beyond {NAME_ID_BITS} bits cannot be tagged")
    crcs = list(map(zlib.crc32, names))
    hashes = map(rshift, crcs, repeat(32 - bits))
    if tagged:
        ids = [i | _name_tag(c, bits) << NAME_ID_BITS for i, c in zip(ids, crcs, strict=True)]
    keys = sorted(map(or_, map(lshift, hashes, repeat(32)), ids))
    table = array("I", [bisect_left(keys, b << 32) for b in range(1 << bits)])
    table.append(len(keys))
    return table, array("I", map(and_, keys, repeat(0xFFFFFFFF)))



def build_name_index(self: SpecNames) -> None:
    """`SpecNames.build_name_index`."""
    ids, names = _named_types(self)
    index: dict[str, list[int]] = {}
    for tid, bname in zip(ids, names, strict=True):
        try:
            s = bname.decode()
        except UnicodeDecodeError:
            continue
        lst = index.get(s)
        if lst is None:
            index[s] = [tid]
        else:
            lst.append(tid)
    self._names = index
