"""The record offset index of a `Spec`: where each type's record starts in the type
section, built by walking the variable-length records as far as a lookup needs, or
taken from the on-disk cache's checkpoints (each block verified on first use)."""

from __future__ import annotations

from bisect import bisect_left

from ..errors import BTFError
from .layout import (
    _BLOCK,
    _FIXED,
    _MAX_KIND,
    _PER_VLEN,
    CHECKPOINT_SHIFT,
    CachedIndex,
    record_words,
)
from .types import (
    Type,
)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from array import array
    from typing import Any

    from .layout import Buffer, Words
    from .spec import Spec


class SpecState:
    """The state of a `Spec` (set by `Spec.__init__`), declared once for its parts:
    `SpecWalk` (the record offset index), `SpecDecoder` (strings and types) and
    `SpecNames` (lookups by name)."""

    _buf: Buffer
    _raw: bytes | None
    base: Spec | None
    byteorder: str
    flags: int
    _type_start: int
    _type_end: int
    _str_start: int
    _str_end: int
    _str_len: int
    _str_base: int
    _first_id: int
    _words: Words
    _nwords: int
    _steps: dict[int, int]
    _by_id: dict[int, Type]
    _ids: dict[int, int]
    _strcache: dict[int, str]
    _strings_loaded: bool  # (the whole table decoded, or never to be in bulk)
    _strings_end: int  # where the strings not decoded in bulk start
    _names: dict[str, list[int]] | None
    _flavored: list[str] | None
    _ids_by_kind: dict[int, list[int]] | None
    _kind_bytes: bytes | None  # the kind of each own record, once read
    _kind_ids: dict[int, list[int]]  # kind -> the ids of the own types of that kind, if few
    _index: CachedIndex | None
    _blocks: dict[int, list[int]]
    _count: int | None
    _scans: int
    _error: BTFError | None
    _lock: Any
    _offsets: array[int] | memoryview | tuple[()]
    _walk_pos: int
    _complete: bool


