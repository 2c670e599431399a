"""`IntEncoding`, the encoding flags of a BTF INT, made on first use: the load path
keeps an INT's encoding as the raw int (`ebpf.btf.types.Int`), so that process start
does not make the first `IntFlag` class (fastclass's template for it). Served as
`ebpf.btf.types.IntEncoding`, its home for users and pickles."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from enum import IntFlag
else:
    from .._sys.fastclass import IntFlag

__all__ = ["IntEncoding"]


class IntEncoding(IntFlag):
    """Encoding flags of an INT: signedness, `char`, `bool`."""
    __module__ = "ebpf.btf.types"

    UNSIGNED = 0
    SIGNED = 1
    CHAR = 2
    BOOL = 4
