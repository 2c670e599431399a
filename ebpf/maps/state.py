"""`MapState`: the attributes the parts of `Map` share (set by `Map._setup`)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .. import btf
    from .._sys.fd import FD
    from ..spec.maps import MapSpec
    from .codec import Buffers


class MapState:
    """The state of a `Map`: the slots the parts it is made of (`MapCodec`,
    `MapElements`, `MapIteration`, `MapBatch`, `MapPinning`) work on."""

    __slots__ = (
        "_bufs",
        "_fast_owner",
        "_fd",
        "_fd_values",
        "_frozen",
        "_int_vdecode",
        "_kdec",
        "_key_size",
        "_kfmt",
        "_kmv",
        "_ktype",
        "_lref",
        "_mcount",
        "_mints",
        "_mm",
        "_mmaps",
        "_mraw",
        "_mstate",
        "_mstride",
        "_mvals",
        "_mwritable",
        "_name",
        "_ncpu",
        "_owner",
        "_pinned",
        "_spec",
        "_tls",
        "_type",
        "_uref",
        "_value_size",
        "_vbuf",
        "_vbytes",
        "_vdec",
        "_vfmt",
        "_vmode",
        "_vmv",
        "_vstride",
        "_vtype",
    )

    _fd: FD
    _spec: MapSpec
    _name: str
    _type: int
    _key_size: int
    _value_size: int
    _ktype: btf.Type | None
    _vtype: btf.Type | None
    _fd_values: bool
    _ncpu: int
    _vstride: int
    _vbytes: int
    _kfmt: str | None
    _vfmt: str | None
    _kdec: Any
    _vdec: Any
    _vmode: int
    _tls: threading.local | None
    _bufs: Buffers
    _kmv: memoryview | None
    _vmv: memoryview | None
    _vbuf: Any
    _lref: Any
    _uref: Any
    _int_vdecode: bool
    _owner: int
    _mmaps: list[Any]
    _pinned: str | None
    _frozen: bool
    # the memory mapping of an mmapable array (ebpf.maps.mapped)
    _mm: Any
    _mraw: memoryview | None
    _mints: memoryview | None
    _mvals: memoryview | None
    _mwritable: bool
    _mstate: int
    _mstride: int
    _mcount: int
    _fast_owner: int
