"""The OpenSearch layout without a node: word streams equal the shared word rule, documents, mapping comparison."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from indexer.backends.opensearch_mapping import (
    DATE_ORDER,
    EARLIEST,
    FILLER,
    LATEST,
    WORDS_ANALYZER,
    analysis_settings,
    mapping_problems,
    mappings,
    to_source,
    word_stream,
)
from indexer.document import Address, IndexDocument
from indexer.query import fields
from indexer.query.analysis import index_text, split_words

LONG = "l" * 40  # 40 bytes: dropped, as tantivy drops it


def words(stream: str) -> tuple[str, ...]:
    return tuple(word for word in stream.split(" ") if word and word != FILLER)


def test_word_stream_holds_exactly_the_words_split_words_finds() -> None:
    """The index and the parser must agree word for word, or those words never match."""
    rng = random.Random(11)
    alphabet = "aZé -_.@'Σς\u0130\u093f\u094d\u0915\u0300\u3042\u6771\u4eac\U0001d400" + "x" * 5
    for _ in range(3000):
        text = "".join(
            chr(rng.choice([rng.randint(0, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
            if rng.random() < 0.2
            else rng.choice(alphabet)
            for _ in range(rng.randint(0, 80))
        )
        assert words(word_stream([index_text(text)])) == split_words(text), repr(text)


@pytest.mark.slow
def test_word_stream_follows_the_word_rule_for_every_code_point() -> None:
    for code_point in range(0x110000):
        if 0xD800 <= code_point <= 0xDFFF:
            continue
        for text in (f"a{chr(code_point)}b", f"{chr(code_point)}é{chr(code_point)}"):
            assert words(word_stream([index_text(text)])) == split_words(text), hex(code_point)


def test_word_stream_keeps_tantivys_positions() -> None:
    # A dropped long word keeps its position, except at the end of a value.
    assert word_stream([f"x {LONG} y"]) == f"x {FILLER} y"
    assert word_stream([f"{LONG} x"]) == f"{FILLER} x"
    assert word_stream([f"x {LONG}"]) == "x"
    # One empty position between values, also around a value without words.
    assert word_stream(["a b", "c d"]) == f"a b {FILLER} c d"
    assert word_stream(["e", "!!!", "f"]) == f"e {FILLER} {FILLER} f"
    assert word_stream(["e", LONG, "f"]) == f"e {FILLER} {FILLER} f"
    assert word_stream([f"a b {LONG}", "c"]) == f"a b {FILLER} c"
    assert word_stream(["Größe-ΟΔΟΣ_x"]) == "größe οδοσ x"


def document(**changes: object) -> IndexDocument:
    values: dict[str, object] = dict(
        id=7,
        sha256="AB" * 32,
        date=datetime(2024, 3, 15, 12, 0, 0, 900_000, tzinfo=timezone.utc),
        size=1234,
        subject="Hello World",
        from_=(Address("Alice Smith", "Alice@Example.COM"),),
        to=(Address("", "bob@example.com"), Address("Carol", "carol@example.org")),
        cc=(),
        bcc=(),
        body="",
        attachment_text="",
        filenames=("a.pdf", "b.txt"),
        has_attachment=True,
        mailboxes=("Alice@Example.com",),
        domains=("@Example.com",),
        message_id="<Msg1@Example.com>",
    )
    values.update(changes)
    return IndexDocument(**values)  # type: ignore[arg-type]


def test_a_document_becomes_word_streams_normalised_keywords_and_numbers() -> None:
    source = to_source(document())
    assert source[fields.ID] == 7
    assert source[fields.DATE] == 1710504000900
    assert source[DATE_ORDER] == 1710504000  # whole seconds: the date sort's key
    assert source[fields.SUBJECT] == "hello world"
    assert source["from"] == f"alice smith {FILLER} alice example com"
    assert source["to_addr"] == ["bob@example.com", "carol@example.org"]
    assert source[fields.FILENAME] == f"a pdf {FILLER} b txt"
    assert source[fields.MAILBOX] == ["alice@example.com"]
    assert source[fields.DOMAIN] == ["example.com"]
    assert source[fields.MESSAGE_ID] == ["msg1@example.com"]
    assert source[fields.SHA256] == ["ab" * 32]
    assert fields.BODY not in source and "cc" not in source and "cc_addr" not in source  # nothing to index


def test_dates_are_utc_clamped_like_tantivy_and_sizes_fit_a_long() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert to_source(document(date=datetime(2024, 1, 1, 1, 0, tzinfo=plus_two)))[fields.DATE] == 1704067200000 - 3600000
    assert to_source(document(date=datetime(2024, 1, 1)))[fields.DATE] == 1704067200000  # naive: UTC
    early = to_source(document(date=datetime(1500, 1, 1, tzinfo=timezone.utc)))
    assert early[fields.DATE] == (EARLIEST - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)
    assert to_source(document(date=datetime(9999, 1, 1, tzinfo=timezone.utc)))[DATE_ORDER] == int(LATEST.timestamp())
    assert to_source(document(size=-5))[fields.SIZE] == 0
    assert to_source(document(size=2**70))[fields.SIZE] == 2**63 - 1


def test_the_expected_layout_has_no_problems_and_changes_are_named() -> None:
    settings = {"analysis": analysis_settings(), "number_of_shards": "1"}
    assert mapping_problems(mappings(), settings) == []
    # The mapping API answers some values as strings: still no problem.
    stringly = mappings()
    stringly["properties"][fields.MESSAGE_ID]["ignore_above"] = "8191"
    assert mapping_problems(stringly, settings) == []

    changed = mappings()
    changed["properties"][fields.SUBJECT] = {"type": "keyword"}
    del changed["properties"][DATE_ORDER]
    changed["properties"]["extra"] = {"type": "long"}
    changed["dynamic"] = "true"
    problems = mapping_problems(changed, {"analysis": {}, "translog": {"durability": "async"}})
    text = " | ".join(problems)
    assert "field 'subject' has type 'keyword', expected 'text'" in text
    assert f"field {DATE_ORDER!r} is missing" in text
    assert "field 'extra' is not one postvault defines" in text
    assert "dynamic is not strict" in text
    assert f"analyzer {WORDS_ANALYZER!r} is missing" in text
    assert "translog.durability" in text
