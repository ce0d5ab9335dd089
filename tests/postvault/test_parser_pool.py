"""The parser pool: a parser process that dies on one message costs that message only."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from archiver.envelope import Envelope
from archiver.journal import Arrival
from indexer.outbox import ParseOutcome
from postvault import indexing
from postvault.indexing import InProcessParser, PooledParser, drain_outbox
from postvault.wiring import Archive
from storage.tables import index_outbox
from tests.archive_factory import make_message

REPO = Path(__file__).resolve().parents[2]

POISON_SUBJECT = b"Subject: poison"


def crash_on_poison(digest: str) -> ParseOutcome:
    """Runs in a pool process: dies like a native extractor would on a hostile file."""
    raw = indexing._worker_blobs.get(digest)  # type: ignore[union-attr]
    if POISON_SUBJECT in raw:
        os._exit(139)  # as a segfault would: no exception, no cleanup
    return indexing._parse_in_worker(digest)


def test_a_crashing_message_is_isolated_and_the_rest_are_indexed(archive) -> None:
    arrivals = [Arrival(make_message(subject=f"healthy {n}"), Envelope(), "import") for n in range(6)]
    arrivals.insert(3, Arrival(make_message(subject="poison"), Envelope(), "import"))
    receipts = archive.journal.journal_many(arrivals)
    poison_id = receipts[3].message_id

    parser = PooledParser(archive, 2, inline_below=0, parse_in_worker=crash_on_poison)
    try:
        report = drain_outbox(archive, parse_many=parser)
        assert report.indexed == 6 and report.failed == 1
        assert any(str(poison_id) in error and "crashed" in error for error in report.errors)
        # The pool was rebuilt and still works afterwards.
        archive.journal.journal(Arrival(make_message(subject="after the crash"), Envelope(), "import"))
        assert drain_outbox(archive, parse_many=parser).indexed == 1
    finally:
        parser.close()
    assert archive.search.count() == 7


# --- a time limit per message (issue 8, 2.3) ---

HANG_SUBJECT = b"Subject: hang"


def hang_on_poison(digest: str) -> ParseOutcome:
    """Runs in a pool process: never returns on one message, as an extractor stuck in C would."""
    raw = indexing._worker_blobs.get(digest)  # type: ignore[union-attr]
    if HANG_SUBJECT in raw:
        time.sleep(3600)
    return indexing._parse_in_worker(digest)


def test_a_hanging_message_is_killed_recorded_and_the_pool_carries_on(make_settings) -> None:  # type: ignore[no-untyped-def]
    archive = Archive(make_settings(parse_timeout_seconds=2))
    arrivals = [Arrival(make_message(subject=f"healthy {n}"), Envelope(), "import") for n in range(20)]
    arrivals.insert(11, Arrival(make_message(subject="hang"), Envelope(), "import"))
    receipts = archive.journal.journal_many(arrivals)
    hung = receipts[11].message_id

    parser = PooledParser(archive, 2, inline_below=0, parse_in_worker=hang_on_poison)
    try:
        began = time.monotonic()
        report = drain_outbox(archive, parse_many=parser)
        assert time.monotonic() - began < 30
        assert report.indexed == 20 and report.failed == 1
        assert report.errors == [f"message {hung}: parsing took longer than 2 s; its parser process was killed"]
        archive.journal.journal(Arrival(make_message(subject="after the hang"), Envelope(), "import"))
        assert drain_outbox(archive, parse_many=parser).indexed == 1
    finally:
        parser.close()
        archive.close()


def test_a_hang_costs_the_batch_queued_behind_it_nothing(make_settings, caplog) -> None:  # type: ignore[no-untyped-def]
    # The next batch is queued in the pool while this one is indexed; the restart that
    # stops the hung worker cancels it, and it must be queued again, not blamed or isolated.
    archive = Archive(make_settings(parse_timeout_seconds=2, index_batch_size=32))
    arrivals = [Arrival(make_message(subject=f"healthy {n}"), Envelope(), "import") for n in range(70)]
    arrivals.insert(2, Arrival(make_message(subject="hang"), Envelope(), "import"))
    archive.journal.journal_many(arrivals)
    # One worker: the next batch's chunks wait behind the hung one.
    parser = PooledParser(archive, 1, inline_below=0, parse_in_worker=hang_on_poison)
    try:
        report = drain_outbox(archive, parse_many=parser)
        assert (report.indexed, report.failed) == (70, 1), report.errors
        blamed = [r.getMessage() for r in caplog.records if r.levelname == "ERROR" or "failed" in r.getMessage()]
        assert len(blamed) == 1 and "died" in blamed[0], blamed  # the hung batch's worker, nothing else
    finally:
        parser.close()
        archive.close()


def test_the_in_process_parser_interrupts_a_parse_stuck_in_python(make_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import indexer.parsing

    real = indexer.parsing.parse_message

    def spin_on_poison(raw: bytes, *args, **kwargs):  # type: ignore[no-untyped-def]
        while HANG_SUBJECT in raw:
            pass
        return real(raw, *args, **kwargs)

    monkeypatch.setattr(indexer.parsing, "parse_message", spin_on_poison)
    archive = Archive(make_settings(parse_timeout_seconds=1))
    try:
        receipts = archive.journal.journal_many(
            [Arrival(make_message(subject=s), Envelope(), "import") for s in ("before", "hang", "after")]
        )
        outcomes = InProcessParser(archive.blobs, archive.settings)([r.sha256 for r in receipts])
        assert [o.parsed.subject if o.parsed else o.error for o in outcomes] == [
            "before", "parsing took longer than 1 s; it was interrupted", "after",
        ]
    finally:
        archive.close()


_STUCK_IN_C = """
import sys, time
import indexer.parsing
from indexer.outbox import index_leased, lease_batch
from postvault.indexing import InProcessParser
from postvault.settings import Settings
from postvault.wiring import Archive

