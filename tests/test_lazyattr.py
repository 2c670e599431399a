"""`ebpf._lazyattr`: the module-level `__getattr__` of every module that serves names on
first use. Each name of each table resolves to the object its source module has, other
names raise AttributeError naming the module, and threads racing on a first use get one
object."""

from __future__ import annotations

import enum
import importlib
import pathlib
import pkgutil
import subprocess
import sys
import types

import pytest

import ebpf
import ebpf._lazyattr as _lazyattr

REPO = pathlib.Path(__file__).resolve().parent.parent


def _tables() -> dict[str, dict[str, object]]:
    for info in pkgutil.walk_packages(ebpf.__path__, "ebpf."):
        if not info.name.endswith("__main__"):  # `python -m ebpf` would run the CLI
            importlib.import_module(info.name)
    return {m: dict(t) for m, t in sorted(_lazyattr.TABLES.items())}


TABLES = _tables()
ENTRIES = [(m, n) for m, t in TABLES.items() for n in t]


def _source(module: str, name: str) -> object:
    """The object `name` of `module`'s table names, from its source module."""
    entry = TABLES[module][name]
    target, source = entry if isinstance(entry, tuple) else (entry, name)
    assert isinstance(target, str) and isinstance(source, str)
    package = module if hasattr(sys.modules[module], "__path__") else module.rpartition(".")[0]
    return getattr(importlib.import_module(target, package), source)


def test_every_module_with_a_getattr_uses_the_helper() -> None:
    """The modules that serve names lazily all do it through the helper."""
    found = {m for m, mod in sys.modules.items() if (m == "ebpf" or m.startswith("ebpf."))
             and isinstance(mod, types.ModuleType) and "__getattr__" in vars(mod)}
    assert found == set(TABLES)
    for m in found:
        assert vars(sys.modules[m])["__getattr__"].__module__ == "ebpf._lazyattr", m
    assert len(found) >= 22


@pytest.mark.parametrize(("module", "name"), ENTRIES)
def test_every_lazy_name_resolves(module: str, name: str) -> None:
    mod = sys.modules[module]
    value = getattr(mod, name)
    # (a submodule of the same name, imported since, does not replace it: ebpf.btf's
    # `dedup` and `sanitize` stay the functions)
    assert value is _source(module, name)
    assert vars(mod)[name] is value  # kept: the next use does not ask __getattr__
    assert name in dir(mod)


@pytest.mark.parametrize("module", sorted(TABLES))
def test_unknown_names_raise_attribute_error(module: str) -> None:
    mod = sys.modules[module]
    names = ["no_such_name", "__no_path__" if hasattr(mod, "__path__") else "__path__"]
    for name in [*names, *names, *reversed(names)]:  # (the message of a miss is kept)
        with pytest.raises(AttributeError) as info:
            getattr(mod, name)
        assert str(info.value) == f"module {module!r} has no attribute {name!r}"
    assert not hasattr(mod, "no_such_name")


def test_the_package_serves_its_submodules() -> None:
    for sub in sorted(ebpf._SUBMODULES):
        assert getattr(ebpf, sub) is importlib.import_module(f"ebpf.{sub}")


def test_an_alias_is_the_same_object() -> None:
    import ebpf.programs

    assert ebpf.programs.ProgInfo is ebpf.programs.ProgramInfo
    assert ebpf.programs.ProgramInfo.__name__ == "ProgramInfo"


RACE = r"""
import sys, threading
sys.setswitchinterval(1e-6)
import {module} as mod
barrier = threading.Barrier(8)
got = []
def first_use():
    barrier.wait()
    got.append(getattr(mod, {name!r}))
threads = [threading.Thread(target=first_use) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
assert len(got) == 8 and all(v is got[0] for v in got), got
assert vars(mod)[{name!r}] is got[0]
print("ok")
"""


@pytest.mark.parametrize(("module", "name"), [("ebpf", "Collection"),
                                              ("ebpf.asm.opcodes", "Register"),
                                              ("ebpf.errors", "VerifierError"),
                                              ("ebpf._sys.types", "HelperFunc")])
def test_a_race_on_first_use_gives_one_object(module: str, name: str) -> None:
    """Threads that ask for a name not yet imported, in a fresh process, all get the
    same object."""
    r = subprocess.run([sys.executable, "-c", RACE.format(module=module, name=name)],
                       capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_the_table_of_a_module_names_a_module_not_itself() -> None:
    """A table entry is a module path (``"._enums"``, ``"ebpf.elffile"``) or
    ``(module path, name)``, never the module itself."""
    for module, table in TABLES.items():
        for name, entry in table.items():
            target = entry[0] if isinstance(entry, tuple) else entry
            assert isinstance(target, str) and target.lstrip("."), (module, name)
            assert importlib.import_module(
                target, module if hasattr(sys.modules[module], "__path__")
                else module.rpartition(".")[0]).__name__ != module, (module, name)


# -- ebpf.asm.opcodes' enum names: one list ----------------------------------------------

def test_asm_enum_names_are_one_list() -> None:
    """opcodes' `__all__` (a literal, for type checkers) lists its own constants and the
    names of `_enums.__all__` (which is opcodes' `_ENUM_NAMES`: the names it does not
    define); each of those is an enum class or member made in `_enums.py`, and every enum
    class and member `_enums.py` names at module level is listed."""
    from ebpf.asm import _enums, opcodes

    assert _enums.__all__ == list(opcodes._ENUM_NAMES)
    assert set(opcodes._ENUM_NAMES) <= set(opcodes.__all__)
    assert dict.fromkeys(opcodes._ENUM_NAMES, "._enums") == TABLES["ebpf.asm.opcodes"]
    for name in opcodes.__all__:
        value = getattr(opcodes, name)
        if name in opcodes._ENUM_NAMES:
            assert isinstance(value, (enum.EnumMeta, enum.Enum)), name
            assert value is getattr(_enums, name)
        else:
            assert type(value) is int, name
    public = {n for n, v in vars(_enums).items() if not n.startswith("_")
              and isinstance(v, (enum.EnumMeta, enum.Enum))}
    assert public == set(opcodes._ENUM_NAMES)
