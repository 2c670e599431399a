"""The on-disk index cache of big BTF blobs: used when valid, ignored (never an
error) when stale, corrupt, tampered with, or not safely owned."""

from __future__ import annotations

import os
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from bpfbuild import compile_bpf

from ebpf import btf
from ebpf.btf import cache
from ebpf.btf.kernel import VMLINUX, read_btf_file
from ebpf.btf.spec import Spec
from ebpf.errors import BTFError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def blob() -> bytes:
    return btf.load_spec(str(compile_bpf("btf_kinds"))).raw


@pytest.fixture
def cdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV, str(d))
    return d


def cache_file(d: Path) -> Path:
    (f,) = [p for p in d.iterdir() if p.name.endswith(".idx")]
    return f


def rewrite(path: Path, data: bytes | bytearray, *, fix_crc: bool = True) -> None:
    data = bytearray(data)
    if fix_crc:
        hsize = cache._HDR.size
        crc = zlib.crc32(memoryview(data)[hsize:], zlib.crc32(data[: hsize - 4]))
        data[hsize - 4 : hsize] = struct.pack("=I", crc)
    path.write_bytes(bytes(data))


def test_directory_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(cache.ENV, "0")
    assert cache.cache_directory() is None
    monkeypatch.setenv(cache.ENV, str(tmp_path))
    assert cache.cache_directory() == str(tmp_path)
    monkeypatch.delenv(cache.ENV)
    xdg = tmp_path / "xdg"
    xdg.mkdir(0o700)
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    assert cache.cache_directory() == str(xdg / "ebpf")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")
    home = tmp_path / "home"
    home.mkdir(0o700)
    monkeypatch.setenv("HOME", str(home))
    # the invoking user's cache directory, root included: never a system-wide one
    assert cache.cache_directory() == str(home / ".cache" / "ebpf")


def test_default_directory_must_be_ours(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        blob: bytes) -> None:
    """A base directory someone else owns or can write (another user's $HOME kept by
    sudo, a shared $XDG_CACHE_HOME) gets no cache: nothing is read or written there."""
    monkeypatch.delenv(cache.ENV, raising=False)
    base = tmp_path / "base"
    base.mkdir(0o700)
    monkeypatch.setenv("XDG_CACHE_HOME", str(base))
    assert cache.cache_directory() == str(base / "ebpf")
    os.chmod(base, 0o770)                      # group-writable
    assert cache.cache_directory() is None
    os.chmod(base, 0o700)
    if os.geteuid() == 0:
        os.chown(base, 65534, 65534)           # another user's
        assert cache.cache_directory() is None
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(base))
        assert cache.cache_directory() is None
        assert cache.save(Spec(blob)) is None
        assert cache.load_indexed(blob)._index is None
        assert os.listdir(base) == []          # nothing created in it
        os.chown(base, 0, 0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "missing"))
    assert cache.cache_directory() is None


def test_disabled(monkeypatch: pytest.MonkeyPatch, blob: bytes) -> None:
    monkeypatch.setenv(cache.ENV, "0")
    assert cache.save(Spec(blob)) is None
    assert cache.load_cached(blob) is None
    assert cache.load_indexed(blob)._index is None


