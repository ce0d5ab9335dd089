"""Field mapping and word splitting shared by every backend: what a leaf matches, what a document holds."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from indexer.document import Address, IndexDocument
from indexer.query.analysis import split_words
from indexer.query.ast import Field, Near, Phrase, Prefix, Term
from indexer.query.fields import (
    ADDRESS_EXACT_FIELDS,
    ANALYSED_FIELDS,
    CONTENT_FIELDS,
    TARGETS,
    Exact,
    StartsWith,
    Words,
    WordsNear,
    document_values,
    is_address,
    leaf_matches,
)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Budget-2024 forecast", ("budget", "2024", "forecast")),
        ("alice@example.com", ("alice", "example", "com")),
        ("O'Brien_Pat", ("o", "brien", "pat")),
        ("ΟΔΟΣ", ("οδοσ",)),  # each letter lower-cased alone, as tantivy does: no final sigma
        ("İ", ("i̇",)),
        ("हिन्दी", ("हिन", "दी")),  # vowel signs are letters, the virama is not
        ("x" * 39, ("x" * 39,)),
        ("x" * 40, ("x" * 39, "x")),  # 40 bytes or more: cut into pieces of at most 39 bytes
        ("é" * 20, ("é" * 19, "é")),  # 20 characters but 40 bytes
        ("Ab" * 50 + "-c", ("ab" * 19 + "a", "ba" * 19 + "b", "ab" * 11, "c")),
        ("ж" * 19 + "z" * 3, ("ж" * 19 + "z", "zz")),  # cut by bytes: 38 + 1, then 2
        ("", ()),
        ("--- !!!", ()),
    ],
)
def test_split_words_follows_the_index_rule(text: str, words: tuple[str, ...]) -> None:
    assert split_words(text) == words


def test_every_field_has_targets() -> None:
    assert set(TARGETS) == set(Field)
    assert TARGETS[Field.TEXT].words == ANALYSED_FIELDS


def test_whole_address_in_a_header_field_is_one_keyword() -> None:
    assert leaf_matches(Term(Field.FROM, "Alice@Example.com")) == (Exact("from_addr", "alice@example.com"),)


def test_whole_address_in_free_text_is_a_keyword_in_headers_and_a_phrase_in_content() -> None:
    matches = leaf_matches(Term(Field.TEXT, "alice@example.com"))
    assert {m for m in matches if isinstance(m, Exact)} == {Exact(f, "alice@example.com") for f in ADDRESS_EXACT_FIELDS}
    assert {m for m in matches if isinstance(m, Words)} == {
        Words(f, ("alice", "example", "com")) for f in CONTENT_FIELDS
    }


def test_address_part_is_words_in_the_header_field() -> None:
    assert leaf_matches(Term(Field.TO, "example.com")) == (Words("to", ("example", "com")),)
    assert leaf_matches(Phrase(Field.PARTICIPANTS, ("Alice", "Smith"))) == tuple(
        Words(role, ("alice", "smith")) for role in ("from", "to", "cc", "bcc")
    )


def test_keyword_fields_match_whole_normalised_values() -> None:
    assert leaf_matches(Term(Field.DOMAIN, "@Example.ORG")) == (Exact("domain", "example.org"),)
    assert leaf_matches(Term(Field.MESSAGE_ID, "<Abc@X>")) == (Exact("message_id", "abc@x"),)
    assert leaf_matches(Prefix(Field.MAILBOX, "Ali")) == (StartsWith("mailbox", "ali", keyword=True),)


def test_prefixes_and_near() -> None:
    assert leaf_matches(Prefix(Field.SUBJECT, "Budg")) == (StartsWith("subject", "budg", keyword=False),)
    assert leaf_matches(Prefix(Field.FROM, "alice@ex")) == (StartsWith("from_addr", "alice@ex", keyword=True),)
    assert leaf_matches(Near(Field.BODY, "a", "b", 2)) == (WordsNear("body", "a", "b", 2),)


def test_leaves_with_nothing_searchable_match_nothing() -> None:
    assert leaf_matches(Term(Field.SUBJECT, "!!!")) == ()
    assert leaf_matches(Phrase(Field.BODY, ())) == ()
    assert leaf_matches(Prefix(Field.BODY, "a-b")) == ()
    assert leaf_matches(Near(Field.BODY, "a b", "c", 1)) == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alice@example.com", True),
        ("<alice@example.com>", True),
        ("a.b+tag@sub.example.co.uk", True),
        ("alice@", False),
        ("@example.com", False),
        ("a@b@c", False),
        ("alice@example.com.", True),  # the root's dot, which domain_key drops
        ("alice@example.com.", True),  # the root's dot, which domain_key drops
        ("al ice@example.com", False),
    ],
)
def test_is_address(text: str, expected: bool) -> None:
    assert is_address(text) is expected


def test_document_values_hold_names_and_addresses_as_words_and_addresses_whole() -> None:
    document = IndexDocument(
        id=1,
        sha256="AB" * 32,
        date=datetime(2024, 1, 1, tzinfo=timezone.utc),
        size=10,
        subject="Hi",
        from_=(Address("Alice Smith", "alice@example.com"),),
        to=(Address("", "bob@example.com"),),
        cc=(),
        bcc=(),
        body="",
        attachment_text="",
        filenames=("a.pdf",),
        has_attachment=True,
        mailboxes=(" Alice@Example.com",),
        domains=("@Example.com",),
        message_id="<ID@x>",
    )
    values = document_values(document)
    assert values["from"] == ("Alice Smith", "alice@example.com")
    assert values["from_addr"] == ("alice@example.com",)
    assert values["to"] == ("bob@example.com",)
    assert values["mailbox"] == ("alice@example.com",)
    assert values["domain"] == ("example.com",)
    assert values["message_id"] == ("id@x",)
    assert values["sha256"] == ("ab" * 32,)
    assert values["body"] == ()  # empty values are left out
