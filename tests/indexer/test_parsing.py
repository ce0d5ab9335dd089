"""parse_message: headers, addresses, bodies, attachment detection and hostile input."""

from __future__ import annotations

import base64
import random
import time
from datetime import datetime, timezone

import pytest

from indexer.document import Address, ParsedMessage
from indexer.extraction import ExtractionLimits
from indexer.parsing import parse_message
from postvault.settings import Settings

SIMPLE = (
    b"From: \"Doe, Jane\" <Jane.Doe@Example.COM>\r\n"
    b"Sender: list-bounces@lists.example.org\r\n"
    b"Reply-To: replies@example.com\r\n"
    b"To: bob@example.net, Carol <CAROL@example.net>\r\n"
    b"Cc: =?utf-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.de>\r\n"
    b"Bcc: hidden@example.org\r\n"
    b"Subject: Quarterly numbers\r\n"
    b"Date: Tue, 07 Apr 2026 10:00:01 +0200\r\n"
    b"Message-ID: <abc.123@mail.example.com>\r\n"
    b"In-Reply-To: <parent@example.com>\r\n"
    b"References: <root@example.com>\r\n <parent@example.com>\r\n"
    b"List-Id: Finance team <finance.lists.example.org>\r\n"
    b"\r\n"
    b"The numbers are in.\r\n"
)


# -- headers -----------------------------------------------------------------------------


def test_every_header_field_is_typed_and_decoded():
    parsed = parse_message(SIMPLE)
    assert parsed.from_ == (Address("Doe, Jane", "jane.doe@example.com"),)
    assert parsed.sender == (Address("", "list-bounces@lists.example.org"),)
    assert parsed.reply_to == (Address("", "replies@example.com"),)
    assert parsed.to == (Address("", "bob@example.net"), Address("Carol", "carol@example.net"))
    assert parsed.cc == (Address("Jürgen Müller", "jm@example.de"),)
    assert parsed.bcc == (Address("", "hidden@example.org"),)
    assert parsed.subject == "Quarterly numbers"
    assert parsed.date == datetime(2026, 4, 7, 8, 0, 1, tzinfo=timezone.utc)
    assert parsed.message_id == "abc.123@mail.example.com"
    assert parsed.in_reply_to == ("parent@example.com",)
    assert parsed.references == ("root@example.com", "parent@example.com")
    assert parsed.list_id == "finance.lists.example.org"
    assert parsed.body_text == "The numbers are in."
    assert parsed.attachments == ()
    assert parsed.defects == ()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # RFC 2047 B and Q; whitespace between adjacent encoded-words vanishes (6.2).
        (b"=?UTF-8?B?SGVsbG8gV8O2cmxk?=", "Hello Wörld"),
        (b"=?iso-8859-1?Q?Caf=E9?= =?iso-8859-1?Q?_cr=E8me?=", "Café crème"),
        # A multi-byte character split across two encoded-words.
        (b"=?utf-8?B?4oI=?= =?utf-8?B?rA==?= price", "€ price"),
        # Encoded-word glued to text and missing base64 padding: still decoded.
        (b"Re:=?utf-8?B?w6k?=t\xc3\xa9", "Re:été"),
        # RFC 2231 language suffix on the charset.
        (b"=?utf-8*en?Q?hello_world?=", "hello world"),
        # Spaces inside Q text (forbidden, common).
        (b"=?iso-8859-1?Q?Gr=FC=DFe aus Berlin?=", "Grüße aus Berlin"),
        # Raw 8-bit UTF-8 (RFC 6532) and raw windows-1252 (legacy) header bytes.
        ("Ünïcödé".encode("utf-8"), "Ünïcödé"),
        ("Fröhliche Grüße".encode("cp1252"), "Fröhliche Grüße"),
        # Folded subject: the line break goes, the blank stays (RFC 5322 2.2.3).
        (b"first half\r\n second half", "first half second half"),
    ],
)
def test_subject_decoding(header, expected):
    parsed = parse_message(b"Subject: " + header + b"\r\n\r\nbody\r\n")
    assert parsed.subject == expected


