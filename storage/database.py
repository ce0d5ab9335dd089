"""Catalogue engine: one SQLAlchemy engine per URL, SQLite tuned for durability, migrations on open."""

from __future__ import annotations

import ast
import re
import sqlite3
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, create_engine, event

from storage.private_files import private_file, private_folder

if TYPE_CHECKING:  # alembic and the ORM's sessions are imported only by those who use them
    from alembic.config import Config
    from sqlalchemy.orm import Session, sessionmaker

_MIGRATIONS = Path(__file__).parent / "migrations"
# Key of the PostgreSQL advisory lock that serialises migrations (any fixed bigint will do).
_MIGRATION_LOCK = 0x706F73747661756C  # "postvaul"
# Where alembic records the applied revision (its default; env.py does not rename it).
_VERSION_TABLE = "alembic_version"
# ``revision = '0002'`` and ``down_revision = '0001'`` in a migration script, with or
# without a type annotation (``revision: str = ...``, as newer alembic templates write).
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)


# How long a new connection keeps asking for WAL mode while other processes hold the
# database (the same patience as the busy timeout every other statement gets).
_WAL_PATIENCE_SECONDS = 60.0


def _enter_wal_mode(cursor) -> None:  # type: ignore[no-untyped-def]
    """``PRAGMA journal_mode=WAL``, waiting for other processes instead of failing.

    Switching a new database's journal mode needs an exclusive lock, and SQLite answers
    SQLITE_BUSY at once instead of calling the busy handler; so when two processes open a
    brand-new catalogue together (two imports, serve beside an import) one of them got
    "database is locked". Once the file is in WAL mode the pragma is a cheap no-op.
    """
    deadline = time.monotonic() + _WAL_PATIENCE_SECONDS
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.25)


# Execution option marking an engine's transactions as reads (see ``read_only``).
READ_ONLY = "postvault_read_only"


def read_only(engine: Engine) -> Engine:
    """``engine`` for transactions that only read.

    On SQLite every other transaction begins IMMEDIATE, taking the write lock at once, so
    that two writers queue instead of deadlocking. A read needs no lock: these begin
    DEFERRED and read a WAL snapshot, so a search, ``status`` or ``verify`` neither waits
    behind an import's open batch nor holds up the SMTP listener's commits. A write made
    through this engine anyway would upgrade its lock and may fail with "database is
    locked" under contention: write through ``engine``. PostgreSQL is unaffected.
    """
    return engine.execution_options(**{READ_ONLY: True})


def create_catalogue_engine(url: str) -> Engine:
    """Engine for ``url``; for SQLite, WAL with synchronous=FULL so a commit survives power loss."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            # Created private before SQLite opens it: SQLite gives the -wal and -shm files
            # the database file's mode, and creates the file itself with the umask's.
            private_file(private_folder(Path(database).parent) / Path(database).name)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _tune_sqlite(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            _enter_wal_mode(cursor)
            # FULL: in WAL mode NORMAL may lose the last commits on power loss, which
            # would break "acknowledged means durable" (invariant 1).
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection) -> None:  # type: ignore[no-untyped-def]
            if connection.get_execution_options().get(READ_ONLY):
                # A reader's snapshot: in WAL mode it neither waits for nor blocks a writer.
                connection.exec_driver_sql("BEGIN")
                return
            # Take the write lock up front: two writers in deferred mode deadlock
            # on lock upgrade instead of waiting for each other.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@cache
def head_revision() -> str | None:
    """The newest migration's revision id, read from the scripts' text without importing alembic.

    Derived rather than written down, so that adding a migration cannot leave a stale
    constant behind. None when the scripts do not name exactly one head (say, two
    branches awaiting a merge) or cannot be read this simply: then alembic decides.
    tests/storage/test_catalogue.py checks this against alembic's own ScriptDirectory.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (_MIGRATIONS / "versions").glob("*.py"):
        if script.name.startswith((".#", "__init__")):  # files alembic skips too
            continue
        assignments = dict(_REVISION_LINE.findall(script.read_text(encoding="utf-8")))
        try:
            revision = ast.literal_eval(assignments["revision"])
            down = ast.literal_eval(assignments.get("down_revision", "None"))
        except (KeyError, ValueError, SyntaxError):
            return None
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        # A merge revision names a tuple of parents; the first revision names None.
        parents.update(down if isinstance(down, (tuple, list)) else () if down is None else (down,))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _is_at_head(connection: Connection) -> bool:
    """Whether the catalogue already records the newest revision (one cheap query)."""
    head = head_revision()
    if head is None or not connection.dialect.has_table(connection, _VERSION_TABLE):
        return False
    applied = {row[0] for row in connection.exec_driver_sql(f"SELECT version_num FROM {_VERSION_TABLE}")}
    return applied == {head}


def migrate(engine: Engine) -> None:
    """Bring the catalogue to the newest schema (idempotent).

    Every CLI call opens the catalogue, and nearly always it is already current: that
    case costs one query. Alembic (a large import that also loads every migration
    script) is brought in only when there is something to upgrade.
    """
    # First as a reader: a current catalogue (nearly always) is then opened without
    # waiting for the write lock, which an import or the SMTP listener may hold.
    with read_only(engine).connect() as connection:
        if _is_at_head(connection):
            return
    with engine.begin() as connection:
        # On SQLite this transaction began with BEGIN IMMEDIATE, so the second check and
        # any upgrade below happen under the write lock (another process may have
        # upgraded meanwhile). On PostgreSQL the lock is taken below and alembic reads
        # the revision again.
        if _is_at_head(connection):
            return
        if connection.dialect.name == "postgresql":
            # Processes that open a new catalogue together (serve, worker and beat starting
            # at once) would each create the tables, and all but one would fail. The lock
            # lasts until this transaction commits; SQLite's BEGIN IMMEDIATE does the same.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        from alembic import command

        config = alembic_config(engine.url.render_as_string(hide_password=False))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_catalogue_engine(url: str) -> Engine:
    """The catalogue's engine, migrated: for Core statements, or to make sessions on."""
    engine = create_catalogue_engine(url)
    migrate(engine)
    return engine


def open_catalogue(url: str) -> sessionmaker[Session]:
    from sqlalchemy.orm import sessionmaker

    return sessionmaker(open_catalogue_engine(url), expire_on_commit=False)
