"""Drain the index outbox: lease a batch, parse its blobs, index, then clear the rows indexed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from indexer.document import Address, IndexDocument, ParsedMessage
from indexer.search_backend import IndexLockedError, SearchBackend, SearchBackendError
from storage.models import Envelope, IndexOutbox, Message, MessageDomain, MessageMailbox
from storage.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

# A worker that dies keeps its lease this long; then another worker takes the rows over.
LEASE = timedelta(minutes=5)
# After a failure the row waits before the next attempt, growing with each attempt.
RETRY_BASE = timedelta(seconds=5)
RETRY_MAX = timedelta(minutes=30)
# A message that failed (or killed its parser) this many times is left alone: it stays on
# the outbox with its error, shown by `status` and `verify`, until `reindex` retries it.
# Engine outages do not count against a message.
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Lease:
    message_id: int
    generation: int


@dataclass(frozen=True)
class CatalogueFacts:
    """What the catalogue knows about a message that the blob cannot say."""

    id: int
    sha256: str
    size: int
    received_at: datetime
    mailboxes: tuple[str, ...]
    domains: tuple[str, ...]
    envelope_recipients: tuple[str, ...]


@dataclass(frozen=True)
class ParseOutcome:
    """A parsed message, or why it could not be read from the blob store."""

    sha256: str
    parsed: ParsedMessage | None
    error: str = ""
    # The blob store could not be read (down, refusing): an outage, not the message's
    # fault, so the row goes back like after a search engine failure, attempt not counted.
    store_unavailable: bool = False


@dataclass
class DrainReport:
    indexed: int = 0
    failed: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)


# (sha256 digests) -> outcomes in the same order; in-process or a pool of processes.
ParseMany = Callable[[Sequence[str]], list[ParseOutcome]]


def lease_batch(sessions: sessionmaker[Session], size: int, *, now: datetime | None = None) -> list[Lease]:
    """Claim up to ``size`` outbox rows that no live worker holds, oldest first."""
    now = now or utcnow()
    with sessions.begin() as session:
        free = and_(
            or_(IndexOutbox.leased_until.is_(None), IndexOutbox.leased_until < now),
            IndexOutbox.attempts < MAX_ATTEMPTS,
        )
        candidates = select(IndexOutbox.message_id).where(free).order_by(IndexOutbox.enqueued_at).limit(size)
        if session.get_bind().dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        ids = list(session.scalars(candidates))
        if not ids:
            return []
        rows = session.execute(
            update(IndexOutbox)
            .where(IndexOutbox.message_id.in_(ids), free)
            .values(leased_until=now + LEASE, attempts=IndexOutbox.attempts + 1)
            .returning(IndexOutbox.message_id, IndexOutbox.generation)
        ).all()
    return [Lease(message_id=row[0], generation=row[1]) for row in rows]


def load_facts(sessions: sessionmaker[Session], message_ids: Sequence[int]) -> dict[int, CatalogueFacts]:
    with sessions() as session:
        messages = session.execute(
            select(Message.id, Message.sha256, Message.size, Message.first_received_at).where(Message.id.in_(message_ids))
        ).all()
        mailboxes = _grouped(session.execute(select(MessageMailbox.message_id, MessageMailbox.mailbox).where(MessageMailbox.message_id.in_(message_ids))))
        domains = _grouped(session.execute(select(MessageDomain.message_id, MessageDomain.domain).where(MessageDomain.message_id.in_(message_ids))))
        recipients: dict[int, list[str]] = {}
        for message_id, rcpt_to in session.execute(select(Envelope.message_id, Envelope.rcpt_to).where(Envelope.message_id.in_(message_ids))):
            recipients.setdefault(message_id, []).extend(rcpt_to or [])
    return {
        row.id: CatalogueFacts(
            id=row.id,
            sha256=row.sha256,
            size=row.size,
            received_at=as_utc(row.first_received_at) or utcnow(),
            mailboxes=tuple(sorted(mailboxes.get(row.id, ()))),
            domains=tuple(sorted(domains.get(row.id, ()))),
            envelope_recipients=tuple(dict.fromkeys(recipients.get(row.id, ()))),
        )
        for row in messages
    }


def build_document(facts: CatalogueFacts, parsed: ParsedMessage) -> IndexDocument:
    """Join parsed headers and text with the catalogue's envelope and scope facts."""
    in_headers = {a.address for a in parsed.to + parsed.cc + parsed.bcc}
    # Envelope recipients named in no To/Cc header were Bcc'd (RFC 5321 section 7.2).
    envelope_bcc = tuple(
        Address(name="", address=r.lower()) for r in facts.envelope_recipients if r.lower() not in in_headers and "@" in r
    )
    attachments = parsed.attachments
    return IndexDocument(
        id=facts.id,
        sha256=facts.sha256,
        date=_plausible_date(parsed.date, facts.received_at),
        size=facts.size,
        subject=parsed.subject,
        from_=parsed.from_ + parsed.sender,
        to=parsed.to,
        cc=parsed.cc,
        bcc=parsed.bcc + envelope_bcc,
        body=parsed.body_text,
        attachment_text="\n\n".join(a.text for a in attachments if a.text),
        filenames=tuple(a.filename for a in attachments if a.filename),
        has_attachment=bool(attachments),
        mailboxes=facts.mailboxes,
        domains=facts.domains,
        message_id=parsed.message_id,
    )


