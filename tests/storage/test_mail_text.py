"""The catalogue takes whatever header the parser accepts, on SQLite and PostgreSQL: NUL, bytes that are not UTF-8, long domains."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from archiver.envelope import Envelope, envelope_bytes, envelope_text
from archiver.headers import read_header_facts
from archiver.journal import Arrival, mailboxes_of
from postvault.settings import Settings
from postvault.wiring import Archive
from storage.tables import envelopes, message_domains, message_mailboxes, messages
from storage.text import escaped, storable, unescaped
from tests import services


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.services), "sqlite"])
def archive_on(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    """A real archive whose catalogue is a throw-away PostgreSQL schema or a SQLite file."""
    data_dir = tmp_path / "var"

    def build(database_url: str) -> Archive:
        return Archive(Settings(data_dir=data_dir, database_url=database_url, index_workers=1))

    if request.param == "sqlite":
        built = build("")
        yield built
        built.close()
        return
    with services.postgres_schema("pv_text") as url:
        built = build(url)
        yield built
        built.close()


def catalogued(archive: Archive, message_id: int) -> tuple[dict, list[dict], set[str], set[str]]:
    """The message's row, its envelope rows, its mailboxes and its domains, as stored."""
    with archive.catalogue.connect() as connection:
        row = connection.execute(select(messages).where(messages.c.id == message_id)).mappings().one()
        arrivals = connection.execute(select(envelopes).where(envelopes.c.message_id == message_id)).mappings().all()
        boxes = set(connection.scalars(select(message_mailboxes.c.mailbox).where(message_mailboxes.c.message_id == message_id)))
        domains = set(connection.scalars(select(message_domains.c.domain).where(message_domains.c.message_id == message_id)))
    return dict(row), [dict(a) for a in arrivals], boxes, domains


def message(*headers: bytes) -> bytes:
    return b"\r\n".join(headers) + b"\r\n\r\nbody\r\n"


LONG_DOMAIN = "d" * 290 + ".example"  # 298 characters: a mailbox of 302, within the 320 attributed


@pytest.mark.parametrize("raw", [
    pytest.param(message(b"From: a@b.example", b"Subject: before\x00after"), id="NUL in the subject"),
    pytest.param(message(b"From: a@b.example", b"Message-ID: <a\x00b@c.example>", b"List-Id: <l\x00.example>",
                         b"References: <r\x00@x>"), id="NUL in ids"),
    pytest.param(message(b"From: \"N\x00me\" <a@b.example>", b"To: c\x00d@e.example"), id="NUL in addresses"),
    pytest.param(message(b"From: a@" + LONG_DOMAIN.encode(), b"Subject: long domain"), id="a 298-character domain"),
    pytest.param(message(b"From: caf\xe9@b.example", b"Subject: caf\xe9 \xff\xfe"), id="8-bit header bytes"),
])
def test_a_header_the_parser_accepts_is_catalogued(archive_on: Archive, raw: bytes) -> None:
    """Each of these gave DataError on PostgreSQL (an SMTP 451, on every retry)."""
    receipt = archive_on.journal.journal(Arrival(raw, Envelope(mail_from="a@b.example", rcpt_to=("x@y.example",)), "smtp"))
    assert archive_on.blobs.get(receipt.sha256) == raw
    facts = read_header_facts(raw)
    row, _arrivals, boxes, domains = catalogued(archive_on, receipt.message_id)
    assert row["subject"] == storable(facts.subject) and row["message_id_header"] == storable(facts.message_id)
    assert row["from_header"] == storable(facts.from_header) and row["list_id"] == storable(facts.list_id)
    expected = set(mailboxes_of(Arrival(raw, Envelope(mail_from="a@b.example", rcpt_to=("x@y.example",)), "smtp"), facts))
    assert boxes == expected and domains == {box.rpartition("@")[2] for box in expected}


def test_a_domain_of_298_characters_is_one_scope_key_kept_whole(archive_on: Archive) -> None:
    raw = message(b"From: a@" + LONG_DOMAIN.encode(), b"Subject: long domain")
    receipt = archive_on.journal.journal(Arrival(raw, Envelope(), "smtp"))
    _row, _arrivals, boxes, domains = catalogued(archive_on, receipt.message_id)
    assert boxes == {f"a@{LONG_DOMAIN}"} and domains == {LONG_DOMAIN}


def test_a_source_path_that_is_not_utf8_is_kept_exactly(archive_on: Archive) -> None:
    """The source detail (an import's path) is not in the blob: it must come back as it went
    in, whatever bytes the file name has (os.fsdecode gives them as lone surrogates)."""
    detail = "/mail/caf\udce9\\x00/\x00.eml:7"
    receipt = archive_on.journal.journal(Arrival(message(b"From: a@b.example"), Envelope(), "import", source_detail=detail))
    _row, (stored,), _boxes, _domains = catalogued(archive_on, receipt.message_id)
    assert unescaped(stored["source_detail"]) == detail
    assert stored["source_detail"] == "/mail/caf\\xe9\\\\x00/\\x00.eml:7"


