"""What `ebpf gen` does with several objects: `ebpf gen object OUT.o A.o B.o ...`
links them into OUT.o (bpftool's spelling); `ebpf gen A.o B.o -o x.py` links them
and writes the typed module of the result."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence

from ..errors import InvalidArgumentError
from . import link

__all__ = ["generate_linked", "is_link_command", "write_object"]


def is_link_command(words: Sequence[str]) -> bool:
    """Whether `ebpf gen` was given `object OUT IN...` (rather than objects)."""
    return len(words) >= 3 and words[0] == "object" and not os.path.exists(words[0])


def write_object(output: str, inputs: Sequence[str]) -> None:
    """Link `inputs` and write the object to `output` (through a temporary file in the
    same directory, renamed on success, removed on failure)."""
    blob = link(inputs)
    directory = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(output) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
        tmp = ""
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def generate_linked(objects: Sequence[str], *, name: str | None, embed: bool) -> str:
    """The typed module of the object linked from `objects` (named after the first
    one unless `name` is given; always embedded: there is no file to load)."""
    from ..gen import default_name, generate  # ebpf gen only to write a module of the linked object

    if not embed:
        raise InvalidArgumentError("--no-embed needs one object file (several are linked "
                                   "in memory); link them with `ebpf gen object` first")
    return generate(link(objects), name=name or default_name(objects[0]),
                    filename=os.path.basename(objects[0]))
