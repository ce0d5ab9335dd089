"""The BlobStore port: immutable raw messages addressed by the SHA-256 of their bytes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class BlobStoreError(RuntimeError):
    """The store could not complete an operation (unreachable, disk full, refused)."""


class BlobNotFoundError(BlobStoreError, KeyError):
    """No blob has that digest."""

    def __str__(self) -> str:  # KeyError would print only the quoted digest
        return f"blob {self.args[0] if self.args else '?'} not found"


class BlobCorruptError(BlobStoreError):
    """The stored bytes no longer hash to their address."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LockMode(StrEnum):
    """S3 Object Lock retention modes, as the S3 API spells them."""

    # Users with s3:BypassGovernanceRetention may still shorten or lift the lock.
    GOVERNANCE = "GOVERNANCE"
    # Nobody, the bucket owner and root account included, can shorten or lift it: the
    # WORM storage SEC Rule 17a-4(f) and similar record-keeping rules ask for.
    COMPLIANCE = "COMPLIANCE"


_STRICTNESS = {LockMode.GOVERNANCE: 0, LockMode.COMPLIANCE: 1}


@dataclass(frozen=True)
class LockRequest:
    """Keep a blob undeletable and unchangeable (WORM) until ``retain_until``."""

    mode: LockMode
    retain_until: datetime  # timezone-aware

    def __post_init__(self) -> None:
        if self.retain_until.tzinfo is None:
            raise ValueError("retain_until must be timezone-aware")

    def combine(self, other: LockRequest | None) -> LockRequest:
        """The one lock that satisfies both: the stricter mode and the later date.

        A blob is stored once however many messages, domains or arrivals share it, and
        an object carries one retention; only the union of the demands keeps each
        promise (a longer or stricter lock never breaks a shorter or laxer one).
        """
        if other is None:
            return self
        mode = self.mode if _STRICTNESS[self.mode] >= _STRICTNESS[other.mode] else other.mode
        return LockRequest(mode, max(self.retain_until, other.retain_until))


class BlobStore(Protocol):
    """Contract every blob adapter keeps.

    - ``put`` returns the lower-case hex SHA-256 of ``data``; when it returns, the bytes
      are on stable storage (fsynced, or the S3 PUT succeeded). Putting bytes that are
      already stored is a cheap no-op: blobs are write-once and never overwritten.
    - ``put_many`` is ``put`` for a batch, durable as a whole on return; adapters use it
      to amortise fsyncs or round trips.
    - ``lock`` / ``locks`` (one entry per blob, ``None`` for no lock) ask for WORM
      retention. An adapter that can enforce it (S3 with Object Lock) stores the blob so
      that nobody can delete or change it before ``retain_until``, and raises the lock
      of a blob that already exists to at least the request (never lowers it); if it
      cannot honour a lock it raises ``BlobStoreError`` rather than store the blob
      unlocked. An adapter that cannot enforce WORM (a folder) accepts and ignores locks.
    - ``get`` returns exactly the bytes that were put, after checking their hash, and
      raises ``BlobNotFoundError`` or ``BlobCorruptError``.
    - Any other failure surfaces as ``BlobStoreError`` so the SMTP edge can answer 451.
    """

    def put(self, data: bytes, *, lock: LockRequest | None = None) -> str: ...

    def put_many(self, blobs: Sequence[bytes], *, locks: Sequence[LockRequest | None] | None = None) -> list[str]: ...

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