def test_round_trip(cdir: Path, blob: bytes) -> None:
    assert cache.load_cached(blob) is None
    path = cache.save(Spec(blob))
    assert path is not None and Path(path).parent == cdir
    assert stat.S_IMODE(cdir.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    spec = cache.load_cached(blob)
    assert spec is not None and spec._index is not None and spec._count is not None
    ref = Spec(blob)
    assert len(spec) == len(ref)
    for t in ref:
        if t.name:
            assert spec.ids_by_name(t.name) == ref.ids_by_name(t.name)
        u = spec.type_by_id(ref.type_id(t))
        assert type(u) is type(t) and u.name == t.name
    assert cache.load_indexed(blob)._index is not None


def test_stale_key(cdir: Path, blob: bytes) -> None:
    cache.save(Spec(blob))
    other = bytearray(blob)
    other[-2] = ord("z")  # same length, different strings: another blob
    assert cache.load_cached(bytes(other)) is None
    # and a file renamed to the other blob's key is rejected by its header
    f = cache_file(cdir)
    f.rename(cdir / cache._file_name((len(other), zlib.crc32(other))))
    assert cache.load_cached(bytes(other)) is None


@pytest.mark.parametrize("mutate", ["flip", "truncate", "extend", "empty", "magic"])
def test_corrupt_file(cdir: Path, blob: bytes, mutate: str) -> None:
    cache.save(Spec(blob))
    f = cache_file(cdir)
    data = bytearray(f.read_bytes())
    if mutate == "flip":
        data[len(data) // 2] ^= 0x40
    elif mutate == "truncate":
        del data[-5:]
    elif mutate == "extend":
        data += b"\0" * 8
    elif mutate == "empty":
        data = bytearray()
    else:
        data[0] ^= 1
    rewrite(f, data, fix_crc=False)
    assert cache.load_cached(blob) is None


def tamper(path: Path, what: str, k: int, value: int) -> None:
    """Change word `k` of one of the arrays of a cache file, keeping its crc valid."""
    data = bytearray(path.read_bytes())
    fields = cache._HDR.unpack_from(data)
    ntypes, shift, bits = fields[6], fields[7], fields[8]
    ncp = (ntypes + (1 << shift) - 1) >> shift
    start = {"checkpoints": 0, "buckets": ncp, "ids": ncp + (1 << bits) + 1}[what]
    struct.pack_into("=I", data, cache._HDR_SIZE + 4 * (start + k), value)
    rewrite(path, data)


@pytest.mark.parametrize("what, k, value", [
    ("checkpoints", 0, 4),        # the first type must start at word 0
    ("checkpoints", -1, 3),       # the last block must chain to the end
    ("buckets", 0, 1),            # prefix sums start at 0
    ("buckets", -1, 0),           # and end at the number of names
    ("ids", 0, 0xFFFFFF),         # ids in range
])
def test_tampered_index_with_valid_crc(cdir: Path, blob: bytes, what: str, k: int,
                                       value: int) -> None:
    """Structural checks catch what the checksum would not."""
    cache.save(Spec(blob))
    f = cache_file(cdir)
    if k < 0:
        fields = cache._HDR.unpack_from(f.read_bytes())
        ntypes, shift, bits = fields[6], fields[7], fields[8]
        k += {"checkpoints": (ntypes + (1 << shift) - 1) >> shift,
              "buckets": (1 << bits) + 1}[what]
    tamper(f, what, k, value)
    assert cache.load_cached(blob) is None


@pytest.mark.skipif(not os.path.exists(VMLINUX), reason=f"{VMLINUX} is missing")
def test_bad_block_drops_the_index(cdir: Path) -> None:
    """A checkpoint that passes the load-time checks is still checked on use: its
    block does not chain, the cached index is dropped and the blob walked instead."""
    data = read_btf_file(VMLINUX)
    ref = Spec(data, lazy=True)
    cache.save(ref)
    f = cache_file(cdir)
    tid = ref.ids_by_name("task_struct")[0]
    block = (tid - 1) >> 4
    fields = cache._HDR.unpack_from(f.read_bytes())
    ncp = (fields[6] + 15) >> 4
    cps = struct.unpack_from(f"={ncp}I", f.read_bytes(), cache._HDR_SIZE)
    tamper(f, "checkpoints", block, cps[block] + 3)
    spec = cache.load_cached(data)
    assert spec is not None and spec._index is not None
    ts = spec.type_by_name("task_struct", btf.Struct)
    assert spec._index is None  # dropped
    assert spec.type_id(ts) == tid
    assert ts.size == ref.type_by_name("task_struct", btf.Struct).size
    assert spec.ids_by_name("sk_buff") == ref.ids_by_name("sk_buff")


def test_decode_rechecks_every_record(blob: bytes) -> None:
    """An offset index that passes the spot checks is still checked per record."""
    ref = Spec(blob)
    offsets = list(ref._offsets)
    k = len(offsets) // 2
    offsets[k] += 3  # points into the middle of a record
    spec = Spec(blob, lazy=True, _offsets=offsets)
    with pytest.raises(BTFError, match="corrupt type offset index"):
        spec.type_by_id(k + 1)


def test_unsafe_ownership_and_modes(cdir: Path, blob: bytes) -> None:
    cache.save(Spec(blob))
    f = cache_file(cdir)
    os.chmod(f, 0o620)  # group-writable file
    assert cache.load_cached(blob) is None
    os.chmod(f, 0o600)
    assert cache.load_cached(blob) is not None
    os.chmod(cdir, 0o777)  # world-writable directory
    assert cache.load_cached(blob) is None
    assert cache.save(Spec(blob)) is None  # and nothing is written there either
    os.chmod(cdir, 0o700)
    if os.geteuid() == 0:
        os.chown(f, 65534, 65534)  # owned by nobody
        assert cache.load_cached(blob) is None
        os.chown(f, 0, 0)
        os.chown(cdir, 65534, 65534)
        assert cache.load_cached(blob) is None
        os.chown(cdir, 0, 0)
    assert cache.load_cached(blob) is not None


def test_symlinks_and_fifos_are_refused(cdir: Path, blob: bytes, tmp_path: Path) -> None:
    cache.save(Spec(blob))
    f = cache_file(cdir)
    real = tmp_path / "elsewhere.idx"
    f.rename(real)
    f.symlink_to(real)
    assert cache.load_cached(blob) is None  # O_NOFOLLOW
    f.unlink()
    os.mkfifo(f, 0o600)
    assert cache.load_cached(blob) is None  # does not block on the FIFO
    f.unlink()
    linked_dir = tmp_path / "linked"
    linked_dir.symlink_to(cdir)
    real.rename(f)
    assert cache.load_cached(blob, directory=str(linked_dir)) is None
    assert cache.load_cached(blob) is not None


def test_prunes_old_files(cdir: Path, blob: bytes) -> None:
    cdir.mkdir(mode=0o700)
    for i in range(10):
        p = cdir / f"btf-{i:x}-00000000.idx"
        p.write_bytes(b"x")
        os.utime(p, (1000 + i, 1000 + i))
    cache.save(Spec(blob))
    names = sorted(p.name for p in cdir.iterdir())
    assert len(names) == cache._MAX_FILES
    assert cache._file_name((len(blob), zlib.crc32(blob))) in names


@pytest.mark.skipif(not os.path.exists(VMLINUX), reason=f"{VMLINUX} is missing")
def test_kernel_cache_written_at_exit(tmp_path: Path) -> None:
    """A process without a cache writes it when it exits; the next one uses it."""
    env = dict(os.environ, PYTHONPATH=str(REPO), **{cache.ENV: str(tmp_path / "c")})
    code = ("import ebpf; s = ebpf.btf.load_kernel_spec(); t = s.type_by_name('task_struct');"
            "print(s._index is not None, t.size)")
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True).stdout.split()
    assert first[0] == "False"
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert len(names) == 2 and names[0].endswith(".idx") and names[1].startswith("vmlinux-")
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True).stdout.split()
    assert second == ["True", first[1]]


