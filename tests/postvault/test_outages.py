"""Engine outages against the real servers of scripts/services (issue #3, item 7).

Redis is covered in test_background.py. Here:

* OpenSearch stops while mail arrives: SMTP keeps answering 250 (the mail is durable
  without the index), the outbox backlog grows, and once OpenSearch is back the
  in-process indexer of ``serve`` drains it by itself: full coverage, nothing twice.
* S3 stops: the SMTP edge answers 451 within seconds instead of acknowledging mail it
  could not store; everything acknowledged is intact, nothing refused left a row
  without bytes, and the sender's retry after the outage archives each message once.

Each test stops a service with ``scripts/services down`` and always brings it back up,
whatever happens (``outage`` below).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import smtplib
import string
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from sqlalchemy import func, select, update

from archiver.smtp import SmtpListener
from indexer.outbox import MAX_ATTEMPTS, backlog
from indexer.query.parser import parse_query
from indexer.scope import Scope
from indexer.verify import verify_archive
from postvault.background.notifier import InProcessNotifier
from postvault.indexing import drain_outbox, run_indexer
from postvault.settings import Settings
from postvault.wiring import Archive
from storage.tables import envelopes, index_outbox, messages
from storage.s3 import S3BlobStore
from tests import polling, services
from tests.archive_factory import make_message

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "scripts" / "services"

pytestmark = [pytest.mark.services, pytest.mark.slow]


# --------------------------------------------------------------------------------------
# Stopping a service, and always starting it again
# --------------------------------------------------------------------------------------


class Outage:
    """A stopped service; ``end()`` starts it again (once), and the context always does."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.ended = False
        self.down_at = 0.0
        self.lasted = 0.0
        self.start_took = 0.0

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        started = time.monotonic()
        self.lasted = started - self.down_at
        result = subprocess.run([str(SERVICES), "up", self.service], capture_output=True, text=True, timeout=300)
        self.start_took = time.monotonic() - started
        if result.returncode != 0:
            raise AssertionError(f"`scripts/services up {self.service}` failed:\n{result.stderr[-3000:]}")


@contextmanager
def outage(service: str) -> Iterator[Outage]:
    """Stop ``service`` of scripts/services; it is started again on exit, even on failure."""
    status = subprocess.run([str(SERVICES), "status", service], capture_output=True, text=True, timeout=120)
    if status.returncode != 0:
        pytest.skip(f"needs the {service} of scripts/services running (this test stops and restarts it): {status.stdout.strip()}")
    stopped = Outage(service)
    try:
        subprocess.run([str(SERVICES), "down", service], check=True, capture_output=True, timeout=120)
        stopped.down_at = time.monotonic()
        yield stopped
    finally:
        stopped.end()


def require_local(url_host: str | None, url_port: int | None, port_variable: str, default_port: int, service: str) -> None:
    """The test stops the service of scripts/services: the test URL must point at that one."""
    if (url_host, url_port) != ("127.0.0.1", int(os.environ.get(port_variable, str(default_port)))):
        pytest.skip(f"the outage test stops {service} with scripts/services; the test {service} is another one")


# Outages are slower to show: poll the services half as often as the other tests do.
wait_until = functools.partial(polling.wait_until, every=0.1)


# --------------------------------------------------------------------------------------
# Mail over real SMTP
# --------------------------------------------------------------------------------------


def unique_word() -> str:
    """Letters only: one token for every analyser, and found in no other message."""
    return "".join(random.choices(string.ascii_lowercase, k=14))


