"""Compile the query AST and a Scope to tantivy Query objects (never to tantivy's query-string syntax)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import tantivy

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

_Q = tantivy.Query
_MUST, _SHOULD, _MUST_NOT = tantivy.Occur.Must, tantivy.Occur.Should, tantivy.Occur.MustNot
_MAX_U64 = 2**64 - 1


def compile_query(node: Node, schema: tantivy.Schema) -> tantivy.Query:
    """The tantivy query for ``node``; a leaf with nothing searchable matches nothing."""
    if isinstance(node, MatchAll):
        return _Q.all_query()
    if isinstance(node, (Term, Phrase, Prefix, Near)):
        return _any(tuple(_match(match, schema) for match in fields.leaf_matches(node)))
    if isinstance(node, And):
        return _conjunction(node.children, schema)
    if isinstance(node, Or):
        return _any(tuple(compile_query(child, schema) for child in node.children))
    if isinstance(node, Not):
        return _conjunction((node,), schema)
    if isinstance(node, DateRange):
        return _date_range(node, schema)
    if isinstance(node, SizeCompare):
        return _size(node, schema)
    if isinstance(node, HasAttachment):
        return _Q.term_query(schema, fields.HAS_ATTACHMENT, True)
    raise TypeError(f"not a query node: {node!r}")


def scope_filter(scope: Scope, schema: tantivy.Schema) -> tantivy.Query | None:
    """Messages in any of the scope's mailboxes or domains; None when unrestricted.

    Scored zero so that a scope never changes relevance order.
    """
    if scope.unrestricted:
        return None
    clauses = []
    if scope.mailboxes:
        mailboxes = sorted(scope.mailboxes)
        clauses.append(_Q.term_set_query(schema, fields.MAILBOX, mailboxes))
    if scope.domains:
        domains = sorted(scope.domains)
        clauses.append(_Q.term_set_query(schema, fields.DOMAIN, domains))
    return _Q.const_score_query(_any(tuple(clauses)), 0.0)


def _match(match: Match, schema: tantivy.Schema) -> tantivy.Query:
    if isinstance(match, Exact):
        return _Q.term_query(schema, match.field, match.value)
    if isinstance(match, Words):
        if len(match.words) == 1:
            return _Q.term_query(schema, match.field, match.words[0])
        return _Q.phrase_query(schema, match.field, [*match.words])
    if isinstance(match, WordsNear):
        if match.left == match.right:
            return _word_near_itself(match, schema)
        # Slop, in tantivy as in Lucene, counts position moves: "a b" with slop n matches a..b
        # with up to n words between, and b..a with up to n-2 between. The two orders, each
        # with slop n, therefore match exactly "at most n words between, in either order".
        in_order: list[str | tuple[int, str]] = [match.left, match.right]
        reversed_: list[str | tuple[int, str]] = [match.right, match.left]
        return _any(
            (
                _Q.phrase_query(schema, match.field, in_order, slop=match.distance),
                _Q.phrase_query(schema, match.field, reversed_, slop=match.distance),
            )
        )
    if isinstance(match, StartsWith):
        # A Levenshtein automaton of distance 0 in prefix mode accepts exactly the terms that
        # start with the prefix. tantivy builds it from a per-process table, where
        # `regex_query("prefix.*")` compiles a Unicode DFA for every field of every query
        # (eight of them for a free-text prefix). It is
        # constant-scored like the regex, and unlike `phrase_prefix_query` it has no
        # expansion limit (that one stops after 50 terms).
        return _Q.fuzzy_term_query(schema, match.field, match.prefix, distance=0, transposition_cost_one=False, prefix=True)
    raise TypeError(f"not a match: {match!r}")


def _word_near_itself(match: WordsNear, schema: tantivy.Schema) -> tantivy.Query:
    """Two occurrences of one word with at most ``distance`` words between.

    tantivy's sloppy phrase accepts the second term within ``slop`` positions of where the
    phrase puts it, on either side, so "w w" with any slop lets a single w stand for both.
    Placing the second copy slop + 1 positions on rules that out: with slop s it matches
    occurrences 1 to 2s + 1 positions apart, 0 to 2s words between. s = n // 2 covers every
    gap up to n but the last when n is odd, which one exact phrase adds.
    """
    word, distance, half = match.left, match.distance, match.distance // 2
    phrases = [_Q.phrase_query(schema, match.field, [(0, word), (half + 1, word)], slop=half)]
    if distance % 2:
        phrases.append(_Q.phrase_query(schema, match.field, [(0, word), (distance + 1, word)], slop=0))
    return _any(tuple(phrases))


def _any(queries: tuple[tantivy.Query, ...]) -> tantivy.Query:
    if not queries:
        return _Q.empty_query()
    if len(queries) == 1:
        return queries[0]
    return _Q.boolean_query([(_SHOULD, query) for query in queries])


def _clause(child: Node, schema: tantivy.Schema) -> tuple[tantivy.Occur, tantivy.Query]:
    if isinstance(child, Not):
        return _MUST_NOT, compile_query(child.child, schema)
    return _MUST, compile_query(child, schema)


def _conjunction(children: tuple[Node, ...], schema: tantivy.Schema) -> tantivy.Query:
    clauses = [_clause(child, schema) for child in children]
    if all(occur is _MUST_NOT for occur, _ in clauses):
        # Tantivy, like Lucene, matches nothing with exclusions alone: exclude from everything.
        clauses.append((_MUST, _Q.all_query()))
    return _Q.boolean_query(clauses)


def _midnight(day: date | None) -> datetime | None:
    return None if day is None else datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _date_range(node: DateRange, schema: tantivy.Schema) -> tantivy.Query:
    lower, upper = _midnight(node.start), _midnight(node.end)
    if lower is not None and upper is not None and lower >= upper:
        return _Q.empty_query()
    # Tantivy holds dates from 1677 to 2262 (documents are clamped into that span when
    # indexed): a bound beyond it either excludes everything or nothing on its side.
    if (lower is not None and lower >= tantivy.MAX_DATETIME) or (upper is not None and upper <= tantivy.MIN_DATETIME):
        return _Q.empty_query()
    if lower is not None and lower <= tantivy.MIN_DATETIME:
        lower = None
    if upper is not None and upper >= tantivy.MAX_DATETIME:
        upper = None
    if lower is None and upper is None:
        return _Q.all_query()
    return _Q.range_query(
        schema,
        fields.DATE,
        tantivy.FieldType.Date,
        lower_bound=lower,
        upper_bound=upper,
        include_lower=True,
        include_upper=upper is None,  # tantivy wants an open side marked inclusive
    )


def _size(node: SizeCompare, schema: tantivy.Schema) -> tantivy.Query:
    unsigned = tantivy.FieldType.Unsigned
    if node.op is SizeOp.GREATER:
        if node.size < 0:
            return _Q.all_query()
        if node.size >= _MAX_U64:
            return _Q.empty_query()
        return _Q.range_query(schema, fields.SIZE, unsigned, lower_bound=node.size, include_lower=False)
    if node.size <= 0:
        return _Q.empty_query()
    if node.size > _MAX_U64:
        return _Q.all_query()
    return _Q.range_query(schema, fields.SIZE, unsigned, upper_bound=node.size, include_upper=False)