@pytest.mark.skipif(not os.path.exists(VMLINUX), reason=f"{VMLINUX} is missing")
def test_kernel_cache_contents(cdir: Path) -> None:
    data = read_btf_file(VMLINUX)
    spec = Spec(data, lazy=True)
    path = cache.save(spec)
    assert path is not None
    cached = cache.load_cached(data)
    assert cached is not None
    for name in ("task_struct", "sk_buff", "pt_regs", "int", "bpf_map_type", "no_such_name_x"):
        assert cached.ids_by_name(name) == spec.ids_by_name(name)
    ts = cached.type_by_name("task_struct", btf.Struct)
    assert ts.member("pid").offset_bits == spec.type_by_name(
        "task_struct", btf.Struct).member("pid").offset_bits


@pytest.mark.skipif(not os.path.exists(VMLINUX), reason=f"{VMLINUX} is missing")
def test_kernel_cache_name_tags(cdir: Path) -> None:
    """The cached name ids carry 8 more bits of the name's hash: lookups check only
    the ids whose tag matches, and find exactly what a scan finds (names that share
    a bucket included)."""
    import random

    data = read_btf_file(VMLINUX)
    spec = Spec(data, lazy=True)
    assert cache.save(spec) is not None
    cached = cache.load_cached(data)
    assert cached is not None and cached._index is not None and cached._index.tagged
    spec.build_name_index()
    assert spec._names is not None
    names = sorted(spec._names)
    by_bucket: dict[int, list[str]] = {}
    for name in names:
        h = zlib.crc32(name.encode()) >> (32 - cache.NAME_BUCKET_BITS)
        by_bucket.setdefault(h, []).append(name)
    crowded = max(by_bucket.values(), key=len)
    sample = random.Random(2).sample(names, 200) + crowded + ["no_such_name_x", ""]
    for name in sample:
        assert cached.ids_by_name(name) == spec.ids_by_name(name), name
    assert cached._index is not None  # every block verified: the index was kept


def key_file(d: Path) -> Path:
    (f,) = [p for p in d.iterdir() if p.name.startswith("vmlinux-")]
    return f


def write_key(path: Path, boot: bytes, length: int, crc: int) -> None:
    body = cache._KEY.pack(cache._KEY_MAGIC, boot, length, crc, 0)[:-4]
    path.write_bytes(body + struct.pack("=I", zlib.crc32(body)))
    path.chmod(0o600)


def test_kernel_blob_key_once_per_boot(cdir: Path, blob: bytes) -> None:
    """The vmlinux CRC is computed once per boot and read back by later processes;
    another length, a corrupt file or another boot's file means computing it again."""
    want = (len(blob), zlib.crc32(blob))
    stale = cdir / "vmlinux-00000000000000000000000000000000.key"
    cdir.mkdir(0o700)
    write_key(stale, bytes(16), len(blob), 1)
    assert cache.kernel_blob_key(blob) == want
    f = key_file(cdir)                      # the other boot's file is gone
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    boot = bytes.fromhex(f.name[len("vmlinux-"):-len(".key")])
    assert boot == cache._boot_id()
    write_key(f, boot, len(blob), 0x1234)   # read back, not recomputed
    assert cache.kernel_blob_key(blob) == (len(blob), 0x1234)
    assert cache.kernel_blob_key(blob + b"\0") == (len(blob) + 1, zlib.crc32(blob + b"\0"))
    raw = bytearray(f.read_bytes())
    raw[30] ^= 1                            # corrupt: recomputed (and rewritten)
    f.write_bytes(bytes(raw))
    assert cache.kernel_blob_key(blob) == want
    assert cache.kernel_blob_key(blob) == want


