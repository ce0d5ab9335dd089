"""OpenSearchBackend on a real node: the conformance suite, tantivy's hits, upserts, rebuilds, scope, errors."""

from __future__ import annotations

import http.server
import json
import random
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from backend_contract import EVERYTHING, SearchBackendContract, ids, message
from conformance import TODAY, corpus
from opensearchpy import OpenSearch

from indexer.backends import opensearch_backend
from indexer.backends.opensearch_backend import Connection, OpenSearchBackend
from indexer.backends.opensearch_mapping import analysis_settings, mappings
from indexer.backends.tantivy_backend import TantivyBackend
from indexer.document import Address, IndexDocument
from indexer.query.analysis import split_words
from indexer.query.ast import Field, MatchAll, Near, Node, Phrase, Prefix, Term
from indexer.query.parser import QuerySyntaxError, parse_query
from indexer.search_backend import SearchBackendError, SortOrder
from tests.services import opensearch_url

needs_node = pytest.mark.services


# --- a node, and backends on it under throw-away index prefixes ---


def url_with(base: str, prefix: str, **options: str) -> str:
    """``base`` with its path set to ``prefix`` and ``options`` added to its query."""
    parts = urlsplit(base)
    query = dict(parse_qsl(parts.query))
    query.update(options)
    return urlunsplit((parts.scheme, parts.netloc, "/" + prefix, urlencode(query), ""))


def open_backend(base: str, prefix: str | None = None) -> OpenSearchBackend:
    # One replica cannot be placed on a single test node; none keeps its indices green.
    return OpenSearchBackend.from_url(url_with(base, prefix or f"pvtest-{uuid.uuid4().hex[:12]}", replicas="0"))


def raw_client(backend: OpenSearchBackend) -> OpenSearch:
    return backend.connection.client()


def drop_indices(backend: OpenSearchBackend) -> None:
    client = raw_client(backend)
    names = list(client.indices.get_alias(index=f"{backend.alias}*", expand_wildcards="all"))
    if names:
        client.indices.delete(index=",".join(names), ignore_unavailable=True)
    client.close()
    backend.close()


@pytest.fixture(scope="module")
def node() -> str:
    return opensearch_url()


@pytest.fixture
def make_backend(node: str) -> Iterator[Callable[..., OpenSearchBackend]]:
    """``make_backend()`` -> a backend under a new index prefix; ``make_backend(prefix)`` -> another on the same one."""
    made: list[OpenSearchBackend] = []

    def make(prefix: str | None = None) -> OpenSearchBackend:
        backend = open_backend(node, prefix)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        drop_indices(backend)


@pytest.fixture
def backend(make_backend: Callable[..., OpenSearchBackend]) -> OpenSearchBackend:
    return make_backend()


# --- the conformance suite, and hits identical to tantivy's ---


@pytest.fixture(scope="module")
def conformance_backend(node: str) -> Iterator[OpenSearchBackend]:
    opened = open_backend(node)
    documents = corpus()
    opened.index(documents[:7])  # two batches, as the tantivy suite does
    opened.index(documents[7:])
    yield opened
    drop_indices(opened)


@pytest.fixture(scope="module")
def conformance_tantivy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TantivyBackend]:
    opened = TantivyBackend(tmp_path_factory.mktemp("conformance") / "index")
    opened.index(corpus())
    yield opened
    opened.close()


@needs_node
class TestOpenSearchBackendContract(SearchBackendContract):
    backend_module = opensearch_backend


_SNIPPETS = (
    'budget Alice from: to: subject: domain: mailbox: message-id: filename: AND OR NOT - ( ) " * '
    "NEAR/0 NEAR/2 a@b.c @ x.y on:2024 before:2024-03 size>1K has:attachment ΟΔΟΣ é meeting forecast "
    "invoice alice@example.com example.com pdf 2024 re lunch"
).split(" ")


