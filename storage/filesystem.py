"""Filesystem BlobStore: zstd-compressed, content-addressed, fsynced, atomically renamed."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import zstandard

from storage.blobstore import (
    BlobCorruptError,
    BlobNotFoundError,
    BlobStoreError,
    LockRequest,
    is_digest,
    sha256_hex,
    verify_digest,
)

_SUFFIX = ".eml.zst"
# From this many new blobs on, two filesystem-wide syncs beat an fsync per file.
_BATCH_SYNC_THRESHOLD = 8


def _load_syncfs():  # type: ignore[no-untyped-def]
    """Linux syncfs(2) through libc, or None where it does not exist."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


class FilesystemBlobStore:
    """Blobs live at ``root/ab/cd/<sha256>.eml.zst``.

    Durability (invariant 1): bytes go to a temp file in the target directory, the file
    is fsynced, renamed over its final name (atomic on POSIX), and the directory is
    fsynced so the rename itself survives a power cut.

    No WORM: ``put``/``put_many`` accept Object Lock requests and record nothing, because
    a folder cannot refuse its owner a delete. Archives that must be tamper-proof for a
    regulator keep their blobs on S3 with Object Lock (``S3BlobStore``).
    """

    def __init__(self, root: Path, *, level: int = 3) -> None:
        self.root = Path(root)
        self._level = level
        # Fan-out folders known to exist, so a blob costs no mkdir call once its folder is made.
        # Only ever added to; a folder removed behind the store's back fails the write loudly.
        self._folders: set[Path] = set()
        # zstd contexts are costly to set up and not thread-safe: one pair per thread.
        self._codecs = threading.local()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BlobStoreError(f"cannot create blob folder {self.root}: {error}") from error

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / f"{digest}{_SUFFIX}"

    def put(self, data: bytes, *, lock: LockRequest | None = None) -> str:
        return self.put_many([data])[0]

    def put_many(self, blobs: Sequence[bytes], *, locks: Sequence[LockRequest | None] | None = None) -> list[str]:
        """Store each blob once; ``locks`` are accepted and ignored (see the class docstring)."""
        digests = [sha256_hex(data) for data in blobs]
        pending: dict[str, bytes] = {}
        try:
            for digest, data in zip(digests, blobs):
                if digest not in pending and not self.path_for(digest).exists():
                    pending[digest] = data  # write-once: stored bytes are never touched again
            if len(pending) >= _BATCH_SYNC_THRESHOLD and _syncfs is not None:
                self._write_batch(pending)
            else:
                written = [self._write_one(self.path_for(digest), data) for digest, data in pending.items()]
                self._fsync_directories(written)
        except OSError as error:
            raise BlobStoreError(f"cannot write to blob folder {self.root}: {error}") from error
        return digests

    def _write_one(self, target: Path, data: bytes) -> Path:
        temp = self._write_temp(target, data)
        try:
            with open(temp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return target

    def _write_batch(self, pending: dict[str, bytes]) -> None:
        """Many blobs: write all, one syncfs, rename all, one more syncfs.

        The same guarantee as an fsync per file (no name ever points at unsynced bytes,
        and every rename is durable on return) for two flushes instead of 2N.
        """
        temps: list[tuple[Path, Path]] = []
        try:
            for digest, data in pending.items():
                target = self.path_for(digest)
                temps.append((self._write_temp(target, data), target))
            self._syncfs()
            for temp, target in temps:
                os.replace(temp, target)
            self._syncfs()
        except BaseException:
            for temp, _ in temps:
                temp.unlink(missing_ok=True)
            raise

    def _compressor(self) -> zstandard.ZstdCompressor:
        compressor = getattr(self._codecs, "compressor", None)
        if compressor is None:
            compressor = self._codecs.compressor = zstandard.ZstdCompressor(level=self._level)
        return compressor

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        decompressor = getattr(self._codecs, "decompressor", None)
        if decompressor is None:
            decompressor = self._codecs.decompressor = zstandard.ZstdDecompressor()
        return decompressor

    def _write_temp(self, target: Path, data: bytes) -> Path:
        if target.parent not in self._folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._folders.add(target.parent)
        compressed = self._compressor().compress(data)
        fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(compressed)
        return Path(temp_name)

    def _syncfs(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _syncfs(fd) != 0:  # type: ignore[misc]
                raise OSError(ctypes.get_errno(), "syncfs failed")
        finally:
            os.close(fd)

    def _fsync_directories(self, written: list[Path]) -> None:
        # A rename is durable only once its directory is fsynced (and a new directory
        # only once its parent is).
        directories = {path.parent for path in written}
        directories |= {directory.parent for directory in directories}
        directories |= {directory.parent for directory in directories}
        for directory in directories:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def get(self, digest: str) -> bytes:
        path = self.path_for(digest)
        try:
            compressed = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(digest) from None
        except OSError as error:
            raise BlobStoreError(f"cannot read blob {digest}: {error}") from error
        try:
            data = self._decompressor().decompress(compressed, max_output_size=1 << 34)
        except zstandard.ZstdError as error:
            raise BlobCorruptError(f"blob {digest} is corrupt: cannot decompress ({error})") from error
        return verify_digest(digest, data)

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()

    def delete(self, digest: str) -> None:
        try:
            self.path_for(digest).unlink()
        except FileNotFoundError:
            raise BlobNotFoundError(digest) from None

    def iter_digests(self) -> Iterator[str]:
        for path in self.root.glob(f"??/??/*{_SUFFIX}"):
            name = path.name[: -len(_SUFFIX)]
            if is_digest(name):
                yield name

    def check(self) -> None:
        if not self.root.is_dir():
            raise BlobStoreError(f"blob folder {self.root} does not exist")
        if not os.access(self.root, os.W_OK):
            raise BlobStoreError(f"blob folder {self.root} is not writable")
