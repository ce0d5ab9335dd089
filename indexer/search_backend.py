"""The SearchBackend port: what ingest and search need from an index engine."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol, runtime_checkable

from indexer.document import IndexDocument
from indexer.query.ast import Node
from indexer.scope import Scope


class SortOrder(str, Enum):
    DATE_DESC = "date"
    DATE_ASC = "date-asc"
    RELEVANCE = "relevance"


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    date: datetime | None


@dataclass(frozen=True)
class SearchPage:
    hits: tuple[Hit, ...]
    total: int  # matches in scope, not just this page
    offset: int
    limit: int


@dataclass(frozen=True)
class IndexedScope:
    """Whose a document is, as the engine holds it: read back by ``verify`` to find stale scopes."""

    id: int
    mailboxes: frozenset[str]
    domains: frozenset[str]


class SearchBackendError(RuntimeError):
    """The engine is unreachable or refused the operation; the caller may retry later."""


class IndexLockedError(SearchBackendError):
    """Another process holds the only writer of an embedded index (tantivy): let it index."""


class IndexOutdatedError(SearchBackendError):
    """The index was built for another schema (an older postvault): ``postvault reindex`` replaces it."""


class SearchBackend(Protocol):
    """Contract every index engine adapter keeps.

    - ``index`` upserts by ``IndexDocument.id``; when it returns, the documents are
      durable in the engine and visible to the next ``search``, except those it returns:
      the ids of documents this engine cannot hold (it cannot convert them, or refuses
      them one by one), each with the reason. Those are the documents' failures, and the
      rest of the batch is indexed regardless.
    - ``search`` must call ``indexer.scope.require_scope`` and apply the scope as a
      filter; it never returns a message outside it.
    - ``indexed_ids`` lists every id the engine holds, for ``verify``; ``indexed_scopes``
      the mailboxes and domains each holds, both in ascending id order.
    - An engine that is unreachable, busy or refusing as a whole raises
      ``SearchBackendError``: an outage, after which the whole batch is tried again.
    """

    def index(self, documents: Sequence[IndexDocument]) -> Mapping[int, str]: ...

    def delete(self, ids: Sequence[int]) -> None: ...

    def search(
        self,
        query: Node,
        scope: Scope,
        *,
        sort: SortOrder = SortOrder.DATE_DESC,
        limit: int = 20,
        offset: int = 0,
    ) -> SearchPage: ...

    def indexed_ids(self) -> Iterator[int]: ...

    def indexed_scopes(self) -> Iterator[IndexedScope]: ...

    def count(self) -> int: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...

    def check(self) -> None:
        """Raise ``SearchBackendError`` with a plain explanation if the engine is unusable."""
        ...


@runtime_checkable
class SupportsRebuild(Protocol):
    """An engine that can rebuild beside the live index and swap without downtime.

    ``begin_rebuild`` before the outbox is refilled (so every later write also reaches
    the new index), drain, then ``finish_rebuild``; ``abort_rebuild`` discards it.
    """

    def begin_rebuild(self) -> str: ...

    def finish_rebuild(self, *, min_documents: int = 0) -> str: ...

    def abort_rebuild(self) -> None: ...
