"""TantivyBackend on real index folders: the conformance suite, upserts, persistence, scope, locking."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import tantivy
from backend_contract import EVERYTHING, SearchBackendContract, ids, message
from conformance import TODAY, corpus

from indexer.backends import tantivy_backend
from indexer.backends.tantivy_backend import TantivyBackend
from indexer.query.analysis import index_text, split_words
from indexer.query.ast import Field, MatchAll, Term
from indexer.query.parser import QuerySyntaxError, parse_query
from indexer.search_backend import IndexOutdatedError, SearchBackendError, SortOrder



@pytest.fixture
def backend(tmp_path: Path) -> Iterator[TantivyBackend]:
    opened = TantivyBackend(tmp_path / "index")
    yield opened
    opened.close()


# --- the conformance suite ---


@pytest.fixture(scope="module")
def conformance_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TantivyBackend]:
    opened = TantivyBackend(tmp_path_factory.mktemp("conformance") / "index")
    documents = corpus()
    opened.index(documents[:7])  # several commits, so several segments, as in real use
    opened.index(documents[7:])
    yield opened
    opened.close()


class TestTantivyBackendContract(SearchBackendContract):
    backend_module = tantivy_backend


def test_no_valid_query_makes_the_engine_fail(conformance_backend: TantivyBackend) -> None:
    """Fuzzed queries that parse must compile and run: no engine error, no Rust panic."""
    rng = random.Random(7)
    snippets = [
        "budget",
        "Alice",
        "from:",
        "to:",
        "subject:",
        "domain:",
        "mailbox:",
        "message-id:",
        "AND",
        "OR",
        "NOT",
        "-",
        "(",
        ")",
        '"',
        "*",
        "NEAR/2",
        "a@b.c",
        "@",
        "x.y",
        "on:2024",
        "size>1K",
        "has:attachment",
        "ΟΔΟΣ",
        "é",
    ]
    ran = 0
    for _ in range(3000):
        query = "".join(rng.choice(snippets) + rng.choice(["", " "]) for _ in range(rng.randint(1, 8)))
        try:
            node = parse_query(query, today=TODAY)
        except QuerySyntaxError:
            continue
        for sort in SortOrder:
            conformance_backend.search(node, EVERYTHING, sort=sort, limit=5)
        ran += 1
    assert ran > 500


@pytest.mark.slow
def test_split_words_mirrors_the_tantivy_analyzer_for_every_code_point() -> None:
    """The parser's word rule must equal the index's, or words with those characters never match."""
    analyzer = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .build()
    )
    differ = [
        cp
        for cp in range(0x110000)
        if not 0xD800 <= cp <= 0xDFFF
        and tuple(analyzer.analyze(index_text(f"a{chr(cp)}b"))) != split_words(f"a{chr(cp)}b")
    ]
    assert differ == []
    rng = random.Random(3)
    for _ in range(2000):
        text = "".join(
            chr(rng.choice([rng.randint(0, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
            if rng.random() < 0.3
            else rng.choice("aé -Σ東京タワー")
            for _ in range(rng.randint(0, 60))
        )
        assert tuple(analyzer.analyze(index_text(text))) == split_words(text), repr(text)


def test_the_schema_default_tokenizer_is_the_mirrored_rule(backend: TantivyBackend) -> None:
    text = "Größe-ΟΔΟΣ_x हिन्दी O'Brien " + "y" * 39 + " " + "z" * 40
    backend.index([message(1, subject=text)])
    for word in split_words(text):
        assert ids(backend, f"subject:{word}") == [1], word
    assert ids(backend, '"' + " ".join(split_words(text)) + '"') == [1]


# --- writing ---


def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    first = TantivyBackend(tmp_path / "index")
    first.index([message(1, "kept")])
    first.close()
    first.close()  # closing twice is harmless
    with pytest.raises(SearchBackendError, match="closed"):
        first.search(MatchAll(), EVERYTHING)
    again = TantivyBackend(tmp_path / "index")
    assert ids(again, "kept") == [1]
    again.index([message(2, "more")])  # the lock was released by close
    assert again.count() == 2
    again.close()


def test_a_second_instance_sees_commits_without_reopening(tmp_path: Path) -> None:
    writer = TantivyBackend(tmp_path / "index")
    reader = TantivyBackend(tmp_path / "index")
    assert reader.count() == 0
    writer.index([message(1, "fresh")])
    assert ids(reader, "fresh") == [1]
    writer.delete([1])
    assert ids(reader, "fresh") == []
    writer.close()
    reader.close()


# --- searching ---


def test_a_hand_built_leaf_with_nothing_searchable_matches_nothing(backend: TantivyBackend) -> None:
    backend.index([message(1)])
    assert backend.search(Term(Field.SUBJECT, "!!!"), EVERYTHING).total == 0


# --- the index folder shared between processes ---

_HOLD_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from datetime import datetime, timezone
    from indexer.backends.tantivy_backend import TantivyBackend
    from indexer.document import IndexDocument
    backend = TantivyBackend(Path(sys.argv[1]))
    backend.index([IndexDocument(
        id=7, sha256="0" * 64, date=datetime(2024, 1, 1, tzinfo=timezone.utc), size=1, subject="from the child",
        from_=(), to=(), cc=(), bcc=(), body="", attachment_text="", filenames=(), has_attachment=False,
        mailboxes=("alice@example.com",), domains=("example.com",))])
    print("indexed", flush=True)
    sys.stdin.read()  # hold the writer until the parent closes our stdin
    backend.close()
    """
)


def test_a_writer_in_another_process_locks_writes_but_not_searches(tmp_path: Path) -> None:
    path = tmp_path / "index"
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_WRITER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "indexed"
        here = TantivyBackend(path)
        assert ids(here, "child") == [7]  # a read-only user works while another process indexes
        with pytest.raises(SearchBackendError, match="locked by another writer"):
            here.index([message(1)])
        assert child.stdin is not None
        child.stdin.close()
        assert child.wait(timeout=60) == 0
        here.index([message(1)])  # lock released when the other writer closed
        assert sorted(ids(here)) == [1, 7]
        here.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_an_index_with_another_schema_is_refused_with_advice(tmp_path: Path) -> None:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("something_else")
    tantivy.Index(builder.build(), path=str(tmp_path))
    with pytest.raises(IndexOutdatedError, match="run `postvault reindex`"):
        TantivyBackend(tmp_path)


_SEARCH_IN_A_LOOP = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from indexer.backends.tantivy_backend import TantivyBackend
    from indexer.query.ast import MatchAll
    from indexer.scope import Scope
    backend = TantivyBackend(Path(sys.argv[1]))
    print("ready", flush=True)
    seen = 0
    while seen < int(sys.argv[2]):
        page = backend.search(MatchAll(), Scope.everything(), limit=1)
        assert page.total >= seen, (page.total, seen)  # commits only ever add here
        seen = page.total
    print("saw", seen, flush=True)
    """
)


@pytest.mark.slow
def test_a_reader_in_another_process_follows_commits_and_merges(tmp_path: Path) -> None:
    path = tmp_path / "index"
    writer = TantivyBackend(path)
    batches, per_batch = 40, 25  # enough commits for tantivy to merge segments meanwhile
    reader = subprocess.Popen(
        [sys.executable, "-c", _SEARCH_IN_A_LOOP, str(path), str(batches * per_batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
        for batch in range(batches):
            writer.index([message(batch * per_batch + i + 1) for i in range(per_batch)])
        out, err = reader.communicate(timeout=120)
        assert reader.returncode == 0, err
        assert out.strip() == f"saw {batches * per_batch}"
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
        writer.close()
