"""The index outbox: leases survive crashes, a newer enqueue is never dropped, engine outages lose nothing."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from archiver.envelope import Envelope
from archiver.journal import Arrival
from indexer.outbox import LEASE, index_leased, lease_batch
from indexer.query.parser import parse_query
from indexer.scope import Scope
from indexer.search_backend import SearchBackendError
from postvault.indexing import InProcessParser, drain_outbox
from storage.models import IndexOutbox, Message
from storage.timeutil import utcnow
from tests.archive_factory import make_message



def _ids(archive, query: str, scope: Scope = Scope.everything()) -> set[int]:
    return {hit.id for hit in archive.search.search(parse_query(query), scope, limit=100).hits}


def test_a_worker_that_dies_mid_batch_loses_nothing(archive) -> None:
    receipts = archive.journal.journal_many([Arrival(make_message(subject=f"crash {n}"), Envelope(), "import") for n in range(5)])
    leased = lease_batch(archive.sessions, 10)
    assert len(leased) == 5
    assert lease_batch(archive.sessions, 10) == []  # held by the "dead" worker
    # After the lease expires another worker takes the rows over.
    later = lease_batch(archive.sessions, 10, now=utcnow() + LEASE + LEASE)
    assert sorted(lease.message_id for lease in later) == sorted(r.message_id for r in receipts)


def test_scope_widened_while_indexing_is_indexed_again(archive) -> None:
    raw = make_message(subject="widening")
    first = archive.journal.journal(Arrival(raw, Envelope(rcpt_to=("a@x.org",)), "smtp"))
    leases = lease_batch(archive.sessions, 10)
    parse = InProcessParser(archive.blobs, archive.settings)

    def parse_while_a_copy_arrives(digests):
        # The batch's catalogue facts are already loaded; now the same message arrives
        # for another mailbox, which bumps the outbox generation.
        archive.journal.journal(Arrival(raw, Envelope(rcpt_to=("late@y.org",)), "smtp"))
        return parse(digests)

    index_leased(archive.sessions, archive.search, leases, parse_while_a_copy_arrives)
    with archive.sessions() as session:
        assert session.scalars(select(IndexOutbox.message_id)).all() == [first.message_id]
    assert _ids(archive, "widening", Scope.of(mailboxes=["late@y.org"])) == set()
    assert _ids(archive, "widening", Scope.of(mailboxes=["a@x.org"])) == {first.message_id}
    drain_outbox(archive)
    assert _ids(archive, "widening", Scope.of(mailboxes=["late@y.org"])) == {first.message_id}


def test_engine_outage_keeps_rows_and_records_the_error(archive) -> None:
    archive.journal.journal(Arrival(make_message(subject="outage"), Envelope(), "import"))

    class DownEngine:
        def index(self, documents: Sequence) -> None:
            raise SearchBackendError("connection refused")

    leases = lease_batch(archive.sessions, 10)
    report = index_leased(archive.sessions, DownEngine(), leases, InProcessParser(archive.blobs, archive.settings))  # type: ignore[arg-type]
    assert report.indexed == 0 and report.failed == 1
    with archive.sessions() as session:
        row = session.scalars(select(IndexOutbox)).one()
        assert "connection refused" in row.last_error and row.leased_until is not None
        assert session.scalars(select(Message.indexed_at)).one() is None
    # Once the engine is back and the retry delay has passed, the row drains.
    later = lease_batch(archive.sessions, 10, now=utcnow() + LEASE)
    index_leased(archive.sessions, archive.search, later, InProcessParser(archive.blobs, archive.settings))
    assert len(_ids(archive, "outage")) == 1


def test_missing_blob_is_reported_not_fatal(archive) -> None:
    receipt = archive.journal.journal(Arrival(make_message(subject="vanishing"), Envelope(), "import"))
    archive.journal.journal(Arrival(make_message(subject="staying"), Envelope(), "import"))
    archive.blobs.delete(receipt.sha256)
    report = drain_outbox(archive)
    assert report.indexed == 1 and report.failed == 1
    assert any("vanishing" not in e and str(receipt.message_id) in e for e in report.errors)
    assert len(_ids(archive, "staying")) == 1


def test_a_message_that_keeps_failing_is_left_alone_until_reindex(archive) -> None:
    from indexer.outbox import MAX_ATTEMPTS
    from indexer.reindex import enqueue_all

    receipt = archive.journal.journal(Arrival(make_message(subject="cursed"), Envelope(), "import"))
    archive.blobs.delete(receipt.sha256)
    moment = utcnow()
    for attempt in range(MAX_ATTEMPTS):
        moment += LEASE * 10  # past any retry delay
        leases = lease_batch(archive.sessions, 10, now=moment)
        assert [lease.message_id for lease in leases] == [receipt.message_id], attempt
        index_leased(archive.sessions, archive.search, leases, InProcessParser(archive.blobs, archive.settings))
    assert lease_batch(archive.sessions, 10, now=moment + LEASE * 10) == []
    with archive.sessions() as session:
        assert "blob" in session.scalars(select(IndexOutbox.last_error)).one().lower()
    enqueue_all(archive.sessions)  # what `reindex` does: every message gets its attempts back
    assert len(lease_batch(archive.sessions, 10, now=moment + LEASE * 10)) == 1


def test_engine_outages_do_not_count_against_a_message(archive) -> None:
    from indexer.outbox import MAX_ATTEMPTS

    archive.journal.journal(Arrival(make_message(subject="patient"), Envelope(), "import"))

    class DownEngine:
        def index(self, documents: Sequence) -> None:
            raise SearchBackendError("connection refused")

    moment = utcnow()
    for _ in range(MAX_ATTEMPTS * 2):
        moment += LEASE
        leases = lease_batch(archive.sessions, 10, now=moment)
        assert len(leases) == 1
        index_leased(archive.sessions, DownEngine(), leases, InProcessParser(archive.blobs, archive.settings))  # type: ignore[arg-type]
    later = lease_batch(archive.sessions, 10, now=moment + LEASE)
    index_leased(archive.sessions, archive.search, later, InProcessParser(archive.blobs, archive.settings))
    assert len(_ids(archive, "patient")) == 1


def test_prefetching_parser_keeps_order_and_reports_unreadable_blobs(archive, monkeypatch) -> None:
    import threading

    import postvault.indexing as indexing

    receipts = archive.journal.journal_many(
        [Arrival(make_message(subject=f"prefetched {n}"), Envelope(), "import") for n in range(30)]
    )
    digests = [receipt.sha256 for receipt in receipts]
    archive.blobs.delete(digests[7])
    lock = threading.Lock()
    started = parsed = 0
    most_ahead = 0  # the most blobs read (or being read) but not yet parsed
    blobs = archive.blobs

    class CountingStore:
        def get(self, digest: str) -> bytes:
            nonlocal started, most_ahead
            with lock:
                started += 1
                most_ahead = max(most_ahead, started - parsed)
            return blobs.get(digest)

    real_parse = indexing.parse_fetched

    def counting_parse(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal parsed
        outcome = real_parse(*args, **kwargs)
        with lock:
            parsed += 1
        return outcome

    monkeypatch.setattr(indexing, "parse_fetched", counting_parse)
    prefetched = InProcessParser(CountingStore(), archive.settings, prefetch=4)(digests)  # type: ignore[arg-type]
    reference = [InProcessParser(archive.blobs, archive.settings)([digest])[0] for digest in digests]

    assert [outcome.sha256 for outcome in prefetched] == digests
    assert [o.parsed.subject if o.parsed else o.error for o in prefetched] == [
        o.parsed.subject if o.parsed else o.error for o in reference
    ]
    assert prefetched[7].parsed is None and "prefetched" not in prefetched[7].error and not prefetched[7].store_unavailable
    assert started == 30
    assert 1 < most_ahead <= 5, "reads run ahead of parsing, but only by the window (4, plus the one being parsed)"
