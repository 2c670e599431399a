"""`SymbolTable`: symbols sorted by address, looked up by address (bisect) and by name."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence

from .frame import Symbol

LAST_SYMBOL_SPAN = 4096
"""How far past the last symbol without a size an address still belongs to it."""

Rank = Callable[[str, int], tuple[object, ...]]
"""Orders the symbols that share an address, from (name, flags): the lowest is shown."""


class SymbolTable:
    """Symbols sorted by address, kept as columns (a Symbol is made per lookup).

    An address belongs to the symbol that starts at or before it, up to that symbol's
    size when known, else up to the next symbol (and `LAST_SYMBOL_SPAN` bytes past
    the last one). Where several symbols start at one address, `rank` picks the one
    shown; `by_name` knows them all."""

    __slots__ = ("_addrs", "_by_name", "_ends", "_modules", "_names", "_sizes")

    def __init__(self, addrs: Sequence[int], names: Sequence[str], sizes: Sequence[int],
                 modules: Sequence[str | None], flags: Sequence[int] | None = None,
                 rank: Rank | None = None) -> None:
        """Index the symbols given as columns; `flags` (any int per symbol) is passed to
        `rank` with the name."""
        n = len(addrs)
        order = sorted(range(n), key=addrs.__getitem__)
        rev = order[::-1]  # so that the lowest address of a name is stored last and wins
        self._by_name = dict(zip(map(names.__getitem__, rev), map(
            lambda i: (addrs[i], sizes[i], modules[i]), rev), strict=True))
        sorted_addrs = [addrs[i] for i in order]
        # the first of each run of equal addresses, unless `rank` prefers another
        firsts = [k for k in range(n) if k == 0 or sorted_addrs[k] != sorted_addrs[k - 1]]
        chosen = [order[k] for k in firsts]
        if rank is not None:
            fl = flags if flags is not None else [0] * n
            for g, start in enumerate(firsts):
                end = firsts[g + 1] if g + 1 < len(firsts) else n
                if end - start > 1:
                    chosen[g] = min(order[start:end], key=lambda i: rank(names[i], fl[i]))
        self._addrs = [addrs[i] for i in chosen]
        self._names = [names[i] for i in chosen]
        self._sizes = [sizes[i] for i in chosen]
        self._modules = [modules[i] for i in chosen]
        nxt = [*self._addrs[1:], self._addrs[-1] + LAST_SYMBOL_SPAN] if chosen else []
        self._ends = [a + s if s else e for a, s, e in zip(self._addrs, self._sizes, nxt,
                                                            strict=True)]

    def __len__(self) -> int:
        return len(self._addrs)

    def __iter__(self) -> Iterator[Symbol]:
        """The symbols shown for each distinct address, by address."""
        for a, n, s, m in zip(self._addrs, self._names, self._sizes, self._modules,
                              strict=True):
            yield Symbol(n, a, s, m)

    def find(self, addr: int) -> Symbol | None:
        """The symbol covering `addr`, or None."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0 or addr >= self._ends[i]:
            return None
        return Symbol(self._names[i], self._addrs[i], self._sizes[i], self._modules[i])

    def by_name(self, name: str) -> Symbol | None:
        """The symbol called `name` (the lowest address when several are), or None."""
        found = self._by_name.get(name)
        if found is None:
            return None
        return Symbol(name, *found)


__all__ = ["LAST_SYMBOL_SPAN", "Rank", "SymbolTable"]
