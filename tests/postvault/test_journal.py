"""Journaling: blob durable before row, dedupe by SHA-256, envelope and scope kept exactly."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from archiver.envelope import Envelope
from archiver.journal import Arrival, JournalError
from storage.blobstore import BlobStoreError
from storage.tables import envelopes, index_outbox, message_domains, message_mailboxes, messages
from tests.archive_factory import make_message


def count(session, table) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(table))


def test_journal_stores_bytes_row_scope_and_outbox(archive) -> None:
    raw = make_message(to="Bob <Bob@Example.org>", cc="carol@example.net")
    envelope = Envelope(mail_from="alice@example.com", rcpt_to=("Bob@Example.org", "Secret.Bcc@Hidden.example"),
                        client_address="192.0.2.7", helo="mx.example.com")
    receipt = archive.journal.journal(Arrival(raw, envelope, "smtp"))
    assert not receipt.duplicate
    assert archive.blobs.get(receipt.sha256) == raw
    with archive.sessions() as session:
        message = session.execute(select(messages).where(messages.c.id == receipt.message_id)).one()
        assert message.subject == "Quarterly budget" and message.size == len(raw)
        row = session.execute(select(envelopes)).one()
        assert row.rcpt_to == ["Bob@Example.org", "Secret.Bcc@Hidden.example"]  # spelling kept exactly
        assert (row.client_address, row.helo) == ("192.0.2.7", "mx.example.com")
        mailboxes = set(session.scalars(select(message_mailboxes.c.mailbox)))
        assert mailboxes == {"alice@example.com", "bob@example.org", "secret.bcc@hidden.example", "carol@example.net"}
        assert set(session.scalars(select(message_domains.c.domain))) == {"example.com", "example.org", "hidden.example", "example.net"}
        assert session.scalars(select(index_outbox.c.message_id)).all() == [receipt.message_id]


def test_same_bytes_twice_is_one_message_but_a_wider_envelope_requeues(archive) -> None:
    raw = make_message()
    first = archive.journal.journal(Arrival(raw, Envelope(rcpt_to=("bob@example.org",)), "smtp"))
    with archive.sessions.begin() as session:
        session.execute(delete(index_outbox))  # as if indexed
    same = archive.journal.journal(Arrival(raw, Envelope(rcpt_to=("bob@example.org",)), "smtp"))
    assert same.duplicate and same.message_id == first.message_id
    with archive.sessions() as session:
        assert count(session, index_outbox) == 0  # nothing new to index
        assert count(session, envelopes) == 1  # a retried delivery is not a new arrival
    wider = archive.journal.journal(Arrival(raw, Envelope(rcpt_to=("dave@example.org",)), "smtp"))
    assert wider.duplicate
    with archive.sessions() as session:
        assert count(session, messages) == 1
        assert count(session, envelopes) == 2
        assert session.scalars(select(index_outbox.c.message_id)).all() == [first.message_id]


def test_requeue_bumps_generation_so_an_in_flight_index_does_not_drop_it(archive) -> None:
    raw = make_message()
    archive.journal.journal(Arrival(raw, Envelope(rcpt_to=("a@x.org",)), "smtp"))
    archive.journal.journal(Arrival(raw, Envelope(rcpt_to=("b@x.org",)), "smtp"))
    with archive.sessions() as session:
        assert session.scalars(select(index_outbox.c.generation)).one() == 2


def test_storage_failure_raises_journal_error_and_leaves_no_row(archive) -> None:
    class BrokenStore:
        def put_many(self, blobs):
            raise BlobStoreError("disk on fire")

    from archiver.journal import Journal

    journal = Journal(BrokenStore(), archive.sessions)  # type: ignore[arg-type]
    try:
        journal.journal(Arrival(make_message(), Envelope(), "smtp"))
    except JournalError as error:
        assert "disk on fire" in str(error)
    else:
        raise AssertionError("a failed blob write must not be acknowledged")
    with archive.sessions() as session:
        assert count(session, messages) == 0


def test_batch_with_internal_duplicates(archive) -> None:
    a, b = make_message(subject="one"), make_message(subject="two")
    receipts = archive.journal.journal_many([Arrival(a, Envelope(), "import"), Arrival(b, Envelope(), "import"), Arrival(a, Envelope(), "import")])
    assert [r.duplicate for r in receipts] == [False, False, True]
    assert receipts[0].message_id == receipts[2].message_id != receipts[1].message_id
