"""Writing the on-disk BTF index cache of `ebpf.btf.cache`: serializing a Spec's index,
the atomic file write, pruning old files, and the boot's key and verified files. A
module of its own that `ebpf.btf.cache` loads on first use: a process that finds the
cache written (every one after the first) never writes (process start, issue 15)."""

from __future__ import annotations

import os
import struct
import zlib
from array import array

from . import cache as _cache
from .cache import (
    _CACHE_ERRORS,
    _HDR,
    _KEY_PREFIX,
    _KEY_SUFFIX,
    _MAX_FILES,
    _ORDER_MARK,
    _PREFIX,
    _SUFFIX,
    _VERIFIED,
    _VERIFIED_MAGIC,
    _VERIFIED_SUFFIX,
    MAGIC,
    VERSION,
    _file_name,
    _open_dir,
    _tagged,
    cache_directory,
)
from .layout import CHECKPOINT_SHIFT, NAME_BUCKET_BITS

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from .spec import Spec

__all__ = ["prune_keys", "save", "save_pending", "serialize", "write", "write_verified"]


def serialize(spec: Spec, key: tuple[int, int]) -> bytes:
    """The cache file of `spec`'s index, for the blob of `key` (length, CRC-32)."""
    offsets = array("I")
    offsets.frombytes(spec.copy_offsets())
    ntypes = len(offsets)
    checkpoints = offsets[:: 1 << CHECKPOINT_SHIFT]
    buckets, ids = spec.name_buckets(NAME_BUCKET_BITS, _tagged(spec._first_id, ntypes))
    flavored = "\0".join(spec.flavored_names()).encode()
    body = checkpoints.tobytes() + buckets.tobytes() + ids.tobytes() + flavored
    head = _HDR.pack(MAGIC, VERSION, _ORDER_MARK, key[0], key[1], 4 * spec._nwords, ntypes,
                     CHECKPOINT_SHIFT, NAME_BUCKET_BITS, len(ids), len(flavored),
                     0)[: _HDR.size - 4]
    # The crc covers the header without itself, then everything after the header.
    crc = zlib.crc32(body, zlib.crc32(head))
    return head + struct.pack("=I", crc) + body


def write(dfd: int, name: str, data: bytes, prune: bool = True) -> str | None:
    """Write `data` to `name` in the directory `dfd` atomically (temporary file +
    rename); `name`, or None when that failed. `prune`: then drop old index files."""
    tmp = f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=dfd)
    except OSError:
        return None
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        return None
    if prune:
        _prune(dfd, name)
    return name


def _prune(dfd: int, keep: str) -> None:
    """Keep only the newest few cache files (one per kernel booted recently)."""
    try:
        names = [n for n in os.listdir(dfd) if n.startswith(_PREFIX) and n.endswith(_SUFFIX)]
        if len(names) <= _MAX_FILES:
            return
        aged = []
        for n in names:
            try:
                aged.append((os.stat(n, dir_fd=dfd, follow_symlinks=False).st_mtime, n))
            except OSError:
                pass
        aged.sort(reverse=True)
        for _, n in aged[_MAX_FILES:]:
            if n != keep:
                os.unlink(n, dir_fd=dfd)
    except OSError:
        pass


def save(spec: Spec, directory: str | None = None) -> str | None:
    """`ebpf.btf.cache.save`."""
    directory = directory or cache_directory()
    if directory is None:
        return None
    try:
        key = spec.checksum()
        data = serialize(spec, key)
    except _CACHE_ERRORS:  # a malformed blob: nothing worth caching
        return None
    dfd = _open_dir(directory, create=True)
    if dfd is None:
        return None
    try:
        name = write(dfd, _file_name(key), data)
    finally:
        os.close(dfd)
    return os.path.join(directory, name) if name else None


def save_pending() -> None:
    """At exit: write the index of the Specs that found no cache file."""
    if os.getpid() != _cache._atexit_pid:
        return  # a forked child: the parent writes it
    with _cache._lock:
        pending = list(_cache._pending.values())
        _cache._pending.clear()
    for spec in pending:
        try:
            save(spec)
        except _CACHE_ERRORS:
            pass  # at exit: a cache that cannot be written is not worth a traceback


def prune_keys(dfd: int, keep: str, suffix: str = _KEY_SUFFIX) -> None:
    """Only the current boot's key file (or verified file) is worth keeping."""
    try:
        for n in os.listdir(dfd):
            if n.startswith(_KEY_PREFIX) and n.endswith(suffix) and n != keep:
                os.unlink(n, dir_fd=dfd)
    except OSError:
        pass


def write_verified(dfd: int, boot: bytes | None, key: tuple[int, int],
                    ident: tuple[int, int, int]) -> None:
    """Record that the index file `ident` (inode, size, ctime) of `key` was verified
    in `boot` (see `ebpf.btf.cache._VERIFIED`)."""
    if boot is None or len(boot) != 16:
        return
    name = f"{_KEY_PREFIX}{boot.hex()}{_VERIFIED_SUFFIX}"
    body = _VERIFIED.pack(_VERIFIED_MAGIC, boot, *key, *ident, 0)[:-4]
    if write(dfd, name, body + struct.pack("=I", zlib.crc32(body)), prune=False):
        prune_keys(dfd, name, _VERIFIED_SUFFIX)