def test_kernel_blob_key_disabled(monkeypatch: pytest.MonkeyPatch, blob: bytes) -> None:
    monkeypatch.setenv(cache.ENV, "0")
    assert cache.kernel_blob_key(blob) is None


def test_flavored_names_are_cached(cdir: Path) -> None:
    """The strings holding a CO-RE flavor separator (`Spec.flavored_names`) come from
    the cache file, not from a scan of the string table; a list in which one of them
    lacks the separator (crc valid) makes the file unusable."""
    b = btf.Builder()
    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    b.add(btf.Struct("task_struct___old", 4, [btf.Member("pid___x", i32, 0)]))
    b.add(btf.Typedef("plain", i32))
    data = b.marshal()
    ref = Spec(data)
    assert ref.flavored_names() == ["task_struct___old", "pid___x"]
    cache.save(ref)
    spec = cache.load_cached(data)
    assert spec is not None and spec._flavored == ["task_struct___old", "pid___x"]
    assert spec.flavored_names() is spec._flavored
    f = cache_file(cdir)
    raw = f.read_bytes()
    rewrite(f, raw.replace(b"task_struct___old", b"task_struct_x_old"))
    assert cache.load_cached(data) is None


def test_load_kernel_indexed_is_load_indexed_with_the_kernel_key(
        cdir: Path, blob: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One directory fd for the key file and the index: the same Specs, key file and
    pending index as `load_indexed(data, key=kernel_blob_key(data))`."""
    first = cache.load_kernel_indexed(blob)
    assert first._index is None                              # nothing cached yet
    assert key_file(cdir).exists()                          # the boot's key, written
    assert cache._pending.get((len(blob), zlib.crc32(blob))) is first  # written at exit
    cache._pending.clear()
    assert cache.save(first) is not None
    again = cache.load_kernel_indexed(blob)
    assert again._index is not None
    assert again.ids_by_name("s") == first.ids_by_name("s")
    assert again._flavored == cache.load_indexed(blob, key=cache.kernel_blob_key(blob))._flavored
    monkeypatch.setenv(cache.ENV, "0")
    assert cache.load_kernel_indexed(blob)._index is None
    not_dir = tmp_path / "file"
    not_dir.write_bytes(b"")
    monkeypatch.setenv(cache.ENV, str(not_dir))
    assert cache.load_kernel_indexed(blob)._index is None
    assert not cache._pending


def test_kernel_index_crc_checked_once_per_file(cdir: Path, blob: bytes,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel index file whose CRC-32 a process found right is named (inode, size,
    ctime) in ``vmlinux-<boot>.verified``: a later process reading that very file
    checks all but its CRC; a file written since is checked in full again."""
    cache._pending.clear()
    cache.load_kernel_indexed(blob)
    cache._pending.clear()
    assert cache.save(Spec(blob)) is not None
    f = cache_file(cdir)
    assert cache.load_kernel_indexed(blob)._index is not None   # CRC checked: noted
    (verified,) = [p for p in cdir.iterdir() if p.name.endswith(".verified")]
    assert stat.S_IMODE(verified.stat().st_mode) == 0o600
    st = f.stat()
    dfd = os.open(cdir, os.O_RDONLY)
    try:
        assert cache._read_verified(dfd, cache._boot_id(), (len(blob), zlib.crc32(blob))) \
            == (st.st_ino, st.st_size, st.st_ctime_ns)
    finally:
        os.close(dfd)
    crcs: list[int] = []
    real = zlib.crc32

    def counting(data: object, start: int = 0) -> int:
        crcs.append(len(memoryview(data)))  # type: ignore[arg-type]
        return real(data, start)  # type: ignore[arg-type]

    monkeypatch.setattr(cache.zlib, "crc32", counting)
    assert cache.load_kernel_indexed(blob)._index is not None
    assert max(crcs) < 100                   # the key and verified files' only
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x40             # damaged, written as the cache writes: checked
    other = cdir / "new"
    rewrite(other, data, fix_crc=False)
    other.chmod(0o600)
    other.replace(f)
    crcs.clear()
    assert cache.load_kernel_indexed(blob)._index is None
    assert max(crcs) > 100
    cache._pending.clear()
