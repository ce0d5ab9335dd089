"""Append-only, hash-chained audit trail of what people do to the archive (invariant 5)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from storage.models import AuditEvent
from storage.timeutil import as_utc, utcnow

GENESIS = "0" * 64


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


def record(session: Session, *, actor: str, action: str, detail: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event inside the caller's transaction (so the action and its record commit together)."""
    if session.get_bind().dialect.name == "postgresql":
        # Serialise appenders so two events never claim the same predecessor.
        session.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    previous = session.scalar(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)) or GENESIS
    at = utcnow()
    detail = json.loads(json.dumps(detail or {}, default=str))
    event = AuditEvent(at=at, actor=actor, action=action, detail=detail, previous_hash=previous,
                       hash=event_hash(previous, at, actor, action, detail))
    session.add(event)
    session.flush()
    return event


def audit(sessions: sessionmaker[Session], *, actor: str, action: str, detail: dict[str, Any] | None = None) -> None:
    with sessions.begin() as session:
        record(session, actor=actor, action=action, detail=detail)


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    reason: str


def verify_chain(sessions: sessionmaker[Session]) -> Iterator[ChainBreak]:
    """Recompute every link; yield each event whose hash or predecessor does not match."""
    previous = GENESIS
    with sessions() as session:
        for event in session.scalars(select(AuditEvent).order_by(AuditEvent.id)).yield_per(1000):
            if event.previous_hash != previous:
                yield ChainBreak(event.id, "predecessor hash does not match the previous event")
            expected = event_hash(event.previous_hash, event.at, event.actor, event.action, event.detail)
            if expected != event.hash:
                yield ChainBreak(event.id, "content does not match its hash")
            previous = event.hash
