"""The catalogue under concurrency: migrations from empty on PostgreSQL, two importers at once, workers leasing at once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Table, func, inspect, select

from archiver.envelope import Envelope as SmtpEnvelope
from archiver.journal import Arrival
from indexer.outbox import index_leased, lease_batch
from indexer.verify import verify_archive
from postvault.indexing import InProcessParser, drain_outbox
from postvault.settings import Settings
from postvault.wiring import Archive
from storage.blobstore import sha256_hex
from storage.database import alembic_config, create_catalogue_engine, migrate
from storage.tables import envelopes, index_outbox, message_domains, message_mailboxes, messages, metadata
from tests import services
from tests.archive_factory import make_message

POSTVAULT = str(Path(sys.executable).with_name("postvault"))


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.services), "sqlite"])
def catalogue_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty catalogue: a throw-away PostgreSQL schema, or a SQLite file (WAL, BEGIN IMMEDIATE)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'var' / 'catalogue.sqlite3'}"
        return
    with services.postgres_schema() as url:
        yield url


def settings_for(tmp_path: Path, database_url: str) -> Settings:
    data_dir = tmp_path / "var"
    return Settings(data_dir=data_dir, database_url=database_url, blobstore_url=f"file://{data_dir / 'blobs'}",
                    search_url=f"tantivy://{data_dir / 'index'}", broker_url="", index_workers=1)


def env_for(settings: Settings) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("POSTVAULT_")}
    for key in ("data_dir", "database_url", "blobstore_url", "search_url", "broker_url", "index_workers"):
        env[f"POSTVAULT_{key.upper()}"] = str(getattr(settings, key))
    return env


def count(archive: Archive, table: Table) -> int:
    with archive.sessions() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


@pytest.mark.services
def test_migrations_build_the_declared_schema_from_empty_on_postgresql() -> None:
    with services.postgres_schema() as url:
        engine = create_catalogue_engine(url)
        try:
            assert inspect(engine).get_table_names() == []
            migrate(engine)
            head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
            with engine.connect() as connection:
                context = MigrationContext.configure(connection)
                assert context.get_current_revision() == head
                # What the migrations built is exactly what storage.tables declares.
                assert compare_metadata(context, metadata) == []
            # Every downgrade runs on PostgreSQL too, and the way back up is clean.
            with engine.begin() as connection:
                config = alembic_config(url)
                config.attributes["connection"] = connection
                command.downgrade(config, "base")
            assert inspect(engine).get_table_names() == ["alembic_version"]
            migrate(engine)
            migrate(engine)  # idempotent
            with engine.connect() as connection:
                assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        finally:
            engine.dispose()


def write_mail(folder: Path, messages: dict[str, bytes]) -> None:
    folder.mkdir(parents=True)
    for name, raw in messages.items():
        (folder / f"{name}.eml").write_bytes(raw)


def reported(output: str, row: str) -> int:
    """A number from the summary table `postvault import` prints."""
    match = re.search(re.escape(row) + r"\s*│\s*([\d,]+)", output)
    assert match, output
    return int(match.group(1).replace(",", ""))


def test_two_imports_at_once_store_every_message_once(tmp_path: Path, catalogue_url: str) -> None:
    """Two `postvault import` processes, overlapping mail (the shared part in opposite
    orders), one catalogue and one blob folder: exact row counts, nothing lost."""
    shared = {n: make_message(subject=f"shared {n}", body=f"the same bytes in both imports, number {n}") for n in range(60)}
    only_a = {n: make_message(subject=f"only a {n}", body=f"first import's own message {n}") for n in range(30)}
    only_b = {n: make_message(subject=f"only b {n}", body=f"second import's own message {n}") for n in range(30)}
    # Names sort the shared messages ascending in one folder and descending in the other,
    # so the two importers meet in the middle and insert the same rows in opposite orders.
    write_mail(tmp_path / "a", {**{f"s{n:03}": raw for n, raw in shared.items()}, **{f"a{n:03}": raw for n, raw in only_a.items()}})
    write_mail(tmp_path / "b", {**{f"s{999 - n:03}": raw for n, raw in shared.items()}, **{f"b{n:03}": raw for n, raw in only_b.items()}})

    settings = settings_for(tmp_path, catalogue_url)
    env = env_for(settings)
    # Both start at once on an empty catalogue: they also race to migrate it.
    importers = [
        subprocess.Popen([POSTVAULT, "import", "--no-index", "--batch-size", "7", "--mailbox", mailbox, str(tmp_path / folder)],
                         env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for folder, mailbox in (("a", "custodian@corp-a.test"), ("b", "custodian@corp-b.test"))
    ]
    outputs = [importer.communicate(timeout=120)[0] for importer in importers]
    assert [importer.returncode for importer in importers] == [0, 0], "\n".join(outputs)

    archive = Archive(settings)
    try:
        # 120 distinct messages. Each carries alice@example.com and bob@example.org from
        # its headers plus its importer's custodian: the shared 60 have both custodians.
        assert count(archive, messages) == 60 + 30 + 30
        assert count(archive, envelopes) == 60 * 2 + 30 + 30  # one per (message, custodian)
        assert count(archive, message_mailboxes) == 60 * 4 + 60 * 3
        assert count(archive, message_domains) == 60 * 4 + 60 * 3
        assert count(archive, index_outbox) == 120
        with archive.sessions() as session:
            digests = set(session.scalars(select(messages.c.sha256)))
        assert digests == {sha256_hex(raw) for raw in [*shared.values(), *only_a.values(), *only_b.values()]}
        assert sorted(archive.blobs.iter_digests()) == sorted(digests)  # content addressed: each stored once
        packs = list((tmp_path / "var" / "blobs" / "packs").glob("*.pack"))
        assert 1 <= len(packs) <= 2  # one per importer at most, each appending under its own lock
        # Each import accounts for every message it read, and exactly one of them calls a
        # shared message new: the insert itself decides, not a look beforehand.
        for output in outputs:
            assert reported(output, "archived (new)") + reported(output, "already in the archive") == 90, output
        assert sum(reported(output, "archived (new)") for output in outputs) == 120, outputs

        report = drain_outbox(archive)
        assert report.indexed == 120 and report.failed == 0
        verified = verify_archive(archive.sessions, archive.blobs, archive.search)
        assert verified.discrepancies == 0 and verified.index_coverage == 1.0 and not verified.orphan_blobs
    finally:
        archive.close()


def test_workers_leasing_at_once_index_every_message_once(tmp_path: Path, catalogue_url: str) -> None:
    """Four workers drain one outbox concurrently (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: BEGIN IMMEDIATE)."""
    archive = Archive(settings_for(tmp_path, catalogue_url))
    try:
        receipts = archive.journal.journal_many(
            [Arrival(make_message(subject=f"lease {n}"), SmtpEnvelope(rcpt_to=("bob@example.org",)), "smtp") for n in range(300)]
        )
        leased: dict[str, list[int]] = {}
        start = threading.Barrier(4)
        failures: list[BaseException] = []

        def work(name: str) -> None:
            parse = InProcessParser(archive.blobs, archive.settings)
            mine = leased.setdefault(name, [])
            try:
                start.wait()
                while leases := lease_batch(archive.sessions, 7):
                    mine.extend(lease.message_id for lease in leases)
                    index_leased(archive.sessions, archive.search, leases, parse)
            except BaseException as error:  # reported below, not lost in the thread
                failures.append(error)

        workers = [threading.Thread(target=work, args=(f"worker-{n}",)) for n in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
        assert not failures, failures

        taken = Counter(message_id for ids in leased.values() for message_id in ids)
        assert sorted(taken) == sorted(receipt.message_id for receipt in receipts)  # none lost
        assert max(taken.values()) == 1  # none leased (or indexed) twice in this round
        assert sum(1 for ids in leased.values() if ids) > 1, "only one worker ever got a batch"
        assert count(archive, index_outbox) == 0
        verified = verify_archive(archive.sessions, archive.blobs, archive.search)
        assert verified.discrepancies == 0 and verified.index_coverage == 1.0
    finally:
        archive.close()
