"""Compile the query AST, a Scope and a sort order to OpenSearch query DSL (plain dicts, no query strings)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

from indexer.backends.opensearch_mapping import DATE_ORDER, MAX_LONG, UNIX_EPOCH, WORDS_ANALYZER
from indexer.query import fields
from indexer.query.ast import (
    And,
    DateRange,
    HasAttachment,
    MatchAll,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    SizeCompare,
    SizeOp,
    Term,
)
from indexer.query.fields import Exact, Match, StartsWith, Words, WordsNear
from indexer.scope import Scope
from indexer.search_backend import SortOrder

Query = dict[str, Any]

MATCH_ALL: Query = {"match_all": {}}
MATCH_NONE: Query = {"match_none": {}}
_MILLISECOND = timedelta(milliseconds=1)


def compile_query(node: Node) -> Query:
    """The query for ``node``; a leaf with nothing searchable matches nothing."""
    if isinstance(node, MatchAll):
        return MATCH_ALL
    if isinstance(node, (Term, Phrase, Prefix, Near)):
        return _any([_match(match) for match in fields.leaf_matches(node)])
    if isinstance(node, And):
        return _conjunction(node.children)
    if isinstance(node, Or):
        return _any([compile_query(child) for child in node.children])
    if isinstance(node, Not):
        return _conjunction((node,))
    if isinstance(node, DateRange):
        return _date_range(node)
    if isinstance(node, SizeCompare):
        return _size(node)
    if isinstance(node, HasAttachment):
        return {"term": {fields.HAS_ATTACHMENT: True}}
    raise TypeError(f"not a query node: {node!r}")


def scope_filter(scope: Scope) -> Query | None:
    """Messages in any of the scope's mailboxes or domains; None only for ``Scope.everything()``.

    Used as a ``filter`` clause, so it never changes relevance scores; an empty restricted
    scope gives a filter that matches nothing.
    """
    if scope.unrestricted:
        return None
    clauses: list[Query] = []
    if scope.mailboxes:
        clauses.append({"terms": {fields.MAILBOX: sorted(scope.mailboxes)}})
    if scope.domains:
        clauses.append({"terms": {fields.DOMAIN: sorted(scope.domains)}})
    return _any(clauses)


def scoped(query: Query, scope: Scope) -> Query:
    """``query`` restricted to ``scope``: the one place a search body gets its scope."""
    restriction = scope_filter(scope)
    if restriction is None:
        return query
    return {"bool": {"must": [query], "filter": [restriction]}}


def sort_clauses(sort: SortOrder) -> list[Any]:
    """A total order, so that from/size and search_after pages never repeat or skip a hit."""
    if sort is SortOrder.RELEVANCE:
        return [{"_score": {"order": "desc"}}, {fields.ID: {"order": "asc"}}]
    # Date order is to the second, ties broken by id in the same direction (as tantivy).
    direction = "asc" if sort is SortOrder.DATE_ASC else "desc"
    return [{DATE_ORDER: {"order": direction}}, {fields.ID: {"order": direction}}]


def _match(match: Match) -> Query:
    if isinstance(match, Exact):
        return {"term": {match.field: match.value}}
    if isinstance(match, Words):
        # The index holds exactly these words (see opensearch_mapping.WORDS_ANALYZER), so a
        # word is a term, and a phrase is the words split again only at the spaces.
        if len(match.words) == 1:
            return {"term": {match.field: match.words[0]}}
        return {"match_phrase": {match.field: {"query": " ".join(match.words), "analyzer": WORDS_ANALYZER}}}
    if isinstance(match, WordsNear):
        return _near(match)
    if isinstance(match, StartsWith):
        return {"prefix": {match.field: {"value": match.prefix}}}
    raise TypeError(f"not a match: {match!r}")


def _near(match: WordsNear) -> Query:
    if match.left == match.right:
        # A word near itself means two occurrences. Span queries let one occurrence stand
        # for both; Lucene's sloppy phrase keeps repeated terms on different positions, and
        # "w w" with slop n needs the second w within n moves of the next position: at most
        # n words between, as for two different words.
        return {"match_phrase": {match.field: {"query": f"{match.left} {match.left}", "slop": match.distance,
                                               "analyzer": WORDS_ANALYZER}}}
    # Unordered span slop is the number of positions between the two words, whichever
    # comes first: exactly "at most ``distance`` words between, in either order".
    return {
        "span_near": {
            "clauses": [{"span_term": {match.field: match.left}}, {"span_term": {match.field: match.right}}],
            "slop": match.distance,
            "in_order": False,
        }
    }


def _any(queries: list[Query]) -> Query:
    if not queries:
        return MATCH_NONE
    if len(queries) == 1:
        return queries[0]
    return {"bool": {"should": queries, "minimum_should_match": 1}}


def _conjunction(children: tuple[Node, ...]) -> Query:
    must: list[Query] = []
    must_not: list[Query] = []
    for child in children:
        if isinstance(child, Not):
            must_not.append(compile_query(child.child))
        else:
            must.append(compile_query(child))
    if not must:
        must.append(MATCH_ALL)  # exclusions alone: exclude from everything, as tantivy does
    clauses: dict[str, list[Query]] = {"must": must}
    if must_not:
        clauses["must_not"] = must_not
    return {"bool": clauses}


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _date_range(node: DateRange) -> Query:
    lower, upper = _midnight(node.start), _midnight(node.end)
    if lower is not None and upper is not None and lower >= upper:
        return MATCH_NONE
    if lower is None and upper is None:
        return MATCH_ALL
    # Documents are clamped into tantivy's date span when indexed (opensearch_mapping); the
    # bounds are not, so a bound beyond either end selects all or nothing, as in tantivy.
    bounds: dict[str, Any] = {"format": "epoch_millis"}
    if lower is not None:
        bounds["gte"] = (lower - UNIX_EPOCH) // _MILLISECOND
    if upper is not None:
        bounds["lt"] = (upper - UNIX_EPOCH) // _MILLISECOND
    return {"range": {fields.DATE: bounds}}


def _size(node: SizeCompare) -> Query:
    if node.op is SizeOp.GREATER:
        if node.size < 0:
            return MATCH_ALL
        if node.size >= MAX_LONG:
            return MATCH_NONE
        return {"range": {fields.SIZE: {"gt": node.size}}}
    if node.size <= 0:
        return MATCH_NONE
    if node.size > MAX_LONG:
        return MATCH_ALL
    return {"range": {fields.SIZE: {"lt": node.size}}}
