"""On-disk cache of the kernel BTF's type offset index (placeholder: no cache yet)."""

from __future__ import annotations

from .spec import Spec


def load_indexed(data: bytes) -> Spec:
    return Spec(data, lazy=True)
