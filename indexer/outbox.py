"""The index outbox, its one home: enqueue, lease, parse, index, and record each message's outcome."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import ColumnElement, and_, bindparam, case, exists, func, not_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from addresses import address_key
from indexer.document import Address, IndexDocument, ParsedMessage
from indexer.search_backend import IndexLockedError, SearchBackend, SearchBackendError
from storage.sql import upsert
from storage.tables import envelopes, index_outbox, message_domains, message_mailboxes, messages
from storage.text import storable, unescaped
from storage.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

# A worker that dies keeps its lease this long; then another worker takes the rows over.
LEASE = timedelta(minutes=5)
# After a failure the row waits before the next attempt, growing with each attempt.
RETRY_BASE = timedelta(seconds=5)
RETRY_MAX = timedelta(minutes=30)
# A message that failed (or killed its parser) this many times is left alone: it stays on
# the outbox with its error, shown by `status` and `verify`, until `reindex --failed` (or a
# full `reindex`) retries it. Engine outages do not count against a message.
MAX_ATTEMPTS = 5
# The most of an error kept on a row: enough for a traceback's last line and its context.
ERROR_CHARS = 2000


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
    """A parsed message, or why it could not be read from the blob store or parsed."""

    sha256: str
    parsed: ParsedMessage | None
    error: str = ""
    # The blob store could not be read (down, refusing): an outage, not the message's
    # fault, so the row goes back like after a search engine failure, attempt not counted.
    store_unavailable: bool = False


@dataclass
class DrainReport:
    indexed: int = 0
    failed: int = 0  # not indexed this time, for any reason
    batches: int = 0
    errors: list[str] = field(default_factory=list)
    deferred: int = 0  # of ``failed``, handed back by an outage (engine or blob store): not their fault


# (sha256 digests) -> outcomes in the same order; in-process or a pool of processes.
ParseMany = Callable[[Sequence[str]], list[ParseOutcome]]
# (sha256 digests) -> a thunk returning their outcomes: lets parsing of the next batch
# run in other processes while this one is indexed.
StartParse = Callable[[Sequence[str]], Callable[[], list[ParseOutcome]]]


# --- enqueueing and leasing ---


def enqueue(session: Session, message_ids: Sequence[int]) -> None:
    """Put messages on the index outbox, in the caller's transaction.

    A message already there gets its generation bumped (a worker indexing the older one
    leaves the row for another pass) and its attempts back: a fresh enqueue (a wider
    scope, or `reindex`) gives a message that kept failing its full number of tries again.
    """
    now = utcnow()
    rows = [{"message_id": mid, "enqueued_at": now, "generation": 1, "attempts": 0, "last_error": "", "leased_until": None}
            for mid in message_ids]
    upsert(session, index_outbox, rows, keys=["message_id"],
           update={"generation": index_outbox.c.generation + 1, "enqueued_at": now, "attempts": 0, "last_error": ""})


def free_row(now: datetime) -> ColumnElement[bool]:
    """The rule for a row a worker may lease now: no live lease, no retry pending, tries left."""
    return and_(
        or_(index_outbox.c.leased_until.is_(None), index_outbox.c.leased_until < now),
        index_outbox.c.attempts < MAX_ATTEMPTS,
    )


def lease_batch(sessions: sessionmaker[Session], size: int, *, now: datetime | None = None) -> list[Lease]:
    """Claim up to ``size`` free outbox rows, oldest first."""
    now = now or utcnow()
    free = free_row(now)
    with sessions.begin() as session:
        candidates = select(index_outbox.c.message_id).where(free).order_by(index_outbox.c.enqueued_at).limit(size)
        if session.get_bind().dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        ids = list(session.scalars(candidates))
        if not ids:
            return []
        rows = session.execute(
            update(index_outbox)
            .where(index_outbox.c.message_id.in_(ids), free)
            .values(leased_until=now + LEASE, attempts=index_outbox.c.attempts + 1)
            .returning(index_outbox.c.message_id, index_outbox.c.generation)
        ).all()
    return [Lease(message_id=row[0], generation=row[1]) for row in rows]


def leasable(sessions: sessionmaker[Session], *, now: datetime | None = None) -> int:
    """How many rows ``lease_batch`` would find now: what a new index task would get."""
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(index_outbox).where(free_row(now or utcnow()))) or 0)


# --- one batch: facts, parse, documents, index, record ---


def load_facts(sessions: sessionmaker[Session], message_ids: Sequence[int]) -> dict[int, CatalogueFacts]:
    with sessions() as session:
        rows = session.execute(
            select(messages.c.id, messages.c.sha256, messages.c.size, messages.c.first_received_at)
            .where(messages.c.id.in_(message_ids))
        ).all()
        mailboxes = _grouped(session.execute(
            select(message_mailboxes.c.message_id, message_mailboxes.c.mailbox).where(message_mailboxes.c.message_id.in_(message_ids))
        ))
        domains = _grouped(session.execute(
            select(message_domains.c.message_id, message_domains.c.domain).where(message_domains.c.message_id.in_(message_ids))
        ))
        recipients: dict[int, list[str]] = {}
        for message_id, rcpt_to in session.execute(
            select(envelopes.c.message_id, envelopes.c.rcpt_to).where(envelopes.c.message_id.in_(message_ids))
        ):
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
        for row in rows
    }


def build_document(facts: CatalogueFacts, parsed: ParsedMessage) -> IndexDocument:
    """Join parsed headers and text with the catalogue's envelope and scope facts."""
    in_headers = {address_key(a.address) for a in parsed.to + parsed.cc + parsed.bcc}
    # Envelope recipients named in no To/Cc header were Bcc'd (RFC 5321 section 7.2).
    # The catalogue keeps envelope text escaped (storage.text.escaped): compare what the
    # client sent, as the header parser reads it, not the escape sequence.
    recipients = dict.fromkeys(address_key(storable(unescaped(r))) for r in facts.envelope_recipients)
    envelope_bcc = tuple(Address(name="", address=r) for r in recipients if r not in in_headers and "@" in r)
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


