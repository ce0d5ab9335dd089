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
from storage.text import escaped, unescaped
from storage.timeutil import utcnow


@dataclass(frozen=True)
class Checkpoint:
    """Everything in ``path`` before byte ``position`` is committed to the catalogue."""

    key: str
    path: str  # resolved, as os.fsdecode gives it (a name that is not UTF-8 keeps surrogates)
    position: int
    finished: bool = False


def mbox_key(path: Path, custodian: str, status: os.stat_result) -> str:
    """Identity of one mbox import: the file (path and inode, from ``status``) and whose mail it is.

    The custodian is part of it so that importing the same file for another mailbox reads
    it again and attributes every message; the inode, so that a file rewritten in place
    (an mbox compacted by its mail program) is read again instead of resumed mid-way.
    Hashed from the path's bytes, so that any file name has one (and the same as ever for
    UTF-8 names).
    """
    identity = f"{status.st_dev}:{status.st_ino}".encode()
    who = custodian.encode("utf-8", "surrogateescape")
    return hashlib.sha256(b"mbox\0" + os.fsencode(os.path.realpath(path)) + b"\0" + identity + b"\0" + who).hexdigest()


def load(sessions: sessionmaker[Session], key: str) -> Checkpoint | None:
    with sessions() as session:
        row = session.execute(select(import_checkpoints).where(import_checkpoints.c.source_key == key)).first()
        if row is None:
            return None
        return Checkpoint(key=row.source_key, path=unescaped(row.path), position=row.position, finished=row.finished)


def save(sessions: sessionmaker[Session], checkpoints: Iterable[Checkpoint]) -> None:
    """Record the newest checkpoint of each source (the last one given wins)."""
    latest = {checkpoint.key: checkpoint for checkpoint in checkpoints}
    if not latest:
        return
    now = utcnow()
    # Escaped, exactly: a file name that is not UTF-8 has lone surrogates, which no driver encodes.
    rows = [{"source_key": c.key, "path": escaped(c.path), "position": c.position, "finished": c.finished, "updated_at": now}
            for c in latest.values()]
    # Both SQLite and PostgreSQL call the row that failed to insert "excluded".
    update = {column: literal_column(f"excluded.{column}") for column in ("path", "position", "finished", "updated_at")}
    with sessions.begin() as session:
        upsert(session, import_checkpoints, rows, keys=["source_key"], update=update)


__all__ = ["Checkpoint", "load", "mbox_key", "save"]
