"""What the `ebpf` subcommands share: JSON or text output (`emit`), object selectors
(`id N`, `pinned PATH`, `name NAME`, a bare id), byte arguments, kernel id walks and pins;
and, re-exported from `ebpf.cli.main`, which also serves `load` (process start: `ebpf
load` imports no common), the --json option, one-line errors, enums' names and the end of
the command's process."""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence

from ..errors import Error, InvalidArgumentError, KeyNotFoundError, SyscallError
from .main import (  # what `load` uses too: in main, so that load imports no common
    add_json,
    end_command_process,
    enum_name,
    error,
    running_as_command,
    wants_json,
)

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:  # (annotations only: a Protocol class costs process start)
    import argparse
    from typing import Any, Protocol, TypeVar

    T = TypeVar("T")

    class Closable(Protocol):
        """A kernel object the CLI opens (a map, program or link): closed by its user."""

        def close(self) -> None:
            """Release the object's fd."""

    C = TypeVar("C", bound=Closable)

__all__ = [
    "add_json",
    "emit",
    "end_command_process",
    "enum_name",
    "error",
    "fdinfo",
    "hex_list",
    "iter_ids",
    "open_one",
    "open_selected",
    "parse_bytes",
    "parse_selector",
    "running_as_command",
    "wallclock",
    "wants_json",
]


