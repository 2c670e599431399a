"""Deep copies of spec records (`copy.deepcopy`) that share the parsed BTF they refer
to, as `copy()` does: the BTF `Spec` is shared (it deep-copies to itself), and so are
the types decoded from it, which a load finds by identity in it (an instruction's func
info, a map's key and value). Loaded on the first deep copy (process start)."""

from __future__ import annotations

import copy

from .._sys.nopickle import set_state
from ..btf.pickling import share_types
from ..btf.types import Type

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

    from ..btf import Spec as BTFSpec


def deep_copy(obj: Any, memo: dict[int, Any], btfs: Iterable[BTFSpec | None]) -> Any:
    """What ``copy.deepcopy(obj, memo)`` makes of a record without a ``__deepcopy__``
    of its own, keeping the types of `btfs` (the BTF specs it refers to)."""
    for spec in btfs:
        if spec is not None:
            share_types(spec, memo)
    cls = obj.__class__
    new = cls.__new__(cls)
    memo[id(obj)] = new
    set_state(new, copy.deepcopy(object.__reduce_ex__(obj, 4)[2], memo))
    return new


def btf_of(*types: object) -> Iterator[BTFSpec | None]:
    """The BTF specs the BTF types among `types` were parsed from."""
    return (t.spec for t in types if isinstance(t, Type))
