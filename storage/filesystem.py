"""Filesystem BlobStore: zstd-compressed, content-addressed, fsynced, atomically renamed."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import zstandard

from storage.blobstore import (
    BlobCorruptError,
    BlobNotFoundError,
    BlobStoreError,
    is_digest,
    sha256_hex,
    verify_digest,
)

_SUFFIX = ".eml.zst"


class FilesystemBlobStore:
    """Blobs live at ``root/ab/cd/<sha256>.eml.zst``.

    Durability (invariant 1): bytes go to a temp file in the target directory, the file
    is fsynced, renamed over its final name (atomic on POSIX), and the directory is
    fsynced so the rename itself survives a power cut.
    """

    def __init__(self, root: Path, *, level: int = 3) -> None:
        self.root = Path(root)
        self._level = level
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BlobStoreError(f"cannot create blob folder {self.root}: {error}") from error

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:4] / f"{digest}{_SUFFIX}"

    def put(self, data: bytes) -> str:
        return self.put_many([data])[0]

    def put_many(self, blobs: Sequence[bytes]) -> list[str]:
        digests: list[str] = []
        written: list[Path] = []
        try:
            for data in blobs:
                digest = sha256_hex(data)
                digests.append(digest)
                target = self.path_for(digest)
                if target.exists():
                    continue  # write-once: identical bytes are already stored
                written.append(self._write_unsynced(target, data))
            self._sync(written)
        except OSError as error:
            raise BlobStoreError(f"cannot write to blob folder {self.root}: {error}") from error
        return digests

    def _write_unsynced(self, target: Path, data: bytes) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        compressed = zstandard.ZstdCompressor(level=self._level).compress(data)
        fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(compressed)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return target

    def _sync(self, written: list[Path]) -> None:
        # One fsync per touched directory makes every rename in the batch durable.
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
            data = zstandard.ZstdDecompressor().decompress(compressed, max_output_size=1 << 34)
        except zstandard.ZstdError as error:
            raise BlobCorruptError(f"blob {digest} is corrupt: cannot decompress ({error})") from error
        return verify_digest(digest, data)

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()

    def delete(self, digest: str) -> None:
        path = self.path_for(digest)
        try:
            path.unlink()
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

