"""Search and view on behalf of a principal: scope, query, backend, catalogue join, audit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select

from indexer.query.parser import parse_query
from indexer.scope import Scope
from indexer.search_backend import SearchBackend, SortOrder
from retention.audit import audit, record
from search_ui.archive import Archive
from search_ui.principals import Principal, scope_for
from storage.tables import message_domains, message_mailboxes, messages
from storage.timeutil import as_utc

# Core statements on the catalogue's engine, not ORM sessions: a search is one short process
# per call from the command line, and the ORM's import and set-up would be a good part of it.
_SUMMARY_COLUMNS = (messages.c.id, messages.c.sha256, messages.c.date_header, messages.c.first_received_at,
                    messages.c.from_header, messages.c.to_header, messages.c.subject, messages.c.size)
# Built once (an expanding IN takes the page's ids at execution): building it per search cost
# more than running it.
_SUMMARIES = select(*_SUMMARY_COLUMNS).where(messages.c.id.in_(bindparam("ids", expanding=True)))


@dataclass(frozen=True)
class MessageSummary:
    id: int
    sha256: str
    date: datetime | None
    from_: str
    to: str
    subject: str
    size: int
    score: float = 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "date": self.date.isoformat() if self.date else None,
            "from": self.from_,
            "to": self.to,
            "subject": self.subject,
        }


@dataclass(frozen=True)
class SearchResults:
    query: str
    scope: Scope
    total: int
    offset: int
    hits: tuple[MessageSummary, ...]


class MessageNotVisibleError(LookupError):
    """No such message, or not in the principal's scope (indistinguishable on purpose)."""


def search_archive(
    archive: Archive,
    principal: Principal,
    query_text: str,
    *,
    requested: Scope | None,
    sort: SortOrder = SortOrder.DATE_DESC,
    limit: int = 20,
    offset: int = 0,
) -> SearchResults:
    """Parse (QuerySyntaxError propagates with its position), scope, search, join, audit."""
    scope = scope_for(principal, requested)
    query = parse_query(query_text)
    backend: SearchBackend = archive.search
    page = backend.search(query, scope, sort=sort, limit=limit, offset=offset)
    summaries = summaries_for(archive, [hit.id for hit in page.hits], {hit.id: hit.score for hit in page.hits})
    audit(
        archive.catalogue,
        actor=principal.name,
        action="search",
        detail={"query": query_text, "scope": _scope_detail(scope), "total": page.total, "offset": offset, "limit": limit},
    )
    return SearchResults(query=query_text, scope=scope, total=page.total, offset=offset, hits=tuple(summaries))


def summaries_for(archive: Archive, ids: list[int], scores: dict[int, float]) -> list[MessageSummary]:
    if not ids:
        return []
    with archive.reader.connect() as connection:
        rows = {row.id: row for row in connection.execute(_SUMMARIES, {"ids": ids})}
    return [
        _summary(row, score=scores.get(row.id, 0.0))
        for row in (rows.get(i) for i in ids)
        if row is not None  # purged between search and join
    ]


def _summary(row: Row[Any], *, score: float = 0.0) -> MessageSummary:
    return MessageSummary(
        id=row.id,
        sha256=row.sha256,
        date=as_utc(row.date_header) or as_utc(row.first_received_at),
        from_=row.from_header,
        to=row.to_header,
        subject=row.subject,
        size=row.size,
        score=score,
    )


def fetch_message(
    archive: Archive, principal: Principal, message_id: int, *, requested: Scope | None, raw: bool
) -> tuple[MessageSummary, bytes]:
    """The raw bytes of one message, if it is in the principal's scope; audited as view or download.

    A message outside the scope raises exactly what a missing one raises, and records
    nothing either way (invariant 8): an answer that differed would tell who has mail.
    """
    scope = scope_for(principal, requested)
    with archive.catalogue.begin() as connection:
        row = connection.execute(select(*_SUMMARY_COLUMNS).where(messages.c.id == message_id)).first()
        if row is None or not in_scope(connection, row.id, scope):
            raise MessageNotVisibleError(f"no message {message_id} in your scope")
        record(connection, actor=principal.name, action="download" if raw else "view",
               detail={"message_id": message_id, "sha256": row.sha256})
    return _summary(row), archive.blobs.get(row.sha256)


def in_scope(connection: Connection, message_id: int, scope: Scope) -> bool:
    """Whether the catalogue files ``message_id`` under one of the scope's mailboxes or domains.

    The scope holds the keys the journal files mail under (``addresses``), so this compares
    like with like, as the index's scope filter does.
    """
    if scope.unrestricted:
        return True
    if scope.mailboxes and connection.scalar(
        select(message_mailboxes.c.message_id)
        .where(message_mailboxes.c.message_id == message_id, message_mailboxes.c.mailbox.in_(scope.mailboxes))
        .limit(1)
    ):
        return True
    return bool(
        scope.domains
        and connection.scalar(
            select(message_domains.c.message_id)
            .where(message_domains.c.message_id == message_id, message_domains.c.domain.in_(scope.domains))
            .limit(1)
        )
    )


def _scope_detail(scope: Scope) -> dict[str, object]:
    if scope.unrestricted:
        return {"all": True}
    return {"mailboxes": sorted(scope.mailboxes), "domains": sorted(scope.domains)}
