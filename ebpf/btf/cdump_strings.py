"""The C dump's loading of a spec's whole string table (`load_strings`)."""

from __future__ import annotations

from itertools import accumulate, repeat
from operator import add
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import Spec

__all__ = ["load_strings"]


def load_strings(spec: Spec) -> None:
    """What `spec._load_strings()` does (decode the whole table at once when it is
    ASCII, the strings decoded already kept), with each string's offset summed by
    a builtin function instead of a bound method: ~15% less time on the kernel's
    124k strings, most of which a whole dump prints."""
    if spec._strings_loaded:
        return
    spec._strings_loaded = True
    if not spec._str_len:
        return
    section = spec._buf[spec._str_start : spec._str_end]
    if not section.isascii():
        return
    # (the table ends with a NUL: the last part is no string)
    parts = section.decode("ascii").split("\0")[:-1]
    starts = accumulate(map(add, map(len, parts), repeat(1)), initial=spec._str_base)
    table = dict(zip(starts, parts))  # noqa: B905 (one more start than parts)
    table.update(spec._strcache)
    spec._strcache = table