_LATEST = datetime.max.replace(tzinfo=timezone.utc)


def _plausible_date(header_date: datetime | None, received_at: datetime) -> datetime:
    """The header Date, unless it is missing or absurd (before 1970, or days in the future)."""
    if header_date is None:
        return received_at
    # An mbox From_ line may claim any year up to 9999, and two days past the last one
    # does not exist.
    latest = received_at + timedelta(days=2) if received_at < _LATEST - timedelta(days=2) else _LATEST
    if header_date.year < 1970 or header_date > latest:
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


def parse_now(parse_many: ParseMany) -> StartParse:
    """A ``StartParse`` for a parser that has no way to start early: it parses at once."""

    def start(digests: Sequence[str]) -> Callable[[], list[ParseOutcome]]:
        outcomes = parse_many(digests)
        return lambda: outcomes

    return start


def prepare_batch(sessions: sessionmaker[Session], leases: Sequence[Lease], start_parse: StartParse) -> PreparedBatch:
    facts = load_facts(sessions, [lease.message_id for lease in leases])
    digests = [facts[lease.message_id].sha256 for lease in leases if lease.message_id in facts]
    return PreparedBatch(leases=tuple(leases), facts=facts, outcomes=start_parse(digests))


def complete_batch(sessions: sessionmaker[Session], backend: SearchBackend, batch: PreparedBatch) -> DrainReport:
    """Index a prepared batch. Rows leave the outbox only after the backend has committed.

    Every stage that looks at one message (parse, document, the engine's conversion and
    acceptance) is judged per message: one that fails is recorded as that message's
    failure, with its error, and the rest of the batch is indexed.
    """
    report = DrainReport(batches=1)
    documents: dict[int, IndexDocument] = {}
    defects: dict[int, tuple[str, ...]] = {}
    failed: list[tuple[Lease, str]] = []
    unavailable: list[tuple[Lease, str]] = []
    by_id = {lease.message_id: lease for lease in batch.present}
    for lease, outcome in zip(batch.present, batch.outcomes()):
        if outcome.store_unavailable:
            unavailable.append((lease, outcome.error))
        elif outcome.parsed is None:
            failed.append((lease, outcome.error or "the message could not be parsed"))
        else:
            try:
                documents[lease.message_id] = build_document(batch.facts[lease.message_id], outcome.parsed)
            except Exception as error:  # a message the document rules did not foresee: its failure alone
                failed.append((lease, f"building its index document failed: {_describe(error)}"))
            else:
                defects[lease.message_id] = outcome.parsed.defects
    try:
        rejected = _index_isolating(backend, list(documents.values()))
    except IndexLockedError:
        # Another process (a running `serve`) owns the index: hand the rows straight back.
        unlease(sessions, batch.leases)
        raise
    except SearchBackendError as error:
        # The engine is down: nothing is lost, the rows stay and are retried soon; this
        # is not the messages' fault, so it does not count against them.
        release(sessions, batch.leases, error=str(error))
        report.failed += len(batch.leases)
        report.deferred += len(batch.leases)
        report.errors.append(str(error))
        return report
    failed.extend((by_id[message_id], f"the search engine refused it: {reason}")
                  for message_id, reason in rejected.items() if message_id in documents)
    done = [(by_id[message_id], defects[message_id]) for message_id in documents if message_id not in rejected]
    _finish(sessions, done, failed, batch.gone)
    if unavailable:  # the blob store is down: an outage, like the engine's above
        release(sessions, [lease for lease, _ in unavailable], error=unavailable[0][1])
    report.indexed += len(done)
    report.failed += len(failed) + len(unavailable)
    report.deferred += len(unavailable)
    report.errors.extend(f"message {lease.message_id}: {error}" for lease, error in failed + unavailable)
    return report


