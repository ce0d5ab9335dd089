"""The query AST and Scope compiled to OpenSearch DSL, checked as plain data (the node-backed tests prove the hits)."""

from __future__ import annotations

from datetime import date

from indexer.backends.opensearch_mapping import DATE_ORDER, WORDS_ANALYZER
from indexer.backends.opensearch_query import MATCH_ALL, MATCH_NONE, compile_query, scope_filter, scoped, sort_clauses
from indexer.query.ast import And, DateRange, Field, Near, Not, Or, SizeCompare, SizeOp, Term
from indexer.query.parser import parse_query
from indexer.scope import Scope
from indexer.search_backend import SortOrder


def test_every_restricted_scope_becomes_a_filter_and_only_everything_has_none() -> None:
    scope = Scope.of(mailboxes=["Bob@Example.com"], domains=["@Example.ORG"])
    body = scoped(MATCH_ALL, scope)
    assert body == {
        "bool": {
            "must": [MATCH_ALL],
            "filter": [
                {
                    "bool": {
                        "should": [{"terms": {"mailbox": ["bob@example.com"]}}, {"terms": {"domain": ["example.org"]}}],
                        "minimum_should_match": 1,
                    }
                }
            ],
        }
    }
    assert scope_filter(Scope()) == MATCH_NONE  # an empty restricted scope sees nothing
    assert scoped(MATCH_ALL, Scope()) == {"bool": {"must": [MATCH_ALL], "filter": [MATCH_NONE]}}
    assert scope_filter(Scope.everything()) is None
    assert scoped(MATCH_ALL, Scope.everything()) == MATCH_ALL


def test_words_are_terms_and_phrases_on_the_word_fields() -> None:
    assert compile_query(parse_query("subject:budget")) == {"term": {"subject": "budget"}}
    assert compile_query(parse_query("subject:budget-2024")) == {
        "match_phrase": {"subject": {"query": "budget 2024", "analyzer": WORDS_ANALYZER}}
    }
    assert compile_query(parse_query("subject:fore*")) == {"prefix": {"subject": {"value": "fore"}}}
    assert compile_query(parse_query("from:alice@ex*")) == {"prefix": {"from_addr": {"value": "alice@ex"}}}
    assert compile_query(parse_query("mailbox:BOB@example.com")) == {"term": {"mailbox": "bob@example.com"}}


def test_near_is_an_unordered_span_with_the_distance_as_slop() -> None:
    assert compile_query(Near(Field.BODY, "budget", "meeting", 2)) == {
        "span_near": {
            "clauses": [{"span_term": {"body": "budget"}}, {"span_term": {"body": "meeting"}}],
            "slop": 2,
            "in_order": False,
        }
    }


def test_near_of_one_word_with_itself_is_a_sloppy_phrase_of_two_occurrences() -> None:
    # Which documents that finds is checked on a real node by the backend contract.
    for distance in (0, 3):
        assert compile_query(Near(Field.BODY, "q", "q", distance)) == {
            "match_phrase": {"body": {"query": "q q", "slop": distance, "analyzer": WORDS_ANALYZER}}
        }


def test_boolean_structure() -> None:
    a, b = Term(Field.SUBJECT, "a"), Term(Field.SUBJECT, "b")
    term_a, term_b = {"term": {"subject": "a"}}, {"term": {"subject": "b"}}
    assert compile_query(Or((a, b))) == {"bool": {"should": [term_a, term_b], "minimum_should_match": 1}}
    assert compile_query(And((a, Not(b)))) == {"bool": {"must": [term_a], "must_not": [term_b]}}
    # Exclusions alone exclude from everything.
    assert compile_query(Not(a)) == {"bool": {"must": [MATCH_ALL], "must_not": [term_a]}}
    assert compile_query(Term(Field.SUBJECT, "!!!")) == MATCH_NONE  # nothing searchable


def test_dates_are_utc_days_half_open() -> None:
    assert compile_query(DateRange(date(2024, 3, 15), date(2024, 3, 16))) == {
        "range": {"date": {"format": "epoch_millis", "gte": 1710460800000, "lt": 1710547200000}}
    }
    assert compile_query(DateRange(None, None)) == MATCH_ALL
    assert compile_query(DateRange(date(2024, 3, 16), date(2024, 3, 15))) == MATCH_NONE
    # Bounds are not clamped: beyond tantivy's span they select all or nothing of the clamped documents.
    assert compile_query(DateRange(date(1, 1, 1), None)) == {
        "range": {"date": {"format": "epoch_millis", "gte": -62135596800000}}
    }


def test_sizes_are_strict_and_out_of_range_sizes_are_all_or_nothing() -> None:
    assert compile_query(SizeCompare(SizeOp.GREATER, 1024)) == {"range": {"size": {"gt": 1024}}}
    assert compile_query(SizeCompare(SizeOp.LESS, 1024)) == {"range": {"size": {"lt": 1024}}}
    assert compile_query(SizeCompare(SizeOp.GREATER, -1)) == MATCH_ALL
    assert compile_query(SizeCompare(SizeOp.GREATER, 2**63 - 1)) == MATCH_NONE
    assert compile_query(SizeCompare(SizeOp.LESS, 0)) == MATCH_NONE
    assert compile_query(SizeCompare(SizeOp.LESS, 2**64)) == MATCH_ALL


def test_sorts_are_total_orders() -> None:
    assert sort_clauses(SortOrder.DATE_DESC) == [{DATE_ORDER: {"order": "desc"}}, {"id": {"order": "desc"}}]
    assert sort_clauses(SortOrder.DATE_ASC) == [{DATE_ORDER: {"order": "asc"}}, {"id": {"order": "asc"}}]
    assert sort_clauses(SortOrder.RELEVANCE) == [{"_score": {"order": "desc"}}, {"id": {"order": "asc"}}]