# Header values a hostile or broken sender can send: any byte but CR and LF (which end the
# field), with NUL and 8-bit bytes likely, encoded words in odd charsets, long domains.
_HEADER_BYTES = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_ENCODED_WORD = st.builds(
    lambda charset, payload: b"=?" + charset + b"?q?" + payload.hex().encode() + b"?=",
    st.sampled_from([b"utf-8", b"idna", b"x-unknown", b"utf-16", b"latin-1", b"utf-7"]), st.binary(max_size=12))
_DOMAIN = st.integers(min_value=1, max_value=330).map(lambda n: b"d" * n + b".example")
_ADDRESS = st.builds(lambda local, domain: local + b"@" + domain,
                     st.sampled_from([b"a", b"caf\xe9", b"n\x00l", b"\xff\xfe", b"x" * 40]), _DOMAIN)
_VALUE = st.lists(st.one_of(_HEADER_BYTES, _ENCODED_WORD, _ADDRESS), min_size=1, max_size=4).map(b" ".join)
_NAMES = st.sampled_from([b"Subject", b"From", b"To", b"Cc", b"Bcc", b"Sender", b"Delivered-To", b"Message-ID",
                          b"In-Reply-To", b"References", b"List-Id", b"Date"])
_HEADERS = st.lists(st.tuples(_NAMES, _VALUE), min_size=1, max_size=8)
# What a client may put in HELO, MAIL FROM and RCPT TO, and an importer in a source path:
# any bytes, NUL and 8-bit ones included, and addresses with long domains.
_ENVELOPE_BYTES = st.one_of(st.binary(max_size=40), _ADDRESS)


@pytest.mark.slow
def test_hostile_headers_and_envelopes_through_the_journal(archive_on: Archive) -> None:
    """Property: whatever the header parser and the SMTP edge accept goes into the catalogue,
    derived columns as ``storable``, the envelope and source byte for byte, every scope key whole."""

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(headers=_HEADERS, mail_from=_ENVELOPE_BYTES, rcpt=st.lists(_ENVELOPE_BYTES, max_size=3), helo=_ENVELOPE_BYTES,
           source=_ENVELOPE_BYTES)
    def journal_one(headers: list[tuple[bytes, bytes]], mail_from: bytes, rcpt: list[bytes], helo: bytes, source: bytes) -> None:
        raw = message(*(name + b": " + value for name, value in headers))
        envelope = Envelope(mail_from=envelope_text(mail_from), rcpt_to=tuple(map(envelope_text, rcpt)), helo=envelope_text(helo))
        source_detail = source.decode("utf-8", "surrogateescape")  # as os.fsdecode gives a file name
        arrival = Arrival(raw, envelope, "import", source_detail=source_detail)
        receipt = archive_on.journal.journal(arrival)
        assert archive_on.blobs.get(receipt.sha256) == raw
        facts = read_header_facts(raw)
        row, arrivals, boxes, domains = catalogued(archive_on, receipt.message_id)
        assert any(envelope_bytes(a["mail_from"]) == mail_from and envelope_bytes(a["helo"]) == helo
                   and [envelope_bytes(r) for r in a["rcpt_to"]] == rcpt for a in arrivals)
        if not receipt.duplicate:  # a duplicate's envelope may be the earlier arrival's, with its source
            assert [unescaped(a["source_detail"]) for a in arrivals] == [source_detail]
            for column, value in (("subject", facts.subject), ("from_header", facts.from_header), ("to_header", facts.to_header),
                                  ("cc_header", facts.cc_header), ("message_id_header", facts.message_id),
                                  ("in_reply_to", facts.in_reply_to), ("references", facts.references), ("list_id", facts.list_id)):
                assert row[column] == storable(value), column
        expected = set(mailboxes_of(arrival, facts))
        assert expected <= boxes and {box.rpartition("@")[2] for box in expected} <= domains

    journal_one()


@given(st.text(alphabet=st.characters(codec=None, exclude_categories=())))
def test_storable_leaves_nothing_an_engine_refuses(text: str) -> None:
    stored = storable(text)
    assert "\x00" not in stored
    stored.encode("utf-8")  # no lone surrogate left
    assert storable(stored) == stored and len(stored) == len(text)


@given(st.text(alphabet=st.characters(codec=None, exclude_categories=())))
def test_escaped_round_trips_and_leaves_nothing_an_engine_refuses(text: str) -> None:
    stored = escaped(text)
    assert unescaped(stored) == text and "\x00" not in stored
    stored.encode("utf-8")


@given(st.binary())
def test_escaped_bytes_read_back_as_the_same_bytes(raw: bytes) -> None:
    """A byte that is not UTF-8 is written \\xHH, the form envelope text uses too."""
    assert unescaped(escaped(raw.decode("utf-8", "surrogateescape"))).encode("utf-8", "surrogateescape") == raw


def test_text_without_nul_surrogates_or_backslashes_is_stored_as_it_is() -> None:
    for text in ("alice@example.com", "Grüße, 東京", "", "mx1.example.net"):
        assert storable(text) == text == escaped(text) == unescaped(text)
    assert storable("back\\slash") == "back\\slash"
