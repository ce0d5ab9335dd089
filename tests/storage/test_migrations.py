"""Catalogue migrations go up one revision at a time and back on a live database, keep its rows, and end where storage.tables is."""

from __future__ import annotations

import ast
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, delete, insert, inspect, select
from sqlalchemy.exc import IntegrityError

from storage.database import alembic_config
from storage.tables import (domain_policies, envelopes, import_checkpoints, index_outbox, message_domains,
                            message_mailboxes, messages, metadata)
from storage.text import escaped, unescaped
from tests.services import postgres_schema

NOW = datetime(2026, 11, 27, tzinfo=timezone.utc)


def check_every_revision_up_and_back(url: str) -> None:
    config = alembic_config(url)
    engine = create_engine(url)
    try:
        command.upgrade(config, "0001")
        assert "domain_policies" not in inspect(engine).get_table_names()
        with engine.begin() as connection:
            connection.execute(insert(messages).values(
                sha256="a" * 64, size=3, first_received_at=NOW, source="smtp", subject="kept", from_header="",
                to_header="", cc_header="", message_id_header="", in_reply_to="", references="", list_id="",
                header_defects=[]))

        command.upgrade(config, "0002")
        assert "domain_policies" in inspect(engine).get_table_names()
        with engine.connect() as connection:
            assert connection.scalar(select(messages.c.subject)) == "kept"
        row = {"created_at": NOW, "updated_at": NOW}
        with engine.begin() as connection:
            connection.execute(insert(domain_policies), [
                {**row, "domain": "locked.example", "retention_days": 2555, "object_lock_mode": "COMPLIANCE"},
                {**row, "domain": "forever.example", "retention_days": None, "object_lock_mode": None},
            ])
        for bad in ({"retention_days": None, "object_lock_mode": "GOVERNANCE"},  # a lock needs a date
                    {"retention_days": 30, "object_lock_mode": "compliance"},
                    {"retention_days": 0, "object_lock_mode": None}):
            with pytest.raises(IntegrityError), engine.begin() as connection:
                connection.execute(insert(domain_policies).values(**row, domain="bad.example", **bad))

        command.upgrade(config, "0003")
        long_domain = "d" * 310 + ".example"  # a domain of a 320-character mailbox
        with engine.begin() as connection:
            message_id = connection.scalar(select(messages.c.id))
            connection.execute(insert(message_domains).values(message_id=message_id, domain=long_domain))
            connection.execute(insert(domain_policies).values(**row, domain=long_domain, retention_days=30))
        with engine.connect() as connection:
            assert connection.scalar(select(message_domains.c.domain)) == long_domain
        with engine.begin() as connection:  # the way down is for domains that fit the old columns
            connection.execute(delete(message_domains))
            connection.execute(delete(domain_policies).where(domain_policies.c.domain == long_domain))

        # Text written before 0004, when a backslash was only a backslash, means the same after it.
        written_before = {"mail_from": "a\\b@example.com", "helo": "h\\x00", "source_detail": "C:\\mail\\1.eml",
                          "rcpt_to": ["c\\d@example.org", "plain@example.org"]}
        with engine.begin() as connection:
            connection.execute(insert(envelopes).values(message_id=message_id, fingerprint="f" * 64, client_address="",
                                                        received_at=NOW, source="import", **written_before))
            connection.execute(insert(import_checkpoints).values(source_key="k" * 64, path="/a\\b", position=0,
                                                                 finished=False, updated_at=NOW))
        command.upgrade(config, "0004")
        with engine.connect() as connection:
            stored = connection.execute(select(envelopes)).mappings().one()
            assert {column: stored[column] for column in written_before} == {
                "mail_from": escaped("a\\b@example.com"), "helo": escaped("h\\x00"),
                "source_detail": escaped("C:\\mail\\1.eml"), "rcpt_to": [escaped("c\\d@example.org"), "plain@example.org"]}
            assert unescaped(stored["helo"]) == "h\\x00"
            assert unescaped(connection.scalar(select(import_checkpoints.c.path))) == "/a\\b"
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        command.downgrade(config, "0003")
        with engine.connect() as connection:
            stored = connection.execute(select(envelopes)).mappings().one()
            assert {column: stored[column] for column in written_before} == written_before

        command.downgrade(config, "0001")
        assert "domain_policies" not in inspect(engine).get_table_names()
        with engine.connect() as connection:
            assert connection.scalar(select(messages.c.subject)) == "kept"
        command.upgrade(config, "head")
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    finally:
        engine.dispose()