def test_malformed_encoded_word_is_kept_as_written_and_recorded():
    parsed = parse_message(b"Subject: =?utf-8?B?####?= tail\r\n\r\n")
    assert parsed.subject == "=?utf-8?B?####?= tail"
    assert parsed.defects == ("Subject: malformed encoded-word '=?utf-8?B?####?='",)


def test_unknown_charset_in_header_falls_back_and_is_a_defect():
    parsed = parse_message(b"Subject: =?x-foo?Q?na=C3=AFve?=\r\n\r\n")
    assert parsed.subject == "naïve"
    assert parsed.defects == ("Subject: unknown charset 'x-foo'",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Mon, 1 Jan 2024 12:00:00 -0500", datetime(2024, 1, 1, 17, 0, tzinfo=timezone.utc)),
        (b"1 Jan 2024 12:00:00 -0000", datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)),
        (b"Mon, 01 Jan 24 12:00 GMT", datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc)),
    ],
)
def test_date_becomes_aware_utc(value, expected):
    parsed = parse_message(b"Date: " + value + b"\r\n\r\n")
    assert parsed.date == expected
    assert parsed.date.tzinfo is timezone.utc


@pytest.mark.parametrize("value", [b"Whenever", b"Mon, 99 Foo 2024 99:99:99 +9999", b"0 0 0 0:0:0"])
def test_unparseable_date_is_none_and_a_defect(value):
    parsed = parse_message(b"Date: " + value + b"\r\n\r\n")
    assert parsed.date is None
    assert "unparseable Date header" in parsed.defects


def test_message_ids_without_brackets_and_garbage_kept():
    parsed = parse_message(
        b"Message-ID: no-brackets@example.com\r\n"
        b"In-Reply-To: <a@x> (comment) <b@y>\r\n"
        b"References: <r1@x>, <r2@x> junk <r1@x>\r\n\r\n"
    )
    assert parsed.message_id == "no-brackets@example.com"
    assert parsed.in_reply_to == ("a@x", "b@y")
    assert parsed.references == ("r1@x", "r2@x")  # duplicates dropped, order kept


# -- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"undisclosed-recipients:;", ()),
        (
            b'Team: a@x.org, "B, C" <B@x.org>;, d@x.org',
            (Address("", "a@x.org"), Address("B, C", "b@x.org"), Address("", "d@x.org")),
        ),
        (b"john@x.com (John Smith)", (Address("John Smith", "john@x.com"),)),
        (b"=?utf-8?B?0JjQstCw0L0=?= <ivan@x.ru>", (Address("Иван", "ivan@x.ru"),)),
        (b'"=?utf-8?Q?Quoted_=C3=A9?=" <q@x.org>', (Address("Quoted é", "q@x.org"),)),
        (b"Whomever", (Address("Whomever", ""),)),
        (b"a@x.org, a@x.org", (Address("", "a@x.org"),)),
        (b"<<<>>>,,,@@@", ()),
        ("Zoë <zoe@x.org>".encode("cp1252"), (Address("Zoë", "zoe@x.org"),)),
    ],
)
def test_address_lists(value, expected):
    assert parse_message(b"To: " + value + b"\r\n\r\n").to == expected


def test_repeated_address_headers_are_all_kept():
    # RFC 5322 allows one To:, but an archive must not lose the recipients of the second.
    parsed = parse_message(b"To: a@x.org\r\nTo: b@x.org\r\n\r\n")
    assert [mailbox.address for mailbox in parsed.to] == ["a@x.org", "b@x.org"]


def test_huge_recipient_list_is_complete_and_fast():
    addresses = b", ".join(b"User %d <user%d@example.com>" % (number, number) for number in range(50_000))
    started = time.perf_counter()
    parsed = parse_message(b"To: " + addresses + b"\r\n\r\nbody")
    assert time.perf_counter() - started < 5
    assert len(parsed.to) == 50_000
    assert parsed.to[-1] == Address("User 49999", "user49999@example.com")


# -- bodies ------------------------------------------------------------------------------


def test_plain_and_faithful_html_alternative_indexes_the_plain_once(make_mime):
    raw = make_mime(
        {"Subject": "alt"},
        parts=[
            ({"Content-Type": "text/plain; charset=utf-8"}, "Meeting moved to Friday at noon."),
            ({"Content-Type": "text/html; charset=utf-8"}, "<p>Meeting moved to <b>Friday</b> at noon.</p>"),
        ],
        subtype="alternative",
    )
    assert parse_message(raw).body_text == "Meeting moved to Friday at noon."


