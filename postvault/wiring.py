"""Build the adapters the settings name: the only place that knows which engine is which."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from postvault.settings import Settings
from storage.engine_urls import FilesystemBlobsUrl, TantivyUrl, parse_blobstore_url, parse_database_url, parse_search_url

if TYPE_CHECKING:  # engines are imported when first used: `postvault --help` stays quick
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from archiver.journal import Journal
    from indexer.search_backend import SearchBackend
    from postvault.background.notifier import IndexNotifier
    from storage.blobstore import BlobStore


def blobstore_from_url(url: str) -> BlobStore:
    """The blob store ``url`` names (storage.engine_urls parses it; a bad URL raises EngineUrlError)."""
    parsed = parse_blobstore_url(url)
    if isinstance(parsed, FilesystemBlobsUrl):
        from storage.filesystem import FilesystemBlobStore

        return FilesystemBlobStore(parsed.path)
    from storage.s3 import S3BlobStore, S3Location

    return S3BlobStore(S3Location.from_parsed(parsed))


def search_backend_from_url(url: str) -> SearchBackend:
    """The search backend ``url`` names (storage.engine_urls parses it; a bad URL raises EngineUrlError)."""
    parsed = parse_search_url(url)
    if isinstance(parsed, TantivyUrl):
        from indexer.backends.tantivy_backend import TantivyBackend

        return TantivyBackend(parsed.path)
    from indexer.backends.opensearch_backend import Connection, OpenSearchBackend

    return OpenSearchBackend(Connection.from_parsed(parsed))


@dataclass
class Archive:
    """The wired engines of one running postvault, built lazily from settings."""

    settings: Settings

    @cached_property
    def catalogue(self) -> Engine:
        """The catalogue's engine, migrated on first use. Core statements need no more, and
        spare a short-lived process (`postvault search`) the ORM's import and set-up."""
        from storage.database import open_catalogue_engine

        return open_catalogue_engine(parse_database_url(self.settings.resolved_database_url()).url)

    @cached_property
    def reader(self) -> Engine:
        """``catalogue`` for read-only work: never waits for the write lock (SQLite)."""
        from storage.database import read_only

        return read_only(self.catalogue)

    @cached_property
    def read_sessions(self) -> "sessionmaker[Session]":
        """ORM sessions on ``reader``: for queries that write nothing."""
        from sqlalchemy.orm import sessionmaker

        return sessionmaker(self.reader, expire_on_commit=False)

    @cached_property
    def sessions(self) -> "sessionmaker[Session]":
        """ORM sessions on ``catalogue``."""
        from sqlalchemy.orm import sessionmaker

        return sessionmaker(self.catalogue, expire_on_commit=False)

    @cached_property
    def blobs(self) -> BlobStore:
        return blobstore_from_url(self.settings.resolved_blobstore_url())

    @cached_property
    def search(self) -> SearchBackend:
        return search_backend_from_url(self.settings.resolved_search_url())

    def set_aside_outdated_index(self) -> Path:
        """Move an embedded index built for another schema out of the way, kept beside it, for a reindex to start afresh.

        Only for ``IndexOutdatedError``: the old folder is renamed, never deleted, so a
        downgrade can still use it. Returns where it went.
        """
        location = parse_search_url(self.settings.resolved_search_url())
        if not isinstance(location, TantivyUrl):
            raise ValueError("only an embedded (tantivy) index is set aside; OpenSearch rebuilds beside the live index")
        self.__dict__.pop("search", None)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = location.path.with_name(f"{location.path.name}.outdated-{stamp}")
        location.path.rename(aside)
        return aside

    @cached_property
    def journal(self) -> Journal:
        from archiver.journal import Journal

        return Journal(self.blobs, self.sessions)

    @cached_property
    def notifier(self) -> IndexNotifier:
        """Told after each journal commit: wakes the in-process indexer, or queues a Celery task."""
        from postvault.background.notifier import notifier_for

        return notifier_for(self.settings)

    def close(self) -> None:
        if "notifier" in self.__dict__:
            self.notifier.close()
        if "search" in self.__dict__:
            self.search.close()
        close_blobs = getattr(self.__dict__.get("blobs"), "close", None)
        if close_blobs is not None:  # the folder store lets go of its pack for the next writer
            close_blobs()
        if "catalogue" in self.__dict__:
            self.catalogue.dispose()