class SpecWalk(SpecState):
    """Walking the records of a `Spec` on demand."""

    def _step(self, info: int, i: int) -> int:
        """Record length for `info`, memoized per spec; raises on an unknown kind."""
        s = record_words(info)
        if s < 0:
            raise BTFError(f"unknown BTF kind {(info >> 24) & 0x1F}",
                           self._type_start + 4 * i)
        self._steps[info] = s
        return s

    def _walk_to_word(self, limit: int) -> None:
        """Index every record that starts before word `limit`."""
        if self._walk_pos >= limit or self._complete:
            return
        with self._lock:
            self._walk_to_word_locked(limit)

    def _walk_to_word_locked(self, limit: int) -> list[int]:
        """Index every record that starts before word `limit`; the offsets of those
        indexed now, as ints."""
        if self._walk_pos >= limit or self._complete:
            return []
        if self._error is not None:
            raise self._error
        words, n = self._words, self._nwords
        offsets = self._appendable_offsets()
        starts: list[int] = []  # (a list's append is cheaper than the array's)
        append = starts.append
        steps = self._steps
        i = self._walk_pos
        limit = min(limit, n)
        infos = words[1:]  # (infos[i]: the info word of a record at word i)
        while True:
            try:
                if limit == n:
                    # (the whole kernel's 126k records: keep it short; the end of the
                    # section found by reading past it)
                    while True:
                        append(i)
                        i += steps[infos[i]]
                while i < limit:
                    append(i)
                    i += steps[infos[i]]
                break
            except KeyError:  # an info word not seen yet: the record's length, memoized
                try:
                    i += self._step(words[i + 1], i)
                except BTFError as e:
                    offsets.fromlist(starts)
                    self._walk_failed(e)
            except IndexError as e:
                if i >= n:  # (no record there: the end, or past it if the last overran)
                    starts.pop()
                    break
                offsets.fromlist(starts)  # (the last record's header is cut off)
                self._walk_failed(e)
        offsets.fromlist(starts)
        self._finish_walk(i)
        return starts

    def _walk_rest(self) -> list[int]:
        """Index every record; the offsets of those not indexed before, as ints (for
        a reader of every record, which would otherwise make the index ints)."""
        if self._complete:
            return []
        with self._lock:
            return self._walk_to_word_locked(self._nwords)

    def _walk_count(self, total: int) -> None:
        """Index the first `total` records, if there are that many."""
        if self._complete or len(self._offsets) >= total:
            return
        with self._lock:
            self._walk_count_locked(total)

    def _walk_count_locked(self, total: int) -> None:
        if self._complete or len(self._offsets) >= total:
            return
        if self._error is not None:
            raise self._error
        words, n = self._words, self._nwords
        offsets = self._appendable_offsets()
        append = offsets.append
        get = self._steps.get
        i = self._walk_pos
        try:
            for _ in range(total - len(offsets)):
                if i >= n:
                    break
                append(i)
                info = words[i + 1]
                s = get(info)
                if s is None:
                    s = self._step(info, i)
                i += s
        except (IndexError, BTFError) as e:
            self._walk_failed(e)
        self._finish_walk(i)

    def _walk_failed(self, e: Exception) -> None:
        """The record last appended to the index is broken: drop it and fail for good."""
        off = self._appendable_offsets().pop()
        if isinstance(e, BTFError):
            self._error = e
        else:  # its header is cut off by the end of the type section
            self._error = BTFError("BTF type section truncated", self._type_start + 4 * off)
        self._walk_pos = off
        raise self._error

    def _appendable_offsets(self) -> array[int]:
        from array import array  # once walking starts: `import ebpf.btf` does not load it

        offsets = self._offsets
        if not isinstance(offsets, array):
            if len(offsets):  # a complete index from a cache never needs walking
                raise BTFError("internal error: walking a complete type index")
            offsets = self._offsets = array("I")
        return offsets

    def _finish_walk(self, i: int) -> None:
        if i > self._nwords:
            # The last record indexed runs past the end of the type section.
            self._walk_failed(IndexError())
        self._walk_pos = i
        if i == self._nwords:
            self._complete = True
            self._count = len(self._offsets)

    def _ensure_complete(self) -> None:
        if not self._complete:
            self._walk_to_word(self._nwords)

    def _locate(self, idx: int) -> tuple[int, int] | None:
        """Start and end word of record `idx` (0-based), or None if there is none."""
        offsets = self._offsets
        if idx >= len(offsets) and not self._complete:
            index = self._index
            if index is not None:
                if idx >= index.ntypes:
                    return None
                found = self._from_checkpoint(idx)
                if found is not None:
                    return found
                # the cached index was wrong and is dropped: walk instead
            self._walk_count(idx + 1)
            offsets = self._offsets  # (walking may have replaced it)
        if idx + 1 < len(offsets):
            return offsets[idx], offsets[idx + 1]
        # The last record indexed ends where the walk is: read both under the lock (a
        # walk in another thread appends offsets before it moves its position).
        with self._lock:
            offsets = self._offsets
            if idx >= len(offsets):
                return None
            end = offsets[idx + 1] if idx + 1 < len(offsets) else self._walk_pos
            return offsets[idx], end

    def _from_checkpoint(self, idx: int) -> tuple[int, int] | None:
        b = idx >> CHECKPOINT_SHIFT
        offs = self._blocks.get(b)
        if offs is None:
            with self._lock:
                offs = self._verify_block(b)
                if offs is None:
                    self._drop_index()
                    return None
                self._blocks[b] = offs
        k = idx & (_BLOCK - 1)
        return offs[k], offs[k + 1]

    def _verify_block(self, b: int) -> list[int] | None:
        """The offsets of the types of checkpoint block `b` (and where the block ends),
        if its records chain exactly from its checkpoint to the next."""
        index = self._index
        if index is None:
            return None
        cps = index.checkpoints
        if not 0 <= b < len(cps):
            return None
        i = cps[b]
        n = min(_BLOCK, index.ntypes - (b << CHECKPOINT_SHIFT))
        end = cps[b + 1] if b + 1 < len(cps) else self._nwords
        words = self._words
        offs = [i]
        append = offs.append
        fixed, per_vlen = _FIXED, _PER_VLEN
        try:
            for _ in range(n):
                info = words[i + 1]
                kind = info >> 24 & 0x1F
                if info & 0x60FF0000 or not 0 < kind <= _MAX_KIND:  # unused bits, a bad kind
                    return None
                i += 3 + fixed[kind] + per_vlen[kind] * (info & 0xFFFF)  # (record_words)
                append(i)
        except IndexError:  # (a record starting past the end of the type section)
            return None
        # (a record cut off by the end of the section ends past it, and so past `end`)
        return offs if i == end else None

    def _drop_index(self) -> None:
        """Forget a cached index found to be wrong (types decoded so far came from
        verified blocks); from now on the blob is walked."""
        self._index = None
        self._blocks.clear()
        if not self._complete:
            self._count = None

    def _is_record_start(self, word: int) -> int:
        """The type id of the record starting at `word`, or 0."""
        self._walk_to_word(word + 1)
        offsets = self._offsets
        k = bisect_left(offsets, word)
        if k < len(offsets) and offsets[k] == word:
            return k + self._first_id
        return 0

    def __len__(self) -> int:
        """Number of type ids, including void (and the base's types)."""
        if self._count is None:
            self._ensure_complete()
        assert self._count is not None
        return self._first_id + self._count