def test_html_alternative_that_adds_words_is_indexed_after_the_plain(make_mime):
    raw = make_mime(
        {"Subject": "alt"},
        parts=[
            ({"Content-Type": "text/plain"}, "Your mail program cannot show this message."),
            ({"Content-Type": "text/html"}, "<h1>Invoice 4711</h1><p>Amount due: 300 EUR by March.</p>"),
        ],
        subtype="alternative",
    )
    assert parse_message(raw).body_text == (
        "Your mail program cannot show this message.\n\nInvoice 4711\nAmount due: 300 EUR by March."
    )


def test_html_only_body_is_converted_and_invisible_parts_dropped():
    raw = (
        b"Content-Type: text/html; charset=iso-8859-1\r\n\r\n"
        b"<html><head><title>t</title><style>p {color: red}</style></head>"
        b"<body><p>Gr\xfc&szlig;e &amp; <i>Dank</i></p><script>alert(1)</script></body></html>"
    )
    parsed = parse_message(raw)
    assert parsed.body_text == "Grüße & Dank"


def test_plain_parts_come_before_html_parts_in_mixed(make_mime):
    raw = make_mime(
        {},
        parts=[
            ({"Content-Type": "text/html"}, "<p>html first in the tree</p>"),
            ({"Content-Type": "text/plain"}, "plain second"),
        ],
    )
    assert parse_message(raw).body_text == "plain second\n\nhtml first in the tree"


@pytest.mark.parametrize(
    ("charset", "payload", "expected", "defect"),
    [
        ("utf-8", "Grüße".encode("utf-8"), "Grüße", None),
        ("utf-8", "Grüße".encode("latin-1"), "Grüße", "invalid utf-8 bytes, decoded as cp1252 in part 1"),
        ("us-ascii", "naïve".encode("utf-8"), "naïve", None),
        ("x-foo", "naïve".encode("utf-8"), "naïve", "unknown charset 'x-foo' in part 1"),
        ("iso-8859-1", b"smart \x93quotes\x94", "smart \u201cquotes\u201d", None),
        ("shift_jis", "日本語".encode("shift_jis"), "日本語", None),
        ("ks_c_5601-1987", "한국어".encode("cp949"), "한국어", None),
        ("unicode_escape", b"\\u0041", "\\u0041", "unknown charset 'unicode_escape' in part 1"),
    ],
)
def test_body_charset_decoding_never_loses_text(charset, payload, expected, defect):
    head = b"Content-Type: text/plain; charset=" + charset.encode() + b"\r\nContent-Transfer-Encoding: 8bit\r\n"
    raw = head + b"\r\n" + payload
    parsed = parse_message(raw)
    assert parsed.body_text == expected
    assert parsed.defects == ((defect,) if defect else ())


def test_quoted_printable_and_base64_bodies():
    qp = (
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Sch=C3=B6n=\r\n und gut=3D\r\n"
    )
    assert parse_message(qp).body_text == "Schön und gut="
    b64 = b"Content-Transfer-Encoding: BASE64 ;\r\n\r\n" + base64.encodebytes("decoded text".encode())
    assert parse_message(b64).body_text == "decoded text"


def test_broken_base64_keeps_what_decodes_and_records_a_defect():
    encoded = base64.b64encode(b"The beginning survives the damage")[:-3]  # cut mid-quantum
    raw = b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"\r\n"
    parsed = parse_message(raw)
    assert parsed.body_text.startswith("The beginning survives the dam")
    assert parsed.defects == ("invalid base64 in part 1",)


def test_preamble_text_is_kept_when_the_structure_is_broken():
    # The opening delimiter is missing, so the parser keeps everything as one text.
    raw = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\nreal text here\r\n--b--\r\n'
    parsed = parse_message(raw)
    assert parsed.body_text == "real text here"
    assert parsed.defects[0] == "StartBoundaryNotFoundDefect"


