"""What every SearchBackend must do, written once and run on each engine.

A test module subclasses ``SearchBackendContract`` and provides two fixtures: ``backend``
(an empty backend for one test) and ``conformance_backend`` (one holding
``conformance.corpus()``), and names the module whose ``_IDS_PAGE`` pages ``indexed_ids``.
Marks go on the subclass (the OpenSearch one needs the services), never on this class.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import Any, ClassVar

import pytest
from conformance import CASES, ORDER_CASES, TODAY, Case, OrderCase, matching_ids, ordered_ids

from indexer.document import Address, IndexDocument
from indexer.query.ast import MatchAll, Node
from indexer.query.parser import parse_query
from indexer.scope import Scope, ScopeRequiredError
from indexer.search_backend import IndexedScope, SearchBackend, SortOrder

EVERYTHING = Scope.everything()


def message(id: int, subject: str = "hello", **changes: object) -> IndexDocument:
    """A minimal document in alice@example.com's mailbox; ``changes`` override any field."""
    document = IndexDocument(
        id=id,
        sha256=f"{id:064x}",
        date=datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(hours=id % 10_000),
        size=1000,
        subject=subject,
        from_=(),
        to=(),
        cc=(),
        bcc=(),
        body="",
        attachment_text="",
        filenames=(),
        has_attachment=False,
        mailboxes=("alice@example.com",),
        domains=("example.com",),
    )
    return replace(document, **changes)  # type: ignore[arg-type]


def ids(backend: SearchBackend, query: str | Node = "", scope: Scope = EVERYTHING, **options: Any) -> list[int]:
    node = parse_query(query, today=TODAY) if isinstance(query, str) else query
    return [hit.id for hit in backend.search(node, scope, limit=1000, **options).hits]