def _index_isolating(backend: SearchBackend, documents: list[IndexDocument]) -> dict[int, str]:
    """``backend.index``, and the ids it refused; an unexpected error is narrowed to its documents.

    An adapter reports the documents it refuses; an exception that is not an engine
    failure (a bug meeting one odd document) would otherwise sink the whole batch, so the
    batch is indexed again one document at a time to find the ones it belongs to.
    """
    try:
        return dict(backend.index(documents) or {})  # None from a stand-in engine: nothing refused
    except SearchBackendError:
        raise
    except Exception as error:
        if len(documents) <= 1:
            return {document.id: _describe(error) for document in documents}
        log.warning("indexing a batch of %d raised %s; indexing it one message at a time", len(documents), _describe(error))
    rejected: dict[int, str] = {}
    for document in documents:
        rejected.update(_index_isolating(backend, [document]))
    return rejected


def index_leased(sessions: sessionmaker[Session], backend: SearchBackend, leases: Sequence[Lease], parse_many: ParseMany) -> DrainReport:
    """Parse and index one leased batch, start to finish."""
    return complete_batch(sessions, backend, prepare_batch(sessions, leases, parse_now(parse_many)))


def _finish(sessions: sessionmaker[Session], done, failed, gone) -> None:  # type: ignore[no-untyped-def]
    """Record the batch in one transaction, with one executemany per statement."""
    now = utcnow()
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
                index_outbox.delete().where(
                    and_(index_outbox.c.message_id == bindparam("mid"), index_outbox.c.generation == bindparam("generation"))
                ),
                [{"mid": lease.message_id, "generation": lease.generation} for lease in finished],
            )
            # If a newer generation kept a row alive, free it for the next batch at once.
            session.execute(
                index_outbox.update()
                .where(index_outbox.c.message_id.in_([lease.message_id for lease in finished]))
                .values(leased_until=None)
            )
        for lease, error in failed:
            _schedule_retry(session, lease, error, now)


def unlease(sessions: sessionmaker[Session], leases: Sequence[Lease]) -> None:
    with sessions.begin() as session:
        session.execute(
            update(index_outbox)
            .where(index_outbox.c.message_id.in_([lease.message_id for lease in leases]))
            .values(leased_until=None, attempts=index_outbox.c.attempts - 1)
        )


def release(sessions: sessionmaker[Session], leases: Iterable[Lease], *, error: str) -> None:
    """Hand rows back after an engine failure: retry after RETRY_BASE, attempt not counted."""
    now = utcnow()
    with sessions.begin() as session:
        session.execute(
            update(index_outbox)
            .where(index_outbox.c.message_id.in_([lease.message_id for lease in leases]))
            .values(leased_until=now + RETRY_BASE, attempts=index_outbox.c.attempts - 1, last_error=_storable_error(error))
        )


def give_up_on_hung_parse(sessions: sessionmaker[Session], hung: str, others: Sequence[str], *, error: str) -> None:
    """A parse that will not stop takes its process down: record it, and hand its batch back.

    ``hung`` (a digest) failed, and the attempt counts; ``others``, the rest of its
    leased batch, go back at once with theirs not counted.
    """
    with sessions.begin() as session:
        ids = dict(session.execute(select(messages.c.sha256, messages.c.id).where(messages.c.sha256.in_([hung, *others]))).all())
        if hung in ids:
            _schedule_retry(session, Lease(message_id=ids[hung], generation=0), error, utcnow())
        innocent = [ids[digest] for digest in others if digest in ids and digest != hung]
        if innocent:
            session.execute(
                update(index_outbox)
                .where(index_outbox.c.message_id.in_(innocent), index_outbox.c.leased_until.is_not(None))
                .values(leased_until=None, attempts=index_outbox.c.attempts - 1)
            )


def _schedule_retry(session: Session, lease: Lease, error: str, now: datetime) -> None:
    attempts = session.scalar(select(index_outbox.c.attempts).where(index_outbox.c.message_id == lease.message_id)) or 1
    # At the limit no retry comes: the row is free of its lease, and only the attempt
    # count keeps workers away (see ``free_row``).
    retry_at = None if attempts >= MAX_ATTEMPTS else now + min(RETRY_BASE * (2 ** min(attempts - 1, 16)), RETRY_MAX)
    session.execute(
        update(index_outbox)
        .where(index_outbox.c.message_id == lease.message_id)
        .values(leased_until=retry_at, last_error=_storable_error(error) or "failed without an error message")
    )