def test_text_dropped_by_the_stdlib_after_an_unopened_multipart_is_recovered():
    # The inner multipart never opens; CPython drops what follows its close delimiter.
    raw = (
        b'Content-Type: multipart/mixed; boundary="a--"\r\n\r\n--a--\r\n'
        b'Content-Type: multipart/mixed; boundary="a----"\r\n\r\n--a------\r\n'
        b"Content-Type: text/plain\r\n\r\nlost words\r\n"
    )
    parsed = parse_message(raw)
    assert "lost words" in parsed.body_text
    assert "StartBoundaryNotFoundDefect in part 2" in parsed.defects


def test_well_formed_preamble_is_not_indexed(make_mime):
    raw = make_mime({}, "This is a multi-part message in MIME format.", parts=[({}, "the body")])
    assert parse_message(raw).body_text == "the body"


# -- attachment detection ----------------------------------------------------------------


def test_attachment_detection_rules(make_mime):
    raw = make_mime(
        {"Subject": "files"},
        parts=[
            ({"Content-Type": "text/plain"}, "the body"),
            ({"Content-Type": "text/plain", "Content-Disposition": "attachment"}, "by disposition"),
            ({"Content-Type": "text/plain; name=notes.txt"}, "by name"),
            ({"Content-Type": "application/octet-stream"}, "by type"),
            (
                {"Content-Type": "image/png", "Content-Disposition": "inline", "Content-ID": "<logo>",
                 "Content-Transfer-Encoding": "base64"},
                base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 92).decode(),
            ),
        ],
    )
    parsed = parse_message(raw)
    assert parsed.body_text == "the body"
    assert [(each.filename, each.content_type, each.text) for each in parsed.attachments] == [
        ("", "text/plain", "by disposition"),
        ("notes.txt", "text/plain", "by name"),
        ("", "application/octet-stream", ""),
        ("", "image/png", ""),
    ]
    image = parsed.attachments[-1]
    assert image.size == 100
    assert image.skipped == "unsupported type"


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        # RFC 2231 sections 3 and 4: continuations, charset and percent-encoding.
        (b"attachment; filename*0*=utf-8''Gr%C3%BC%C3%9Fe%20; filename*1=\"aus Berlin.txt\"", "Grüße aus Berlin.txt"),
        (b"attachment; filename*=iso-8859-1''caf%E9.txt", "café.txt"),
        # RFC 2047 inside a quoted filename: not standard, sent by many mailers.
        (b'attachment; filename="=?utf-8?B?0L7RgtGH0ZHRgi50eHQ=?="', "отчёт.txt"),
        (b"attachment;\r\n filename=\"folded.txt\"", "folded.txt"),
    ],
)
def test_attachment_filenames_are_decoded(disposition, expected):
    raw = b"Content-Type: text/plain\r\nContent-Disposition: " + disposition + b"\r\n\r\ncontent"
    (attachment,) = parse_message(raw).attachments
    assert attachment.filename == expected
    assert attachment.text == "content"


def test_attached_message_becomes_text_and_its_attachments_are_listed(make_mime):
    inner = make_mime(
        {"From": "Inner Sender <inner@x.org>", "To": "dest@x.org", "Subject": "Forwarded subject"},
        parts=[
            ({"Content-Type": "text/plain"}, "inner body words"),
            ({"Content-Type": "text/csv", "Content-Disposition": "attachment; filename=data.csv"}, "a,b\n1,2"),
        ],
        boundary="INNER",
    )
    raw = make_mime(
        {"Subject": "Fwd"},
        parts=[
            ({"Content-Type": "text/plain"}, "see attached"),
            ({"Content-Type": "message/rfc822", "Content-Disposition": "attachment; filename=fwd.eml"}, inner),
        ],
    )
    parsed = parse_message(raw)
    assert parsed.body_text == "see attached"
    forwarded, csv = parsed.attachments
    assert forwarded.filename == "fwd.eml"
    assert forwarded.content_type == "message/rfc822"
    assert forwarded.size > len("inner body words")
    assert "Subject: Forwarded subject" in forwarded.text
    assert "From: Inner Sender <inner@x.org>" in forwarded.text
    assert "inner body words" in forwarded.text
    assert (csv.filename, csv.text) == ("data.csv", "a,b\n1,2")


