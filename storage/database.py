"""Catalogue engine: one SQLAlchemy engine per URL, SQLite tuned for durability, migrations on open."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

_MIGRATIONS = Path(__file__).parent / "migrations"
# Key of the PostgreSQL advisory lock that serialises migrations (any fixed bigint will do).
_MIGRATION_LOCK = 0x706F73747661756C  # "postvaul"


class CatalogueError(RuntimeError):
    """The catalogue database is unreachable or refused a write."""


def create_catalogue_engine(url: str) -> Engine:
    """Engine for ``url``; for SQLite, WAL with synchronous=FULL so a commit survives power loss."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _tune_sqlite(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: in WAL mode NORMAL may lose the last commits on power loss, which
            # would break "acknowledged means durable" (invariant 1).
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection) -> None:  # type: ignore[no-untyped-def]
            # Take the write lock up front: two writers in deferred mode deadlock
            # on lock upgrade instead of waiting for each other.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine: Engine) -> None:
    """Bring the catalogue to the newest schema (idempotent)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Processes that open a new catalogue together (serve, worker and beat starting
            # at once) would each create the tables, and all but one would fail. The lock
            # lasts until this transaction commits; SQLite's BEGIN IMMEDIATE does the same.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_catalogue(url: str) -> sessionmaker[Session]:
    engine = create_catalogue_engine(url)
    migrate(engine)
    return sessionmaker(engine, expire_on_commit=False)
