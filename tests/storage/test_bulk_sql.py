"""The bulk statements of storage.sql store on PostgreSQL exactly what one row at a time would."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import JSON, BigInteger, Boolean, Column, DateTime, Integer, MetaData, String, Table, Text, create_engine, event, literal_column, select
from sqlalchemy.orm import Session, sessionmaker

from storage.sql import insert_ignoring_conflicts, insert_returning_inserted, upsert
from tests import services

pytestmark = pytest.mark.services

metadata = MetaData()
# Every kind of column the catalogue has: a reserved word for a name, JSON that may be null.
rows_table = Table(
    "bulk_rows",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("key", String(64), unique=True, nullable=False),
    Column("references", Text, nullable=False),
    Column("defects", JSON, nullable=True),
    Column("at", DateTime(timezone=True), nullable=True),
    Column("count", Integer, nullable=False),
    Column("done", Boolean, nullable=False),
)
START = datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-5)))


@pytest.fixture
def sessions() -> Iterator[sessionmaker[Session]]:
    with services.postgres_schema("pv_bulk") as url:
        engine = create_engine(url)
        metadata.create_all(engine)
        try:
            yield sessionmaker(engine)
        finally:
            engine.dispose()


def row(key: str, number: int) -> dict[str, object]:
    return {"key": key, "references": f"<{key}@x> 'q' \"dq\" \\ é 日本 \U0001f600", "defects": None if number % 2 else ["a", {"b": number}],
            "at": None if number == 3 else START + timedelta(days=number), "count": number, "done": number % 2 == 0}


def stored(sessions: sessionmaker[Session]) -> list[tuple[object, ...]]:
    columns = [rows_table.c[name] for name in ("key", "references", "defects", "at", "count", "done")]
    with sessions() as session:
        # JSON as the text PostgreSQL keeps: a JSON null and an SQL NULL would read back alike.
        text = literal_column("bulk_rows.defects::text")
        return [tuple(found) for found in session.execute(select(*columns, text).order_by(rows_table.c.id))]


def test_a_batch_is_one_statement_that_stores_what_row_by_row_inserts_store(sessions: sessionmaker[Session]) -> None:
    batch = [row(f"k{number}", number) for number in range(6)]
    statements: list[str] = []
    engine = sessions.kw["bind"]
    listen = lambda _conn, _cursor, statement, *_rest: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listen)
    with sessions.begin() as session:
        assert insert_returning_inserted(session, rows_table, batch, key="key") == {f"k{n}" for n in range(6)}
    event.remove(engine, "before_cursor_execute", listen)
    inserts = [statement for statement in statements if statement.startswith("INSERT")]
    assert len(inserts) == 1 and "json_to_recordset" in inserts[0]
    bulk = stored(sessions)
    with sessions.begin() as session:
        session.execute(rows_table.delete())
        for one in batch:
            session.execute(rows_table.insert(), one)  # SQLAlchemy's own statement, one row at a time
    assert bulk == stored(sessions)
    assert bulk[1][2] is None and bulk[1][6] == "null"  # None in a JSON column is JSON null, as SQLAlchemy stores it


def test_conflicts_are_skipped_and_only_new_keys_are_returned(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        insert_ignoring_conflicts(session, rows_table, [row("a", 0), row("b", 1)])
    with sessions.begin() as session:
        inserted = insert_returning_inserted(session, rows_table, [row("a", 5), row("c", 2), row("c", 4)], key="key")
    assert inserted == {"c"}
    assert [(key, count) for key, _, _, _, count, _, _ in stored(sessions)] == [("a", 0), ("b", 1), ("c", 2)]


def test_upsert_updates_existing_rows_and_takes_a_key_twice_in_one_batch(sessions: sessionmaker[Session]) -> None:
    update = {"count": rows_table.c.count + literal_column("excluded.count"), "done": literal_column("excluded.done")}
    with sessions.begin() as session:
        upsert(session, rows_table, [row("a", 1), row("b", 2)], keys=["key"], update=update)
    with sessions.begin() as session:
        upsert(session, rows_table, [row("a", 10), row("c", 3)], keys=["key"], update=update)
        upsert(session, rows_table, [row("b", 4), row("b", 6)], keys=["key"], update=update)  # the later row wins on top
    assert [(key, count, done) for key, _, _, _, count, done, _ in stored(sessions)] == [("a", 11, True), ("b", 12, True), ("c", 3, False)]