def _plausible_date(header_date: datetime | None, received_at: datetime) -> datetime:
    """The header Date, unless it is missing or absurd (before 1970, or days in the future)."""
    if header_date is None:
        return received_at
    if header_date.year < 1970 or header_date > received_at + timedelta(days=2):
        return received_at
    return header_date


@dataclass(frozen=True)
class PreparedBatch:
    """A leased batch whose catalogue facts are loaded and whose parsing has started."""

    leases: tuple[Lease, ...]
    facts: dict[int, CatalogueFacts]
    outcomes: Callable[[], list[ParseOutcome]]  # waits for the parse, in lease order of ``present``

    @property
    def present(self) -> list[Lease]:
        return [lease for lease in self.leases if lease.message_id in self.facts]

    @property
    def gone(self) -> list[Lease]:  # purged since they were queued
        return [lease for lease in self.leases if lease.message_id not in self.facts]


# (sha256 digests) -> a thunk returning their outcomes: lets parsing of the next batch
# run in other processes while this one is indexed.
StartParse = Callable[[Sequence[str]], Callable[[], list[ParseOutcome]]]


def prepare_batch(sessions: sessionmaker[Session], leases: Sequence[Lease], start_parse: StartParse) -> PreparedBatch:
    facts = load_facts(sessions, [lease.message_id for lease in leases])
    digests = [facts[lease.message_id].sha256 for lease in leases if lease.message_id in facts]
    return PreparedBatch(leases=tuple(leases), facts=facts, outcomes=start_parse(digests))


def complete_batch(sessions: sessionmaker[Session], backend: SearchBackend, batch: PreparedBatch) -> DrainReport:
    """Index a prepared batch. Rows leave the outbox only after the backend has committed."""
    report = DrainReport(batches=1)
    documents, done, failed, unavailable = [], [], [], []
    for lease, outcome in zip(batch.present, batch.outcomes()):
        if outcome.store_unavailable:
            unavailable.append((lease, outcome.error))
            continue
        if outcome.parsed is None:
            failed.append((lease, outcome.error))
            continue
        documents.append(build_document(batch.facts[lease.message_id], outcome.parsed))
        done.append((lease, outcome.parsed.defects))
    try:
        backend.index(documents)
    except IndexLockedError:
        # Another process (a running `serve`) owns the index: hand the rows straight back.
        unlease(sessions, batch.leases)
        raise
    except SearchBackendError as error:
        # The engine is down: nothing is lost, the rows stay and are retried soon; this
        # is not the messages' fault, so it does not count against them.
        release(sessions, batch.leases, error=str(error))
        report.failed += len(batch.leases)
        report.errors.append(str(error))
        return report
    _finish(sessions, done, failed, batch.gone)
    if unavailable:  # the blob store is down: an outage, like the engine's above
        release(sessions, [lease for lease, _ in unavailable], error=unavailable[0][1])
    report.indexed += len(done)
    report.failed += len(failed) + len(unavailable)
    report.errors.extend(f"message {lease.message_id}: {error}" for lease, error in failed + unavailable)
    return report


