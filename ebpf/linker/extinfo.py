"""One .BTF.ext for the linked object: each input's func info, line info and CO-RE
relocations, moved to where their code landed and renumbered to the merged types."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from ..btf.records import StringTable
from ..errors import LinkError
from .inputs import InputObject
from .layout import Layout

__all__ = ["link_ext"]

_MAGIC = 0xEB9F
# Record sizes written, and the u32 fields read from each record.
_SIZES = (8, 16, 16)
_HEADER = struct.Struct("<HBBIIIIIII")

# Per subsection (func info, line info, CO-RE): output section name -> records.
Subsections = list[dict[str, list[tuple[int, ...]]]]


def _parse(obj: InputObject) -> list[list[tuple[str, list[tuple[int, ...]]]]]:
    """The raw subsections of an object's .BTF.ext: (section name, records) lists."""
    data, string = obj.ext, obj.string
    assert data is not None and string is not None
    fail = f"{obj.name!r}: malformed .BTF.ext"
    if len(data) < 24 or struct.unpack_from("<H", data)[0] != _MAGIC:
        raise LinkError(f"{fail} header")
    hdr_len = struct.unpack_from("<I", data, 4)[0]
    offs = list(struct.unpack_from("<4I", data, 8))
    if hdr_len >= 32 and len(data) >= 32:
        offs += struct.unpack_from("<2I", data, 24)
    else:
        offs += [0, 0]
    out = []
    for s in range(3):
        start, length = hdr_len + offs[2 * s], offs[2 * s + 1]
        chunks: list[tuple[str, list[tuple[int, ...]]]] = []
        out.append(chunks)
        if not length:
            continue
        end = start + length
        if end > len(data) or length < 4:
            raise LinkError(f"{fail}: subsection {s} lies outside the section")
        rec_size = struct.unpack_from("<I", data, start)[0]
        nfields = _SIZES[s] // 4
        if rec_size < _SIZES[s] or rec_size % 4:
            raise LinkError(f"{fail}: record size {rec_size}")
        fmt = struct.Struct(f"<{nfields}I")
        pos = start + 4
        while pos < end:
            if pos + 8 > end:
                raise LinkError(f"{fail}: truncated")
            name_off, num = struct.unpack_from("<2I", data, pos)
            pos += 8
            if pos + num * rec_size > end:
                raise LinkError(f"{fail}: {num} records overrun the subsection")
            if rec_size == fmt.size:
                recs = list(fmt.iter_unpack(data[pos : pos + num * rec_size]))
            else:
                recs = [fmt.unpack_from(data, pos + j * rec_size) for j in range(num)]
            chunks.append((string(name_off), recs))
            pos += num * rec_size
    return out


def link_ext(objects: Sequence[InputObject], layout: Layout, bases: Sequence[int],
             id_map: Sequence[int], strings: StringTable) -> bytes | None:
    """The merged .BTF.ext (its strings added to `strings`), or None without any."""
    merged: Subsections = [{}, {}, {}]
    for k, obj in enumerate(objects):
        if obj.ext is None or obj.string is None:
            continue
        string = obj.string
        base = bases[k]
        moved: dict[int, int] = {}  # the object's string offsets -> the output's

        def move(offsets: set[int], string: Callable[[int], str] = string,
                 moved: dict[int, int] = moved) -> None:
            for o in sorted(offsets.difference(moved)):
                moved[o] = strings.add(string(o))

        for s, chunks in enumerate(_parse(obj)):
            for secname, recs in chunks:
                sec = obj.elf.section_by_name(secname)
                where = layout.place.get((k, sec.index)) if sec is not None else None
                if where is None:
                    continue
                dst, shift = where
                bucket = merged[s].setdefault(dst.name, [])
                try:
                    if s == 0:
                        bucket.extend((off + shift, id_map[t + base]) for off, t in recs)
                    elif s == 1:
                        move({r[1] for r in recs} | {r[2] for r in recs})
                        bucket.extend((off + shift, moved[f], moved[ln], col)
                                      for off, f, ln, col in recs)
                    else:
                        move({r[2] for r in recs})
                        bucket.extend((off + shift, id_map[t + base], moved[a], kind)
                                      for off, t, a, kind in recs)
                except IndexError:
                    raise LinkError(f"{obj.name!r}: .BTF.ext refers to a type id beyond its "
                                    ".BTF") from None
    if not any(merged):
        return None
    order = {name: sec.index for name, sec in layout.sections.items()}
    bodies = []
    for s, sub in enumerate(merged):
        if not sub:
            bodies.append(b"")
            continue
        fmt = struct.Struct(f"<{_SIZES[s] // 4}I")
        parts = [struct.pack("<I", _SIZES[s])]
        for name in sorted(sub, key=order.__getitem__):
            recs = sub[name]
            parts.append(struct.pack("<2I", strings.add(name), len(recs)))
            parts.extend(fmt.pack(*r) for r in recs)
        bodies.append(b"".join(parts))
    f, ln, c = bodies
    header = _HEADER.pack(_MAGIC, 1, 0, 32, 0, len(f), len(f), len(ln), len(f) + len(ln),
                          len(c))
    return header + f + ln + c