def _storable_error(error: str) -> str:
    # An error may quote the message (a header with NUL, bytes that were not UTF-8): were it
    # written as it is, the catalogue would refuse it and the whole batch's outcome with it.
    return storable(error[:ERROR_CHARS])


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _grouped(rows) -> dict[int, list[str]]:  # type: ignore[no-untyped-def]
    result: dict[int, list[str]] = {}
    for key, value in rows:
        result.setdefault(key, []).append(value)
    return result


# --- what is not indexed, and retrying what failed ---


@dataclass(frozen=True)
class Unindexed:
    """Every catalogued message not (or not currently) indexed, by why; ``status`` shows these."""

    waiting: int  # on the outbox, not tried yet (or tried and handed back by an outage)
    in_progress: int  # leased by a worker now
    retrying: int  # failed with an error and tries left: retried after a delay
    failed: int  # failed MAX_ATTEMPTS times: left alone until `reindex --failed`
    not_queued: int  # never indexed and not on the outbox (a lost row): `reindex --failed` queues it
    oldest: datetime | None  # when the longest-waiting outbox row was enqueued
    last_error: str  # the most recent error of a failed or retrying message

    @property
    def backlog(self) -> int:
        return self.waiting + self.in_progress + self.retrying + self.failed

    @property
    def total(self) -> int:
        return self.backlog + self.not_queued


def _leased(now: datetime) -> ColumnElement[bool]:
    return and_(index_outbox.c.leased_until.is_not(None), index_outbox.c.leased_until >= now)


def _given_up(now: datetime) -> ColumnElement[bool]:
    """Rows that used every attempt and are not in their last one: they wait for a person."""
    return and_(index_outbox.c.attempts >= MAX_ATTEMPTS, not_(_leased(now)))


def unindexed(sessions: sessionmaker[Session], *, now: datetime | None = None) -> Unindexed:
    now = now or utcnow()
    leased = _leased(now)
    erred = index_outbox.c.last_error != ""
    reason = case(
        (_given_up(now), "failed"),
        (erred, "retrying"),
        (leased, "in_progress"),
        else_="waiting",
    )
    with sessions() as session:
        counts = dict(session.execute(select(reason, func.count()).select_from(index_outbox).group_by(reason)).all())
        oldest = session.scalar(select(func.min(index_outbox.c.enqueued_at)))
        last_error = session.scalar(
            select(index_outbox.c.last_error).where(erred).order_by(index_outbox.c.enqueued_at.desc()).limit(1)
        ) or ""
        not_queued = session.scalar(select(func.count()).select_from(messages).where(_never_indexed_nor_queued())) or 0
    return Unindexed(
        waiting=int(counts.get("waiting", 0)),
        in_progress=int(counts.get("in_progress", 0)),
        retrying=int(counts.get("retrying", 0)),
        failed=int(counts.get("failed", 0)),
        not_queued=int(not_queued),
        oldest=as_utc(oldest),
        last_error=last_error,
    )


def failed_messages(sessions: sessionmaker[Session], *, now: datetime | None = None) -> dict[int, str]:
    """Messages left alone after MAX_ATTEMPTS failures, with their last error."""
    with sessions() as session:
        return dict(session.execute(
            select(index_outbox.c.message_id, index_outbox.c.last_error)
            .where(_given_up(now or utcnow()))
            .order_by(index_outbox.c.message_id)
        ).all())


def retry_failed(sessions: sessionmaker[Session]) -> int:
    """Index again, soon, every message that failed, and every one never indexed nor queued.

    Failed rows (at the limit or waiting to retry) get their attempts back and lose their
    wait; a message whose outbox row was lost is queued again. The index is left as it
    is: only these messages are indexed again. Returns how many.
    """
    with sessions.begin() as session:
        retried = session.execute(
            update(index_outbox).where(index_outbox.c.last_error != "").values(attempts=0, leased_until=None, last_error="")
        ).rowcount or 0
        lost = list(session.scalars(select(messages.c.id).where(_never_indexed_nor_queued())))
        enqueue(session, lost)
    return int(retried) + len(lost)


def _never_indexed_nor_queued() -> ColumnElement[bool]:
    return and_(messages.c.indexed_at.is_(None), ~exists().where(index_outbox.c.message_id == messages.c.id))


def backlog(sessions: sessionmaker[Session]) -> tuple[int, datetime | None]:
    """How many messages wait for indexing, and since when the oldest has waited."""
    with sessions() as session:
        count, oldest = session.execute(select(func.count(), func.min(index_outbox.c.enqueued_at)).select_from(index_outbox)).one()
    return int(count), as_utc(oldest)


def utc_age(moment: datetime | None) -> timedelta | None:
    return None if moment is None else datetime.now(timezone.utc) - moment
