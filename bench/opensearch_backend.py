"""OpenSearchBackend throughput and latency on a real node, against raw bulk requests of the same JSON.

    .venv/bin/python bench/opensearch_backend.py                       # 20000 docs on 127.0.0.1:59200
    .venv/bin/python bench/opensearch_backend.py --docs 50000 --url opensearch://host:9200

(a) ``OpenSearchBackend.index`` in batches of 500 synthetic IndexDocuments: conversion
    (word streams), alias lookup, bulk, refresh; docs/s;
(b) the same, with the per-batch refresh left out, to price the refresh;
(c) the limit: the same prepared JSON sent with ``opensearchpy.helpers.bulk`` in chunks of
    500, one refresh at the end; docs/s;
(d) conversion alone (IndexDocument -> JSON) in this process, docs/s;
(e) search p50/p95 (ms) for a fixed query set on the index from (a), each query run
    ``--repeat`` times after a warm-up.

Every run uses a fresh index prefix (1 shard, 0 replicas) and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone

from opensearchpy import helpers

from indexer.backends.opensearch_backend import OpenSearchBackend
from indexer.backends.opensearch_mapping import to_source
from indexer.document import Address, IndexDocument
from indexer.query.parser import parse_query
from indexer.scope import Scope
from indexer.search_backend import SortOrder

QUERIES = (
    ("budget", Scope.everything(), "relevance"),
    ("budget forecast", Scope.everything(), "date"),
    ('"quarterly forecast"', Scope.everything(), "date"),
    ("from:alice@example.com", Scope.everything(), "date"),
    ("meeting NEAR/3 budget", Scope.everything(), "date"),
    ("fore*", Scope.everything(), "date"),
    ("has:attachment on:2024", Scope.everything(), "date"),
    ("", Scope.everything(), "date"),
    ("budget", Scope.of(mailboxes=["carol@example.com"]), "date"),
    ("invoice -from:mallory", Scope.of(domains=["example.org"]), "date"),
)
_WORDS = (
    "budget forecast meeting quarterly review board numbers invoice agenda contract draft please "
    "attached revenue summary project timeline report customer order shipping payment thanks regards "
    "tomorrow monday schedule call notes update approval legal policy compliance archive retention "
    "Größe Straße Café überweisung règlement ελληνικά отчёт"
).split()
_PEOPLE = tuple(
    Address(name, f"{name.split()[0].lower()}@{domain}")
    for name, domain in (
        ("Alice Smith", "example.com"),
        ("Bob Jones", "example.com"),
        ("Carol White", "example.com"),
        ("Dave Brown", "example.org"),
        ("Mallory Evil", "evil.test"),
    )
)


def synthetic_documents(count: int, seed: int = 42) -> list[IndexDocument]:
    """Mail-like documents: ~2 KB bodies, a few people, one in five with ~5 KB of attachment text."""
    rng = random.Random(seed)
    start = datetime(2023, 1, 1, tzinfo=timezone.utc)
    documents = []
    for number in range(1, count + 1):
        sender, *recipients = rng.sample(_PEOPLE, rng.randint(2, 4))
        attached = rng.random() < 0.2
        people = (sender, *recipients)
        mailboxes = tuple(sorted({p.address for p in people if not p.address.endswith(".test")}))
        documents.append(
            IndexDocument(
                id=number,
                sha256=f"{number:064x}",
                date=start + timedelta(seconds=rng.randint(0, 2 * 365 * 86400)),
                size=rng.randint(800, 5_000_000),
                subject=" ".join(rng.choices(_WORDS, k=rng.randint(3, 9))),
                from_=(sender,),
                to=tuple(recipients),
                cc=(),
                bcc=(),
                body=" ".join(rng.choices(_WORDS, k=300)),
                attachment_text=" ".join(rng.choices(_WORDS, k=700)) if attached else "",
                filenames=("report-q3.pdf",) if attached else (),
                has_attachment=attached,
                mailboxes=mailboxes,
                domains=tuple(sorted({m.rpartition("@")[2] for m in mailboxes})),
                message_id=f"<m{number}@example.com>",
            )
        )
    return documents


def batches(documents: Sequence[IndexDocument], size: int) -> list[Sequence[IndexDocument]]:
    return [documents[i : i + size] for i in range(0, len(documents), size)]


def fresh(url: str) -> OpenSearchBackend:
    return OpenSearchBackend.from_url(f"{url.rstrip('/')}/bench-{uuid.uuid4().hex[:8]}?replicas=0")


def drop(backend: OpenSearchBackend) -> None:
    client = backend.connection.client()
    names = list(client.indices.get_alias(index=f"{backend.alias}*", expand_wildcards="all"))
    if names:
        client.indices.delete(index=",".join(names))
    client.close()
    backend.close()


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="opensearch://127.0.0.1:59200")
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    documents = synthetic_documents(args.docs)
    groups = batches(documents, args.batch)
    results: dict[str, float] = {}

    results["(d) conversion only"] = args.docs / timed(lambda: [to_source(d) for d in documents])

    searched = fresh(args.url)
    searched.index(groups[0][:1])  # create the index outside the timing
    results["(a) OpenSearchBackend.index"] = args.docs / timed(lambda: [searched.index(g) for g in groups])

    unrefreshed = fresh(args.url)
    unrefreshed.index(groups[0][:1])
    unrefreshed._refresh = lambda: None  # type: ignore[method-assign]  # price the refresh
    results["(b) index() without refresh"] = args.docs / timed(lambda: [unrefreshed.index(g) for g in groups])
    drop(unrefreshed)

    raw = fresh(args.url)
    raw.index(groups[0][:1])
    client = raw.connection.client()
    actions = [{"_index": raw.alias, "_id": str(d.id), "_source": to_source(d)} for d in documents]

    def raw_bulk() -> None:
        helpers.bulk(client, actions, chunk_size=args.batch, max_chunk_bytes=10 * 1024 * 1024)
        client.indices.refresh(index=raw.alias)

    results["(c) raw helpers.bulk (limit)"] = args.docs / timed(raw_bulk)
    client.close()
    drop(raw)

    print(f"{args.docs} documents, batches of {args.batch}")
    for name, rate in results.items():
        print(f"  {name:34s} {rate:9.0f} docs/s")

    print(f"search, {args.repeat} runs each (ms):")
    for text, scope, order in QUERIES:
        sort = SortOrder.RELEVANCE if order == "relevance" else SortOrder.DATE_DESC
        node = parse_query(text, today=datetime(2025, 1, 1).date())
        for _ in range(10):
            searched.search(node, scope, sort=sort)
        run = functools.partial(searched.search, node, scope, sort=sort)
        times = sorted(timed(run) * 1000 for _ in range(args.repeat))
        total = searched.search(node, scope, sort=sort, limit=0).total
        label = f"{text or '<all>'} [{order}{'' if scope.unrestricted else ', scoped'}]"
        p95 = times[int(len(times) * 0.95) - 1]
        print(f"  {label:45s} hits {total:6d}  p50 {statistics.median(times):6.2f}  p95 {p95:6.2f}")

    ids_seconds = timed(lambda: sum(1 for _ in searched.indexed_ids()))
    print(f"indexed_ids: {args.docs} ids in {ids_seconds:.2f} s")
    drop(searched)


if __name__ == "__main__":
    main()
