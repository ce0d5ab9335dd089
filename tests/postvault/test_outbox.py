"""The index outbox: leases survive crashes, a newer enqueue is never dropped, engine outages lose nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select, update

from archiver.envelope import Envelope
from archiver.journal import Arrival
from archiver.importers import import_paths
from indexer.outbox import LEASE, MAX_ATTEMPTS, RETRY_MAX, index_leased, leasable, lease_batch, unindexed
from indexer.query.parser import parse_query
from indexer.scope import Scope
from indexer.search_backend import SearchBackendError
from postvault.indexing import InProcessParser, drain_outbox
from storage.tables import index_outbox, messages
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
        assert session.scalars(select(index_outbox.c.message_id)).all() == [first.message_id]
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
        row = session.execute(select(index_outbox)).one()
        assert "connection refused" in row.last_error and row.leased_until is not None
        assert session.scalars(select(messages.c.indexed_at)).one() is None
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
        assert "blob" in session.scalars(select(index_outbox.c.last_error)).one().lower()
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


# --- one message's failure is that message's alone (issue 8, 2.1 and 2.2) ---


def _rows(archive) -> dict[int, tuple[int, str]]:
    """message id -> (attempts, last_error) of every outbox row."""
    with archive.sessions() as session:
        return {row.message_id: (row.attempts, row.last_error) for row in session.execute(select(index_outbox))}


def _mbox(path: Path, *messages_with_dates: tuple[bytes, str]) -> Path:
    with path.open("wb") as handle:
        for raw, date in messages_with_dates:
            handle.write(f"From sender@example.com {date}\n".encode() + raw.replace(b"\r\n", b"\n") + b"\n")
    return path


def test_an_mbox_message_dated_9999_is_indexed_with_the_rest_of_its_batch(archive, tmp_path: Path) -> None:
    # The From_ line's date becomes the time received; two days past 9999-12-31 overflowed
    # while the document was built, and that sank the whole batch, attempt after attempt.
    mbox = _mbox(
        tmp_path / "mail.mbox",
        (make_message(subject="before the end of time"), "Mon Jan  1 00:00:00 2024"),
        (make_message(subject="the end of time"), "Fri Dec 31 23:59:59 9999"),
        (make_message(subject="after the end of time"), "Tue Jan  2 00:00:00 2024"),
    )
    summary = import_paths([mbox], journal=archive.journal, sessions=archive.sessions, max_message_bytes=archive.settings.max_message_bytes)
    assert summary.archived == 3
    report = drain_outbox(archive)
    assert (report.indexed, report.failed) == (3, 0), report.errors
    assert len(_ids(archive, "time")) == 3 and _rows(archive) == {}


def test_a_message_whose_parse_raises_fails_alone_with_its_error(archive, monkeypatch) -> None:
    import indexer.parsing

    real = indexer.parsing.parse_message

    def parse_or_raise(raw: bytes, *args, **kwargs):  # type: ignore[no-untyped-def]
        if b"Subject: poison" in raw:
            raise OverflowError("date value out of range")
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(indexer.parsing, "parse_message", parse_or_raise)
    receipts = archive.journal.journal_many([Arrival(make_message(subject=s), Envelope(), "import") for s in ("fine", "poison", "well")])
    poison = receipts[1].message_id
    report = drain_outbox(archive)
    assert (report.indexed, report.failed) == (2, 1)
    assert any(str(poison) in error and "date value out of range" in error for error in report.errors)
    assert _rows(archive) == {poison: (1, "parsing failed: OverflowError: date value out of range")}
    assert _ids(archive, "fine OR well") == {receipts[0].message_id, receipts[2].message_id}

    # Each retry costs the poison message an attempt, and no other message any; at the
    # limit it is left alone, counted as failed, with its error.
    moment = utcnow()
    for _ in range(MAX_ATTEMPTS - 1):
        moment += RETRY_MAX * 2
        index_leased(archive.sessions, archive.search, lease_batch(archive.sessions, 10, now=moment),
                     InProcessParser(archive.blobs, archive.settings))
    assert _rows(archive)[poison][0] == MAX_ATTEMPTS
    assert lease_batch(archive.sessions, 10, now=moment + RETRY_MAX * 2) == []
    counts = unindexed(archive.sessions, now=moment + RETRY_MAX * 2)
    assert (counts.failed, counts.retrying, counts.waiting, counts.in_progress) == (1, 0, 0, 0)
    assert "date value out of range" in counts.last_error


def test_an_error_that_quotes_the_message_is_recorded_in_a_form_the_catalogue_takes(archive, monkeypatch) -> None:
    import indexer.parsing

    real = indexer.parsing.parse_message
    quoted = "bad header: caf" + b"\xe9".decode("utf-8", "surrogateescape") + "\x00!"

    def parse_or_raise(raw: bytes, *args, **kwargs):  # type: ignore[no-untyped-def]
        if b"Subject: quoting" in raw:
            raise ValueError(quoted)
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(indexer.parsing, "parse_message", parse_or_raise)
    receipts = archive.journal.journal_many([Arrival(make_message(subject=s), Envelope(), "import") for s in ("plain", "quoting")])
    # A lone surrogate cannot be encoded for SQLite (nor NUL stored by PostgreSQL): before,
    # writing the error failed the whole batch's transaction, the indexed message's too.
    report = drain_outbox(archive)
    assert (report.indexed, report.failed) == (1, 1)
    assert _rows(archive) == {receipts[1].message_id: (1, "parsing failed: ValueError: bad header: caf\ufffd\ufffd!")}


def test_a_blob_read_that_raises_outside_the_store_contract_fails_that_message_alone(archive) -> None:
    receipts = archive.journal.journal_many([Arrival(make_message(subject=f"read {n}"), Envelope(), "import") for n in range(3)])
    odd = receipts[1]
    blobs = archive.blobs

    class OddStore:
        def get(self, digest: str) -> bytes:
            if digest == odd.sha256:
                raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "a path the store could not name")
            return blobs.get(digest)

    for prefetch in (0, 4):
        leases = lease_batch(archive.sessions, 10, now=utcnow() + RETRY_MAX * 2 * (prefetch + 1))
        report = index_leased(archive.sessions, archive.search, leases, InProcessParser(OddStore(), archive.settings, prefetch=prefetch))  # type: ignore[arg-type]
        # The second time only the odd message is left, read through the prefetching path.
        assert (report.indexed, report.failed) == ((2, 1) if prefetch == 0 else (0, 1))
        assert _rows(archive)[odd.message_id][1].startswith("reading the blob failed: UnicodeDecodeError")
    assert _ids(archive, "read") == {receipts[0].message_id, receipts[2].message_id}


def test_a_document_that_cannot_be_built_fails_alone(archive, monkeypatch) -> None:
    import indexer.outbox as outbox

    receipts = archive.journal.journal_many([Arrival(make_message(subject=f"doc {n}"), Envelope(), "import") for n in range(4)])
    odd = receipts[2].message_id
    real = outbox.build_document

    def build_or_raise(facts, parsed):  # type: ignore[no-untyped-def]
        if facts.id == odd:
            raise ValueError("no such thing")
        return real(facts, parsed)

    monkeypatch.setattr(outbox, "build_document", build_or_raise)
    report = drain_outbox(archive)
    assert (report.indexed, report.failed) == (3, 1)
    assert _rows(archive) == {odd: (1, "building its index document failed: ValueError: no such thing")}


def test_a_document_the_engine_refuses_is_that_message_failure_not_an_outage(archive) -> None:
    receipts = archive.journal.journal_many([Arrival(make_message(subject=f"refused {n}"), Envelope(), "import") for n in range(3)])
    refused = receipts[1].message_id
    engine = archive.search

    class RefusingOne:
        """The real index, refusing one document as OpenSearch refuses one that breaks its mapping."""

        def index(self, documents: Sequence):  # type: ignore[no-untyped-def]
            assert engine.index([d for d in documents if d.id != refused]) == {}
            return {refused: "mapper_parsing_exception: failed to parse field [size]"}

    report = index_leased(archive.sessions, RefusingOne(), lease_batch(archive.sessions, 10), InProcessParser(archive.blobs, archive.settings))  # type: ignore[arg-type]
    assert (report.indexed, report.failed) == (2, 1)
    attempts, error = _rows(archive)[refused]
    # An outage would hand the attempt back; a refusal counts it.
    assert attempts == 1 and error == "the search engine refused it: mapper_parsing_exception: failed to parse field [size]"
    assert len(_ids(archive, "refused")) == 2


def test_an_exception_from_the_engine_that_is_not_an_outage_is_narrowed_to_its_document(archive) -> None:
    receipts = archive.journal.journal_many([Arrival(make_message(subject=f"narrow {n}"), Envelope(), "import") for n in range(5)])
    odd = receipts[3].message_id
    engine = archive.search

    class BuggyOnOne:
        def index(self, documents: Sequence):  # type: ignore[no-untyped-def]
            if any(d.id == odd for d in documents):
                raise TypeError("unexpected None")
            return engine.index(documents)

    report = index_leased(archive.sessions, BuggyOnOne(), lease_batch(archive.sessions, 10), InProcessParser(archive.blobs, archive.settings))  # type: ignore[arg-type]
    assert (report.indexed, report.failed) == (4, 1)
    assert _rows(archive) == {odd: (1, "the search engine refused it: TypeError: unexpected None")}


# --- one home for the outbox (issue 8, 4.1) ---


def test_leasable_counts_exactly_the_rows_lease_batch_takes(archive) -> None:
    from postvault.background import tasks

    receipts = archive.journal.journal_many([Arrival(make_message(subject=f"free {n}"), Envelope(), "import") for n in range(4)])
    with archive.sessions.begin() as session:
        # One row used every attempt: before, the beat sweep queued a task for it that leased nothing.
        session.execute(update(index_outbox).where(index_outbox.c.message_id == receipts[0].message_id).values(attempts=MAX_ATTEMPTS))
    lease_batch(archive.sessions, 1)  # and one is leased by a live worker
    assert leasable(archive.sessions) == 2
    assert tasks.leasable is leasable  # the sweep counts with the same rule
    assert len(lease_batch(archive.sessions, 10)) == 2 and leasable(archive.sessions) == 0


def test_the_outbox_has_one_enqueue_and_reindex_does_not_reach_into_the_archiver() -> None:
    import archiver.journal
    import indexer.reindex

    assert not hasattr(archiver.journal, "enqueue_for_indexing")
    source = Path(indexer.reindex.__file__).read_text()
    assert "archiver" not in source and "enqueue(" in source


def test_envelope_recipients_are_compared_as_the_client_sent_them_not_as_their_escaped_text() -> None:
    """The catalogue keeps 8-bit envelope text escaped; Bcc is what no header names, judged on the real address."""
    from datetime import datetime, timezone

    from archiver.envelope import envelope_text
    from indexer.document import Address, ParsedMessage
    from indexer.outbox import CatalogueFacts, build_document

    eight_bit = envelope_text(b"caf\xe9@x.example")
    assert "\\" in eight_bit  # stored as an escape sequence
    facts = CatalogueFacts(id=1, sha256="0" * 64, size=1, received_at=datetime(2024, 1, 1, tzinfo=timezone.utc),
                           mailboxes=(), domains=(), envelope_recipients=(eight_bit, "Bob@Example.COM.", "carol@example.com"))
    parsed = ParsedMessage(to=(Address(name="", address="bob@example.com"),), cc=(Address(name="", address="carol@example.com"),))
    bcc = [address.address for address in build_document(facts, parsed).bcc]
    assert bcc == ["caf\ufffd@x.example"]