real = indexer.parsing.parse_message
def sleep_on_poison(raw, *args, **kwargs):
    if b"Subject: hang" in raw:
        time.sleep(3600)  # in C: no exception can reach it, as in a native extractor
    return real(raw, *args, **kwargs)
indexer.parsing.parse_message = sleep_on_poison

archive = Archive(Settings(data_dir=sys.argv[1], parse_timeout_seconds=1, index_workers=1))
leases = lease_batch(archive.sessions, 10)
index_leased(archive.sessions, archive.search, leases, InProcessParser(archive.blobs, archive.settings, sessions=archive.sessions))
print("not stopped")
"""


def test_a_parse_stuck_in_native_code_is_recorded_and_its_process_stops(make_settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # What a Celery task meets: its worker process is replaced by Celery's pool, the stuck
    # message has its attempt counted and its error, the rest of the batch is handed back.
    settings = make_settings()
    archive = Archive(settings)
    try:
        receipts = archive.journal.journal_many(
            [Arrival(make_message(subject=s), Envelope(), "import") for s in ("first", "hang", "last")]
        )
        child = subprocess.run([sys.executable, "-c", _STUCK_IN_C, str(settings.data_dir)], cwd=REPO,
                               capture_output=True, timeout=60)
        assert child.returncode == indexing.EXIT_PARSE_HUNG, child.stderr.decode()
        assert b"has not stopped" in child.stderr and b"not stopped\n" not in child.stdout
        with archive.sessions() as session:
            rows = {row.message_id: row for row in session.execute(select(index_outbox))}
        stuck = rows[receipts[1].message_id]
        assert stuck.attempts == 1 and stuck.last_error == "parsing took longer than 1 s; its worker process was stopped"
        for receipt in (receipts[0], receipts[2]):
            assert rows[receipt.message_id].attempts == 0 and rows[receipt.message_id].leased_until is None
        assert drain_outbox(archive).indexed == 2
    finally:
        archive.close()
