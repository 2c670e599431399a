"""BPF tokens (6.9+): the right to create maps, programs and BTF objects delegated to a
process that lacks CAP_BPF in the initial user namespace (a container).

A privileged process mounts a BPF file system for the container's user namespace with
delegation options (``delegate_cmds``, ``delegate_maps``, ``delegate_progs``,
``delegate_attachs``); a process in that user namespace (holding CAP_BPF there) makes a
`Token` from it, and the maps, programs and BTF objects it creates carry the token
(``token_fd`` and the ``BPF_F_TOKEN_FD`` flag of BPF_MAP_CREATE, BPF_PROG_LOAD and
BPF_BTF_LOAD), so the kernel checks capabilities in that user namespace instead::

    # in the container (its own user namespace), with the BPF FS mounted for it
    with ebpf.Token("/sys/fs/bpf") as token:
        coll = ebpf.Collection(spec, token=token)      # every map, program, BTF load
        with token.use():                               # or: anything made in the block
            m = ebpf.Map(ebpf.MapSpec(...))

`ebpf.Collection` also takes the token from the environment, as libbpf does with
``LIBBPF_BPF_TOKEN_PATH``: when ``EBPF_BPF_TOKEN_PATH`` names a BPF FS, a collection
loaded without ``token=`` uses a token made from it, and fails (naming the path) if
none can be made; set to the empty string it means no token. Unlike libbpf, no token
is tried from /sys/fs/bpf when the variable is unset.

The two steps of making such a file system without a mount point (the new mount API):
`bpffs_context()` in the process whose user namespace will own it, `delegate()` (needs
CAP_SYS_ADMIN in the initial user namespace) on that context in the privileged one; a
descriptor of the result works as the path does: ``Token(mount_fd)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from ._sys import mount as _mount
from ._sys import token as _token
from ._sys import validate as _validate
from ._sys.fd import FD
from .errors import InvalidArgumentError

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["ENV_TOKEN_PATH", "Token", "bpffs_context", "delegate", "token_from_env"]

ENV_TOKEN_PATH = "EBPF_BPF_TOKEN_PATH"
"""The environment variable naming the BPF FS a collection takes its token from."""


class Token:
    """A BPF token made from the root of a BPF file system mounted with delegation
    options: a path, or a descriptor of the root (e.g. the mount descriptor `delegate`
    returns). Close it with `close()` or use it as a context manager; objects created
    with it stay valid after.

    Raises SyscallError saying why the kernel refused (no delegation options: ENOENT;
    a file system of another user namespace: EPERM), NotSupportedError in the initial
    user namespace (tokens are for other ones)."""

    __slots__ = ("_fd", "where")

    def __init__(self, bpffs: str | os.PathLike[str] | int) -> None:
        if isinstance(bpffs, int) and not isinstance(bpffs, bool):
            self.where = f"fd {bpffs}"
            # an O_PATH mount descriptor cannot be used directly: reopen its root
            root = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=bpffs)
        else:
            path = _validate.path(bpffs, "BPF FS path")
            self.where = path
            root = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = _token.token_create(root, self.where)
        finally:
            os.close(root)
        self._fd = FD(fd, f"BPF token from {self.where}")

    def fileno(self) -> int:
        """The token's descriptor (ClosedError once closed)."""
        return self._fd.fileno()

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._fd.closed

    def close(self) -> None:
        """Close the token (idempotent); what was created with it stays."""
        self._fd.close()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        """Refused with `NotPicklableError` (also by `copy.deepcopy`): pass the path of
        the delegating BPF file system and make a token there (`Token(path)`)."""
        from ._sys.nopickle import refuse  # on a refusal only (process start)

        refuse(f"BPF token from {self.where}",
               "pass the path of the delegating BPF file system and make a token of it there "
               "(Token(path))")

    def __copy__(self) -> Token:
        """A shallow copy sharing the descriptor (what `copy.copy` always made)."""
        from ._sys.nopickle import shallow_copy  # on a copy only (process start)

        return shallow_copy(self)

    def __enter__(self) -> Token:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def use(self) -> Iterator[Token]:
        """Within the block, every map, program and BTF object this thread creates
        (`ebpf.Map`, `ebpf.Program`, `ebpf.btf.Handle`, collections, feature probes)
        carries this token. The token must stay open for the block."""
        with self._fd.hold() as fd, _token.using(fd):
            yield self

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._fd.fileno()}"
        return f"<Token from {self.where} {state}>"


def token_from_env() -> Token | None:
    """A `Token` from the BPF FS named by ``EBPF_BPF_TOKEN_PATH``, or None when the
    variable is unset or empty. Errors name the variable."""
    path = os.environ.get(ENV_TOKEN_PATH)
    if not path:
        return None
    try:
        return Token(path)
    except OSError as e:
        e.strerror = f"{e.strerror} (from ${ENV_TOKEN_PATH})"
        e.args = (e.errno, e.strerror) if e.errno is not None else (e.strerror,)
        raise


def bpffs_context() -> FD:
    """A new BPF file system context (fsopen) owned by this process's user namespace,
    to pass (e.g. over a unix socket) to a privileged process that calls `delegate`
    on it."""
    return FD(_mount.fs_open("bpf"), "BPF FS context")


def _option(what: str, value: str | Iterable[str]) -> str:
    if isinstance(value, str):
        return value
    try:
        return ":".join(value)
    except TypeError:
        raise InvalidArgumentError(f"{what} must be a string or names, got "
                                   f"{type(value).__name__}") from None


def delegate(context: FD | int | None = None, *, cmds: str | Iterable[str] = "any",
             maps: str | Iterable[str] = "any", progs: str | Iterable[str] = "any",
             attachs: str | Iterable[str] = "any") -> FD:
    """Make a BPF file system with delegation options, not mounted anywhere: returns
    the descriptor of its root, from which `Token` makes tokens (6.9+; needs
    CAP_SYS_ADMIN in the initial user namespace). `context` is a `bpffs_context()`
    made in the user namespace the tokens are for (default: a new one in this
    process's). Each option is "any" or the names the kernel knows (e.g.
    ``cmds=["map_create", "prog_load", "btf_load"]``, ``maps="hash:array"``)."""
    own = context is None
    ctx = bpffs_context() if context is None else context
    try:
        fs_fd = ctx.fileno() if isinstance(ctx, FD) else _validate.integer(
            ctx, "context", 0, 2**31 - 1)
        for key, value in (("delegate_cmds", cmds), ("delegate_maps", maps),
                           ("delegate_progs", progs), ("delegate_attachs", attachs)):
            _mount.fs_set_string(fs_fd, key, _option(key, value))
        return FD(_mount.fs_mount(fs_fd), "BPF FS mount")
    finally:
        if own and isinstance(ctx, FD):
            ctx.close()
