"""Parse BTF blobs into `Spec`s: an index of type offsets, decoded on demand.

A `Spec` never decodes more than it is asked for. The type offset index (where
each type's record starts in the type section) is built by walking the
variable-length records; for a big blob (the kernel's 126k types) that walk is
itself incremental: a name lookup first finds the name's string offset and the
words of the type section that hold it, then walks only as far as the last of
those, so looking up a type near the start costs almost nothing. `len()`,
iteration and an id beyond the walked part complete the walk on demand.

Every malformed input raises `BTFError` with the offset of the offending
record (relative to the start of the blob).

`Spec` is made of parts: `ebpf.btf.walk` (the record offset index, walked or
taken from the cache), `ebpf.btf.decode` (strings and type records),
`ebpf.btf.names` (lookups by name); `ebpf.btf.layout` has the blob's layout.
"""

from __future__ import annotations

import _thread
import mmap
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from itertools import compress
from operator import itemgetter

from .._sys import forking as _forking
from ..errors import BTFError
from .layout import CHECKPOINT_SHIFT as CHECKPOINT_SHIFT
from .layout import HEADER, HEADER_BE, kinds_of
from .layout import MAGIC as MAGIC
from .layout import NAME_BUCKET_BITS as NAME_BUCKET_BITS
from .layout import CachedIndex as CachedIndex
from .layout import record_words as record_words
from .names import SpecNames
from .types import (
    Kind,
    Type,
)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from array import array
    from typing import Any

    from .layout import Buffer, Words



# A kind with at most this many types in a spec has its ids looked up by `bytes.find`
# and kept (see Spec._ids_of_kind).
_FEW_OF_KIND = 64


