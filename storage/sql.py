"""Dialect-aware bulk statements the catalogue needs on both SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_conflicts(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: unique constraints, not luck, keep rows single."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    session.execute(module.insert(table).on_conflict_do_nothing(), list(rows))


def insert_returning_inserted(session: Session, table: Table, rows: Sequence[dict[str, Any]], *, key: str) -> set[Any]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING key: the keys this statement inserted.

    Under concurrency, "did it exist before I looked?" is answered only by the insert
    itself; a SELECT beforehand can be stale by the time the row goes in.
    """
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(table).on_conflict_do_nothing().returning(table.c[key])
    return set(session.scalars(statement, list(rows)))


def upsert(session: Session, table: Table, rows: Sequence[dict[str, Any]], *, keys: Sequence[str], update: dict[str, Any]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET update."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(table)
    statement = statement.on_conflict_do_update(index_elements=list(keys), set_=update)
    session.execute(statement, list(rows))