def emit(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> None:
    """Print `data` as JSON (with --json) or through `text`."""
    if wants_json(args):
        import json  # on use: a plain-text report imports no json (process start)

        print(json.dumps(data, indent=2, default=str))
    else:
        out = text(data)
        if out:
            print(out)


def parse_selector(words: Sequence[str], what: str, *, kinds: Sequence[str] = ("id", "pinned",
                   "name")) -> tuple[str, str] | None:
    """`[ID | id ID | pinned PATH | name NAME | tag TAG]` -> (kind, value), None for none."""
    if not words:
        return None
    if len(words) == 1:
        if words[0].isdigit():
            return "id", words[0]
        raise InvalidArgumentError(f"expected a {what} id or one of {', '.join(kinds)} "
                                   f"followed by its value, got {words[0]!r}")
    if len(words) != 2 or words[0] not in kinds:
        raise InvalidArgumentError(f"cannot select a {what} by {' '.join(words)!r}: use "
                                   + " | ".join(f"{k} {k.upper()}" for k in kinds))
    kind, value = words
    if kind == "id" and not value.isdigit():
        raise InvalidArgumentError(f"{what} id must be a number, got {value!r}")
    return kind, value


def open_selected(selector: tuple[str, str] | None, what: str, *,
                  from_id: Callable[[int], C], from_pin: Callable[[str], C], next_id_cmd: int,
                  attribute: Callable[[C, str], str] | None = None) -> Iterator[C]:
    """The `what` objects a `parse_selector` result names, opened: by id, by pin, or
    (every object for None) by walking the ids of `next_id_cmd` and keeping those
    whose `attribute(obj, kind)` is the selector's value (a name, a tag). Objects
    freed meanwhile are skipped; KeyNotFoundError when none has the value. The
    caller closes each."""
    if selector is not None:
        kind, value = selector
        if kind == "id":
            yield from_id(int(value))
            return
        if kind == "pinned":
            yield open_pinned(from_pin, value)
            return
        if attribute is None:
            raise InvalidArgumentError(f"cannot select a {what} by {kind}")
    found = False
    for oid in iter_ids(next_id_cmd):
        try:
            obj = from_id(oid)
        except KeyNotFoundError:
            continue  # freed since it was listed
        if selector is not None and attribute is not None and (
                attribute(obj, selector[0]) != selector[1]):
            obj.close()
            continue
        found = True
        yield obj
    if selector is not None and not found:
        raise KeyNotFoundError(f"no {what} with {selector[0]} {selector[1]!r}")


def open_one(objects: Iterator[C], selector: tuple[str, str], what: str) -> C:
    """The one object `objects` (an `open_selected` of `selector`) yields; several
    (a name more than one has) are closed and refused."""
    found = list(objects)
    if len(found) > 1:
        for obj in found:
            obj.close()
        raise InvalidArgumentError(f"{len(found)} {what}s have {selector[0]} {selector[1]!r}; "
                                   "select one by id")
    return found[0]


def parse_bytes(words: Sequence[str], size: int, what: str) -> bytes:
    """bpftool's byte arguments (``0x01 0x02 ...`` or decimal bytes, `size` of them), or
    one integer (decimal or 0x hex) packed little-endian into `size` bytes."""
    if len(words) == 1 and size != 1:
        value = _c_int(words[0])
        if value is None:
            raise InvalidArgumentError(f"{what}: {words[0]!r} is not an integer")
        try:
            return value.to_bytes(size, sys.byteorder, signed=value < 0)
        except OverflowError:
            raise InvalidArgumentError(f"{what}: {value} does not fit in {size} bytes") from None
    out = bytearray()
    if words and words[0] == "hex":  # bpftool's `hex 01 02 ...`
        for w in words[1:]:
            try:
                out += bytes.fromhex(w)
            except ValueError:
                raise InvalidArgumentError(f"{what}: {w!r} is not hex") from None
    else:
        for w in words:
            b = _c_int(w)
            if b is None or not 0 <= b <= 255:
                raise InvalidArgumentError(f"{what}: {w!r} is not a byte (0..255)")
            out.append(b)
    if len(out) != size:
        raise InvalidArgumentError(f"{what} must be {size} bytes, got {len(out)}")
    return bytes(out)


def _c_int(word: str) -> int | None:
    """An integer spelled as C's strtoul(base 0) reads it: 0x hex, 0 octal, else decimal."""
    try:
        if word.lower().startswith("0x"):
            return int(word, 16)
        if len(word) > 1 and word.startswith("0"):
            return int(word, 8)
        return int(word, 10)
    except ValueError:
        return None


def open_pinned(opener: Callable[[str], T], path: str) -> T:
    """`opener(path)`, with "nothing is pinned at PATH" for a missing pin."""
    try:
        return opener(path)
    except SyscallError as e:
        if e.errno == errno.ENOENT:
            raise SyscallError(errno.ENOENT, f"nothing is pinned at {path}") from None
        raise


def hex_list(data: bytes) -> list[str]:
    """bytes as bpftool's JSON byte list: ["0x01", "0x00", ...]."""
    return [f"0x{b:02x}" for b in data]


def iter_ids(cmd: int) -> Iterator[int]:
    """Every id a BPF_*_GET_NEXT_ID command walks, ascending."""
    from .._sys import ops  # on use: a subcommand loads only what it needs

    nid = ops.get_next_id(cmd, 0)
    while nid is not None:
        yield nid
        nid = ops.get_next_id(cmd, nid)


def fdinfo(fd: int) -> dict[str, str]:
    """The fields of /proc/self/fdinfo/FD (memlock, frozen, ...)."""
    out: dict[str, str] = {}
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep:
                    out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def wallclock(boot_ns: int) -> int:
    """A CLOCK_BOOTTIME stamp in ns as seconds since the epoch (bpftool's loaded_at)."""
    now_real = time.time_ns()
    now_boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    return (now_real - now_boot + boot_ns) // 1_000_000_000


def local_time(epoch: int) -> str:
    """bpftool's text timestamp: 2024-01-31T12:00:00+0000 in local time."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(epoch))


def pinned_paths(kind: str, root: str = "/sys/fs/bpf") -> dict[int, list[str]]:
    """Ids of the `kind` objects ("program", "map", "link") pinned under `root` (bpftool's
    ``-f``), each to its paths."""
    from .._sys import ops, validate  # on use: a subcommand loads only what it needs
    from .._sys.types import MapInfo, ProgInfo  # on use: a subcommand loads only what it needs
    from .._sys.types_link import LinkInfo  # on use: a subcommand loads only what it needs

    structs: dict[str, type[Any]] = {"program": ProgInfo, "map": MapInfo, "link": LinkInfo}
    out: dict[int, list[str]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            try:
                fd = ops.obj_get(path)
            except (Error, OSError):  # not a bpf object, or gone meanwhile
                continue
            try:
                if validate.fd_kind(fd) == kind:
                    info = structs[kind]()
                    ops.obj_get_info(fd, info)
                    out.setdefault(int(info.id), []).append(path)
            except (Error, OSError):
                pass
            finally:
                os.close(fd)
    return out
