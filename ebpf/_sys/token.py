"""BPF tokens (6.9+): BPF_TOKEN_CREATE, and the thread's current token that the
object-creating commands carry (`using`)."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from ..errors import NotSupportedError, SyscallError
from .syscall import bpf_errno, token_state
from .types import BPF_TOKEN_CREATE, TokenCreateAttr

__all__ = ["token_create", "using"]


def token_create(bpffs_fd: int, where: str) -> int:
    """BPF_TOKEN_CREATE from the root of a BPF file system (`bpffs_fd`, opened for
    reading; `where` names it in errors): a new close-on-exec token fd."""
    attr = TokenCreateAttr(flags=0, bpffs_fd=bpffs_fd)
    fd = bpf_errno(BPF_TOKEN_CREATE, attr)
    if fd >= 0:
        return fd
    err = -fd
    why = {
        errno.ENOENT: "the BPF file system was mounted without delegation options "
                      "(delegate_cmds, delegate_maps, delegate_progs, delegate_attachs)",
        errno.EOPNOTSUPP: "a token cannot be created in the initial user namespace",
        errno.EPERM: "the BPF file system belongs to another user namespace than this "
                     "process's, or the process lacks CAP_BPF in it",
        errno.EINVAL: "not the root of a BPF file system, or the kernel has no BPF "
                      "tokens (6.9+)",
    }.get(err, os.strerror(err))
    if err == errno.EOPNOTSUPP:
        raise NotSupportedError(f"BPF token from {where}", why, err)
    raise SyscallError(err, f"BPF_TOKEN_CREATE from {where}: {why}")


@contextlib.contextmanager
def using(token_fd: int | None) -> Iterator[None]:
    """Within the block, this thread's MAP_CREATE, PROG_LOAD and BTF_LOAD carry the
    token `token_fd` (None: no change)."""
    if token_fd is None:
        yield
        return
    old = token_state.fd
    token_state.fd = token_fd
    try:
        yield
    finally:
        token_state.fd = old
