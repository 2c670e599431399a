"""placeholder"""
from __future__ import annotations
from .spec import Spec
from .types import Type
def dump_c(spec: Spec, types: list[Type] | None = None) -> str:
    raise NotImplementedError

