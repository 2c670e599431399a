"""The layout of BTF blobs as the parser reads them: the header, the length of each
kind's records, the decoder's kind numbers, and the on-disk index's constants."""

from __future__ import annotations

import mmap
import struct
import sys
from collections.abc import Iterable, Iterator, Sequence, Sized
from itertools import accumulate, repeat
from operator import add

from .._sys.fastclass import FrozenRecord
from .types import (
    Const,
    Func,
    Kind,
    Linkage,
    Pointer,
    Restrict,
    Type,
    Typedef,
    TypeTag,
    Volatile,
)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from array import array
    from typing import TypeAlias

    Buffer: TypeAlias = "bytes | mmap.mmap"
    Words: TypeAlias = "memoryview | array[int]"

MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")
HEADER_BE = struct.Struct(">HBBIIIII")

# Words (u32) that follow the 3-word type header: fixed per kind, and per vlen entry.
_FIXED = (0, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0)
_PER_VLEN = (0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3)
_MAX_KIND = len(_FIXED) - 1
# Kinds whose records may carry a name (the others are anonymous).
_NAMED_KINDS = frozenset((Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FWD, Kind.TYPEDEF,
                          Kind.FUNC, Kind.VAR, Kind.DATASEC, Kind.FLOAT, Kind.DECL_TAG,
                          Kind.TYPE_TAG, Kind.ENUM64))

# The decoder's view of the kinds: plain ints, and the classes of the kinds whose
# record is one reference (in `size_type`) and maybe a name.
_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF = range(1, 9)
_VOLATILE, _CONST, _RESTRICT, _FUNC, _FUNC_PROTO, _VAR, _DATASEC = range(9, 16)
_FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64 = range(16, 20)
_REF_KINDS: dict[int, type[Type]] = {
    _FUNC: Func, _PTR: Pointer, _CONST: Const, _TYPEDEF: Typedef, _VOLATILE: Volatile,
    _RESTRICT: Restrict, _TYPE_TAG: TypeTag}
_LINKAGES = (Linkage.STATIC, Linkage.GLOBAL, Linkage.EXTERN)
_new = object.__new__

# After this many scanning name lookups a Spec indexes every name at once.
_SCANS_BEFORE_INDEX = 16

# The on-disk cache keeps the offset of every 16th type (a checkpoint) and
# names hashed into 2**14 buckets.
CHECKPOINT_SHIFT = 4
_BLOCK = 1 << CHECKPOINT_SHIFT
NAME_BUCKET_BITS = 14
# The cache's ids carry the next 8 bits of crc32(name) in their top byte (when every
# id fits in the other 24 bits): a lookup verifies ~1 candidate instead of a bucket's ~5.
NAME_TAG_BITS = 8
NAME_ID_BITS = 24


class CachedIndex(FrozenRecord):
    """A type index as the on-disk cache keeps it (see `ebpf.btf.cache`).

    Every record reached through it is checked again: the records between two
    checkpoints must chain exactly from one to the next, or the index is
    dropped and the blob walked instead. (A FrozenRecord, not a NamedTuple: a
    tenth of the class's cost at process start.)
    """

    _FIELDS = ("ntypes", "checkpoints", "buckets", "ids", "tagged")
    __slots__ = _FIELDS
    ntypes: int
    checkpoints: Sequence[int]  # word offset of types 0, 16, 32, ... (0-based)
    buckets: Sequence[int]  # 2**NAME_BUCKET_BITS + 1 prefix sums into `ids`
    ids: Sequence[int]  # ids of the named types, grouped by crc32(name) bucket
    # whether each of `ids` carries NAME_TAG_BITS more bits of crc32(name) above
    # NAME_ID_BITS bits of id (a lookup then checks only the ids whose tag matches)
    tagged: bool

    def __init__(self, ntypes: int, checkpoints: Sequence[int], buckets: Sequence[int],
                 ids: Sequence[int], tagged: bool = False) -> None:
        self._init_fields(ntypes, checkpoints, buckets, ids, tagged)

def record_words(info: int) -> int:
    """Length in u32 words of a type record whose info word is `info` (-1: unknown kind)."""
    k = (info >> 24) & 0x1F
    if k > _MAX_KIND:
        return -1
    return 3 + _FIXED[k] + _PER_VLEN[k] * (info & 0xFFFF)


# The byte of a native u32 holding its top 8 bits, and that byte -> the kind it holds.
_TOP_BYTE = 3 if sys.byteorder == "little" else 0
_KIND_OF_TOP = bytes(range(32)) * 8


def kinds_of(infos: Sequence[int]) -> bytes:
    """The kind of each of the records whose info words are `infos`, one byte each."""
    from array import array  # once records are read: `import ebpf.btf` does not load it

    return array("I", infos).tobytes()[_TOP_BYTE::4].translate(_KIND_OF_TOP)


def string_starts(parts: Iterable[Sized], first: int) -> Iterator[int]:
    """The offsets of consecutive NUL-terminated strings `parts` of a string table, the
    first at `first`; one more than there are parts (where a next string would start)."""
    return accumulate(map(add, map(len, parts), repeat(1)), initial=first)