class Spec(SpecNames):
    """A parsed BTF blob: types by id and name, and the string table.

    Type ids start at 1 (0 is void). Split BTF (kernel modules) passes the base
    spec as `base`; its types keep their ids and the module's follow.

    `data` may be bytes or a read-only `mmap` (kept, not copied). Blobs whose
    type section is at most 1 MiB are decoded (and so validated) whole unless
    `lazy=True`; bigger ones are decoded on demand unless `lazy=False`.
    """

    def __init__(self, data: bytes | bytearray | memoryview | mmap.mmap,
                 base: Spec | None = None, *, lazy: bool | None = None,
                 _offsets: Sequence[int] | None = None,
                 _index: CachedIndex | None = None) -> None:
        buf: Buffer = data if isinstance(data, (bytes, mmap.mmap)) else bytes(data)
        self._buf = buf
        self._raw: bytes | None = buf if isinstance(buf, bytes) else None
        self.base = base
        if len(buf) < HEADER.size:
            raise BTFError(f"BTF is {len(buf)} bytes, shorter than its header", 0)
        if buf[0:2] == b"\x9f\xeb":
            hdr, self.byteorder = HEADER, "little"
        elif buf[0:2] == b"\xeb\x9f":
            hdr, self.byteorder = HEADER_BE, "big"
        else:
            raise BTFError(f"bad BTF magic {buf[0:2].hex()}", 0)
        _, version, self.flags, hdr_len, type_off, type_len, str_off, str_len = (
            hdr.unpack_from(buf))
        if version != 1:
            raise BTFError(f"unsupported BTF version {version}", 2)
        if hdr_len < HEADER.size or hdr_len > len(buf):
            raise BTFError(f"bad BTF header length {hdr_len}", 4)
        if type_off % 4 or type_len % 4:
            raise BTFError("BTF type section is not 4-byte aligned", 8)
        tstart, sstart = hdr_len + type_off, hdr_len + str_off
        if tstart + type_len > len(buf) or sstart + str_len > len(buf):
            raise BTFError(f"BTF sections exceed the blob's {len(buf)} bytes", 8)
        if tstart < sstart + str_len and sstart < tstart + type_len:
            raise BTFError("BTF type and string sections overlap", 8)
        self._type_start = tstart
        self._type_end = tstart + type_len
        self._str_start = sstart
        self._str_end = sstart + str_len
        self._str_len = str_len
        self._str_base: int = base._str_base + base._str_len if base is not None else 0
        if str_len and buf[sstart + str_len - 1] != 0:
            raise BTFError("BTF string section is not NUL-terminated", sstart + str_len - 1)
        if base is None and str_len and buf[sstart] != 0:
            raise BTFError("BTF string section does not start with an empty string", sstart)
        self._first_id = len(base) if base is not None else 1
        words: Words
        if (self.byteorder == "little") == (sys.byteorder == "little"):
            words = memoryview(buf)[tstart : tstart + type_len].cast("I")
        else:
            from array import array  # only for BTF of the other byte order

            words = array("I")
            words.frombytes(buf[tstart : tstart + type_len])
            words.byteswap()
        self._words = words
        self._nwords = len(words)
        self._steps: dict[int, int] = {}
        self._by_id: dict[int, Type] = {}
        self._ids: dict[int, int] = {}  # id(Type object) -> type id
        self._strcache: dict[int, str] = {}
        self._strings_loaded = False
        self._strings_end = 0
        self._names: dict[str, list[int]] | None = None
        self._flavored: list[str] | None = None  # (see flavored_names)
        self._ids_by_kind: dict[int, list[int]] | None = None  # (see _own_ids_by_kind)
        self._kind_bytes: bytes | None = None  # (see _kinds)
        self._kind_ids: dict[int, list[int]] = {}  # (see _ids_of_kind)
        self._index = _index
        self._blocks: dict[int, list[int]] = {}
        self._count: int | None = _index.ntypes if _index is not None else None
        self._scans = 0
        self._error: BTFError | None = None
        # Lazy indexing and decoding mutate shared state: one thread at a time.
        self._lock = _forking.new_lock(self, "_lock", _thread.RLock)  # (a forked child's: free)
        if _offsets is not None:
            # From a validated cache: trust the structure, check each record on decode.
            from array import array  # the cached path only: `import ebpf.btf` does not load it

            self._offsets: array[int] | memoryview | tuple[()] = (
                _offsets if isinstance(_offsets, (array, memoryview)) else array("I", _offsets))
            self._walk_pos = self._nwords
            self._complete = True
            self._count = len(self._offsets)
        else:
            # (an array once walking starts)
            self._offsets = ()
            self._walk_pos = 0
            self._complete = False
        if self._nwords == 0 and _index is None:
            self._complete, self._count = True, 0
        if lazy is None:
            lazy = type_len > (1 << 20)
        if not lazy:
            self._walk_to_word(self._nwords)
            for tid in range(self._first_id, self._first_id + len(self._offsets)):
                self.type_by_id(tid)

    def __copy__(self) -> Spec:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Spec:
        """A parsed blob does not change: a copy of what holds it (a `CollectionSpec`
        deep-copied, as its `copy()` does) shares it."""
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its blob and the types decoded so far, the running kernel's BTF
        by name (see `ebpf.btf.pickling`)."""
        from .pickling import reduce_spec  # on the first pickle (process start)

        return reduce_spec(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Takes back the types of a pickled spec (see `ebpf.btf.pickling`)."""
        from .pickling import restore_types  # on the first unpickle (process start)

        restore_types(self, state)

    @property
    def raw(self) -> bytes:
        """The whole BTF blob."""
        if self._raw is None:
            self._raw = bytes(self._buf)
        return self._raw

    @property
    def buffer(self) -> Buffer:
        """The blob as it was given (bytes, or the kernel's mapped file), not copied."""
        return self._buf

    @property
    def string_table(self) -> bytes:
        """This blob's string section (with its leading empty string)."""
        return bytes(self._buf[self._str_start : self._str_end])

    def checksum(self) -> tuple[int, int]:
        """(length, crc32) of the blob, the key of the on-disk index cache."""
        return len(self._buf), zlib.crc32(self._buf)

    def __iter__(self) -> Iterator[Type]:
        """Every type of this spec (not its base), in id order, void first when not split."""
        if self.base is None:
            yield self.type_by_id(0)
        for tid in range(self._first_id, len(self)):
            yield self.type_by_id(tid)

    def _kinds(self) -> bytes:
        """The kind of each type of this spec (not its base), in id order: byte k is the
        kind of type id `first + k` (read from the info words, nothing decoded)."""
        kinds = self._kind_bytes
        if kinds is None:
            self._ensure_complete()
            offsets = self._offsets
            if len(offsets) > 1:
                kinds = kinds_of(itemgetter(*offsets)(self._words[1:]))
            else:
                kinds = kinds_of([self._words[o + 1] for o in offsets])
            self._kind_bytes = kinds
        return kinds

    def types_of_kind(self, *kinds: Kind) -> list[Type]:
        """This spec's own types (not its base's) of one of `kinds` (an ENUM64 is
        `Kind.ENUM64`), in id order. Only those are decoded: the kinds are read from
        the records."""
        return [self.type_by_id(tid) for tid in self._ids_of_kinds(kinds)]

    def _ids_of_kinds(self, kinds: Iterable[int]) -> list[int]:
        """The ids of this spec's own types of one of `kinds`, in id order."""
        ids: list[int] = []
        wanted = set(kinds)
        for kind in wanted:
            ids += self._ids_of_kind(kind)
        if len(wanted) > 1:
            ids.sort()
        return ids

    def _ids_of_kind(self, kind: int) -> list[int]:
        """The ids of this spec's own types of `kind`, in id order (kept when there are
        few: an object's parser asks for its DATASECs three or four times; don't change
        the list)."""
        known = self._kind_ids
        ids = known.get(kind)
        if ids is not None:
            return ids
        own = self._kinds()
        first = self._first_id
        if not 0 <= kind < 256:
            return []
        if own.count(kind) <= _FEW_OF_KIND:  # (found one by one: no pass over every id)
            ids = []
            at = own.find(kind)
            while at >= 0:
                ids.append(first + at)
                at = own.find(kind, at + 1)
            known[kind] = ids  # (the same list if two threads race)
            return ids
        table = bytearray(256)
        table[kind] = 1
        return list(compress(range(first, first + len(own)), own.translate(table)))

    def _own_ids_by_kind(self) -> dict[int, list[int]]:
        """Record kind -> the ids of this spec's own types of that kind, in id order."""
        by_kind = self._ids_by_kind
        if by_kind is None:  # (kept: they never change)
            by_kind = {kind: self._ids_of_kinds((kind,)) for kind in sorted(set(self._kinds()))}
            self._ids_by_kind = by_kind
        return by_kind

    def _record_bytes(self, first: int, last: int) -> bytes:
        """The bytes of the type section holding the records of this spec's own type
        ids `first` to `last`, as the blob has them."""
        a = self._locate(first - self._first_id)
        b = self._locate(last - self._first_id)
        if a is None or b is None or first > last:
            raise BTFError(f"type ids {first}..{last} out of range")
        return bytes(self._buf[self._type_start + 4 * a[0] : self._type_start + 4 * b[1]])

    def copy_offsets(self) -> bytes:
        """The type offset index, for an on-disk cache."""
        self._ensure_complete()
        offsets = self._offsets
        return b"" if isinstance(offsets, tuple) else offsets.tobytes()

    def __repr__(self) -> str:
        n = f"{len(self)}" if self._count is not None else "lazily indexed"
        return f"<btf.Spec {n} types>"

