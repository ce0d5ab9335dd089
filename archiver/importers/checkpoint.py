"""Resume points of long imports, kept in the catalogue's import_checkpoints table."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import literal_column, select
from sqlalchemy.orm import Session, sessionmaker

from storage.sql import upsert
from storage.tables import import_checkpoints
from storage.timeutil import utcnow


@dataclass(frozen=True)
class Checkpoint:
    """Everything in ``path`` before byte ``position`` is committed to the catalogue."""

    key: str
    path: str
    position: int
    finished: bool = False


def mbox_key(path: Path, custodian: str) -> str:
    """Identity of one mbox import: the file (path and inode) and whose mail it is.

    The custodian is part of it so that importing the same file for another mailbox reads
    it again and attributes every message; the inode, so that a file rewritten in place
    (an mbox compacted by its mail program) is read again instead of resumed mid-way.
    """
    resolved = path.resolve()
    try:
        status = os.stat(resolved)
        identity = f"{status.st_dev}:{status.st_ino}"
    except OSError:
        identity = ""
    return hashlib.sha256(f"mbox\0{resolved}\0{identity}\0{custodian}".encode()).hexdigest()


def load(sessions: sessionmaker[Session], key: str) -> Checkpoint | None:
    with sessions() as session:
        row = session.execute(select(import_checkpoints).where(import_checkpoints.c.source_key == key)).first()
        if row is None:
            return None
        return Checkpoint(key=row.source_key, path=row.path, position=row.position, finished=row.finished)


def save(sessions: sessionmaker[Session], checkpoints: Iterable[Checkpoint]) -> None:
    """Record the newest checkpoint of each source (the last one given wins)."""
    latest = {checkpoint.key: checkpoint for checkpoint in checkpoints}
    if not latest:
        return
    now = utcnow()
    rows = [{"source_key": c.key, "path": c.path, "position": c.position, "finished": c.finished, "updated_at": now}
            for c in latest.values()]
    # Both SQLite and PostgreSQL call the row that failed to insert "excluded".
    update = {column: literal_column(f"excluded.{column}") for column in ("path", "position", "finished", "updated_at")}
    with sessions.begin() as session:
        upsert(session, import_checkpoints, rows, keys=["source_key"], update=update)


__all__ = ["Checkpoint", "load", "mbox_key", "save"]
