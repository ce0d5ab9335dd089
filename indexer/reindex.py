"""Rebuild the index from blobs and catalogue alone (invariant 2)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archiver.journal import enqueue_for_indexing
from indexer.search_backend import SearchBackend
from storage.models import Message


def enqueue_all(sessions: sessionmaker[Session], *, chunk: int = 5000) -> int:
    """Put every catalogued message on the outbox; returns how many."""
    total = 0
    last_id = 0
    while True:
        with sessions.begin() as session:
            ids = list(session.scalars(select(Message.id).where(Message.id > last_id).order_by(Message.id).limit(chunk)))
            if not ids:
                return total
            enqueue_for_indexing(session, ids)
        total += len(ids)
        last_id = ids[-1]


def start_reindex(sessions: sessionmaker[Session], backend: SearchBackend) -> int:
    """Empty the index and queue everything; the outbox drain then rebuilds it."""
    backend.clear()
    return enqueue_all(sessions)
