"""On-disk cache of a big BTF blob's type index (the kernel's vmlinux).

Indexing the kernel's BTF means walking 126k variable-length records; this
module keeps the result in a file keyed by the blob's length and CRC-32: the
offset of every 16th type (a checkpoint: any type is at most 15 records from
one) and the ids of the named types grouped by `crc32(name)`, so that a later
process finds a type by name with a hash and a few string comparisons, and the
strings that contain a CO-RE flavor separator (``___``, `Spec.flavored_names`), so
that relocating CO-RE does not scan the kernel's string table for them.

Wrong offsets would make programs read the wrong kernel memory, so the cache
is treated as untrusted input:

* it lives in a directory owned by the current user and not writable by
  anyone else (created 0700; files 0600), opened with O_NOFOLLOW and checked
  with fstat (owner is the effective uid, no group/other write, a regular
  file) before it is read;
* its key (blob length + CRC-32) and its own CRC-32 must match, its structure
  must be consistent (checkpoints increasing and in range, the first and last
  blocks of records chaining exactly from checkpoint to checkpoint and to the
  end of the type section, spot-checked name buckets), and each block of 16
  records is checked the same way when it is first used (a block that does not
  chain drops the cached index: the blob is then walked instead);
* anything off means the cache is ignored (and rewritten), never an error.

For the running kernel's vmlinux BTF, whose CRC-32 over megabytes would otherwise
be computed by every process, the key itself is kept too: ``vmlinux-<boot id>.key``
holds the boot's blob length and CRC-32 (`kernel_blob_key`; the blob cannot change
while the kernel runs), so that a later process of the same boot skips that pass; and
``vmlinux-<boot id>.verified`` names the kernel's index file whose own CRC-32 a process
of the boot found right (inode, size, ctime): a later process finding that very file,
not written since, checks all of it but that CRC-32 (`_VERIFIED`).

The cache is written atomically (temporary file + rename). A process that
found no cache writes one when it exits (`atexit`), so its own first lookup
stays fast. Where it lives:

* `EBPF_BTF_CACHE=0` (or off/no/false) disables it: nothing is read or written;
* `EBPF_BTF_CACHE=/some/dir` (an absolute path) puts it in that directory;
* otherwise it lives in the invoking user's cache directory, `$XDG_CACHE_HOME/ebpf`
  or `~/.cache/ebpf` (root included: `/root/.cache/ebpf`, never a system-wide
  directory), and only when that base directory (`$XDG_CACHE_HOME`, or the home
  directory) belongs to the effective user and no one else can write to it:
  a process running with another user's `$HOME` (e.g. under `sudo` that keeps it)
  writes nothing there and uses no cache.
"""

from __future__ import annotations

import _thread
import atexit
import mmap
import os
import stat
import struct
import sys
import zlib

from .layout import CHECKPOINT_SHIFT, NAME_BUCKET_BITS, NAME_ID_BITS, CachedIndex
from .spec import Spec

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from collections.abc import Callable

ENV = "EBPF_BTF_CACHE"
MAGIC = b"EBPFBTFI"
VERSION = 4
_ORDER_MARK = 0x01020304
# magic, version, byte order mark, blob length, blob crc32, type section length,
# number of types, checkpoint shift, name bucket bits, number of named types, length
# of the flavored names, crc32 of everything else. Then three u32 arrays: checkpoints
# (the word offset of every 16th type), name bucket prefix sums, type ids of named
# types by bucket (tagged with 8 more bits of the hash when every id fits in 24 bits:
# `_tagged`); then the strings that contain "___" (CO-RE flavors), NUL-separated.
_HDR = struct.Struct("=8sIIQIIIIIIII")
_HDR_SIZE = _HDR.size
_MAX_FILES = 4
_SPOT_CHECKS = 64
_PREFIX = "btf-"
_SUFFIX = ".idx"

# What reading a damaged cache file or indexing a malformed blob raises: OSError (the
# file system), BTFError and other ValueErrors (inconsistent records), struct.error,
# IndexError and OverflowError (offsets and counts out of range).
_CACHE_ERRORS = (OSError, ValueError, IndexError, OverflowError, struct.error)

_lock = _thread.allocate_lock()
_pending: dict[tuple[int, int], Spec] = {}
_atexit_pid: int | None = None


def cache_directory() -> str | None:
    """The cache directory to use, or None when the cache is disabled."""
    env = os.environ.get(ENV, "")
    if env == "0" or env.lower() in ("off", "no", "false"):
        return None
    if os.path.isabs(env):
        return env
    return default_directory()