@dataclass
class Sent:
    word: str
    raw: bytes
    code: int = 0
    reply: str = ""
    seconds: float = 0.0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def new_mail(label: str) -> Sent:
    word = unique_word()
    raw = make_message(subject=f"{label} {word}", body=f"{label} message {word}", message_id=f"<{word}@outage.test>")
    # CRLF throughout and a final CRLF: the bytes smtplib puts on the wire are these exactly,
    # so the archived blob must hash to sha256(raw).
    return Sent(word=word, raw=raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def deliver(listener: SmtpListener, mail: Sent) -> Sent:
    """One SMTP transaction; records the reply to DATA (2xx, 4xx or 5xx) and how long it took."""
    started = time.monotonic()
    try:
        with smtplib.SMTP(listener.host, listener.port, timeout=60) as client:
            client.ehlo("client.example.net")
            client.mail("alice@example.com")
            client.rcpt("bob@example.org")
            code, reply = client.data(mail.raw)
    except smtplib.SMTPResponseException as error:  # SMTPDataError and friends: a reply other than expected
        code, reply = error.smtp_code, error.smtp_error
    mail.seconds = time.monotonic() - started
    mail.code, mail.reply = code, reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    return mail


def catalogued(archive: Archive, sha256: str) -> int:
    with archive.sessions() as session:
        return session.scalar(select(func.count()).select_from(messages).where(messages.c.sha256 == sha256)) or 0


def envelopes_of(archive: Archive, sha256: str) -> int:
    with archive.sessions() as session:
        return session.scalar(
            select(func.count()).select_from(envelopes).join(messages, messages.c.id == envelopes.c.message_id).where(messages.c.sha256 == sha256)
        ) or 0


def message_id_of(archive: Archive, sha256: str) -> int:
    with archive.sessions() as session:
        found = session.scalar(select(messages.c.id).where(messages.c.sha256 == sha256))
    assert found is not None, f"message {sha256} is not in the catalogue"
    return found


def pending(archive: Archive) -> int:
    return backlog(archive.sessions)[0]


# --------------------------------------------------------------------------------------
# 1. OpenSearch stops during ingest
# --------------------------------------------------------------------------------------


def opensearch_test_url(prefix: str) -> str:
    base = services.opensearch_url()
    parts = urlsplit(base)
    require_local(parts.hostname, parts.port, "POSTVAULT_OPENSEARCH_PORT", 59200, "OpenSearch")
    query = dict(parse_qsl(parts.query))
    query["replicas"] = "0"  # one node: a replica could never be placed, and the index would stay yellow
    return urlunsplit((parts.scheme, parts.netloc, "/" + prefix, urlencode(query), ""))


def drop_indices(url: str) -> None:
    from indexer.backends.opensearch_backend import Connection

    connection = Connection.from_url(url)
    client = connection.client()
    try:
        names = list(client.indices.get_alias(index=f"{connection.prefix}-messages*", expand_wildcards="all"))
        if names:
            client.indices.delete(index=",".join(names), ignore_unavailable=True)
    finally:
        client.close()


@dataclass
class IndexerThread:
    """``run_indexer`` on a thread, as ``serve`` runs it; remembers an exception that killed it."""

    archive: Archive
    stop: threading.Event
    thread: threading.Thread
    died: BaseException | None = None

    def alive(self) -> bool:
        return self.thread.is_alive() and self.died is None


def start_indexer(archive: Archive, stack: ExitStack) -> IndexerThread:
    notifier = archive.notifier
    assert isinstance(notifier, InProcessNotifier)
    stop = threading.Event()
    holder: list[IndexerThread] = []

    def target() -> None:
        try:
            run_indexer(archive, stop, notifier.wake)
        except BaseException as error:  # noqa: BLE001 - recorded for the test to fail on
            holder[0].died = error
            raise

    indexer = IndexerThread(archive, stop, threading.Thread(target=target, name="indexer", daemon=True))
    holder.append(indexer)
    indexer.thread.start()

    def halt() -> None:
        stop.set()
        notifier.wake.set()
        indexer.thread.join(60)

    stack.callback(halt)
    return indexer


def test_opensearch_outage_mail_is_accepted_and_the_indexer_catches_up(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    prefix = f"pvtest-outage-{uuid.uuid4().hex[:12]}"
    search_url = opensearch_test_url(prefix)
    settings = Settings(
        data_dir=tmp_path / "var",  # SQLite catalogue and blob folder: only OpenSearch goes away
        search_url=search_url,
        broker_url="",  # embedded background work: the indexer thread of `serve`
        index_workers=1,
        index_batch_size=10,  # several batches after the outage, not one
        index_poll_seconds=0.2,
        smtp_host="127.0.0.1",
        smtp_port=0,
    )
    before, during = 3, 40
    with ExitStack() as stack:
        stack.callback(drop_indices, search_url)  # last: OpenSearch is up again by then
        archive = Archive(settings)
        stack.callback(archive.close)
        archive.sessions  # migrate
        listener = stack.enter_context(SmtpListener(archive, settings, notify_indexer=archive.notifier.notify))
        indexer = start_indexer(archive, stack)

        sent = [deliver(listener, new_mail("before")) for _ in range(before)]
        assert all(mail.code == 250 for mail in sent), [mail.reply for mail in sent]
        wait_until(lambda: pending(archive) == 0, 30, "indexing before the outage")
        assert archive.search.count() == before

        with outage("opensearch") as stopped:
            failures_before = sum(1 for r in caplog.records if r.name == "postvault.indexing")
            during_outage = [deliver(listener, new_mail("during")) for _ in range(during)]
            # Acknowledged means durable, and durable does not need the index: 250, promptly.
            assert [mail.code for mail in during_outage] == [250] * during, [m.reply for m in during_outage if m.code != 250]
            slowest = max(mail.seconds for mail in during_outage)
            assert slowest < 3, f"an SMTP reply took {slowest:.2f} s while OpenSearch was down"
            sent += during_outage
            time.sleep(1.0)  # the indexer tries (woken by every message) and fails
            assert pending(archive) == during  # nothing indexed, nothing lost: the backlog grew
            assert indexer.alive(), f"the indexer thread died: {indexer.died!r}"
            with archive.sessions() as session:
                assert session.scalar(select(func.count()).select_from(messages).where(messages.c.indexed_at.is_not(None))) == before
            # Mail keeps coming while the node restarts (7-20 s): still 250, and the indexer,
            # woken by each message, keeps trying a node that is not there yet.
            while_starting: list[Sent] = []
            starting = threading.Event()

            def keep_sending() -> None:
                while not starting.is_set():
                    while_starting.append(deliver(listener, new_mail("starting")))
                    time.sleep(0.25)

            sender = threading.Thread(target=keep_sending, name="sender")
            sender.start()
            try:
                stopped.end()
            finally:
                starting.set()
                sender.join(60)
            assert while_starting and all(mail.code == 250 for mail in while_starting), [m.reply for m in while_starting if m.code != 250]
            sent += while_starting

        # OpenSearch is back with its data. The indexer must find it again on its own, with
        # the client it already has (rows come due RETRY_BASE after their last failure).
        drained = wait_until(lambda: pending(archive) == 0, 90, f"the backlog to drain ({pending(archive)} left)", every=0.2)
        assert indexer.alive(), f"the indexer thread died: {indexer.died!r}"

        report = verify_archive(archive.sessions, archive.blobs, archive.search)
        total = before + during + len(while_starting)
        assert report.messages == total
        assert report.index_coverage == 1.0, report
        assert report.discrepancies == 0, report
        assert report.orphan_blobs == []
        ids = list(archive.search.indexed_ids())
        assert len(ids) == len(set(ids)) == total == archive.search.count()
        for mail in sent:
            page = archive.search.search(parse_query(mail.word), Scope.everything(), limit=10)
            assert [hit.id for hit in page.hits] == [message_id_of(archive, mail.sha256)], mail.word
            assert archive.blobs.get(mail.sha256) == mail.raw

        # The indexer fought the outage with logged, bounded retries, never a crashed batch.
        records = [r for r in caplog.records if r.name == "postvault.indexing"]
        crashed = [r for r in records if "crashed" in r.getMessage()]
        assert crashed == [], [r.getMessage() for r in crashed]
        failed_rounds = len(records) - failures_before
        assert 0 < failed_rounds <= 2 * (total - before) + (stopped.lasted + drained) / settings.index_poll_seconds, failed_rounds
        print(
            f"OpenSearch down {stopped.lasted:.1f} s (restart took {stopped.start_took:.1f} s); {during} messages got 250 "
            f"in {slowest:.2f} s at most, {len(while_starting)} more while it restarted; the backlog drained {drained:.1f} s after the node was back; "
            f"{failed_rounds} failed index rounds logged"
        )


# --------------------------------------------------------------------------------------
# 2. S3 stops
# --------------------------------------------------------------------------------------


def test_s3_outage_answers_451_promptly_and_loses_nothing_acknowledged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = urlsplit("//" + parse_qs(urlsplit(services.s3_url()).query).get("endpoint", [""])[-1])
    require_local(endpoint.hostname, endpoint.port, "POSTVAULT_S3_PORT", 57070, "S3")
    access, secret = services.s3_credentials()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    refused_during = 5
    with ExitStack() as stack:
        bucket_url = stack.enter_context(services.s3_bucket("pv-outage"))
        bucket = urlsplit(bucket_url).netloc
        client = services.s3_client(bucket_url)
        settings = Settings(
            data_dir=tmp_path / "var",  # SQLite catalogue and tantivy index: only S3 goes away
            blobstore_url=bucket_url,
            broker_url="",
            index_workers=1,
            smtp_host="127.0.0.1",
            smtp_port=0,
        )
        archive = Archive(settings)
        stack.callback(archive.close)
        archive.sessions  # migrate
        assert isinstance(archive.blobs, S3BlobStore)
        listener = stack.enter_context(SmtpListener(archive, settings))

        first = deliver(listener, new_mail("before"))
        assert first.code == 250, first.reply
        assert first.sha256[:16] in first.reply
        client.stat_object(bucket, S3BlobStore.key_for(first.sha256))  # the object is there
        acknowledged, refused = [first], []

        with outage("s3") as stopped:
            for _ in range(refused_during):
                mail = deliver(listener, new_mail("during"))
                (acknowledged if mail.code == 250 else refused).append(mail)
            # Nothing can be made durable, so nothing is acknowledged: a transient 451,
            # the sender keeps the message and retries. And promptly, well within the
            # sender's DATA timeout (RFC 5321 4.5.3.2.6: 10 minutes).
            assert [mail.code for mail in refused] == [451] * refused_during, [m.reply for m in acknowledged[1:]]
            assert all("try again later" in mail.reply for mail in refused), [m.reply for m in refused]
            slowest = max(mail.seconds for mail in refused)
            assert slowest < 10, f"a 451 took {slowest:.2f} s"
            for mail in refused:  # no row without bytes
                assert catalogued(archive, mail.sha256) == 0
            # The first message is still on the index outbox, and the indexer cannot read
            # its blob. A long outage means many failed rounds (each retry made due at once
            # here); an outage is not the message's fault, so none may count against it:
            # afterwards it must still be indexed without anyone running `reindex`.
            assert pending(archive) == 1
            for round_ in range(MAX_ATTEMPTS + 2):
                with archive.sessions.begin() as session:
                    session.execute(update(index_outbox).values(leased_until=None))
                report = drain_outbox(archive)
                assert (report.indexed, report.failed) == (0, 1), (round_, report)
            with archive.sessions() as session:
                attempts, last_error = session.execute(select(index_outbox.c.attempts, index_outbox.c.last_error)).one()
            assert attempts == 0, "the S3 outage counted against the message"
            assert "S3 at" in last_error, last_error
            stopped.end()

        # Everything acknowledged is catalogued and its bytes read back exactly.
        for mail in acknowledged:
            assert catalogued(archive, mail.sha256) == 1
            assert archive.blobs.get(mail.sha256) == mail.raw
        # What was refused left no row (and had it left one, its bytes would have to be there).
        for mail in refused:
            assert catalogued(archive, mail.sha256) == 0 or archive.blobs.exists(mail.sha256)

        # The senders retry, as MTAs do after a 4xx: now each is taken, once.
        retried = [deliver(listener, Sent(word=mail.word, raw=mail.raw)) for mail in refused]
        assert [mail.code for mail in retried] == [250] * refused_during, [mail.reply for mail in retried]
        everything = acknowledged + retried
        for mail in everything:
            assert catalogued(archive, mail.sha256) == 1
            assert envelopes_of(archive, mail.sha256) == 1  # one delivery recorded, not the refused attempt too
            assert archive.blobs.get(mail.sha256) == mail.raw
        with archive.sessions() as session:
            assert session.scalar(select(func.count()).select_from(messages)) == 1 + refused_during

        # And the archive as a whole agrees with itself: index it (the first message comes
        # due RETRY_BASE after its last failed round, as for the indexer thread), then verify.
        wait_until(lambda: drain_outbox(archive) is not None and pending(archive) == 0, 20, "the outbox to drain", every=0.2)
        report = verify_archive(archive.sessions, archive.blobs, archive.search)
        assert report.messages == 1 + refused_during
        assert report.discrepancies == 0, report
        assert report.index_coverage == 1.0
        assert report.orphan_blobs == []  # nothing reached S3 half-way during the outage
        print(
            f"S3 down {stopped.lasted:.1f} s (restart took {stopped.start_took:.1f} s); {refused_during} messages got 451 "
            f"in {slowest:.2f} s at most (fastest {min(m.seconds for m in refused):.2f} s); all retried and archived once"
        )
