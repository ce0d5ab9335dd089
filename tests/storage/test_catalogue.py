"""The catalogue migrates from empty, is idempotent to reopen, and runs SQLite in WAL with FULL sync."""

from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from storage.database import alembic_config, open_catalogue


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
