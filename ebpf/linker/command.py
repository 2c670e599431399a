"""What `ebpf gen` does with several objects: `ebpf gen object OUT.o A.o B.o ...`
links them into OUT.o (bpftool's spelling); `ebpf gen A.o B.o -o x.py` links them
and writes the typed module of the result."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import InvalidArgumentError
from . import link

__all__ = ["generate_linked", "is_link_command", "write_object"]


def is_link_command(words: Sequence[str]) -> bool:
    """Whether `ebpf gen` was given `object OUT IN...` (rather than objects)."""
    return len(words) >= 3 and words[0] == "object" and not os.path.exists(words[0])


def write_object(output: str, inputs: Sequence[str]) -> None:
    """Link `inputs` and write the object to `output` (atomically: `output` is either
    untouched or the whole linked object, and no temporary file stays behind)."""
    from ..gen.build import write_atomically  # ebpf gen's writer, only when writing

    write_atomically(output, link(inputs))


def generate_linked(objects: Sequence[str], *, name: str | None, embed: bool) -> str:
    """The typed module of the object linked from `objects` (named after the first
    one unless `name` is given; always embedded: there is no file to load)."""
    from ..gen import default_name, generate  # ebpf gen only to write a module of the linked object

    if not embed:
        raise InvalidArgumentError("--no-embed needs one object file (several are linked "
                                   "in memory); link them with `ebpf gen object` first")
    return generate(link(objects), name=name or default_name(objects[0]),
                    filename=os.path.basename(objects[0]))