def default_directory() -> str | None:
    """The invoking user's cache directory for ebpf, ``$XDG_CACHE_HOME/ebpf`` or
    ``~/.cache/ebpf``, or None when its base directory is not the effective user's alone
    (also `ebpf.gen.build`'s)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return os.path.join(xdg, "ebpf") if _ours(xdg) else None
    home = os.path.expanduser("~")
    if not os.path.isabs(home) or not _ours(home):
        return None
    return os.path.join(home, ".cache", "ebpf")


def _ours(path: str) -> bool:
    """True when `path` is a directory of the effective user that no one else can write
    (the base the default cache directory is created under)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid()
            and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _file_name(key: tuple[int, int]) -> str:
    # (the format version in the name: processes of two versions do not rewrite each
    # other's file over and over)
    return f"{_PREFIX}{key[0]:x}-{key[1]:08x}-v{VERSION}{_SUFFIX}"


def _open_dir(path: str, create: bool) -> int | None:
    """An fd of `path` if it is a directory owned by us and writable only by us."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if not create:
            return None
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return None
        try:
            fd = os.open(path, flags)
        except OSError:
            return None
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid()
            or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        os.close(fd)
        return None
    return fd


def _read_file(dfd: int, name: str, min_size: int = _HDR_SIZE,
               seen: list[tuple[int, int, int]] | None = None) -> bytes | None:
    """The contents of our regular file `name` in `dfd` (None: missing, unsafe, or of a
    size out of bounds); its identity (inode, size, ctime) appended to `seen`."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dfd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
                or not min_size <= st.st_size <= (1 << 30)):
            return None
        size = st.st_size
        if seen is not None:
            seen.append((st.st_ino, size, st.st_ctime_ns))
        chunks = []
        got = 0
        while got < size:
            chunk = os.read(fd, size - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _validate(data: bytes, spec: Spec, key: tuple[int, int], crc_checked: bool = False
              ) -> Spec | None:
    """A Spec of `spec`'s blob indexed by the cache file `data` (its flavored names
    set), or None if anything is off. `crc_checked`: this very file's CRC-32 was found
    right before (see `_VERIFIED`); everything else is checked all the same."""
    if len(data) < _HDR_SIZE:
        return None
    (magic, version, mark, blob_len, blob_crc, type_len, ntypes, shift, bits, nnames,
     nflavored, crc) = _HDR.unpack_from(data)
    nwords = spec._nwords
    if (magic != MAGIC or version != VERSION or mark != _ORDER_MARK
            or (blob_len, blob_crc) != key or type_len != 4 * nwords
            or shift != CHECKPOINT_SHIFT or bits != NAME_BUCKET_BITS
            or ntypes > nwords // 3 or (ntypes == 0) != (nwords == 0) or nnames > ntypes):
        return None
    ncp = (ntypes + (1 << shift) - 1) >> shift
    nbuckets = (1 << bits) + 1
    arrays_end = _HDR_SIZE + 4 * (ncp + nbuckets + nnames)
    if len(data) != arrays_end + nflavored:
        return None
    if not crc_checked and zlib.crc32(memoryview(data)[_HDR.size :],
                                      zlib.crc32(data[: _HDR.size - 4])) != crc:
        return None
    words = memoryview(data)[_HDR_SIZE:arrays_end].cast("I")
    checkpoints = words[:ncp]
    buckets = words[ncp : ncp + nbuckets]
    ids = words[ncp + nbuckets :]
    if ntypes and checkpoints[0] != 0:
        return None
    step = max(1, ncp // _SPOT_CHECKS)
    for k in range(step, ncp, step):
        if not checkpoints[k - 1] < checkpoints[k] < nwords:
            return None
    if buckets[0] != 0 or buckets[-1] != nnames:
        return None
    step = max(1, nbuckets // _SPOT_CHECKS)
    for k in range(step, nbuckets, step):
        if buckets[k - step] > buckets[k]:
            return None
    first, end = spec._first_id, spec._first_id + ntypes
    tagged = _tagged(first, ntypes)
    mask = (1 << NAME_ID_BITS) - 1 if tagged else 0xFFFFFFFF
    step = max(1, nnames // _SPOT_CHECKS)
    for k in range(0, nnames, step):
        if not first <= ids[k] & mask < end:
            return None
    flavored = data[arrays_end:].decode().split("\0") if nflavored else []
    if not all("___" in name for name in flavored):
        return None
    index = CachedIndex(ntypes, checkpoints, buckets, ids, tagged)
    # The first and last blocks of records must chain from checkpoint to checkpoint
    # (and to the end of the type section); every other block is checked on first use.
    probe = Spec(spec.buffer, spec.base, lazy=True, _index=index)
    if ntypes and (probe._verify_block(0) is None or probe._verify_block(ncp - 1) is None):
        return None
    probe._flavored = flavored
    return probe


def _tagged(first_id: int, ntypes: int) -> bool:
    """Whether the cache's name ids carry hash tags: when every id fits below them."""
    return first_id + ntypes <= 1 << NAME_ID_BITS


def load_cached(data: bytes | mmap.mmap, key: tuple[int, int] | None = None,
                directory: str | None = None) -> Spec | None:
    """A Spec indexed from a valid cache file for `data`, or None.

    `key` is the blob's (length, CRC-32) when the caller has it already."""
    directory = directory or cache_directory()
    if directory is None:
        return None
    if key is None:
        key = (len(data), zlib.crc32(data))
    try:
        dfd = _open_dir(directory, create=False)
        if dfd is None:
            return None
        try:
            return _load_cached_at(dfd, data, key)
        finally:
            os.close(dfd)
    except _CACHE_ERRORS:  # a damaged cache file is never the caller's problem
        return None


def _load_cached_at(dfd: int, data: bytes | mmap.mmap, key: tuple[int, int],
                    verified: tuple[int, int, int] | None = None,
                    seen: list[tuple[int, int, int]] | None = None) -> Spec | None:
    """`load_cached` in the open cache directory `dfd` (may raise _CACHE_ERRORS).
    `verified`: the identity of an index file whose CRC-32 was found right in this
    boot (not computed again when the file is that one); the identity of the file
    read is appended to `seen`."""
    seen = [] if seen is None else seen
    raw = _read_file(dfd, _file_name(key), seen=seen)
    if raw is None:
        return None
    return _validate(raw, Spec(data, lazy=True), key, crc_checked=seen[-1] == verified)


def save(spec: Spec, directory: str | None = None) -> str | None:
    """Write the index of `spec` to the cache now; returns the file's path, or
    None when the cache is disabled or unusable (never raises for that)."""
    from ._cache_write import save as _save  # on first use (process start)

    return _save(spec, directory)


def load_indexed(data: bytes | mmap.mmap, *, cache: bool | None = None,
                 key: tuple[int, int] | None = None) -> Spec:
    """A lazily indexed Spec of a big blob, using (and filling) the on-disk cache.

    With a valid cache file the index is complete at once and names are found
    by bisection; otherwise the Spec indexes lazily and the cache is written
    when the interpreter exits. `cache=False` bypasses the cache. `key` is the
    blob's (length, CRC-32) when the caller knows it (`kernel_blob_key`).
    """
    directory = None if cache is False else cache_directory()
    if directory is None:
        return Spec(data, lazy=True)
    return _indexed_in(directory, data, lambda dfd: key or (len(data), zlib.crc32(data)))


def load_kernel_indexed(data: bytes | mmap.mmap) -> Spec:
    """`load_indexed(data, key=kernel_blob_key(data))` for the running kernel's vmlinux
    BTF, opening the cache directory once for the key and the index (process start)."""
    directory = cache_directory()
    if directory is None:
        return Spec(data, lazy=True)
    dfd = _open_dir(directory, create=True)
    if dfd is None:
        return Spec(data, lazy=True)  # nowhere to write it: do not spend the work at exit
    try:
        boot = _boot_id()
        key = _kernel_key_at(dfd, data, boot)
        verified = _read_verified(dfd, boot, key)
        seen: list[tuple[int, int, int]] = []
        try:
            spec = _load_cached_at(dfd, data, key, verified, seen)
        except _CACHE_ERRORS:  # a damaged cache file is never the caller's problem
            spec = None
        if spec is not None and seen[-1] != verified:
            from ._cache_write import write_verified  # once per boot (process start)

            write_verified(dfd, boot, key, seen[-1])  # (for the next process)
    finally:
        os.close(dfd)
    return spec if spec is not None else _pending_spec(data, key)


def _indexed_in(directory: str, data: bytes | mmap.mmap,
                key_at: Callable[[int], tuple[int, int]]) -> Spec:
    """`load_indexed` in the cache `directory` (opened once), the blob's key given by
    `key_at(directory fd)`."""
    dfd = _open_dir(directory, create=True)
    if dfd is None:
        return Spec(data, lazy=True)  # nowhere to write it: do not spend the work at exit
    try:
        key = key_at(dfd)
        try:
            spec = _load_cached_at(dfd, data, key)
        except _CACHE_ERRORS:  # a damaged cache file is never the caller's problem
            spec = None
    finally:
        os.close(dfd)
    return spec if spec is not None else _pending_spec(data, key)


def _pending_spec(data: bytes | mmap.mmap, key: tuple[int, int]) -> Spec:
    """A lazily indexed Spec of `data` whose index is written to the cache at exit."""
    global _atexit_pid
    from ._cache_write import save_pending  # written at exit (process start: not cached)

    spec = Spec(data, lazy=True)
    with _lock:
        _pending[key] = spec
        if _atexit_pid != os.getpid():
            _atexit_pid = os.getpid()
            atexit.register(save_pending)
    return spec


_BOOT_ID = "/proc/sys/kernel/random/boot_id"
_KEY_MAGIC = b"EBPFBTFK"
_KEY = struct.Struct("=8s16sQII")   # magic, boot id, blob length, blob CRC-32, CRC-32 of these
_KEY_PREFIX = "vmlinux-"
_KEY_SUFFIX = ".key"


def _boot_id() -> bytes | None:
    try:
        with open(_BOOT_ID, "rb") as f:
            text = f.read(64).strip()
        return bytes.fromhex(text.decode("ascii").replace("-", ""))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def kernel_blob_key(data: bytes | mmap.mmap) -> tuple[int, int] | None:
    """(length, CRC-32) of `data`, the running kernel's vmlinux BTF.

    That blob cannot change while the kernel runs, so its CRC-32 (milliseconds over
    megabytes, in every process that relocates CO-RE) is computed once per boot and
    kept in the cache directory as ``vmlinux-<boot id>.key`` (boot id, length, CRC-32,
    a CRC-32 of these); a later process of the same boot with a blob of that length
    reads it back instead. Any doubt (no cache, another boot or length, a bad file)
    means computing it, and writing the file for the next process. None when the
    cache is disabled (nothing needs the key then)."""
    directory = cache_directory()
    if directory is None:
        return None
    try:
        dfd = _open_dir(directory, create=True)
        if dfd is None:
            return len(data), zlib.crc32(data)
        try:
            return _kernel_key_at(dfd, data)
        finally:
            os.close(dfd)
    except _CACHE_ERRORS:
        return len(data), zlib.crc32(data)


def _kernel_key_at(dfd: int, data: bytes | mmap.mmap, boot: bytes | None = b""
                   ) -> tuple[int, int]:
    """`kernel_blob_key` in the open cache directory `dfd` (`boot`: the boot id, when
    the caller read it)."""
    if boot == b"":
        boot = _boot_id()
    if boot is None or len(boot) != 16:
        return len(data), zlib.crc32(data)
    name = f"{_KEY_PREFIX}{boot.hex()}{_KEY_SUFFIX}"
    try:
        raw = _read_file(dfd, name, _KEY.size)
        if raw is not None and len(raw) == _KEY.size:
            magic, rboot, length, crc, check = _KEY.unpack(raw)
            if (magic == _KEY_MAGIC and rboot == boot and length == len(data)
                    and zlib.crc32(raw[:-4]) == check):
                return length, crc
        from ._cache_write import prune_keys, write  # on a miss only (process start)

        key = (len(data), zlib.crc32(data))
        body = _KEY.pack(_KEY_MAGIC, boot, key[0], key[1], 0)[:-4]
        if write(dfd, name, body + struct.pack("=I", zlib.crc32(body)), prune=False):
            prune_keys(dfd, name)
        return key
    except _CACHE_ERRORS:
        return len(data), zlib.crc32(data)


# ``vmlinux-<boot id>.verified``: the identity (inode, size, ctime) of the kernel's index
# file whose CRC-32 a process of this boot found right, with the blob's key and a CRC-32
# of these. A later process of the boot that finds that very file (not written since:
# same inode, size and ctime, which no process sets at will) checks all of it but its
# CRC-32 (~1.5M instructions for the kernel's ~380 KB index: a quarter of a CO-RE load's
# BTF work). Its own file, which versions that do not know it leave alone.
_VERIFIED = struct.Struct("=8s16sQIQQqI")  # magic, boot, key, identity, CRC-32 of these
_VERIFIED_MAGIC = b"EBPFBTFV"
_VERIFIED_SUFFIX = ".verified"


def _read_verified(dfd: int, boot: bytes | None, key: tuple[int, int]
                   ) -> tuple[int, int, int] | None:
    """The identity of the index file of `key` verified in this boot, if any."""
    if boot is None or len(boot) != 16:
        return None
    raw = _read_file(dfd, f"{_KEY_PREFIX}{boot.hex()}{_VERIFIED_SUFFIX}", _VERIFIED.size)
    if raw is None or len(raw) != _VERIFIED.size:
        return None
    magic, rboot, length, crc, ino, size, ctime, check = _VERIFIED.unpack(raw)
    if (magic != _VERIFIED_MAGIC or rboot != boot or (length, crc) != key
            or zlib.crc32(raw[:-4]) != check):
        return None
    return ino, size, ctime


__all__ = ["ENV", "cache_directory", "default_directory", "kernel_blob_key", "load_cached",
           "load_indexed", "load_kernel_indexed", "save"]

if sys.byteorder not in ("little", "big"):  # pragma: no cover
    raise ImportError("unknown byte order")
