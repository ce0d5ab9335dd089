"""The parser pool: a parser process that dies on one message costs that message only."""

from __future__ import annotations

import os

from archiver.envelope import Envelope
from archiver.journal import Arrival
from indexer.outbox import ParseOutcome
from postvault import indexing
from postvault.indexing import PooledParser, drain_outbox
from tests.archive_factory import make_message

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
