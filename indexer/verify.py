"""Prove that blob store, catalogue and index agree: rehash every blob, cross-check every id."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from indexer.search_backend import SearchBackend
from storage.blobstore import BlobCorruptError, BlobNotFoundError, BlobStore, BlobStoreError
from storage.tables import index_outbox, messages


@dataclass
class VerifyReport:
    messages: int = 0
    blobs_checked: int = 0
    indexed: int = 0
    missing_blobs: list[str] = field(default_factory=list)  # catalogue row, no blob
    corrupt_blobs: list[str] = field(default_factory=list)  # blob bytes no longer hash to their name
    unreadable_blobs: list[str] = field(default_factory=list)  # store error other than the above
    unindexed: list[int] = field(default_factory=list)  # catalogued, not in the index
    pending: list[int] = field(default_factory=list)  # of those, still on the outbox (work in progress)
    stale_index_entries: list[int] = field(default_factory=list)  # in the index, not in the catalogue
    orphan_blobs: list[str] = field(default_factory=list)  # blob never catalogued (a crash before the row)

    @property
    def discrepancies(self) -> int:
        return (
            len(self.missing_blobs)
            + len(self.corrupt_blobs)
            + len(self.unreadable_blobs)
            + len(self.unindexed)
            + len(self.stale_index_entries)
        )

    @property
    def index_coverage(self) -> float:
        return 1.0 if self.messages == 0 else (self.messages - len(self.unindexed)) / self.messages


def verify_archive(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    backend: SearchBackend,
    *,
    on_progress: Callable[[int], None] | None = None,
    check_orphans: bool = True,
) -> VerifyReport:
    """Orphan blobs are reported but are not discrepancies: they were never acknowledged."""
    report = VerifyReport()
    catalogued: dict[str, int] = {}
    with sessions() as session:
        for message_id, digest in session.execute(select(messages.c.id, messages.c.sha256).order_by(messages.c.id)).yield_per(5000):
            catalogued[digest] = message_id
        pending = set(session.scalars(select(index_outbox.c.message_id)))
    report.messages = len(catalogued)

    for position, digest in enumerate(catalogued, 1):
        try:
            blobs.get(digest)
        except BlobNotFoundError:
            report.missing_blobs.append(digest)
        except BlobCorruptError:
            report.corrupt_blobs.append(digest)
        except BlobStoreError:
            report.unreadable_blobs.append(digest)
        else:
            report.blobs_checked += 1
        if on_progress:
            on_progress(position)

    indexed = set(backend.indexed_ids())
    ids = set(catalogued.values())
    report.indexed = len(indexed & ids)
    report.unindexed = sorted(ids - indexed)
    report.pending = sorted((ids - indexed) & pending)
    report.stale_index_entries = sorted(indexed - ids)
    if check_orphans:
        report.orphan_blobs = sorted(digest for digest in blobs.iter_digests() if digest not in catalogued)
    return report