@needs_node
def test_fuzzed_queries_find_what_tantivy_finds_in_the_same_order(
    conformance_backend: OpenSearchBackend, conformance_tantivy: TantivyBackend
) -> None:
    """Queries that parse run without engine errors and return tantivy's hits, total and date order."""
    rng = random.Random(7)
    compared = 0
    for _ in range(1500):
        text = "".join(rng.choice(_SNIPPETS) + rng.choice(["", " "]) for _ in range(rng.randint(1, 7)))
        try:
            node = parse_query(text, today=TODAY)
        except QuerySyntaxError:
            continue
        sort = rng.choice([SortOrder.DATE_DESC, SortOrder.DATE_ASC])
        ours = conformance_backend.search(node, EVERYTHING, sort=sort, limit=25)
        theirs = conformance_tantivy.search(node, EVERYTHING, sort=sort, limit=25)
        assert [h.id for h in ours.hits] == [h.id for h in theirs.hits], text
        assert ours.total == theirs.total, text
        compared += 1
    assert compared > 400


LONG = "w" * 40


def _random_text(rng: random.Random, words: list[str]) -> str:
    return rng.choice([" ", "-", ", ", ".", " / "]).join(rng.choice(words) for _ in range(rng.randint(0, 7)))


def _random_documents(rng: random.Random, count: int) -> list[IndexDocument]:
    """Few distinct words, so that phrases and NEAR land often; long words and multi-valued fields move positions."""
    words = ["a", "b", "c", "q", "Ab", "ÉLAN", "élan", "Σοφία", "x1", LONG, LONG + "é", "!!!", "हिन्दी", "İx"]
    documents = []
    for number in range(1, count + 1):
        names = [_random_text(rng, words) for _ in range(rng.randint(0, 3))]
        documents.append(
            message(
                number,
                subject=_random_text(rng, words),
                body=_random_text(rng, words),
                filenames=tuple(names),
                has_attachment=bool(names),
                from_=(Address(_random_text(rng, words), rng.choice(["a.b@x.org", "q@a.example", "b.c@q.net"])),),
                to=tuple(Address(_random_text(rng, words), "c@x.org") for _ in range(rng.randint(0, 2))),
                date=datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=rng.randint(0, 5)),
            )
        )
    return documents


def _random_queries(rng: random.Random, count: int) -> list[Node]:
    words = ["a", "b", "c", "q", "ab", "élan", "σοφία", "x1", "हिन्दी", "x", "org", "İx", "i"]
    fields = [Field.TEXT, Field.SUBJECT, Field.BODY, Field.FILENAME, Field.FROM, Field.TO, Field.PARTICIPANTS]
    queries: list[Node] = []
    for _ in range(count):
        field = rng.choice(fields)
        kind = rng.randrange(4)
        if kind == 0:
            queries.append(Near(field, rng.choice(words), rng.choice(words), rng.randint(0, 5)))
        elif kind == 1:
            queries.append(Phrase(field, tuple(rng.choice(words) for _ in range(rng.randint(2, 3)))))
        elif kind == 2:
            queries.append(Prefix(field, rng.choice(words)[: rng.randint(1, 2)]))
        else:
            queries.append(Term(field, rng.choice(words + ["a.b@x.org", "q@a.example"])))
    return queries


@needs_node
def test_positions_phrases_and_near_match_tantivy_on_random_documents(
    backend: OpenSearchBackend, tmp_path: Path
) -> None:
    """Long words, gaps between values, repeated and non-ASCII words: every position counts the same in both engines."""
    rng = random.Random(5)
    documents = _random_documents(rng, 300)
    tantivy = TantivyBackend(tmp_path / "index")
    tantivy.index(documents)
    backend.index(documents)
    try:
        for query in _random_queries(rng, 600):
            ours = backend.search(query, EVERYTHING, limit=300, sort=SortOrder.DATE_ASC)
            theirs = tantivy.search(query, EVERYTHING, limit=300, sort=SortOrder.DATE_ASC)
            assert [h.id for h in ours.hits] == [h.id for h in theirs.hits], query
            assert ours.total == theirs.total, query
    finally:
        tantivy.close()