def test_base64_encoded_attached_message_is_decoded_first():
    # RFC 2046 5.2.1 forbids it; Outlook and others do it anyway.
    inner = b"Subject: hidden inside base64\r\n\r\nsecret words\r\n"
    raw = (
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(inner)
        + b"--b--\r\n"
    )
    (attached,) = parse_message(raw).attachments
    assert "Subject: hidden inside base64" in attached.text
    assert "secret words" in attached.text


def test_delivery_status_is_indexed_as_text():
    raw = (
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.com\r\n\r\n"
        b"Final-Recipient: rfc822; lost@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"--b--\r\n"
    )
    parsed = parse_message(raw)
    (status,) = parsed.attachments
    assert status.content_type == "message/delivery-status"
    assert "Final-Recipient: rfc822; lost@example.org" in status.text
    assert "Reporting-MTA: dns; mx.example.com" in status.text


# -- lenient structure -------------------------------------------------------------------


def test_folded_boundary_parameter_is_unfolded_before_use():
    raw = b'Content-Type: multipart/mixed; boundary="foo\r\n bar"\r\n\r\n--foo bar\r\n\r\nfirst\r\n--foo bar--\r\n'
    assert parse_message(raw).body_text == "first"


def test_boundary_without_semicolon_is_found():
    raw = b'Content-Type: multipart/mixed\r\n\tboundary="b"\r\n\r\n--b\r\n\r\ninside\r\n--b--\r\n'
    assert parse_message(raw).body_text == "inside"


def test_blank_before_header_colon_is_obsolete_syntax_not_a_body():
    # RFC 5322 section 4.5: obs-optional allows WSP between field name and colon.
    parsed = parse_message(b"Subject : kept\r\nFrom: a@x.org\r\n\r\nbody")
    assert parsed.subject == "kept"
    assert parsed.from_ == (Address("", "a@x.org"),)
    assert parsed.body_text == "body"


# -- never raises ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n",
        b"no header at all, just text",
        bytes(range(256)) * 50,
        b"Content-Type: multipart/mixed\r\n\r\n--\r\n--\r\n",
        b'Content-Type: multipart/mixed; boundary=""\r\n\r\n--\r\n\r\n',
        b"Content-Type: text/plain; charset=\"\r\n\r\nx",
        b"Content-Type: ;;;===\r\nContent-Disposition: ;filename*0*=bad%ZZ''\r\n\r\nx",
        b"Subject: =?\r\n\r\n",
        b"Subject: =?utf-8?Q?\xff\xfe?=\r\n\r\n",
        b"Date: Mon, 1 Jan 99999 00:00:00 +0000\r\n\r\n",
        b"From: " + b"<" * 10_000 + b"\r\n\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Content-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n<"
        + b"<b>" * 5000,
        b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 f\r\n#86)C\r\nend\r\n",
    ],
)
def test_hostile_inputs_parse_without_raising(raw):
    parsed = parse_message(raw)
    assert isinstance(parsed, ParsedMessage)
    assert not any(defect.startswith("parser failure") for defect in parsed.defects)


def test_mangled_messages_never_raise(make_mime):
    # Random byte edits and cuts of a real multipart message, reproducible by seed.
    original = make_mime(
        {"From": "=?utf-8?B?w6k=?= <a@x.org>", "Subject": "=?iso-8859-1?Q?caf=E9?="},
        parts=[
            (
                {"Content-Type": "text/plain; charset=utf-8", "Content-Transfer-Encoding": "quoted-printable"},
                "caf=C3=A9",
            ),
            ({"Content-Type": "text/html"}, "<p>x</p>"),
            ({"Content-Type": "application/pdf; name=a.pdf", "Content-Transfer-Encoding": "base64"}, "JVBERi0xLjQK"),
        ],
    )
    rng = random.Random(20260407)
    for _ in range(300):
        mangled = bytearray(original)
        for _ in range(rng.randint(1, 20)):
            mangled[rng.randrange(len(mangled))] = rng.randrange(256)
        data = bytes(mangled[: rng.randint(0, len(mangled))])
        parsed = parse_message(data)
        assert not any(defect.startswith("parser failure") for defect in parsed.defects), data


