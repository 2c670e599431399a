"""`Link`: one attachment of a program to a hook."""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from .._sys import link as _link
from .._sys import ops as _ops
from .._sys import validate as _validate
from .._sys.consts import BPF_F_REPLACE
from .._sys.fd import FD, acquire_all, release_all
from .._sys.types import BPF_LINK_GET_FD_BY_ID, LinkType
from ..errors import InvalidArgumentError, NotSupportedError

if TYPE_CHECKING:
    from ..programs import Program

_L = TypeVar("_L", bound="Link")


class Link:
    """An attached program. `close()` detaches it unless it is pinned (a pinned
    bpf_link lives on until its pin is removed). Context manager.

    Kernel bpf_links support `update()` (atomic program replacement), `pin()`,
    `info()` and `detach()`; attachments made through older mechanisms (perf
    events, netlink, BPF_PROG_ATTACH) are subclasses that implement what their
    mechanism allows and raise NotSupportedError for the rest.
    """

    def __init__(self, fd: FD | None, program: Program | None = None) -> None:
        self._fd = fd
        self.program = program
        self._pinned: str | None = None
        name = getattr(program, "name", "")
        if fd is not None and fd.kind == "link" and name:
            fd.kind = f"link of program {name!r}"  # ClosedError says which link

    # -- identity -----------------------------------------------------------------

    @property
    def fd(self) -> FD:
        """The bpf_link's descriptor (`NotSupportedError` for attachments that are
        not bpf_links: tc filters, netlink XDP, BPF_PROG_ATTACH)."""
        if self._fd is None:
            raise NotSupportedError(f"{type(self).__name__} file descriptor",
                                    "this attachment is not a bpf_link")
        return self._fd

    def fileno(self) -> int:
        """The bare descriptor number; keep the link open while it is used."""
        return self.fd.fileno()

    @property
    def id(self) -> int:
        """The kernel's id of the link (as `bpftool link list` shows it)."""
        return int(self.info().id)

    def info(self) -> Any:
        """The kernel's `struct bpf_link_info` for this link (type, id, prog_id, ...)."""
        with self.fd.hold() as fd:
            return _link.link_info(fd)

    @property
    def type(self) -> LinkType:
        """The kernel's link type (`LinkType.TRACING`, `LinkType.XDP`, ...)."""
        return LinkType(self.info().type)

    # -- operations -----------------------------------------------------------------

    def update(self, program: Program, *, old: Program | None = None) -> None:
        """Atomically replace the attached program (BPF_LINK_UPDATE). With `old`,
        fails unless `old` is the program currently attached."""
        # held: none of the numbers can be freed (and reused) mid-call (`hold`'s rule,
        # without its layers: a template reload updates one link per endpoint)
        fds = (self.fd, program.fd) if old is None else (self.fd, program.fd, old.fd)
        nums = acquire_all(fds)
        try:
            if old is None:
                _link.link_update(nums[0], nums[1])
            else:
                _link.link_update(nums[0], nums[1], nums[2], BPF_F_REPLACE)
        finally:
            release_all(fds)
        self.program = program

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the link on bpffs: it stays attached after close() and process exit,
        until `unpin()` (or the pin file is removed)."""
        p = _validate.path(path, "pin path")
        with self.fd.hold() as fd:
            _ops.obj_pin(fd, p)
        self._pinned = p

    def unpin(self) -> None:
        """Remove the pin made by `pin()` (the link then lives as long as its fd)."""
        if self._pinned is not None:
            os.unlink(self._pinned)
            self._pinned = None

    @property
    def pinned_path(self) -> str | None:
        """Where `pin()` pinned the link, or None."""
        return self._pinned

    def detach(self) -> None:
        """Detach the program now (BPF_LINK_DETACH), even while the link fd stays open
        or pinned elsewhere."""
        with self.fd.hold() as fd:
            _link.link_detach(fd)

    def close(self) -> None:
        """Release the link; detaches unless pinned."""
        if self._fd is not None:
            self._fd.close()

    @property
    def closed(self) -> bool:
        """True once `close()` was called (further operations raise `ClosedError`)."""
        return self._fd is None or self._fd.closed

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        """Refused with `NotPicklableError` (also by `copy.deepcopy`): pin the link
        and open the pin in the other process (`ebpf.link.open_pinned`)."""
        from .._sys.nopickle import refuse  # on a refusal only (process start)

        name = getattr(self.program, "name", "")
        refuse(f"link of program {name!r}" if name else "link",
               "pin it (Link.pin) and open the pin in the other process (ebpf.link.open_pinned)")

    def __copy__(self: _L) -> _L:
        """A shallow copy sharing the descriptor (what `copy.copy` always made)."""
        from .._sys.nopickle import shallow_copy  # on a copy only (process start)

        return shallow_copy(self)

    def __enter__(self: _L) -> _L:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    #: True for attachments made without a bpf_link (tc filters, netlink XDP,
    #: BPF_PROG_ATTACH): they stay in the kernel after the process exits, so a link left
    #: to the garbage collector warns (ResourceWarning) and detaches.
    _detach_at_gc = False

    def __del__(self) -> None:
        if not self._detach_at_gc:
            return  # a bpf_link's FD warns and closes by itself
        try:
            attached = not self.closed
        except AttributeError:  # __init__ did not get far enough
            return
        if attached:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)
            with contextlib.suppress(Exception):
                self.close()

    def _where(self) -> str:
        """Where the link is attached, for repr (subclasses say; "" for none)."""
        return ""

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd.fileno() if self._fd else None}"
        where = self._where()
        return f"<{type(self).__name__} {where + ' ' if where else ''}{state}>"


# Link subclasses by kernel link type: open_pinned/from_id return them (e.g. an IterLink,
# whose open() reads it). A class whose constructor needs more than (fd, program) has a
# classmethod `_from_info(fd, info)` taking the kernel's bpf_link_info.
_LINK_CLASSES: dict[int, type[Link]] = {}


def register_link_class(link_type: LinkType, cls: type[Link]) -> None:
    """Make `open_pinned` and `from_id` return `cls` for bpf_links of `link_type`."""
    _LINK_CLASSES[int(link_type)] = cls


def _typed(fd: FD) -> Link:
    try:
        info = _link.link_info(fd.fileno())
        cls = _LINK_CLASSES.get(int(info.type), Link)
        from_info = getattr(cls, "_from_info", None)
        return from_info(fd, info) if from_info is not None else cls(fd)
    except BaseException:
        fd.close()
        raise


def open_pinned(path: str | os.PathLike[str]) -> Link:
    """Open a bpf_link pinned on bpffs (as the `Link` subclass for its type, if any).

    Raises `InvalidArgumentError` when `path` holds another kind of object ("... is a
    map, not a link") or contains a NUL byte."""
    p = _validate.path(path, "pin path")
    fd = FD(_ops.obj_get(p), "link")
    kind = _validate.fd_kind(fd.fileno())
    if kind != "link":
        fd.close()
        raise InvalidArgumentError(f"{p} is a {kind}, not a link")
    link = _typed(fd)
    link._pinned = p
    return link


def from_id(link_id: int) -> Link:
    """Open a bpf_link by its id (as the `Link` subclass for its type, if any)."""
    return _typed(FD(_ops.get_fd_by_id(BPF_LINK_GET_FD_BY_ID, link_id), "link"))