class SearchBackendContract:
    backend_module: ClassVar[ModuleType]  # the adapter module whose _IDS_PAGE sizes indexed_ids' pages

    @pytest.mark.parametrize(
        "case", CASES, ids=[f"{c.query or '<all>'}|{sorted(c.scope.mailboxes | c.scope.domains)}" for c in CASES]
    )
    def test_conformance(self, conformance_backend: SearchBackend, case: Case) -> None:
        assert matching_ids(conformance_backend, case) == case.expected, case.why

    @pytest.mark.parametrize(
        "case", ORDER_CASES, ids=[f"{c.query}|{c.sort.value}|{c.offset}+{c.limit}" for c in ORDER_CASES]
    )
    def test_conformance_order(self, conformance_backend: SearchBackend, case: OrderCase) -> None:
        assert ordered_ids(conformance_backend, case) == case.expected

    def test_index_upserts_by_id(self, backend: SearchBackend) -> None:
        assert backend.index([message(1, "alpha"), message(2, "alpha")]) == {}  # nothing refused
        backend.index([message(1, "beta")])
        assert ids(backend, "alpha") == [2]
        assert ids(backend, "beta") == [1]
        assert backend.count() == 2

    def test_the_last_copy_of_an_id_in_one_batch_wins(self, backend: SearchBackend) -> None:
        backend.index([message(1, "alpha"), message(1, "beta")])
        assert ids(backend, "alpha") == [] and ids(backend, "beta") == [1]
        assert backend.count() == 1

    def test_delete_and_clear(self, backend: SearchBackend) -> None:
        backend.index([message(i) for i in range(1, 6)])
        backend.delete([2, 4, 99])  # 99 was never indexed: not an error
        assert sorted(ids(backend)) == [1, 3, 5]
        assert list(backend.indexed_ids()) == [1, 3, 5]
        backend.delete([])
        backend.clear()
        assert backend.count() == 0 and ids(backend) == [] and list(backend.indexed_ids()) == []
        backend.index([message(7)])  # usable after clear
        assert ids(backend) == [7]

    def test_a_document_the_engine_cannot_hold_is_refused_alone_and_the_rest_are_indexed(self, backend: SearchBackend) -> None:
        # An id past 64 bits: tantivy cannot convert it, OpenSearch refuses its _bulk item
        # (400, out of range for a long). Either way it is that document's failure, reported
        # as such, not an engine outage that would have the whole batch retried forever.
        too_big = 2**64
        refused = backend.index([message(1, "kept"), message(too_big, "kept"), message(3, "kept")])
        assert list(refused) == [too_big] and refused[too_big]
        assert sorted(ids(backend, "kept")) == [1, 3]
        assert backend.count() == 2

    def test_indexed_scopes_read_back_each_document_mailboxes_and_domains(
        self, backend: SearchBackend, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(self.backend_module, "_IDS_PAGE", 2)
        backend.index([
            message(5, mailboxes=("bob@other.org", "alice@example.com"), domains=("other.org", "example.com")),
            message(2),
            message(9, mailboxes=(), domains=()),
        ])
        assert list(backend.indexed_scopes()) == [
            IndexedScope(id=2, mailboxes=frozenset({"alice@example.com"}), domains=frozenset({"example.com"})),
            IndexedScope(id=5, mailboxes=frozenset({"alice@example.com", "bob@other.org"}),
                         domains=frozenset({"example.com", "other.org"})),
            IndexedScope(id=9, mailboxes=frozenset(), domains=frozenset()),
        ]
        backend.index([message(5)])  # re-indexed with a narrower scope: read back as it is now
        assert [scope.mailboxes for scope in backend.indexed_scopes()][1] == frozenset({"alice@example.com"})

    def test_indexed_ids_pages_through_every_id(self, backend: SearchBackend, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(self.backend_module, "_IDS_PAGE", 3)
        wanted = [1, 2, 3, 5, 8, 13, 21, 34, 2**40]
        backend.index([message(i) for i in reversed(wanted)])
        assert list(backend.indexed_ids()) == wanted

    def test_lone_surrogates_in_documents_and_queries_are_replaced_not_fatal(self, backend: SearchBackend) -> None:
        broken = b"caf\xe9 ol\xe9".decode("utf-8", "surrogateescape")  # what a lenient MIME decode leaves
        backend.index([message(1, subject=broken)])
        assert ids(backend, "caf") == [1]
        assert ids(backend, "caf\udce9") == [1]

    def test_dates_are_utc_naive_ones_are_taken_as_utc_and_extreme_ones_are_clamped(self, backend: SearchBackend) -> None:
        plus_two = timezone(timedelta(hours=2))
        backend.index(
            [
                message(1, date=datetime(2024, 1, 1, 1, 0, tzinfo=plus_two)),  # 2023-12-31 23:00 UTC
                message(2, date=datetime(2024, 1, 1, 1, 0)),
                message(3, date=datetime(1500, 1, 1, tzinfo=timezone.utc)),  # outside tantivy's span (1677-2262): clamped
                # The last hour of 9999 west of UTC is past what a datetime can convert to UTC.
                message(4, date=datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))),
                message(5, date=datetime(1, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=5)))),
            ]
        )
        hits = {hit.id: hit.date for hit in backend.search(MatchAll(), EVERYTHING).hits}
        assert hits[1] == datetime(2023, 12, 31, 23, 0, tzinfo=timezone.utc)
        assert hits[2] == datetime(2024, 1, 1, 1, 0, tzinfo=timezone.utc)
        assert ids(backend, "on:2023-12-31") == [1]
        assert ids(backend, "before:1000") == [] and sorted(ids(backend, "after:1000")) == [1, 2, 3, 4, 5]
        assert ids(backend, "after:3000") == [] and ids(backend, "after:2261") == [4]
        assert sorted(ids(backend, "before:1700")) == [3, 5]

    def test_date_sorts_order_ties_by_id_and_relevance_sorts_by_score(self, backend: SearchBackend) -> None:
        backend.index(
            [
                message(1, "budget", date=datetime(2024, 1, 2, tzinfo=timezone.utc)),
                message(2, "budget budget budget", date=datetime(2024, 1, 1, tzinfo=timezone.utc)),
                message(3, "budget", date=datetime(2024, 1, 2, 0, 0, 0, 500_000, tzinfo=timezone.utc)),  # same second
            ]
        )
        query = parse_query("budget")
        assert [h.id for h in backend.search(query, EVERYTHING, sort=SortOrder.DATE_DESC).hits] == [3, 1, 2]
        assert [h.id for h in backend.search(query, EVERYTHING, sort=SortOrder.DATE_ASC).hits] == [2, 1, 3]
        relevance = backend.search(query, EVERYTHING, sort=SortOrder.RELEVANCE).hits
        assert relevance[0].id == 2 and relevance[0].score > relevance[1].score > 0
        assert all(hit.score == 0.0 for hit in backend.search(query, EVERYTHING).hits)

    def test_near_counts_the_words_between_and_a_word_near_itself_needs_two_occurrences(self, backend: SearchBackend) -> None:
        # Random bodies over a four-word vocabulary, checked against the definition: two
        # distinct positions with at most n words between (either order for two words).
        rng = random.Random(11)
        bodies = {i: [rng.choice("wxyz") for _ in range(rng.randint(1, 12))] for i in range(1, 161)}
        backend.index([message(i, "s", body=" ".join(words)) for i, words in bodies.items()])

        def expected(left: str, right: str, distance: int) -> list[int]:
            return sorted(
                i for i, words in bodies.items()
                if any(a != b and abs(a - b) - 1 <= distance and words[a] == left and words[b] == right
                       for a in range(len(words)) for b in range(len(words)))
            )

        for distance in (0, 1, 2, 3, 4, 7):
            for left, right in (("w", "w"), ("w", "x"), ("x", "w")):
                query = f"body:{left} NEAR/{distance} {right}"
                assert sorted(ids(backend, query)) == expected(left, right, distance), query

    def test_chinese_and_japanese_are_found_by_any_run_of_characters(self, backend: SearchBackend) -> None:
        # Written without spaces: before, a run of them was one "word" (dropped whole
        # past 13 characters), so searching for a word inside a sentence found nothing.
        backend.index([
            message(1, "本日の会議は中止になりました", body="議事録を添付します。よろしくお願いします。"),
            message(2, "我们明天开会讨论预算", body="预算草案见附件"),
            message(3, "Q3議事録 für Größe", body="東京タワー"),
            message(4, "会", body="議"),  # the characters, but never side by side
        ])
        assert ids(backend, "会議") == [1]
        assert ids(backend, "中止") == [1]
        assert sorted(ids(backend, "議事録")) == [1, 3]
        assert ids(backend, "subject:预算") == [2] and sorted(ids(backend, "预算")) == [2]
        assert ids(backend, "タワー") == [3] and ids(backend, "東京") == [3] and ids(backend, "京東") == []
        assert ids(backend, "q3") == [3] and ids(backend, "größe") == [3]
        assert sorted(ids(backend, "議事*")) == [1, 3]
        assert sorted(ids(backend, "会")) == [1, 2, 4] and ids(backend, "body:会議") == []

    def test_a_prefix_matches_every_word_it_starts_however_many(self, backend: SearchBackend) -> None:
        # 120 distinct words under one prefix: an engine query that stops expanding after
        # some number of terms (tantivy's phrase-prefix stops at 50) would lose documents.
        backend.index([message(i, f"budget{i:03d} review") for i in range(1, 121)] + [message(500, "bud review")])
        assert sorted(ids(backend, "budg*")) == list(range(1, 121))
        assert sorted(ids(backend, "subject:bud*")) == [*range(1, 121), 500]
        assert ids(backend, "budget119*") == [119]

    def test_a_prefix_is_literal_text_never_a_pattern(self, backend: SearchBackend) -> None:
        # Characters that mean something in regular expressions are matched as themselves.
        people = {1: "a.b+c@example.com", 2: "axb+c@example.com", 3: "a.bbc@example.com"}
        backend.index([message(i, "x", from_=(Address(name="", address=a),)) for i, a in people.items()])
        assert ids(backend, "from:a.b+c@ex*") == [1]
        assert ids(backend, "from:a.bbc@*") == [3]
        assert ids(backend, "from:axb+c@example.com*") == [2]

    def test_search_without_a_scope_is_refused(self, backend: SearchBackend) -> None:
        backend.index([message(1)])
        with pytest.raises(ScopeRequiredError):
            backend.search(MatchAll(), None)  # type: ignore[arg-type]

    def test_scope_hides_messages_outside_it(self, backend: SearchBackend) -> None:
        backend.index(
            [
                message(1, "secret", mailboxes=("ceo@example.com",), domains=("example.com",)),
                message(2, "secret", mailboxes=("bob@other.org",), domains=("other.org",)),
            ]
        )
        assert ids(backend, "secret", Scope.of(mailboxes=["bob@other.org"])) == [2]
        assert ids(backend, "secret", Scope.of(domains=["example.com"])) == [1]
        assert ids(backend, "mailbox:ceo@example.com", Scope.of(mailboxes=["bob@other.org"])) == []
        assert ids(backend, "secret OR NOT secret", Scope.of(mailboxes=["BOB@other.org"])) == [2]
        assert ids(backend, "secret", Scope()) == []
        for sort in SortOrder:
            page = backend.search(parse_query("secret"), Scope.of(mailboxes=["bob@other.org"]), sort=sort)
            assert page.total == 1 and [h.id for h in page.hits] == [2]

    def test_paging_covers_every_hit_once_with_an_exact_total(self, backend: SearchBackend) -> None:
        same_second = datetime(2024, 5, 5, 5, 5, 5, tzinfo=timezone.utc)
        backend.index(
            [message(i, "bulk", date=same_second if i % 3 else same_second + timedelta(days=i)) for i in range(1, 41)]
        )
        for sort in SortOrder:
            seen: list[int] = []
            for offset in range(0, 45, 7):
                page = backend.search(parse_query("bulk"), EVERYTHING, sort=sort, limit=7, offset=offset)
                assert page.total == 40 and page.offset == offset and page.limit == 7
                seen.extend(hit.id for hit in page.hits)
            assert sorted(seen) == list(range(1, 41)), sort

    def test_a_page_of_zero_still_counts(self, backend: SearchBackend) -> None:
        backend.index([message(i) for i in range(1, 4)])
        page = backend.search(MatchAll(), EVERYTHING, limit=0)
        assert page.hits == () and page.total == 3
        with pytest.raises(ValueError):
            backend.search(MatchAll(), EVERYTHING, offset=-1)