def test_non_bytes_input_is_accepted():
    assert parse_message(bytearray(b"Subject: ba\r\n\r\n")).subject == "ba"  # type: ignore[arg-type]
    assert parse_message(memoryview(b"Subject: mv\r\n\r\n")).subject == "mv"  # type: ignore[arg-type]


def test_huge_header_is_parsed_quickly():
    started = time.perf_counter()
    parsed = parse_message(b"Subject: " + b"word " * 2_000_000 + b"\r\n\r\nbody")
    assert time.perf_counter() - started < 5
    assert parsed.subject.startswith("word word")
    assert parsed.body_text == "body"


def test_many_encoded_words_are_decoded_in_linear_time():
    words = b" ".join([b"=?utf-8?B?w6k=?="] * 200_000)
    started = time.perf_counter()
    parsed = parse_message(b"Subject: " + words + b"\r\n\r\n")
    assert time.perf_counter() - started < 5
    assert parsed.subject == "é" * 200_000


def _nested_messages(levels: int) -> bytes:
    message = b"Subject: level %d\r\n\r\nbody of level %d\r\n" % (levels, levels)
    for level in reversed(range(levels)):
        message = (
            b"Subject: level %d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n"
            b"--b%d\r\n\r\nbody of level %d\r\n"
            b"--b%d\r\nContent-Type: message/rfc822\r\n\r\n" % (level, level, level, level, level)
            + message
            + b"\r\n--b%d--\r\n" % level
        )
    return message


def test_fifty_nested_messages_are_read_to_the_depth_limit():
    limits = ExtractionLimits(max_nesting_depth=8)
    parsed = parse_message(_nested_messages(50), limits)
    assert parsed.subject == "level 0"
    assert parsed.body_text == "body of level 0"
    texts = [attachment.text for attachment in parsed.attachments]
    # Levels 1..8 are read; level 9 is listed but not opened.
    assert len(parsed.attachments) == 9
    for level in range(1, 9):
        assert f"Subject: level {level}" in texts[level - 1]
        assert f"body of level {level}" in texts[level - 1]
    assert parsed.attachments[-1].skipped == "nesting too deep"
    assert any("nested deeper than 8" in defect for defect in parsed.defects)


def test_thousands_of_nested_multiparts_fall_back_to_raw_text():
    levels = 3000
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (n, n) for n in range(levels))
    raw = b"Subject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\nneedle\r\n"
    started = time.perf_counter()
    parsed = parse_message(raw)
    assert time.perf_counter() - started < 5
    assert parsed.subject == "deep"
    assert "needle" in parsed.body_text  # nothing is lost, even if not parsed as MIME
    assert parsed.defects[0] == "MIME nesting too deep to parse; body indexed as raw text"


def test_hundred_thousand_parts_return_within_seconds():
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % n for n in range(100_000))
    raw = b'Subject: many\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    started = time.perf_counter()
    parsed = parse_message(raw, ExtractionLimits(max_mime_parts=10_000))
    elapsed = time.perf_counter() - started
    assert elapsed < 3, f"{elapsed:.2f} s"
    assert parsed.subject == "many"
    assert parsed.body_text.startswith("part 0\n\npart 1\n\n")
    assert "part 9000" in parsed.body_text
    assert "more than 10000 MIME parts; the rest is not indexed" in parsed.defects


def test_defects_are_capped():
    parts = b"".join(b"--b\r\nContent-Type: text/plain; charset=x-bad%d\r\n\r\n\xff%d\r\n" % (n, n) for n in range(500))
    raw = b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n"
    parsed = parse_message(raw, ExtractionLimits(max_defects=50))
    assert len(parsed.defects) == 50
    assert parsed.body_text.count("\n\n") == 499  # every part's text is still there


def test_limits_come_from_settings():
    settings = Settings(
        max_attachment_bytes=123, max_extracted_chars=45, max_zip_members=6, max_zip_ratio=7, max_nesting_depth=3
    )
    limits = ExtractionLimits.from_settings(settings)
    assert (limits.max_attachment_bytes, limits.max_extracted_chars, limits.max_zip_members) == (123, 45, 6)
    assert (limits.max_zip_ratio, limits.max_nesting_depth) == (7, 3)
    defaults = ExtractionLimits.from_settings(Settings())
    assert defaults == ExtractionLimits()
