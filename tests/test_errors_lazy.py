"""Where the error classes live: `ebpf.errors` defines those loading an object uses, its
`_lazy.py` the others, made on first use; both are `ebpf.errors.X` and `ebpf.X` alike."""

from __future__ import annotations

import ast
import pathlib
import pickle
import subprocess
import sys

import pytest

import ebpf
import ebpf.errors as errors
from ebpf.errors import _lazy as lazy

LAZY_NAMES = sorted(errors._LAZY)
LAZY_CLASSES = [n for n in LAZY_NAMES if isinstance(getattr(lazy, n), type)]


def test_lazy_py_defines_exactly_the_lazy_names() -> None:
    tree = ast.parse(pathlib.Path(lazy.__file__).read_text())
    defined = {node.name for node in tree.body
               if isinstance(node, (ast.ClassDef, ast.FunctionDef))}
    assert defined == errors._LAZY
    assert set(lazy.__all__) == errors._LAZY
    assert errors._LAZY <= set(errors.__all__)
    assert set(dir(errors)) >= set(errors.__all__)


@pytest.mark.parametrize("name", LAZY_NAMES)
def test_the_same_object_from_every_path(name: str) -> None:
    value = getattr(errors, name)
    assert value is getattr(lazy, name)
    assert value.__module__ == "ebpf.errors"
    if name in ebpf.__all__:
        assert getattr(ebpf, name) is value


@pytest.mark.parametrize("name", LAZY_CLASSES)
def test_lazy_classes_are_caught_and_pickled_as_before(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, errors.Error)
    assert repr(cls) == f"<class 'ebpf.errors.{name}'>"
    assert pickle.loads(pickle.dumps(cls)) is cls


def test_instances_pickle_and_catch() -> None:
    e = errors.PermissionError(1, "needs CAP_BPF")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is ebpf.PermissionError and back.errno == 1
    with pytest.raises(ebpf.errors.LinkError):
        raise errors.LinkError("a.o: duplicate symbol")
    with pytest.raises(PermissionError):  # the built-in one too
        raise e
    star: dict[str, object] = {}
    exec("from ebpf.errors import *", star)
    assert star["DeadlineExceededError"] is errors.DeadlineExceededError


def test_unknown_names_still_fail() -> None:
    with pytest.raises(AttributeError, match="no_such_error"):
        _ = errors.no_such_error


# modules that raise or test _lazy.py's classes on an error path only
QUIET = ("ebpf", "ebpf.errors", "ebpf.collection", "ebpf.maps.failures", "ebpf.maps.pinning",
         "ebpf._sys.caps", "ebpf._sys.mount", "ebpf.features", "ebpf.struct_ops", "ebpf.link",
         "ebpf.link.auto", "ebpf.link.tc", "ebpf.link.netkit", "ebpf.symbols.kernel",
         "ebpf.cli.load")


def test_importing_makes_none_of_them() -> None:
    probe = (f"import importlib, sys\nfor m in {QUIET!r}: importlib.import_module(m)\n"
             "import ebpf.errors\n"
             "print('ebpf.errors._lazy' in sys.modules, 'PermissionError' in vars(ebpf.errors))")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       timeout=60, check=True)
    assert r.stdout.split() == ["False", "False"]
