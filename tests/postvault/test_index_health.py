"""Nothing unindexed goes unseen: `status` by reason, `verify` on stuck and stale-scoped messages, `reindex --failed`, a failed rebuild dropped."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from sqlalchemy import delete, insert, select, update
from typer.testing import CliRunner

from archiver.envelope import Envelope
from archiver.journal import Arrival
from indexer.outbox import MAX_ATTEMPTS, enqueue, leasable, lease_batch
from indexer.verify import verify_archive
from postvault.cli import app as cli
from postvault.indexing import drain_outbox
from postvault.settings import Settings
from postvault.wiring import Archive
from storage.tables import index_outbox, message_mailboxes, messages
from storage.timeutil import utcnow
from tests import services
from tests.archive_factory import make_message
from tests.polling import wait_until


@pytest.fixture
def settings(make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> Settings:
    made = make_settings()
    monkeypatch.setenv("POSTVAULT_DATA_DIR", str(made.data_dir))
    monkeypatch.setenv("POSTVAULT_INDEX_WORKERS", "1")
    return made


def journal(archive: Archive, *subjects: str) -> list[int]:
    receipts = archive.journal.journal_many([Arrival(make_message(subject=s), Envelope(), "import") for s in subjects])
    return [receipt.message_id for receipt in receipts]


def set_row(archive: Archive, message_id: int, **values: object) -> None:
    with archive.sessions.begin() as session:
        session.execute(update(index_outbox).where(index_outbox.c.message_id == message_id).values(**values))


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_status_counts_every_unindexed_message_by_reason(settings: Settings) -> None:
    archive = Archive(settings)
    try:
        indexed, = journal(archive, "indexed")
        drain_outbox(archive)
        waiting, leased, retrying, failed, lost = journal(archive, "waiting", "leased", "retrying", "failed", "lost")
        later = utcnow() + timedelta(minutes=10)
        set_row(archive, leased, leased_until=later, attempts=1)
        set_row(archive, retrying, leased_until=later, attempts=2, last_error="parsing failed: ValueError: odd")
        set_row(archive, failed, attempts=MAX_ATTEMPTS, last_error="the search engine refused it: too big")
        with archive.sessions.begin() as session:  # an outbox row lost (say, deleted by hand)
            session.execute(delete(index_outbox).where(index_outbox.c.message_id == lost))
    finally:
        archive.close()
    code, output = run("status", "--json")
    assert code == 0, output
    facts = json.loads(output)
    # Before, "failing" counted rows with an error but a failed row could show 0 (its error
    # was empty), and a lost row was counted nowhere.
    assert facts["not_indexed_by_reason"] == {"waiting": 1, "in_progress": 1, "retrying": 1, "failed": 1, "not_queued": 1}
    assert facts["not_indexed"] == 5 and facts["backlog"] == 4 and facts["failing"] == 2
    assert facts["messages"] == 6 and facts["indexed"] == 1
    assert facts["last_error"] in {"parsing failed: ValueError: odd", "the search engine refused it: too big"}
    code, output = run("status")
    assert code == 0 and "retrying after an error" in output and f"failed {MAX_ATTEMPTS} times" in output


def test_verify_fails_for_a_message_stuck_at_the_attempt_limit(settings: Settings) -> None:
    archive = Archive(settings)
    try:
        first, second = journal(archive, "first", "second")
        drain_outbox(archive)
        # Indexed once, then queued again (a copy for another mailbox) and failing ever since:
        # before, verify saw an indexed message with work pending and passed.
        with archive.sessions.begin() as session:
            enqueue(session, [second])
        set_row(archive, second, attempts=MAX_ATTEMPTS, last_error="parsing took longer than 60 s; it was interrupted")
        report = verify_archive(archive.read_sessions, archive.blobs, archive.search)
        assert report.failed == {second: "parsing took longer than 60 s; it was interrupted"}
        assert report.unindexed == [] and report.stale_scopes == []
    finally:
        archive.close()
    code, output = run("verify")
    assert code == 1, output
    assert f"failed {second}: parsing took longer than 60 s" in output


def test_verify_fails_for_an_indexed_document_whose_scope_the_catalogue_no_longer_gives(settings: Settings) -> None:
    archive = Archive(settings)
    try:
        widened, narrowed, same = journal(archive, "widened", "narrowed", "same")
        drain_outbox(archive)
        with archive.sessions.begin() as session:
            # Scope rows changed without the outbox hearing of it: the index would hide one
            # message from its new owner, and show the other to a mailbox no longer its.
            session.execute(insert(message_mailboxes).values(message_id=widened, mailbox="new-owner@example.net"))
            session.execute(delete(message_mailboxes).where(message_mailboxes.c.message_id == narrowed,
                                                            message_mailboxes.c.mailbox == "bob@example.org"))
        report = verify_archive(archive.read_sessions, archive.blobs, archive.search)
        assert report.stale_scopes == sorted([widened, narrowed]) and report.discrepancies == 2
    finally:
        archive.close()
    code, output = run("verify")
    assert code == 1, output
    assert f"stale scope (mailboxes or domains): {widened}" in output

    # Queued again (what the journal does when a scope widens), it is work in progress, not stale.
    archive = Archive(settings)
    try:
        with archive.sessions.begin() as session:
            enqueue(session, [widened, narrowed])
        assert verify_archive(archive.read_sessions, archive.blobs, archive.search).stale_scopes == []
        drain_outbox(archive)
        report = verify_archive(archive.read_sessions, archive.blobs, archive.search)
        assert report.discrepancies == 0 and report.stale_scopes == []
    finally:
        archive.close()


def test_reindex_failed_retries_just_the_failed_messages_without_emptying_the_index(settings: Settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import indexer.parsing

    real = indexer.parsing.parse_message

    def refuse_poison(raw: bytes, *args, **kwargs):  # type: ignore[no-untyped-def]
        if b"Subject: poison" in raw:
            raise RuntimeError("the extractor broke")
        return real(raw, *args, **kwargs)

    archive = Archive(settings)
    try:
        healthy, poison, lost = journal(archive, "healthy", "poison", "lost")
        monkeypatch.setattr(indexer.parsing, "parse_message", refuse_poison)
        moment = utcnow()
        for _ in range(MAX_ATTEMPTS):
            drain_outbox(archive)
            moment += timedelta(hours=1)
            set_row(archive, poison, leased_until=None)  # past its retry delay
        assert lease_batch(archive.sessions, 10) == []  # left alone
        with archive.sessions.begin() as session:  # and one message's outbox row went missing
            session.execute(delete(index_outbox).where(index_outbox.c.message_id == lost))
            session.execute(update(messages).where(messages.c.id == lost).values(indexed_at=None))
        archive.search.delete([lost])
        with archive.sessions() as session:
            first_indexed_at = session.scalar(select(messages.c.indexed_at).where(messages.c.id == healthy))
        assert archive.search.count() == 1
    finally:
        archive.close()
    monkeypatch.setattr(indexer.parsing, "parse_message", real)  # the extractor was fixed

    code, output = run("reindex", "--failed")
    assert code == 0, output
    assert "2 failed or unqueued message(s) queued again." in output and "Retrying: 2 indexed, 0 failed." in output
    archive = Archive(settings)
    try:
        assert archive.search.count() == 3
        with archive.sessions() as session:
            assert session.scalars(select(index_outbox.c.message_id)).all() == []
            # The healthy message was not indexed again: the index was not emptied and refilled.
            assert session.scalar(select(messages.c.indexed_at).where(messages.c.id == healthy)) == first_indexed_at
    finally:
        archive.close()


# --- a failed OpenSearch rebuild is dropped (issue 8, 4.8) ---


@pytest.fixture
def opensearch_prefix() -> Iterator[str]:
    prefix = f"pvtest-{uuid.uuid4().hex[:12]}"
    yield prefix
    from indexer.backends.opensearch_backend import OpenSearchBackend

    backend = OpenSearchBackend.from_url(services.opensearch_url())
    client = backend.connection.client()
    names = list(client.indices.get_alias(index=f"{prefix}-messages*", expand_wildcards="all"))
    if names:
        client.indices.delete(index=",".join(names), ignore_unavailable=True)
    client.indices.delete_index_template(name=prefix, ignore=[404])
    client.close()
    backend.close()


@pytest.mark.services
def test_a_failed_rebuild_is_dropped_and_the_live_index_keeps_serving(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, opensearch_prefix: str
) -> None:
    parts = urlsplit(services.opensearch_url())
    query = dict(parse_qsl(parts.query), replicas="0")
    search_url = urlunsplit((parts.scheme, parts.netloc, "/" + opensearch_prefix, urlencode(query), ""))
    settings = make_settings(search_url=search_url)
    monkeypatch.setenv("POSTVAULT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("POSTVAULT_SEARCH_URL", search_url)
    monkeypatch.setenv("POSTVAULT_INDEX_WORKERS", "1")
    archive = Archive(settings)
    try:
        journal(archive, "one", "two", "three")
        assert drain_outbox(archive).indexed == 3
        backend = archive.search
        # The next index version refuses every write (as a full disk's read-only block does):
        # the rebuild fails part way, an outage, not the messages' fault.
        client = backend.connection.client()  # type: ignore[attr-defined]
        client.indices.put_index_template(name=opensearch_prefix, body={
            "index_patterns": [f"{opensearch_prefix}-messages-v2"], "priority": 1000,
            "template": {"settings": {"index.blocks.write": True}},
        })
        client.close()
    finally:
        archive.close()

    code, output = run("reindex")
    # Before, the rows handed back counted as failed, the expected count fell to 0 and the
    # empty version was swapped in; or a rebuild left behind took every later write.
    assert code == 1, output
    assert "Reindex failed" in output and "unfinished rebuild was dropped" in output
    archive = Archive(settings)
    try:
        backend = archive.search
        assert backend.rebuild_in_progress() is None  # type: ignore[attr-defined]
        assert backend.count() == 3
        backend.check()  # no half-built index left behind
        # The rows the rebuild queued go to the live index like any other write, once their
        # short wait after the outage is over.
        wait_until(lambda: leasable(archive.sessions) == 3, 30, "the rows handed back to be free again")
        assert drain_outbox(archive).indexed == 3
        assert backend.count() == 3
    finally:
        archive.close()
