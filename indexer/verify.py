"""Prove that blob store, catalogue and index agree: rehash every blob, cross-check every id and scope."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from indexer.document import IndexDocument
from indexer.outbox import failed_messages
from indexer.query import fields
from indexer.search_backend import SearchBackend
from storage.blobstore import BlobCorruptError, BlobNotFoundError, BlobStore, BlobStoreError
from storage.tables import index_outbox, message_domains, message_mailboxes, messages


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
    failed: dict[int, str] = field(default_factory=dict)  # left alone at the attempt limit, with the last error
    stale_scopes: list[int] = field(default_factory=list)  # indexed with mailboxes or domains the catalogue no longer gives
    stale_index_entries: list[int] = field(default_factory=list)  # in the index, not in the catalogue
    orphan_blobs: list[str] = field(default_factory=list)  # blob never catalogued (a crash before the row)

    @property
    def discrepancies(self) -> int:
        return (
            len(self.missing_blobs)
            + len(self.corrupt_blobs)
            + len(self.unreadable_blobs)
            + len(self.unindexed)
            + len(self.failed)
            + len(self.stale_scopes)
            + len(self.stale_index_entries)
        )

    @property
    def index_coverage(self) -> float:
        return 1.0 if self.messages == 0 else (self.messages - len(self.unindexed)) / self.messages


Scope = tuple[frozenset[str], frozenset[str]]  # mailboxes, domains


def verify_archive(
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    backend: SearchBackend,
    *,
    on_progress: Callable[[int], None] | None = None,
    check_orphans: bool = True,
) -> VerifyReport:
    """Orphan blobs are reported but are not discrepancies: they were never acknowledged.

    A message still on the outbox may be indexed with an older, narrower scope (a copy for
    another mailbox arrived); that is work in progress, not a stale scope, unless it is
    stuck at the attempt limit, which is a discrepancy of its own.
    """
    report = VerifyReport()
    catalogued: dict[str, int] = {}
    with sessions() as session:
        for message_id, digest in session.execute(select(messages.c.id, messages.c.sha256).order_by(messages.c.id)).yield_per(5000):
            catalogued[digest] = message_id
        pending = set(session.scalars(select(index_outbox.c.message_id)))
    report.messages = len(catalogued)
    report.failed = failed_messages(sessions)

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

    scopes = _catalogue_scopes(sessions)
    indexed: set[int] = set()
    for held in backend.indexed_scopes():
        indexed.add(held.id)
        wanted = scopes.get(held.id)
        if wanted is not None and held.id not in pending and (held.mailboxes, held.domains) != wanted:
            report.stale_scopes.append(held.id)
    ids = set(catalogued.values())
    report.indexed = len(indexed & ids)
    report.unindexed = sorted(ids - indexed)
    report.pending = sorted((ids - indexed) & pending)
    report.stale_index_entries = sorted(indexed - ids)
    if check_orphans:
        report.orphan_blobs = sorted(digest for digest in blobs.iter_digests() if digest not in catalogued)
    return report


def _catalogue_scopes(sessions: sessionmaker[Session]) -> dict[int, Scope]:
    """Each message's mailboxes and domains, spelled as the index holds them."""
    mailboxes: dict[int, list[str]] = {}
    domains: dict[int, list[str]] = {}
    with sessions() as session:
        for message_id, mailbox in session.execute(select(message_mailboxes.c.message_id, message_mailboxes.c.mailbox)).yield_per(10000):
            mailboxes.setdefault(message_id, []).append(mailbox)
        for message_id, domain in session.execute(select(message_domains.c.message_id, message_domains.c.domain)).yield_per(10000):
            domains.setdefault(message_id, []).append(domain)
        ids = session.scalars(select(messages.c.id)).all()
    return {mid: _as_indexed(mailboxes.get(mid, ()), domains.get(mid, ())) for mid in ids}


_NOTHING_BUT_SCOPE = IndexDocument(
    id=0, sha256="", date=datetime(1970, 1, 1, tzinfo=timezone.utc), size=0, subject="", from_=(), to=(), cc=(), bcc=(),
    body="", attachment_text="", filenames=(), has_attachment=False, mailboxes=(), domains=(),
)


def _as_indexed(mailboxes: Sequence[str], domains: Sequence[str]) -> Scope:
    # Through the very function both engines index with, so the comparison cannot drift
    # from how a scope is written.
    values = fields.document_values(replace(_NOTHING_BUT_SCOPE, mailboxes=tuple(mailboxes), domains=tuple(domains)))
    return frozenset(values.get(fields.MAILBOX, ())), frozenset(values.get(fields.DOMAIN, ()))
