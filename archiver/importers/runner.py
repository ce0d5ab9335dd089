"""Journal what the sources find, in durable batches, and account for every file and message."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from archiver.envelope import Envelope
from archiver.headers import HeaderFacts, normalise_address
from archiver.importers import checkpoint
from archiver.importers.checkpoint import Checkpoint
from archiver.importers.header_pool import StartFacts
from archiver.importers.sources import DEFAULT_CHECKPOINT_MIN_BYTES, FoundMessage, Refusal, Resumed, Skipped, SourceOptions, iter_items
from archiver.journal import Arrival, Journal, JournalError
from indexer.extraction.limits import ExtractionLimits
from storage.blobstore import sha256_hex
from storage.tables import message_mailboxes, messages
from storage.text import escaped
from storage.timeutil import utcnow

DEFAULT_BATCH_MESSAGES = 200
# Bounds memory when messages are large: a batch is flushed at whichever limit comes first.
DEFAULT_BATCH_BYTES = 64 * 1024 * 1024


@dataclass
class ImportSummary:
    """What one import did; filled in as it runs (progress reads it), final when it returns."""

    archived: int = 0
    duplicate: int = 0  # already in the archive (or twice in this import)
    # Locations and reasons in storage.text's escaped form, as each message's source_detail
    # is stored: a file name that is not UTF-8 shows those bytes as \xHH, and
    # ``os.fsencode(unescaped(location))`` gives back the name's bytes.
    refused: list[tuple[str, str]] = field(default_factory=list)  # (location, reason)
    # Not mail (mail-store bookkeeping), or read under another name (a link inside the import).
    skipped: list[tuple[str, str]] = field(default_factory=list)
    resumed: list[tuple[str, int]] = field(default_factory=list)  # (mbox, byte offset continued from)
    bytes: int = 0
    storage_error: str = ""  # set when the journal failed; the import stopped there
    not_archived: list[str] = field(default_factory=list)  # read but not journaled because storage failed
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def seen(self) -> int:
        return self.archived + self.duplicate

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        return self.seen / self.elapsed if self.elapsed > 0 else 0.0


def import_paths(
    paths: Iterable[Path],
    *,
    journal: Journal,
    sessions: sessionmaker[Session],
    max_message_bytes: int,
    custodian: str = "",
    batch_messages: int = DEFAULT_BATCH_MESSAGES,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    checkpoint_min_bytes: int = DEFAULT_CHECKPOINT_MIN_BYTES,
    max_zip_members: int = ExtractionLimits.max_zip_members,
    max_zip_ratio: int = ExtractionLimits.max_zip_ratio,
    on_progress: Callable[[ImportSummary], None] | None = None,
    read_facts: StartFacts | None = None,
) -> ImportSummary:
    """Archive every message under ``paths``; refuse, with a reason, whatever is not mail.

    Messages go to ``Journal.journal_many`` in batches (one fsync round and one catalogue
    transaction per batch). Re-running is cheap and archives nothing twice: digests the
    catalogue already has are skipped before the journal sees them, and a large mbox
    continues from the checkpoint of its last committed batch.
    """
    if custodian:
        custodian = normalise_address(custodian)
        if not custodian:
            raise ValueError("custodian must be an email address")
    summary = ImportSummary()
    options = SourceOptions(
        max_message_bytes=max_message_bytes,
        custodian=custodian,
        resume_point=lambda key: checkpoint.load(sessions, key),
        checkpoint_min_bytes=checkpoint_min_bytes,
        max_zip_members=max_zip_members,
        max_zip_ratio=max_zip_ratio,
    )
    committer = _Committer(journal, sessions, custodian, summary, read_facts)
    batch = _Batch()
    try:
        for item in iter_items(list(paths), options):
            if isinstance(item, FoundMessage):
                batch.found.append(item)
                batch.size += len(item.raw)
                if len(batch.found) >= batch_messages or batch.size >= batch_bytes:
                    committer.submit(batch)
                    batch = _Batch()
                    _report(on_progress, summary)
            elif isinstance(item, Checkpoint):
                batch.checkpoints.append(item)
            elif isinstance(item, Refusal):
                summary.refused.append((escaped(item.location), escaped(item.reason)))
            elif isinstance(item, Skipped):
                summary.skipped.append((escaped(item.location), escaped(item.reason)))
            elif isinstance(item, Resumed):
                summary.resumed.append((escaped(item.location), item.position))
        committer.submit(batch)
        committer.wait()
    except _StorageFailed:
        pass  # recorded in summary.storage_error; stopping is the only safe thing to do
    finally:
        committer.close()
    summary.finished = time.monotonic()
    _report(on_progress, summary)
    return summary


class _StorageFailed(Exception):
    pass


@dataclass
class _Batch:
    """Messages for one journal_many call, and the checkpoints that become true with it."""

    found: list[FoundMessage] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    size: int = 0
    facts: Callable[[], list[HeaderFacts]] | None = None  # header facts of ``found``, being read elsewhere


class _Committer:
    """Journals batches one at a time in a worker thread while the next batch is being read.

    Batches are committed strictly in order and a checkpoint is saved only after its own
    batch, so "everything before this position is durable" stays true; the overlap only
    hides reading and hashing behind the fsyncs and the catalogue commit.
    """

    def __init__(self, journal: Journal, sessions: sessionmaker[Session], custodian: str, summary: ImportSummary,
                 read_facts: StartFacts | None = None) -> None:
        self._journal = journal
        self._read_facts = read_facts
        self._sessions = sessions
        self._custodian = custodian
        self._summary = summary
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-journal")
        self._in_flight: Future[None] | None = None

    def submit(self, batch: _Batch) -> None:
        if self._read_facts is not None and batch.found:
            # Started before the previous batch's commit is waited for, so the header
            # blocks are parsed while that commit's fsyncs run.
            batch.facts = self._read_facts([f.raw for f in batch.found])
        try:
            self.wait()
        except _StorageFailed:
            self._summary.not_archived.extend(escaped(f.location) for f in batch.found)
            raise
        self._in_flight = self._worker.submit(self._commit, batch)

    def wait(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.result()

    def close(self) -> None:
        self._worker.shutdown(wait=True)

    def _commit(self, batch: _Batch) -> None:
        try:
            self._journal_all(batch.found, batch.facts() if batch.facts is not None else None)
            # Only now is everything before these positions durable: a kill before this
            # line re-reads at most one batch, which the journal reports as duplicates.
            checkpoint.save(self._sessions, batch.checkpoints)
        except (JournalError, SQLAlchemyError) as error:
            self._summary.storage_error = str(error)
            self._summary.not_archived.extend(escaped(f.location) for f in batch.found)
            raise _StorageFailed from error

    def _journal_all(self, found: list[FoundMessage], facts: list[HeaderFacts] | None) -> None:
        if not found:
            return
        digests = [sha256_hex(f.raw) for f in found]
        # A message the archive has gains nothing from this import unless it names a
        # custodian the message is not yet attributed to (that widens its search scope).
        if self._custodian:
            known = _attributed_to(self._sessions, digests, self._custodian)
        else:
            known = self._journal.known_digests(digests)
        todo = [f for f, digest in zip(found, digests) if digest not in known]
        todo_facts = None if facts is None else [fact for fact, digest in zip(facts, digests) if digest not in known]
        self._summary.duplicate += len(found) - len(todo)
        now = utcnow()
        arrivals = [
            Arrival(
                raw=f.raw,
                envelope=Envelope(received_at=f.received_at or now),
                source="import",
                source_detail=f.location,  # the journal keeps it exactly (escaped)
                custodian=self._custodian,
            )
            for f in todo
        ]
        for receipt in self._journal.journal_many(arrivals, facts=todo_facts):
            if receipt.duplicate:
                self._summary.duplicate += 1
            else:
                self._summary.archived += 1
        self._summary.bytes += sum(len(f.raw) for f in found)


def _attributed_to(sessions: sessionmaker[Session], digests: list[str], mailbox: str) -> set[str]:
    """Which of these digests are archived and already in ``mailbox``'s scope (a read, no writes)."""
    found: set[str] = set()
    unique = list(dict.fromkeys(digests))
    with sessions() as session:
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            query = (select(messages.c.sha256).join(message_mailboxes, message_mailboxes.c.message_id == messages.c.id)
                     .where(messages.c.sha256.in_(chunk), message_mailboxes.c.mailbox == mailbox))
            found.update(session.scalars(query))
    return found


def _report(on_progress: Callable[[ImportSummary], None] | None, summary: ImportSummary) -> None:
    if on_progress is not None:
        on_progress(summary)


__all__ = ["DEFAULT_BATCH_BYTES", "DEFAULT_BATCH_MESSAGES", "ImportSummary", "import_paths"]