def test_every_revision_up_and_back_on_sqlite(tmp_path: Path) -> None:
    check_every_revision_up_and_back(f"sqlite:///{tmp_path / 'catalogue.sqlite3'}")


@pytest.mark.services
def test_every_revision_up_and_back_on_postgresql() -> None:
    with postgres_schema("pv_migrate") as url:
        check_every_revision_up_and_back(url)


def check_scope_keys_are_rewritten_to_their_one_spelling(url: str) -> None:
    """Rows keyed before the one normaliser are found under its keys after 0005, and indexed again."""
    config = alembic_config(url)
    engine = create_engine(url)
    try:
        command.upgrade(config, "0004")
        with engine.begin() as connection:
            ids = [connection.scalar(insert(messages).values(
                sha256=digit * 64, size=3, first_received_at=NOW, source="smtp", subject="", from_header="", to_header="",
                cc_header="", message_id_header="", in_reply_to="", references="", list_id="", header_defects=[],
                indexed_at=NOW).returning(messages.c.id)) for digit in "abc"]
            connection.execute(insert(message_mailboxes), [
                {"message_id": ids[0], "mailbox": "alice@example.com."},  # the root's dot
                {"message_id": ids[0], "mailbox": "alice@example.com"},  # and already the key: kept once
                {"message_id": ids[1], "mailbox": '"bob"@xn--bcher-kva.example'},  # quoted, A-label
                {"message_id": ids[2], "mailbox": "carol@example.org"},  # unchanged
            ])
            connection.execute(insert(message_domains), [
                {"message_id": ids[0], "domain": "example.com."}, {"message_id": ids[1], "domain": "xn--bcher-kva.example"},
                {"message_id": ids[2], "domain": "example.org"},
            ])
            connection.execute(insert(domain_policies).values(domain="xn--bcher-kva.example", retention_days=30,
                                                              created_at=NOW, updated_at=NOW))
        command.upgrade(config, "0005")
        with engine.connect() as connection:
            assert sorted(connection.execute(select(message_mailboxes.c.message_id, message_mailboxes.c.mailbox)).all()) == [
                (ids[0], "alice@example.com"), (ids[1], "bob@bücher.example"), (ids[2], "carol@example.org")]
            assert sorted(connection.execute(select(message_domains.c.message_id, message_domains.c.domain)).all()) == [
                (ids[0], "example.com"), (ids[1], "bücher.example"), (ids[2], "example.org")]
            assert list(connection.scalars(select(domain_policies.c.domain))) == ["bücher.example"]
            # The index holds the old keys of exactly these two: they are queued to be indexed again.
            assert sorted(connection.scalars(select(index_outbox.c.message_id))) == ids[:2]
    finally:
        engine.dispose()


def test_scope_keys_are_rewritten_to_their_one_spelling_on_sqlite(tmp_path: Path) -> None:
    check_scope_keys_are_rewritten_to_their_one_spelling(f"sqlite:///{tmp_path / 'catalogue.sqlite3'}")


@pytest.mark.services
def test_scope_keys_are_rewritten_to_their_one_spelling_on_postgresql() -> None:
    with postgres_schema("pv_rekey") as url:
        check_scope_keys_are_rewritten_to_their_one_spelling(url)


def test_the_schema_is_declared_once_in_storage_tables() -> None:
    """Core tables are the one declaration: no ORM classes repeating the columns beside them,
    and no second Table() of the catalogue anywhere else (the migrations are its history)."""
    repo = Path(__file__).resolve().parents[2]
    declarations = []
    for package in ("archiver", "bench", "indexer", "postvault", "retention", "search_ui", "storage"):
        for path in sorted((repo / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            # SQLAlchemy's names this module imports (rich has a Table too).
            from_sqlalchemy = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                               and (node.module or "").startswith("sqlalchemy") for alias in node.names}
            for node in ast.walk(tree):
                called = node.func if isinstance(node, ast.Call) else None
                table = (isinstance(called, ast.Name) and called.id == "Table" and "Table" in from_sqlalchemy) or (
                    isinstance(called, ast.Attribute) and called.attr == "Table" and getattr(called.value, "id", "") in {"sa", "sqlalchemy"})
                mapped = isinstance(node, ast.ClassDef) and bool({"DeclarativeBase", "Base"} & {
                    getattr(base, "id", getattr(base, "attr", "")) for base in node.bases})
                if table or mapped:
                    declarations.append(f"{path.relative_to(repo)}:{node.lineno}")
    assert declarations and all(where.startswith("storage/tables.py:") for where in declarations), declarations