@needs_node
def test_the_word_analyzer_holds_exactly_the_split_words(backend: OpenSearchBackend) -> None:
    text = "Größe-ΟΔΟΣ_x हिन्दी O'Brien " + "y" * 39 + " " + "z" * 40
    backend.index([message(1, subject=text)])
    for word in split_words(text):
        assert ids(backend, f"subject:{word}") == [1], word
    assert ids(backend, '"' + " ".join(split_words(text)) + '"') == [1]
    assert ids(backend, Term(Field.SUBJECT, "z" * 40)) == [1]  # in pieces, as in tantivy


# --- writing ---


@needs_node
def test_a_fresh_prefix_searches_empty_and_the_first_write_creates_version_1(backend: OpenSearchBackend) -> None:
    assert backend.count() == 0 and ids(backend) == [] and list(backend.indexed_ids()) == []
    backend.check()  # nothing indexed yet is not a problem
    backend.index([message(1)])
    client = raw_client(backend)
    assert list(client.indices.get_alias(name=backend.alias)) == [f"{backend.alias}-v1"]
    client.close()


# --- searching ---


@needs_node
def test_pages_beyond_the_result_window_are_the_same_pages(
    backend: OpenSearchBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deep pages walk with search_after; they must equal what from/size would return."""
    same_second = datetime(2024, 5, 5, 5, 5, 5, tzinfo=timezone.utc)
    backend.index(
        [message(i, "bulk " * (i % 4 + 1), date=same_second + timedelta(seconds=i % 5)) for i in range(1, 61)]
    )
    expected = {sort: ids(backend, "bulk", sort=sort) for sort in SortOrder}
    monkeypatch.setattr(opensearch_backend, "RESULT_WINDOW", 7)
    for sort in SortOrder:
        for offset, limit in ((0, 5), (3, 9), (20, 7), (55, 10), (70, 3)):
            page = backend.search(parse_query("bulk"), EVERYTHING, sort=sort, limit=limit, offset=offset)
            assert [h.id for h in page.hits] == expected[sort][offset : offset + limit], (sort, offset, limit)
            assert page.total == 60
    assert backend.search(parse_query("bulk"), EVERYTHING, limit=0, offset=100).total == 60


# --- rebuilding behind the alias ---


@needs_node
def test_a_rebuild_is_invisible_until_the_alias_swaps_and_searches_never_stop(
    make_backend: Callable[..., OpenSearchBackend],
) -> None:
    backend = make_backend()
    backend.index([message(i, "alpha") for i in range(1, 4)])
    old = backend.rebuild_in_progress()
    assert old is None

    new = backend.begin_rebuild()
    assert new == f"{backend.alias}-v2" and backend.rebuild_in_progress() == new
    assert ids(backend, "alpha") == [3, 2, 1] and backend.count() == 3  # the old version still answers

    # Writes during the rebuild, from this process and from another, reach both versions.
    backend.index([message(1, "beta")])
    other_process = make_backend(backend.connection.prefix)
    other_process.index([message(9, "gamma")])
    other_process.delete([3])
    assert ids(backend, "alpha OR beta OR gamma") == [9, 2, 1]  # live at once, before the swap

    failures: list[BaseException] = []
    seen: list[frozenset[int]] = []
    stop = threading.Event()

    def search_meanwhile() -> None:
        while not stop.is_set():
            try:
                seen.append(frozenset(ids(backend, "beta OR gamma")))
            except BaseException as error:  # noqa: BLE001 - any failure is what this thread reports
                failures.append(error)

    searcher = threading.Thread(target=search_meanwhile)
    searcher.start()
    try:
        assert backend.finish_rebuild(min_documents=2) == new
    finally:
        stop.set()
        searcher.join()
    assert failures == [] and seen and all(found == {1, 9} for found in seen)

    # Now the new version alone answers: message 2 was never written to it.
    assert ids(backend, "alpha OR beta OR gamma") == [9, 1]
    assert backend.rebuild_in_progress() is None
    client = raw_client(backend)
    assert not client.indices.exists(index=f"{backend.alias}-v1")
    assert list(client.indices.get_alias(name=backend.alias)) == [new]
    client.close()
    backend.check()


@needs_node
def test_a_rebuild_short_of_documents_is_refused_and_can_be_abandoned(backend: OpenSearchBackend) -> None:
    backend.index([message(i) for i in range(1, 4)])
    backend.begin_rebuild()
    backend.index([message(1)])
    with pytest.raises(SearchBackendError, match="holds 1 messages, fewer than the 3 expected"):
        backend.finish_rebuild(min_documents=3)
    assert backend.count() == 3  # untouched
    with pytest.raises(SearchBackendError, match="not finished"):
        backend.check()
    backend.abort_rebuild()
    assert backend.rebuild_in_progress() is None and backend.count() == 3
    with pytest.raises(SearchBackendError, match="no rebuild"):
        backend.finish_rebuild()


@needs_node
def test_a_refused_document_is_reported_at_once_and_a_blocked_index_is_an_outage(backend: OpenSearchBackend) -> None:
    # A 400 on one _bulk item is that document's: reported, not retried (no 429 back-off).
    backend.index([message(1)])
    refused = backend.index([message(2), message(2**63, "too big for a long")])
    assert list(refused) == [2**63] and "out of range of long" in refused[2**63]
    assert sorted(ids(backend)) == [1, 2]
    # A write block (what OpenSearch sets on a full disk) refuses every item with 403: the
    # cluster's failure, raised so the outbox keeps the whole batch for later.
    client = raw_client(backend)
    client.indices.put_settings(index=backend.alias, body={"index.blocks.write": True})
    try:
        with pytest.raises(SearchBackendError, match="refused 1 of 1 documents"):
            backend.index([message(3)])
    finally:
        client.indices.put_settings(index=backend.alias, body={"index.blocks.write": None})
        client.close()


@needs_node
def test_beginning_again_discards_an_unfinished_rebuild(backend: OpenSearchBackend) -> None:
    backend.index([message(1)])
    first = backend.begin_rebuild()
    second = backend.begin_rebuild()
    assert (first, second) == (f"{backend.alias}-v2", f"{backend.alias}-v3")
    client = raw_client(backend)
    assert not client.indices.exists(index=first)
    client.close()
    backend.index([message(1), message(2)])
    backend.finish_rebuild()
    assert ids(backend) == [2, 1]


# --- health and errors ---


@needs_node
def test_check_names_a_mapping_this_code_did_not_make(backend: OpenSearchBackend) -> None:
    layout = mappings()
    layout["properties"]["subject"] = {"type": "keyword"}
    layout["properties"]["date"] = {"type": "boolean"}
    del layout["properties"]["date_order"]
    layout["dynamic"] = "true"
    client = raw_client(backend)
    client.indices.create(
        index=f"{backend.alias}-v1",
        body={
            "settings": {"number_of_replicas": 0, "analysis": analysis_settings()},
            "mappings": layout,
            "aliases": {backend.alias: {}},
        },
    )
    client.close()
    with pytest.raises(SearchBackendError) as raised:
        backend.check()
    message_text = str(raised.value)
    assert "does not have the layout this postvault expects" in message_text
    assert "field 'subject' has type 'keyword', expected 'text'" in message_text
    assert "field 'date_order' is missing" in message_text
    assert "postvault reindex" in message_text
    # Indexing into it refuses the document with the engine's reason, not a stack of client
    # internals (the outbox records it as that message's failure, for `status` to show).
    refused = backend.index([message(1, date=datetime(2024, 1, 1, tzinfo=timezone.utc))])
    assert list(refused) == [1] and "mapper_parsing_exception" in refused[1]
    backend.clear()  # a rebuild with the current mapping repairs it
    backend.check()


@needs_node
def test_a_missing_alias_with_index_versions_is_not_papered_over(backend: OpenSearchBackend) -> None:
    backend.index([message(1)])
    client = raw_client(backend)
    client.indices.delete_alias(index=f"{backend.alias}-v1", name=backend.alias)
    client.close()
    with pytest.raises(SearchBackendError, match="names no index"):
        backend.index([message(2)])
    with pytest.raises(SearchBackendError, match="names no index"):
        backend.check()
    assert ids(backend) == []  # searches find nothing rather than fail
    # A reindex repairs it: the rebuild is written to alone, then becomes live.
    backend.begin_rebuild()
    backend.index([message(2)])
    assert backend.finish_rebuild() == f"{backend.alias}-v2"
    assert ids(backend) == [2]
    backend.check()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_server_is_a_search_backend_error() -> None:
    backend = OpenSearchBackend.from_url(f"opensearch://127.0.0.1:{_closed_port()}/pvtest?timeout=2")
    for operation in (
        lambda: backend.search(MatchAll(), EVERYTHING),
        lambda: backend.index([message(1)]),
        lambda: backend.delete([1]),
        backend.count,
        lambda: list(backend.indexed_ids()),
        backend.check,
    ):
        with pytest.raises(SearchBackendError, match=r"is unreachable \(connection refused\)"):
            operation()
    backend.close()


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers every request with the class's status and body, or never answers (status 0)."""

    status = 401
    body = b'{"error": "unauthorized"}'

    def _answer(self) -> None:
        if self.status == 0:
            threading.Event().wait(3)
            return
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = do_PUT = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def canned_server() -> Iterator[Callable[[int, bytes], str]]:
    """``canned_server(status, body)`` -> the address of a server answering every request so."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(status: int, body: bytes) -> str:
        handler = type("Handler", (_Canned,), {"status": status, "body": body})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_refused_credentials_timeouts_and_server_errors_are_explained(
    canned_server: Callable[[int, bytes], str],
) -> None:
    asks = canned_server(401, b'{"error": "Unauthorized"}')
    with pytest.raises(SearchBackendError, match="set POSTVAULT_OPENSEARCH_USER and POSTVAULT_OPENSEARCH_PASSWORD"):
        OpenSearchBackend.from_url(f"opensearch://{asks}", environ={}).check()
    with pytest.raises(SearchBackendError, match="credentials of user 'bob' were refused"):
        OpenSearchBackend.from_url(f"opensearch://{asks}", environ={"POSTVAULT_OPENSEARCH_USER": "bob"}).check()

    silent = canned_server(0, b"")
    with pytest.raises(SearchBackendError, match="did not answer within 0.5 s"):
        OpenSearchBackend.from_url(f"opensearch://{silent}?timeout=0.5").count()

    failing = canned_server(
        500, b'{"error": {"root_cause": [{"type": "boom", "reason": "disk on fire"}]}, "status": 500}'
    )
    with pytest.raises(SearchBackendError, match=r"refused counting \(HTTP 500: boom: disk on fire\)"):
        OpenSearchBackend.from_url(f"opensearch://{failing}").count()


class _BusyCluster(http.server.BaseHTTPRequestHandler):
    """Just enough of OpenSearch for ``index``: bulk items are refused with 429 ``busy_for`` times."""

    busy_for = 2
    bulk_requests = 0

    def _json(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # the alias layout: version 1 is live
        self._json({"pv-messages-v1": {"aliases": {"pv-messages": {}}}})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        if "/_bulk" not in self.path:
            self._json({})  # the refresh
            return
        cls = type(self)
        cls.bulk_requests += 1
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        busy = cls.bulk_requests <= cls.busy_for
        items = []
        for action in lines[::2]:
            item: dict[str, object] = {"_id": action["index"]["_id"], "status": 201}
            if busy:
                item.update(status=429, error={"type": "rejected_execution_exception", "reason": "queue full"})
            items.append({"index": item})
        self._json({"took": 1, "errors": busy, "items": items})

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("busy_for, succeeds", [(2, True), (50, False)])
def test_a_busy_cluster_is_retried_with_backoff_then_reported(
    monkeypatch: pytest.MonkeyPatch, busy_for: int, succeeds: bool
) -> None:
    monkeypatch.setattr(opensearch_backend, "BULK_BACKOFF", 0.01)
    monkeypatch.setattr(opensearch_backend, "BULK_RETRIES", 3)
    handler = type("Handler", (_BusyCluster,), {"busy_for": busy_for, "bulk_requests": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend = OpenSearchBackend.from_url(f"opensearch://127.0.0.1:{server.server_address[1]}/pv")
    try:
        if succeeds:
            backend.index([message(1), message(2)])
            assert handler.bulk_requests == 3  # twice refused, then taken
        else:
            with pytest.raises(SearchBackendError, match="refused 2 of 2 documents.*queue full"):
                backend.index([message(1), message(2)])
            assert handler.bulk_requests == 4  # the first try and three retries
    finally:
        backend.close()
        server.shutdown()
        server.server_close()


class _SizeLimitedCluster(_BusyCluster):
    """Refuses any request body over ``limit`` bytes with 413, as http.max_content_length does."""

    limit = 4000

    def do_POST(self) -> None:
        if "/_bulk" in self.path and int(self.headers.get("Content-Length", 0)) > self.limit:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(413)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        type(self).busy_for = 0
        super().do_POST()


def test_a_document_too_large_for_one_request_is_refused_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # A hostile message can carry gigabytes of attachment text; over the cluster's request
    # limit it was an outage, retried every few seconds forever.
    monkeypatch.setattr(opensearch_backend, "BULK_BYTES", 3000)  # so the big one goes alone, as past 10 MB
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SizeLimitedCluster)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend = OpenSearchBackend.from_url(f"opensearch://127.0.0.1:{server.server_address[1]}/pv")
    try:
        refused = backend.index([message(1), message(2, body="word " * 2000), message(3)])
        assert refused == {2: "OpenSearch refused it: the document is larger than the cluster takes in one request (HTTP 413)"}
    finally:
        backend.close()
        server.shutdown()
        server.server_close()


# --- URLs ---


def test_urls_name_hosts_tls_credentials_prefix_and_options() -> None:
    plain = Connection.from_url("opensearch://search.internal", environ={})
    assert plain.hosts == (("search.internal", 9200),) and not plain.secure and plain.prefix == "postvault"
    assert plain.where == "http://search.internal:9200" and plain.user == ""

    tls = Connection.from_url(
        "opensearchs://a:9201,[::1]:9202/archive?verify_certs=false&ca_certs=/etc/ca.pem&timeout=5&shards=3&replicas=2",
        environ={"POSTVAULT_OPENSEARCH_USER": "svc", "POSTVAULT_OPENSEARCH_PASSWORD": "pw"},
    )
    assert tls.hosts == (("a", 9201), ("::1", 9202)) and tls.secure and not tls.verify_certs
    assert (tls.ca_certs, tls.timeout, tls.shards, tls.replicas, tls.prefix) == ("/etc/ca.pem", 5.0, 3, 2, "archive")
    assert (tls.user, tls.password) == ("svc", "pw")

    inline = Connection.from_url(
        "opensearch://u%40x:p%3Aw@h:1?secure=true", environ={"POSTVAULT_OPENSEARCH_USER": "env"}
    )
    assert (inline.user, inline.password, inline.secure) == ("u@x", "p:w", True)
    assert "p:w" not in inline.where

    backend = OpenSearchBackend.from_url("opensearch://h/team-a")
    assert (backend.alias, backend.rebuild_alias) == ("team-a-messages", "team-a-messages-rebuild")
    backend.close()

    for bad, reason in (
        ("tantivy:///x", "starts with opensearch://"),
        ("opensearch://h/Upper", "must be lower-case"),
        ("opensearch://h?verify=false", "unknown option"),
        ("opensearch://h:port", "not a number"),
        ("opensearch://h?timeout=soon", "not a number"),
        ("opensearch://h?secure=maybe", "true or false"),
    ):
        with pytest.raises(ValueError, match=reason):
            Connection.from_url(bad, environ={})
