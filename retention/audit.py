"""Append-only, hash-chained audit trail of what people do to the archive (invariant 5)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, insert, select, text

from storage.tables import audit_events
from storage.timeutil import as_utc, utcnow

if TYPE_CHECKING:  # Core statements only: `postvault search` audits without importing the ORM
    from sqlalchemy.orm import Session, sessionmaker

GENESIS = "0" * 64

# Built once: a search audits itself on every call, and building a statement (and its cache
# key) each time was a third of an audit's Python time.
_LATEST_HASH = select(audit_events.c.hash).order_by(audit_events.c.id.desc()).limit(1)
_APPEND = insert(audit_events)


def event_hash(previous_hash: str, at: datetime, actor: str, action: str, detail: dict[str, Any]) -> str:
    """Each event's hash covers its content and its predecessor's hash, so any edit or
    deletion inside the chain breaks every later link."""
    canonical = json.dumps(
        [previous_hash, as_utc(at).isoformat(), actor, action, detail],  # type: ignore[union-attr]
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def record(transaction: Connection | Session, *, actor: str, action: str, detail: dict[str, Any] | None = None) -> None:
    """Append one event inside the caller's transaction (so the action and its record commit together).

    ``transaction`` is a Core connection, or an ORM session whose connection is used.
    """
    connection = transaction if isinstance(transaction, Connection) else transaction.connection()
    if connection.dialect.name == "postgresql":
        # Serialise appenders so two events never claim the same predecessor.
        connection.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    previous = connection.scalar(_LATEST_HASH) or GENESIS
    at = utcnow()
    detail = json.loads(json.dumps(detail or {}, default=str))
    connection.execute(_APPEND, {"at": at, "actor": actor, "action": action, "detail": detail, "previous_hash": previous,
                                 "hash": event_hash(previous, at, actor, action, detail)})


def audit(catalogue: Engine | sessionmaker[Session], *, actor: str, action: str, detail: dict[str, Any] | None = None) -> None:
    """Record one event in a transaction of its own, on the catalogue's engine or a session maker."""
    with catalogue.begin() as transaction:
        record(transaction, actor=actor, action=action, detail=detail)


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


def verify_chain(sessions: sessionmaker[Session]) -> Iterator[ChainBreak]:
    """Recompute every link; yield each event whose hash or predecessor does not match."""
    previous = GENESIS
    with sessions() as session:
        for event in session.execute(select(audit_events).order_by(audit_events.c.id)).yield_per(1000):
            if event.previous_hash != previous:
                yield ChainBreak(event.id, "predecessor hash does not match the previous event")
            expected = event_hash(event.previous_hash, event.at, event.actor, event.action, event.detail)
            if expected != event.hash:
                yield ChainBreak(event.id, "content does not match its hash")
            previous = event.hash
