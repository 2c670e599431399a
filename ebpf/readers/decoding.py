"""Decoding records of the event readers: samples as ctypes instances or numpy dtypes of
a BTF type (or its C name, ``"struct event"``, resolved in the reader's BTF)."""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, KeyNotFoundError
from .lifetime import ReaderLifetime
from .records import require_numpy

if TYPE_CHECKING:
    from ..btf import Spec as BTFSpec
    from ..btf import Type as BTFType

__all__ = ["ReaderDecoding", "lookup_btf_type"]


def _btf_conv() -> Any:
    from ..btf import ctypes_conv  # only to decode: `import ebpf.ringbuf` loads no BTF code

    return ctypes_conv


def lookup_btf_type(spec: BTFSpec | None, name: str) -> BTFType:
    """Find ``"struct event"`` / ``"union u"`` / ``"enum e"`` / a typedef name in `spec`."""
    from .. import btf  # only to decode: `import ebpf.ringbuf` loads no BTF code

    if spec is None:
        raise InvalidArgumentError(
            f"cannot resolve type {name!r}: the reader has no BTF (pass btf=spec)")
    kinds: dict[str, type[btf.Type]] = {"struct": btf.Struct, "union": btf.Union,
                                        "enum": btf.Enum}
    word, _, rest = name.strip().partition(" ")
    if word in kinds and rest:
        want: type[btf.Type] | None = kinds[word]
        name = rest.strip()
    else:
        want = None
    for t in spec.types_by_name(name):
        if want is None or isinstance(t, want):
            return t
    raise KeyNotFoundError(f"BTF has no type {name!r}")


def _cache_key(type: Any) -> Any:
    """The key `ctype`/`dtype` cache the conversion of `type` under: `type` itself (a
    name, a numpy dtype, a ctypes class, a BTF type), which the cache then keeps alive,
    or None (not cached) for an unhashable description such as a list of fields. Never
    its id(): a description that dies frees its id for the next one, which then got
    the first one's conversion."""
    try:
        hash(type)
    except TypeError:
        return None
    return type


class ReaderDecoding(ReaderLifetime):
    """`ctype`, `dtype`, `decode` and `decode_batch` of a reader."""

    @staticmethod
    def _sample_of(rec: Any) -> bytes:
        return rec[0]  # type: ignore[no-any-return]

    def _resolve_btf(self, type: Any) -> Any:
        from .. import btf as _btf  # only to decode: `import ebpf.ringbuf` loads no BTF code

        if isinstance(type, str):
            return lookup_btf_type(self.btf, type)
        if isinstance(type, _btf.Type):
            return type
        return None

    def ctype(self, type: Any = None) -> Any:
        """The ctypes type for `type` (a BTF type or its name, or a ctypes
        type); None means the reader's `record_type`."""
        if type is None:
            type = self._record_type
            if type is None:
                raise InvalidArgumentError("no type given and the reader has no record_type")
        key = _cache_key(type)
        ct = self._ctypes_cache.get(key) if key is not None else None
        if ct is None:
            t = self._resolve_btf(type)
            ct = _btf_conv().to_ctypes(t) if t is not None else type
            if not hasattr(ct, "from_buffer_copy"):
                raise InvalidArgumentError(f"cannot decode to {type!r}: not a ctypes or BTF type")
            if key is not None:
                self._ctypes_cache[key] = ct
        return ct

    def dtype(self, type: Any = None) -> Any:
        """The numpy dtype for `type`: a numpy dtype (or anything ``numpy.dtype``
        accepts), a ctypes type, a BTF type or a BTF type name (``"struct event"``);
        None means the reader's `record_type`."""
        np = require_numpy()
        if type is None:
            type = self._record_type
            if type is None:
                raise InvalidArgumentError("no type given and the reader has no record_type")
        key = _cache_key(type)
        dt = self._dtype_cache.get(key) if key is not None else None
        if dt is None:
            t = None
            if isinstance(type, str):
                if type.split(" ", 1)[0] in ("struct", "union", "enum") or (
                        self.btf is not None and self.btf.types_by_name(type)):
                    t = lookup_btf_type(self.btf, type)
            else:
                t = self._resolve_btf(type)
            dt = _btf_conv().to_dtype(t) if t is not None else np.dtype(type)
            if key is not None:
                self._dtype_cache[key] = dt
        return dt

    def decode(self, record: Any, type: Any = None) -> Any:
        """The sample of `record` (a record, a batch entry, or bytes) as an
        instance of the ctypes type for `type` (see `ctype`). Samples longer
        than the type (padding) are accepted; shorter ones are an error."""
        ct = self.ctype(type)
        sample = record if isinstance(record, (bytes, bytearray, memoryview)) else \
            self._sample_of(record)
        size = ctypes.sizeof(ct)
        if len(sample) < size:
            raise InvalidArgumentError(f"a {len(sample)}-byte sample is too short for "
                                       f"{getattr(ct, '__name__', ct)} ({size} bytes)")
        return ct.from_buffer_copy(sample)

    def decode_batch(self, batch: Any, type: Any = None) -> list[Any]:
        """`decode` for every sample of a batch."""
        ct = self.ctype(type)
        size = ctypes.sizeof(ct)
        conv = ct.from_buffer_copy
        out = []
        for s in batch:
            if len(s) < size:
                raise InvalidArgumentError(f"a {len(s)}-byte sample is too short for "
                                           f"{size}-byte {getattr(ct, '__name__', ct)}")
            out.append(conv(s))
        return out

