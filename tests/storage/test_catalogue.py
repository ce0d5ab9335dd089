"""The catalogue migrates from empty or from an older revision, reopens cheaply, and runs SQLite in WAL with FULL sync."""

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from storage.database import alembic_config, head_revision, open_catalogue


def test_migrations_create_every_table_and_reopen_is_a_no_op(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    sessions = open_catalogue(url)
    engine = sessions.kw["bind"]
    tables = set(inspect(engine).get_table_names())
    assert {"messages", "envelopes", "message_mailboxes", "message_domains", "index_outbox",
            "import_checkpoints", "audit_events", "domain_policies", "alembic_version"} <= tables
    with engine.connect() as connection:
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert connection.execute(text("select version_num from alembic_version")).scalar() == head
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()
    again = open_catalogue(url)
    with again.kw["bind"].connect() as connection:
        assert connection.execute(text("select count(*) from alembic_version")).scalar() == 1


def test_head_revision_read_from_the_scripts_is_alembics_head() -> None:
    """Opening skips alembic when the catalogue is at head_revision(); it must be alembic's own head."""
    assert head_revision() == ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def test_a_catalogue_behind_the_newest_revision_is_upgraded_on_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    command.upgrade(alembic_config(url), "0001")
    engine = open_catalogue(url).kw["bind"]
    try:
        assert "domain_policies" in inspect(engine).get_table_names()
        with engine.connect() as connection:
            assert connection.execute(text("select version_num from alembic_version")).scalar() == head_revision()
    finally:
        engine.dispose()


def test_opening_a_current_catalogue_does_not_import_alembic(tmp_path: Path) -> None:
    """Every CLI call opens the catalogue: the up-to-date case must not pay for importing alembic."""
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    open_catalogue(url).kw["bind"].dispose()
    probe = ("import sys; from storage.database import open_catalogue; "
             f"open_catalogue({url!r}).kw['bind'].dispose(); "
             "print(sorted(m for m in sys.modules if m == 'alembic' or m.startswith('alembic.')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_wal_switch_waits_out_a_busy_database_instead_of_failing(tmp_path) -> None:
    """Two processes opening a brand-new catalogue together: the loser of the race to
    switch it to WAL gets SQLITE_BUSY at once (SQLite does not call the busy handler
    there), which used to fail the second `postvault import` with "database is locked".
    The race itself is rare and timing-bound (tests/storage/test_concurrent_ingest.py
    meets it now and then), so here a real connection answers "locked" three times."""
    import sqlite3

    from storage.database import _enter_wal_mode

    connection = sqlite3.connect(tmp_path / "new.sqlite3")
    real = connection.cursor()
    refusals = []

    class BusyThreeTimes:
        def execute(self, statement: str):  # type: ignore[no-untyped-def]
            if len(refusals) < 3:
                refusals.append(statement)
                raise sqlite3.OperationalError("database is locked")
            return real.execute(statement)

    _enter_wal_mode(BusyThreeTimes())
    assert len(refusals) == 3
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    class Broken:
        def execute(self, statement: str):  # type: ignore[no-untyped-def]
            raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        _enter_wal_mode(Broken())  # other errors are not waited out
    connection.close()


def _finishes_within(seconds: float, work) -> bool:  # type: ignore[no-untyped-def]
    import threading

    done = threading.Event()

    def run() -> None:
        work()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(seconds)


def test_reads_neither_wait_for_nor_block_a_writer_holding_the_lock(tmp_path: Path) -> None:
    """An import batch holds SQLite's write lock for its whole transaction; a search's
    catalogue join, `status` and `verify` read through ``read_only`` and go straight on
    (before, every transaction began IMMEDIATE and queued behind the writer)."""
    from storage.database import open_catalogue_engine, read_only
    from storage.tables import audit_events

    engine = open_catalogue_engine(f"sqlite:///{tmp_path / 'catalogue.sqlite3'}")
    reader = read_only(engine)
    counts: list[int] = []
    try:
        with engine.begin() as writer:  # BEGIN IMMEDIATE: holds the write lock until the block ends
            writer.execute(audit_events.insert().values(at=datetime.now(timezone.utc), actor="importer", action="import",
                                                        detail={}, previous_hash="0" * 64, hash="1" * 64))

            def read() -> None:
                with reader.connect() as connection:
                    counts.append(connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one())

            assert _finishes_within(5, read), "a read waited for the writer's lock"
            assert counts == [0]  # its snapshot: the open transaction's row is not visible yet

            # And while that reader's snapshot is open, the writer commits (below) unhindered.
            with reader.connect() as connection:
                connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one()
        with reader.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 1
    finally:
        engine.dispose()
