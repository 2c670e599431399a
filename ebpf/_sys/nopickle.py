"""Kernel objects (maps, programs, collections, links, readers, BTF objects, tokens)
refuse to be pickled or deep-copied: their descriptors mean nothing in another process.
`refuse` raises the `NotPicklableError` saying what to send instead (the spec, to load
there, or a pin path, to open there); `shallow_copy` is what `copy.copy` made of them
before they refused (`copy.copy` asks the same method as pickle, `__reduce_ex__`).
Loaded on the first such attempt, or the first use of `ebpf.NotPicklableError`, which
it defines (process start: a class no load needs costs ~0.09 M instructions)."""

from __future__ import annotations

from ..errors import Error

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any, NoReturn, TypeVar

    T = TypeVar("T")

__all__ = ["NotPicklableError", "refuse", "set_state", "shallow_copy"]


class NotPicklableError(Error, TypeError):
    """A kernel object (map, program, collection, link, reader, ...) was pickled or
    deep-copied: it is a descriptor of this process. The message says what to send
    instead: its spec, to load in the other process, or a pin path to open there."""


NotPicklableError.__module__ = "ebpf"  # where it is public (reprs, pickles, docs)


def refuse(what: str, instead: str) -> NoReturn:
    """Raise the `NotPicklableError` of `what` ("map 'counts'"), saying `instead`."""
    raise NotPicklableError(f"{what} is a kernel object of this process: it cannot be "
                            f"pickled or deep-copied; {instead}")


def shallow_copy(obj: T) -> T:
    """A new object of `obj`'s class sharing its attributes (its descriptor too), as
    `copy.copy` makes one by default."""
    reduced: Any = object.__reduce_ex__(obj, 4)  # the default one, not the class's refusal
    new: T = reduced[0](*reduced[1])
    set_state(new, reduced[2] if len(reduced) > 2 else None)
    return new


def set_state(new: object, state: Any) -> None:
    """Give `new` the state `object.__reduce_ex__` took of an object of its class: its
    ``__dict__`` entries, or a pair of them and its slots' values."""
    if not state:
        return
    attrs, slots = state if isinstance(state, tuple) else (state, None)
    if attrs:
        vars(new).update(attrs)
    for name, value in (slots or {}).items():
        setattr(new, name, value)
