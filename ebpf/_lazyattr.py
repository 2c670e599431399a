"""The module-level `__getattr__` (PEP 562) of each module of `ebpf` that serves names on
first use (process start), made from a table; and `on_first_use`, for a name a function
needs only sometimes. Imports nothing of `ebpf`, so that `ebpf/__init__.py`,
`ebpf.errors` and `ebpf._sys` use it too."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping
    from typing import Any, TypeAlias

    Table: TypeAlias = Mapping[str, "str | tuple[str, str]"]

TABLES: dict[str, Table] = {}
"""Each module's table, by module name."""


def lazy_attributes(namespace: dict[str, Any], table: Table,
                    submodules: Collection[str] = ()) -> Callable[[str], Any]:
    """The `__getattr__` of the module whose globals are `namespace`: a name of `table` is
    imported from the module it maps to (``"._enums"``, relative as in an import statement,
    or ``"ebpf._elfclasses"``), or from ``(module, name)`` under another name, and stored
    in `namespace`, where later uses find it (threads that race on a first use store the
    same object); a name of `submodules` is the package's submodule; any other name raises
    `AttributeError` as a module does."""
    modname = namespace["__name__"]
    TABLES[modname] = table
    # the last name asked for that the module lacks, and its message: each `from module
    # import name` asks for `__path__` (process start: formatting costs more than the rest)
    missed = ("", "")

    def __getattr__(attr: str) -> Any:
        nonlocal missed
        entry = table.get(attr)
        if entry is None:
            if attr in submodules:
                __import__(f"{modname}.{attr}")
                return sys.modules[f"{modname}.{attr}"]
            last = missed
            if last[0] != attr:
                last = missed = (attr, f"module {modname!r} has no attribute {attr!r}")
            raise AttributeError(last[1])
        source = attr
        if isinstance(entry, tuple):
            entry, source = entry
        name = entry.lstrip(".")
        value = getattr(__import__(name, namespace, None, (source,), len(entry) - len(name)),
                        source)
        namespace[attr] = value
        return value

    return __getattr__


def on_first_use(module: str, name: str = "") -> Callable[[], Any]:
    """A function that returns `module` (an absolute name), or its attribute `name`,
    importing the module on its first call and keeping the result: for what a hot path
    needs only sometimes, where an import statement run at each call would cost ~5-12 k
    instructions even once the module is loaded (process start, template reloads)."""
    kept: list[Any] = []

    def get() -> Any:
        if kept:
            return kept[0]
        value = __import__(module, None, None, (name,) if name else ("__name__",))
        if name:
            value = getattr(value, name)
        kept[:] = [value]  # (threads racing on the first call keep the same object)
        return value

    return get
