"""Rebuild the index from blobs and catalogue alone (invariant 2)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from indexer import outbox
from indexer.search_backend import SearchBackend, SupportsRebuild
from storage.tables import messages


def enqueue_all(sessions: sessionmaker[Session], *, chunk: int = 5000) -> int:
    """Put every catalogued message on the outbox; returns how many."""
    total = 0
    last_id = 0
    while True:
        with sessions.begin() as session:
            ids = list(session.scalars(select(messages.c.id).where(messages.c.id > last_id).order_by(messages.c.id).limit(chunk)))
            if not ids:
                return total
            outbox.enqueue(session, ids)
        total += len(ids)
        last_id = ids[-1]


def start_reindex(sessions: sessionmaker[Session], backend: SearchBackend) -> int:
    """Queue everything for a rebuild; the outbox drain then rebuilds the index.

    An engine that can rebuild beside the live index (OpenSearch) starts a new version
    first, so searches keep their answers until ``finish_reindex`` swaps it in; any other
    is emptied and refilled.
    """
    if isinstance(backend, SupportsRebuild):
        backend.begin_rebuild()  # before the enqueue: later writes must reach both versions
    else:
        backend.clear()
    return enqueue_all(sessions)


def finish_reindex(backend: SearchBackend, *, expected: int) -> str:
    """Swap a side-by-side rebuild in (refusing if it holds fewer than ``expected``)."""
    if isinstance(backend, SupportsRebuild):
        return backend.finish_rebuild(min_documents=expected)
    return ""


def abort_reindex(backend: SearchBackend) -> None:
    """Drop a side-by-side rebuild that failed, so that writes stop going to a half-built index.

    The live index is untouched and keeps serving; the outbox rows the rebuild queued are
    indexed into it, which is what every later write does too.
    """
    if isinstance(backend, SupportsRebuild):
        backend.abort_rebuild()

