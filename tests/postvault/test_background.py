"""Celery on Redis indexes the outbox exactly once, survives a killed worker and a Redis outage."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from archiver.envelope import Envelope
from archiver.journal import Arrival
from archiver.smtp import SmtpListener
from indexer.verify import verify_archive
from postvault.background.celery_app import QUEUE, REINDEX, SWEEP_OUTBOX, make_celery
from postvault.background.notifier import CeleryNotifier, InProcessNotifier
from postvault.background.tasks import queue_for_backlog
from postvault.cli import app as cli
from postvault.indexing import run_indexer
from postvault.settings import Settings
from postvault.wiring import Archive
from storage.tables import index_outbox, messages
from storage.timeutil import utcnow
from tests import services
from tests.archive_factory import make_message
from tests.polling import wait_until

REPO = Path(__file__).resolve().parents[2]
POSTVAULT = str(Path(sys.executable).with_name("postvault"))


# --------------------------------------------------------------------------------------
# A scale-out archive for one test: PostgreSQL schema, Redis database, blob folder, tantivy
# index; worker and beat run as real `postvault` processes with the same settings in env.
# --------------------------------------------------------------------------------------


@dataclass
class ScaleOut:
    root: Path
    settings: Settings
    stack: ExitStack
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("POSTVAULT_")}
        for key in ("data_dir", "database_url", "blobstore_url", "search_url", "broker_url", "index_batch_size", "index_workers",
                    "smtp_host", "smtp_port"):
            env[f"POSTVAULT_{key.upper()}"] = str(getattr(self.settings, key))
        return env

    def send(self, task: str) -> None:
        celery = make_celery(self.settings)
        try:
            celery.send_task(task)
        finally:
            celery.close()

    def sweep(self) -> None:
        """Send one ``sweep_outbox`` task, as beat does every 30 s."""
        self.send(SWEEP_OUTBOX)

    def queued(self) -> int:
        """Tasks waiting in Redis."""
        celery = make_celery(self.settings)
        try:
            with celery.connection_for_read() as connection:
                return connection.default_channel.queue_declare(queue=QUEUE).message_count
        finally:
            celery.close()

    def archive(self) -> Archive:
        built = Archive(self.settings)
        built.sessions  # migrate
        self.stack.callback(built.close)
        return built

    def start(self, command: str, *args: str, ready: str) -> subprocess.Popen[bytes]:
        """Start ``postvault <command>`` in its own process group; wait for ``ready`` in its log."""
        log = self.root / f"{command}-{len(self.processes)}.log"
        process = subprocess.Popen([POSTVAULT, command, *args], env=self.env, cwd=self.root,
                                   stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        wait_until(lambda: ready in log.read_text(errors="replace") or process.poll() is not None, 30, f"{command} to start")
        assert process.poll() is None, f"postvault {command} exited:\n{log.read_text()[-3000:]}"
        return process

    def start_worker(self) -> subprocess.Popen[bytes]:
        # tantivy: one writer process, so one worker process at concurrency 1.
        return self.start("worker", "--concurrency", "1", ready=" ready.")

    def start_beat(self, interval: float = 1.0) -> subprocess.Popen[bytes]:
        return self.start("beat", "--interval", str(interval), ready="beat: Starting")

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2500:]}" for log in sorted(self.root.glob("*.log")))

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def redis_database_url() -> str:
    """The services' Redis, on a database of its own for this test (others may share db 0)."""
    parts = urlsplit(services.redis_url())
    database = 1 + (os.getpid() + time.monotonic_ns() // 1000) % 15
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@pytest.fixture
def scale_out(tmp_path: Path) -> Iterator[Callable[..., ScaleOut]]:
    with ExitStack() as stack:
        made: list[ScaleOut] = []

        def make(**overrides: object) -> ScaleOut:
            data_dir = tmp_path / "var"
            values: dict[str, object] = {
                "data_dir": data_dir,
                "database_url": stack.enter_context(services.postgres_schema()),
                "blobstore_url": f"file://{data_dir / 'blobs'}",
                "search_url": f"tantivy://{data_dir / 'index'}",
                "broker_url": redis_database_url(),
                "index_batch_size": 25,
                "index_workers": 1,
                "smtp_host": "127.0.0.1",
                "smtp_port": 0,
            }
            values.update(overrides)
            built = ScaleOut(root=tmp_path, settings=Settings(**values), stack=stack)  # type: ignore[arg-type]
            celery = make_celery(built.settings)
            with celery.connection_for_write() as connection:
                connection.default_channel.queue_purge(QUEUE)  # nothing left over from an earlier run
            celery.close()
            made.append(built)
            return built

        yield make
        for built in made:
            built.stop_all()


def backlog_of(archive: Archive) -> int:
    with archive.sessions() as session:
        return session.scalar(select(func.count()).select_from(index_outbox)) or 0


def assert_indexed_exactly_once(archive: Archive, expected: int) -> None:
    """Every catalogued message is in the index once, nothing else is, and the outbox is empty."""
    report = verify_archive(archive.sessions, archive.blobs, archive.search, check_orphans=False)
    assert report.messages == expected
    assert report.discrepancies == 0, report
    assert report.index_coverage == 1.0
    ids = list(archive.search.indexed_ids())
    assert len(ids) == len(set(ids)) == expected == archive.search.count()
    with archive.sessions() as session:
        assert session.scalar(select(func.count()).select_from(messages).where(messages.c.indexed_at.is_(None))) == 0
    assert backlog_of(archive) == 0


def journal(archive: Archive, count: int, label: str) -> None:
    arrivals = [Arrival(make_message(subject=f"{label} {n}", body=f"{label} body {n} " * 50), Envelope(rcpt_to=("bob@example.org",)), "import")
                for n in range(count)]
    for start in range(0, count, 100):
        archive.journal.journal_many(arrivals[start : start + 100])


# --------------------------------------------------------------------------------------
# Embedded profile: no broker, the notifier wakes the indexer thread.
# --------------------------------------------------------------------------------------


def test_in_process_notifier_wakes_the_indexer_long_before_its_poll(make_settings: Callable[..., Settings]) -> None:
    archive = Archive(make_settings(broker_url="", index_poll_seconds=60))
    notifier = archive.notifier
    assert isinstance(notifier, InProcessNotifier)
    archive.sessions
    stop = threading.Event()
    indexer = threading.Thread(target=run_indexer, args=(archive, stop, notifier.wake), daemon=True)
    indexer.start()
    try:
        archive.journal.journal(Arrival(make_message(subject="first"), Envelope(), "smtp"))
        notifier.notify()
        wait_until(lambda: backlog_of(archive) == 0, 20, "the first message")
        time.sleep(1.0)  # the thread falls asleep for its 60 s poll
        archive.journal.journal(Arrival(make_message(subject="second"), Envelope(), "smtp"))
        time.sleep(1.0)
        assert backlog_of(archive) == 1  # nothing told it
        notifier.notify()
        took = wait_until(lambda: backlog_of(archive) == 0, 10, "the woken indexer")
        print(f"woken indexer took {took:.2f} s (poll: 60 s)")
        assert archive.search.count() == 2
    finally:
        stop.set()
        notifier.close()
        indexer.join(30)
        archive.close()


def test_worker_and_beat_refuse_to_start_without_a_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTVAULT_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("POSTVAULT_BROKER_URL", raising=False)
    for command in ("worker", "beat"):
        result = CliRunner().invoke(cli, [command])
        assert result.exit_code == 2
        assert "POSTVAULT_BROKER_URL" in result.output


def test_worker_refuses_several_processes_on_a_tantivy_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTVAULT_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("POSTVAULT_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("POSTVAULT_SEARCH_URL", f"tantivy://{tmp_path / 'index'}")
    result = CliRunner().invoke(cli, ["worker", "--concurrency", "2"])
    assert result.exit_code == 2
    assert "one writer process" in result.output


def test_the_worker_prepares_indexing_before_its_pool_forks(tmp_path: Path) -> None:
    """worker_init runs in the main process before the prefork pool starts: each child inherits
    the parsing stack, the S3 adapter and the OpenSearch word patterns instead of building them."""
    script = f"""
import sys
from postvault.background.celery_app import make_celery
from postvault.settings import Settings
from indexer.backends import opensearch_mapping
settings = Settings(data_dir={str(tmp_path)!r}, broker_url="redis://127.0.0.1:1/0", search_url="opensearch://127.0.0.1:1",
                    blobstore_url="s3://bucket?endpoint=127.0.0.1:1&secure=false")
app = make_celery(settings)
def ready():
    return ["indexer.parsing" in sys.modules, "storage.s3" in sys.modules, opensearch_mapping._word_patterns.cache_info().currsize]
print(ready())
app.WorkController(concurrency=1, pool_cls="solo", loglevel="WARNING")  # set up, not started: no broker needed
print(ready())
"""
    env = {key: value for key, value in os.environ.items() if not key.startswith("POSTVAULT_")}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split("\n")[:2] == ["[False, False, 0]", "[True, True, 1]"]


# --------------------------------------------------------------------------------------
# Scale-out profile: real Redis, real PostgreSQL, real worker and beat processes.
# --------------------------------------------------------------------------------------


@pytest.mark.services
def test_sweep_tops_the_queue_up_once_and_not_again(scale_out: Callable[..., ScaleOut]) -> None:
    deployment = scale_out(index_batch_size=10)
    archive = deployment.archive()
    journal(archive, 35, "sweep")
    celery = make_celery(deployment.settings)
    try:
        # No worker runs: 35 rows in batches of 10 want 4 tasks, and a second sweep adds none.
        assert queue_for_backlog(celery, max_tasks=16) == 4
        assert queue_for_backlog(celery, max_tasks=16) == 0
        assert deployment.queued() == 4
    finally:
        celery.close_archive()
        celery.close()


@pytest.mark.services
def test_sweep_queues_nothing_for_messages_left_at_the_attempt_limit(scale_out: Callable[..., ScaleOut]) -> None:
    from indexer.outbox import MAX_ATTEMPTS

    deployment = scale_out(index_batch_size=10)
    archive = deployment.archive()
    journal(archive, 25, "given up")
    with archive.sessions.begin() as session:
        # 20 failed their last attempt; the sweep used to count them as leasable and queue
        # tasks that then leased nothing (497 of 699 tasks at 100k messages).
        ids = session.scalars(select(index_outbox.c.message_id).order_by(index_outbox.c.message_id).limit(20)).all()
        session.execute(update(index_outbox).where(index_outbox.c.message_id.in_(ids))
                        .values(attempts=MAX_ATTEMPTS, last_error="parsing failed"))
    celery = make_celery(deployment.settings)
    try:
        assert queue_for_backlog(celery, max_tasks=16) == 1  # the 5 rows with tries left: one batch
        assert deployment.queued() == 1
    finally:
        celery.close_archive()
        celery.close()


@pytest.mark.services
def test_worker_indexes_what_the_journal_notifies(scale_out: Callable[..., ScaleOut]) -> None:
    deployment = scale_out()
    archive = deployment.archive()
    deployment.start_worker()
    assert isinstance(archive.notifier, CeleryNotifier)
    journal(archive, 60, "notified")
    archive.notifier.notify(60)
    took = wait_until(lambda: backlog_of(archive) == 0, 25, f"the worker to index 60 messages\n{deployment.logs()}")
    print(f"60 messages indexed by the worker {took:.2f} s after the notice")
    assert_indexed_exactly_once(archive, 60)

    # The reindex task empties the index and the workers rebuild it from blobs and catalogue.
    started = utcnow()

    def rebuilt() -> bool:
        with archive.sessions() as session:
            stale = session.scalar(select(func.count()).select_from(messages).where(messages.c.indexed_at < started))
        return stale == 0 and backlog_of(archive) == 0

    deployment.send(REINDEX)
    took = wait_until(rebuilt, 25, f"the reindex\n{deployment.logs()}")
    print(f"reindexed 60 messages in {took:.2f} s")
    assert_indexed_exactly_once(archive, 60)


@pytest.mark.services
def test_the_reindex_task_on_opensearch_swaps_the_rebuilt_index_in_once_the_workers_drain_it(
    scale_out: Callable[..., ScaleOut],
) -> None:
    """A rebuild the workers fill must become live; left unfinished it would take every write forever."""
    from indexer.backends.opensearch_backend import OpenSearchBackend
    from tests.postvault.test_outages import drop_indices, opensearch_test_url

    search_url = opensearch_test_url(f"pvtest-reindex-{os.getpid()}-{time.monotonic_ns() % 10**9}")
    deployment = scale_out(search_url=search_url)
    deployment.stack.callback(drop_indices, search_url)
    archive = deployment.archive()
    backend = archive.search
    assert isinstance(backend, OpenSearchBackend)
    journal(archive, 40, "rebuilt")
    deployment.start("worker", "--concurrency", "2", ready=" ready.")
    archive.notifier.notify(40)
    wait_until(lambda: backlog_of(archive) == 0, 30, f"the first indexing\n{deployment.logs()}")
    client = backend.connection.client()
    assert list(client.indices.get_alias(name=backend.alias)) == [f"{backend.alias}-v1"]

    deployment.send(REINDEX)
    wait_until(lambda: backend.rebuild_in_progress() is not None, 15, f"the rebuild to start\n{deployment.logs()}")
    wait_until(lambda: backend.rebuild_in_progress() is None, 60, f"the rebuild to be swapped in\n{deployment.logs()}")
    assert_indexed_exactly_once(archive, 40)
    assert list(client.indices.get_alias(name=backend.alias)) == [f"{backend.alias}-v2"]
    # The old version is deleted just after the alias moves.
    wait_until(lambda: not client.indices.exists(index=f"{backend.alias}-v1"), 15, "the old index version to go")


@pytest.mark.services
def test_serve_with_a_broker_leaves_indexing_to_the_workers(scale_out: Callable[..., ScaleOut]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    deployment = scale_out(smtp_port=port)
    archive = deployment.archive()
    deployment.start("serve", ready="SMTP journal listener on")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("alice@example.com", ["bob@example.org"], make_message(subject="to the workers").replace(b"\n", b"\r\n"))
    # No worker runs yet: serve queued a task and indexed nothing itself.
    wait_until(lambda: deployment.queued() == 1, 10, f"serve to queue a task\n{deployment.logs()}")
    time.sleep(1.0)
    assert backlog_of(archive) == 1
    deployment.start_worker()
    wait_until(lambda: backlog_of(archive) == 0, 25, f"the worker\n{deployment.logs()}")
    assert_indexed_exactly_once(archive, 1)


@pytest.mark.services
def test_a_worker_killed_mid_batch_loses_nothing_and_indexes_nothing_twice(scale_out: Callable[..., ScaleOut]) -> None:
    deployment = scale_out(index_batch_size=25)
    archive = deployment.archive()
    total = 250
    journal(archive, total, "killed")

    def leased() -> int:
        with archive.sessions() as session:
            return session.scalar(select(func.count()).select_from(index_outbox).where(index_outbox.c.leased_until > utcnow())) or 0

    def indexed() -> int:
        with archive.sessions() as session:
            return session.scalar(select(func.count()).select_from(messages).where(messages.c.indexed_at.is_not(None))) or 0

    # Kill the whole worker (pool parent and child) while a batch holds its lease, once
    # at least one earlier batch is in the index. A kill that lands in the few
    # milliseconds between two batches strands nothing: then try again.
    for _attempt in range(3):
        before = indexed()
        worker = deployment.start_worker()
        deployment.sweep()
        wait_until(lambda: indexed() > before and leased() > 0, 25, f"a batch in flight\n{deployment.logs()}", every=0.002)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
        stranded, done_before = leased(), indexed()
        if stranded:
            break
    assert stranded > 0, "no kill landed mid-batch"
    assert done_before < total

    # The dead worker's lease runs out (after 5 minutes in production; here at once).
    with archive.sessions.begin() as session:
        session.execute(update(index_outbox).where(index_outbox.c.leased_until > utcnow()).values(leased_until=utcnow()))
    # Its task died with it. The sweep (run by the new worker, as beat would have it)
    # queues what the backlog needs; tasks still in Redis are harmless duplicates.
    deployment.start_worker()
    deployment.sweep()
    took = wait_until(lambda: backlog_of(archive) == 0, 25, f"the second worker to finish\n{deployment.logs()}")
    print(f"killed with {stranded} rows leased and {done_before}/{total} indexed; the next worker finished in {took:.2f} s")
    assert_indexed_exactly_once(archive, total)


@pytest.mark.services
def test_redis_outage_mail_is_still_accepted_and_the_sweep_catches_up(scale_out: Callable[..., ScaleOut]) -> None:
    redis = urlsplit(services.redis_url())
    if (redis.hostname, redis.port) != ("127.0.0.1", int(os.environ.get("POSTVAULT_REDIS_PORT", "56379"))):
        pytest.skip("the outage test stops Redis with scripts/services; the test Redis is another one")
    deployment = scale_out()
    archive = deployment.archive()
    deployment.start_worker()
    deployment.start_beat(interval=1.0)

    def deliver(listener: SmtpListener, n: int) -> tuple[str, float]:
        raw = make_message(subject=f"outage {n}", body=f"message number {n}").replace(b"\n", b"\r\n")
        started = time.monotonic()
        with smtplib.SMTP(listener.host, listener.port, timeout=30) as client:
            client.ehlo("client.example.net")
            client.mail("alice@example.com")
            client.rcpt("bob@example.org")
            code, reply = client.data(raw)
        return f"{code} {reply.decode()}", time.monotonic() - started

    with SmtpListener(archive, deployment.settings, notify_indexer=archive.notifier.notify) as listener:
        for n in range(2):
            assert deliver(listener, n)[0].startswith("250")
        wait_until(lambda: backlog_of(archive) == 0, 20, f"indexing before the outage\n{deployment.logs()}")

        services_script = [str(REPO / "scripts" / "services")]
        try:
            subprocess.run([*services_script, "down", "redis"], check=True, capture_output=True, timeout=60)
            outage_started = time.monotonic()
            replies = [deliver(listener, n) for n in range(2, 7)]
            # Acknowledged means durable, and durable does not need the broker: 250, promptly.
            assert all(reply.startswith("250") for reply, _ in replies), replies
            assert max(seconds for _, seconds in replies) < 3, replies
            time.sleep(1.0)
            assert backlog_of(archive) == 5  # nothing can tell the workers: the backlog grows
        finally:
            subprocess.run([*services_script, "up", "redis"], check=True, capture_output=True, timeout=60)
        outage = time.monotonic() - outage_started
        # Redis came back empty (no persistence): every notice of the outage is gone. The
        # beat sweep finds the rows in the outbox and queues their batch.
        took = wait_until(lambda: backlog_of(archive) == 0, 30, f"the sweep to catch up\n{deployment.logs()}", every=0.1)
        print(f"Redis down {outage:.1f} s; 5 messages accepted in {max(s for _, s in replies):.2f} s at most; "
              f"backlog drained {took:.1f} s after Redis came back")
    assert_indexed_exactly_once(archive, 7)
