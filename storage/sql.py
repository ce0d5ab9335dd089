"""Dialect-aware bulk statements the catalogue needs on both SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Table, Text, bindparam, cast, column, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_conflicts(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: unique constraints, not luck, keep rows single."""
    if not rows:
        return
    if _postgresql(session):
        recordset = _Recordset.of(table, rows)
        if recordset is not None:
            session.execute(recordset.insert().on_conflict_do_nothing(), recordset.parameters)
            return
    module = postgresql if _postgresql(session) else sqlite
    session.execute(module.insert(table).on_conflict_do_nothing(), list(rows))


def insert_returning_inserted(session: Session, table: Table, rows: Sequence[dict[str, Any]], *, key: str) -> set[Any]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING key: the keys this statement inserted.

    Under concurrency, "did it exist before I looked?" is answered only by the insert
    itself; a SELECT beforehand can be stale by the time the row goes in.
    """
    if not rows:
        return set()
    if _postgresql(session):
        recordset = _Recordset.of(table, rows)
        if recordset is not None:
            statement = recordset.insert().on_conflict_do_nothing().returning(table.c[key])
            return set(session.scalars(statement, recordset.parameters))
    module = postgresql if _postgresql(session) else sqlite
    statement = module.insert(table).on_conflict_do_nothing().returning(table.c[key])
    return set(session.scalars(statement, list(rows)))


def upsert(session: Session, table: Table, rows: Sequence[dict[str, Any]], *, keys: Sequence[str], update: dict[str, Any]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET update."""
    if not rows:
        return
    # One statement may not update a row twice: rows repeating a key go one at a time.
    if _postgresql(session) and len({tuple(row.get(key) for key in keys) for row in rows}) == len(rows):
        recordset = _Recordset.of(table, rows)
        if recordset is not None:
            statement = recordset.insert().on_conflict_do_update(index_elements=list(keys), set_=update)
            session.execute(statement, recordset.parameters)
            return
    module = postgresql if _postgresql(session) else sqlite
    statement = module.insert(table)
    statement = statement.on_conflict_do_update(index_elements=list(keys), set_=update)
    session.execute(statement, list(rows))


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


class _Recordset:
    """Many rows for PostgreSQL as one JSON parameter: ``INSERT ... SELECT ... FROM json_to_recordset(:rows)``.

    An executemany sends and binds every row separately, and a multi-row VALUES (what
    RETURNING needs) is a new statement text of thousands of placeholders for every batch,
    which the driver has to parse each time. One parameter keeps the statement's text the
    same from batch to batch (parsed once, prepared by the server) and the rows are
    encoded by the json module in C. Values arrive as they would through the driver: text,
    numbers, booleans, NULL, timestamps in ISO 8601, and JSON columns as their JSON text.
    """

    def __init__(self, table: Table, names: list[str], rows: Sequence[dict[str, Any]]) -> None:
        self.table = table
        self.names = names
        json_columns = {name for name in names if isinstance(table.c[name].type, JSON)}
        self.parameters = {
            "rows": json.dumps(
                [{name: json.dumps(row[name]) if name in json_columns else row[name] for name in names} for row in rows],
                default=_iso_8601,  # non-ASCII escaped: the json module's fast path; PostgreSQL decodes them
            )
        }

    @classmethod
    def of(cls, table: Table, rows: Sequence[dict[str, Any]]) -> _Recordset | None:
        """The rows as a recordset, or None where only the ordinary statement would do: rows
        with different columns, or leaving out a column whose default SQLAlchemy fills in."""
        names = list(rows[0])
        wanted = set(names)
        if any(row.keys() != wanted for row in rows):
            return None
        if any(c.name not in wanted and (c.default is not None or c.onupdate is not None) for c in table.columns):
            return None
        return cls(table, names, rows)

    def insert(self) -> postgresql.Insert:
        record = [column(name, Text if isinstance(self.table.c[name].type, JSON) else self.table.c[name].type) for name in self.names]
        source = func.json_to_recordset(cast(bindparam("rows", type_=Text), JSON)).table_valued(*record).render_derived(with_types=True)
        values = [
            cast(source.c[name], JSON) if isinstance(self.table.c[name].type, JSON) else source.c[name] for name in self.names
        ]
        return postgresql.insert(self.table).from_select(self.names, select(*values))


def _iso_8601(value: object) -> str:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a value the catalogue stores")
