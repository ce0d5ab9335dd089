"""What search and view need of an archive: the port search_ui is written against."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from indexer.search_backend import SearchBackend
    from storage.blobstore import BlobStore


@runtime_checkable
class Archive(Protocol):
    """The catalogue, the index and the blobs of one archive, as search and view use them.

    ``postvault.wiring.Archive`` is the one in use; search_ui names this port rather than
    that class so that it does not depend on the composition root.

    - ``catalogue``: the catalogue's engine, migrated; audit events are written through it,
      in the same transaction as the check they record.
    - ``reader``: the same catalogue for statements that only read (never waits for a
      writer's lock on SQLite).
    - ``search``: the index; it refuses a search without a ``Scope`` (invariant 3).
    - ``blobs``: the exact bytes of each message by SHA-256 (invariant 2).
    """

    @property
    def catalogue(self) -> Engine: ...

    @property
    def reader(self) -> Engine: ...

    @property
    def search(self) -> SearchBackend: ...

    @property
    def blobs(self) -> BlobStore: ...
