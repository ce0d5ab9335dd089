"""Journal: make a received message durable (blob, then catalogue row and outbox) before it is acknowledged."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from archiver.envelope import Envelope, envelope_str
from archiver.headers import HeaderFacts, domain_of, normalise_address, read_header_facts
from indexer import outbox
from retention import policies
from storage.blobstore import BlobStore, BlobStoreError, LockRequest, sha256_hex
from storage.tables import envelopes, message_domains, message_mailboxes, messages
from storage.sql import insert_ignoring_conflicts, insert_returning_inserted
from storage.text import escaped, storable
from storage.timeutil import as_utc, utcnow


class JournalError(RuntimeError):
    """The message could not be made durable; nothing was acknowledged (the sender must retry)."""


@dataclass(frozen=True)
class Arrival:
    """One message to journal: its exact bytes, how it came, and whose it is."""

    raw: bytes
    envelope: Envelope
    source: str  # "smtp", "journal-report", "import"
    source_detail: str = ""
    custodian: str = ""  # mailbox the message is attributed to (import --mailbox)


@dataclass(frozen=True)
class JournalReceipt:
    message_id: int
    sha256: str
    duplicate: bool  # these exact bytes were archived before (a new envelope may still be recorded)


def mailboxes_of(arrival: Arrival, facts: HeaderFacts) -> tuple[str, ...]:
    """Every mailbox a message belongs to: custodian, envelope sender and recipients, header people.

    As the catalogue stores them (``storable``): the index takes its scope keys from there.
    """
    envelope = arrival.envelope
    candidates = [arrival.custodian, envelope_str(envelope.mail_from), *map(envelope_str, envelope.rcpt_to), *facts.addresses]
    seen: dict[str, None] = {}
    for candidate in candidates:
        address = storable(normalise_address(candidate))
        if address:
            seen[address] = None
    return tuple(seen)


def envelope_fingerprint(arrival: Arrival) -> str:
    envelope = arrival.envelope
    canonical = json.dumps(
        [arrival.source, envelope.mail_from, list(envelope.rcpt_to), envelope.client_address, envelope.helo, arrival.custodian],
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class Journal:
    """Writes arrivals through ``BlobStore`` and the catalogue, in that order.

    The blob is durable before its catalogue row exists, so a crash between the two
    leaves at worst an orphan blob (reported by ``verify``), never a row without bytes.
    A message of a domain whose policy asks for Object Lock is written locked: its lock
    is worked out before the blob is written and goes on with the write itself, so the
    object never exists unlocked.
    """

    def __init__(self, blobs: BlobStore, sessions: sessionmaker[Session]) -> None:
        self._blobs = blobs
        self._sessions = sessions

    def journal(self, arrival: Arrival) -> JournalReceipt:
        return self.journal_many([arrival])[0]

    def journal_many(self, arrivals: Sequence[Arrival], *, facts: Sequence[HeaderFacts] | None = None) -> list[JournalReceipt]:
        """Journal a batch: all blobs durable, then one catalogue transaction.

        ``facts`` are the arrivals' ``read_header_facts``, if the caller has read them already.
        """
        if not arrivals:
            return []
        if facts is None:
            facts = [read_header_facts(arrival.raw) for arrival in arrivals]
        elif len(facts) != len(arrivals):
            raise ValueError("journal_many: one HeaderFacts per arrival")
        facts = list(facts)
        mailboxes = [mailboxes_of(arrival, fact) for arrival, fact in zip(arrivals, facts)]
        try:
            locks = self._locks(arrivals, mailboxes)
        except SQLAlchemyError as error:
            raise JournalError(f"catalogue failed: {error.__class__.__name__}: {error}") from error
        raws = [arrival.raw for arrival in arrivals]
        try:
            digests = self._blobs.put_many(raws, locks=locks) if any(locks) else self._blobs.put_many(raws)
        except BlobStoreError as error:
            raise JournalError(f"blob store failed: {error}") from error
        try:
            with self._sessions.begin() as session:
                return self._record(session, arrivals, digests, facts, mailboxes)
        except SQLAlchemyError as error:
            raise JournalError(f"catalogue failed: {error.__class__.__name__}: {error}") from error

    def _locks(self, arrivals: Sequence[Arrival], mailboxes: list[tuple[str, ...]]) -> list[LockRequest | None]:
        """Each message's Object Lock from its domains' policies, read once for the batch."""
        with self._sessions() as session:
            locking = policies.with_object_lock(session=session)
        if not locking:
            return [None] * len(arrivals)
        now = utcnow()
        return [
            policies.object_lock_for(
                [locking[domain] for domain in _domains(boxes) if domain in locking],
                received_at=as_utc(arrival.envelope.received_at) or now,
                now=now,
            )
            for arrival, boxes in zip(arrivals, mailboxes)
        ]

    def known_digests(self, digests: Sequence[str]) -> set[str]:
        """Which of these digests are already archived (lets importers skip work on re-runs)."""
        found: set[str] = set()
        with self._sessions() as session:
            for start in range(0, len(digests), 500):
                chunk = list(digests[start : start + 500])
                found.update(session.scalars(select(messages.c.sha256).where(messages.c.sha256.in_(chunk))))
        return found

    def _record(
        self,
        session: Session,
        arrivals: Sequence[Arrival],
        digests: list[str],
        facts: list[HeaderFacts],
        mailboxes: list[tuple[str, ...]],
    ) -> list[JournalReceipt]:
        unique_digests = list(dict.fromkeys(digests))
        earlier = set(session.scalars(select(messages.c.sha256).where(messages.c.sha256.in_(unique_digests))))

        now = utcnow()
        new_rows = {}
        for arrival, digest, fact in zip(arrivals, digests, facts):
            if digest not in earlier and digest not in new_rows:
                new_rows[digest] = _message_row(arrival, digest, fact, now)
        # Rows go in key order: two writers then take row locks in the same order and
        # cannot deadlock each other (PostgreSQL).
        inserted = insert_returning_inserted(session, messages, [new_rows[d] for d in sorted(new_rows)], key="sha256")
        ids = dict(session.execute(select(messages.c.sha256, messages.c.id).where(messages.c.sha256.in_(unique_digests))).all())

        known_mailboxes = _mailboxes_by_message(session, [ids[d] for d in unique_digests if d not in inserted])
        envelope_rows, mailbox_rows, domain_rows, to_index = [], [], [], set()
        receipts = []
        seen_in_batch: set[str] = set()
        for arrival, digest, boxes in zip(arrivals, digests, mailboxes):
            message_id = ids[digest]
            # A duplicate: archived before this batch, by another writer meanwhile, or
            # earlier in this same batch.
            duplicate = digest not in inserted or digest in seen_in_batch
            seen_in_batch.add(digest)
            receipts.append(JournalReceipt(message_id=message_id, sha256=digest, duplicate=duplicate))
            envelope_rows.append(_envelope_row(message_id, arrival, now))
            if not duplicate or not set(boxes) <= known_mailboxes.get(message_id, set()):
                to_index.add(message_id)  # new message, or its scope widened
            known_mailboxes.setdefault(message_id, set()).update(boxes)
            mailbox_rows.extend({"message_id": message_id, "mailbox": m} for m in boxes)
            domain_rows.extend({"message_id": message_id, "domain": d} for d in _domains(boxes))

        insert_ignoring_conflicts(session, envelopes, sorted(envelope_rows, key=lambda r: (r["message_id"], r["fingerprint"])))
        insert_ignoring_conflicts(session, message_mailboxes, sorted(_distinct(mailbox_rows), key=lambda r: (r["message_id"], r["mailbox"])))
        insert_ignoring_conflicts(session, message_domains, sorted(_distinct(domain_rows), key=lambda r: (r["message_id"], r["domain"])))
        outbox.enqueue(session, sorted(to_index))
        return receipts


def _message_row(arrival: Arrival, digest: str, fact: HeaderFacts, now) -> dict:  # type: ignore[no-untyped-def]
    return {
        "sha256": digest,
        "size": len(arrival.raw),
        "first_received_at": as_utc(arrival.envelope.received_at) or now,
        "source": arrival.source,
        # Derived from the blob, and derived again by reindex: ``storable`` is enough.
        "subject": storable(fact.subject),
        "from_header": storable(fact.from_header),
        "to_header": storable(fact.to_header),
        "cc_header": storable(fact.cc_header),
        "date_header": fact.date,
        "message_id_header": storable(fact.message_id),
        "in_reply_to": storable(fact.in_reply_to),
        "references": storable(fact.references),
        "list_id": storable(fact.list_id),
        "header_defects": list(fact.defects),
        "parse_defects": None,
        "indexed_at": None,
    }


def _envelope_row(message_id: int, arrival: Arrival, now) -> dict:  # type: ignore[no-untyped-def]
    envelope = arrival.envelope
    return {
        "message_id": message_id,
        "fingerprint": envelope_fingerprint(arrival),
        "mail_from": envelope.mail_from,
        "rcpt_to": list(envelope.rcpt_to),
        "client_address": envelope.client_address,
        "helo": envelope.helo,
        "received_at": as_utc(envelope.received_at) or now,
        "source": arrival.source,
        # Envelope text (archiver.envelope.envelope_text) is storable as it is; the source
        # detail (an import's file path, which need not be UTF-8) is kept exactly, escaped.
        "source_detail": escaped(arrival.source_detail),
    }


def _mailboxes_by_message(session: Session, message_ids: list[int]) -> dict[int, set[str]]:
    result: dict[int, set[str]] = {}
    if not message_ids:
        return result
    rows = session.execute(select(message_mailboxes.c.message_id, message_mailboxes.c.mailbox).where(message_mailboxes.c.message_id.in_(message_ids)))
    for message_id, mailbox in rows:
        result.setdefault(message_id, set()).add(mailbox)
    return result


def _domains(mailboxes: Sequence[str]) -> set[str]:
    return {domain_of(mailbox) for mailbox in mailboxes}


def _distinct(rows: list[dict]) -> list[dict]:
    return list({tuple(sorted(row.items())): row for row in rows}.values())


__all__ = ["Arrival", "Journal", "JournalError", "JournalReceipt", "mailboxes_of", "sha256_hex"]
