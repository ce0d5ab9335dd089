"""The BlobStore port: immutable raw messages addressed by the SHA-256 of their bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Protocol


class BlobStoreError(RuntimeError):
    """The store could not complete an operation (unreachable, disk full, refused)."""


class BlobNotFoundError(BlobStoreError, KeyError):
    """No blob has that digest."""


class BlobCorruptError(BlobStoreError):
    """The stored bytes no longer hash to their address."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore(Protocol):
    """Contract every blob adapter keeps.

    - ``put`` returns the lower-case hex SHA-256 of ``data``; when it returns, the bytes
      are on stable storage (fsynced, or the S3 PUT succeeded). Putting bytes that are
      already stored is a cheap no-op: blobs are write-once and never overwritten.
    - ``put_many`` is ``put`` for a batch, durable as a whole on return; adapters use it
      to amortise fsyncs.
    - ``get`` returns exactly the bytes that were put, after checking their hash, and
      raises ``BlobNotFoundError`` or ``BlobCorruptError``.
    - Any other failure surfaces as ``BlobStoreError`` so the SMTP edge can answer 451.
    """

    def put(self, data: bytes) -> str: ...

    def put_many(self, blobs: Sequence[bytes]) -> list[str]: ...

    def get(self, digest: str) -> bytes: ...

    def exists(self, digest: str) -> bool: ...

    def delete(self, digest: str) -> None: ...

    def iter_digests(self) -> Iterator[str]: ...

    def check(self) -> None:
        """Raise ``BlobStoreError`` with a plain explanation if the store is unusable."""
        ...


def verify_digest(digest: str, data: bytes) -> bytes:
    actual = sha256_hex(data)
    if actual != digest:
        raise BlobCorruptError(f"blob {digest} is corrupt: its bytes hash to {actual}")
    return data


def is_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