def index_leased(
    sessions: sessionmaker[Session], backend: SearchBackend, leases: Sequence[Lease], parse_many: ParseMany
) -> DrainReport:
    """Parse and index one leased batch, start to finish."""

    def parse_now(digests: Sequence[str]) -> Callable[[], list[ParseOutcome]]:
        outcomes = parse_many(digests)
        return lambda: outcomes

    return complete_batch(sessions, backend, prepare_batch(sessions, leases, parse_now))


def _finish(sessions: sessionmaker[Session], done, failed, gone) -> None:  # type: ignore[no-untyped-def]
    """Record the batch in one transaction, with one executemany per statement."""
    now = utcnow()
    outbox, messages = IndexOutbox.__table__, Message.__table__
    finished = [lease for lease, _ in done] + list(gone)
    with sessions.begin() as session:
        if done:
            session.execute(
                messages.update().where(messages.c.id == bindparam("mid")).values(indexed_at=now, parse_defects=bindparam("defects")),
                [{"mid": lease.message_id, "defects": list(defects)} for lease, defects in done],
            )
        if finished:
            # Only the generation we indexed: a newer enqueue (wider scope) must run again.
            session.execute(
                outbox.delete().where(and_(outbox.c.message_id == bindparam("mid"), outbox.c.generation == bindparam("generation"))),
                [{"mid": lease.message_id, "generation": lease.generation} for lease in finished],
            )
            # If a newer generation kept a row alive, free it for the next batch at once.
            session.execute(
                outbox.update().where(outbox.c.message_id.in_([lease.message_id for lease in finished])).values(leased_until=None)
            )
        for lease, error in failed:
            _schedule_retry(session, lease, error, now)


def unlease(sessions: sessionmaker[Session], leases: Sequence[Lease]) -> None:
    with sessions.begin() as session:
        session.execute(
            update(IndexOutbox)
            .where(IndexOutbox.message_id.in_([lease.message_id for lease in leases]))
            .values(leased_until=None, attempts=IndexOutbox.attempts - 1)
        )


def release(sessions: sessionmaker[Session], leases: Iterable[Lease], *, error: str) -> None:
    """Hand rows back after an engine failure: retry after RETRY_BASE, attempt not counted."""
    now = utcnow()
    with sessions.begin() as session:
        session.execute(
            update(IndexOutbox)
            .where(IndexOutbox.message_id.in_([lease.message_id for lease in leases]))
            .values(leased_until=now + RETRY_BASE, attempts=IndexOutbox.attempts - 1, last_error=error[:2000])
        )


def _schedule_retry(session: Session, lease: Lease, error: str, now: datetime) -> None:
    attempts = session.scalar(select(IndexOutbox.attempts).where(IndexOutbox.message_id == lease.message_id)) or 1
    delay = min(RETRY_BASE * (2 ** min(attempts - 1, 16)), RETRY_MAX)
    session.execute(
        update(IndexOutbox).where(IndexOutbox.message_id == lease.message_id).values(leased_until=now + delay, last_error=error[:2000])
    )


def _grouped(rows) -> dict[int, list[str]]:  # type: ignore[no-untyped-def]
    result: dict[int, list[str]] = {}
    for key, value in rows:
        result.setdefault(key, []).append(value)
    return result


def backlog(sessions: sessionmaker[Session]) -> tuple[int, datetime | None]:
    """How many messages wait for indexing, and since when the oldest has waited."""
    from sqlalchemy import func

    with sessions() as session:
        count, oldest = session.execute(select(func.count(), func.min(IndexOutbox.enqueued_at)).select_from(IndexOutbox)).one()
    return int(count), as_utc(oldest)


def utc_age(moment: datetime | None) -> timedelta | None:
    return None if moment is None else datetime.now(timezone.utc) - moment
