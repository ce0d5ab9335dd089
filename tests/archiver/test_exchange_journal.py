"""Exchange / Microsoft 365 envelope journal reports: exact original bytes, every real recipient."""

from __future__ import annotations

from email import message_from_bytes
from pathlib import Path

import pytest

from archiver.exchange_journal import is_journal_report, unwrap_journal_report
from tests.archive_factory import make_message

FIXTURES = Path(__file__).parent / "fixtures" / "exchange"


def report(name: str, *, crlf: bool = True) -> bytes:
    """A fixture as it arrives over SMTP (CRLF line ends), or as saved by a Unix mail program."""
    raw = (FIXTURES / name).read_bytes()
    return raw.replace(b"\n", b"\r\n") if crlf else raw


def test_o365_recipient_form_with_expanded_and_forwarded() -> None:
    raw = report("o365-recipient-expanded-forwarded.eml")
    unwrapped = unwrap_journal_report(raw)
    assert unwrapped is not None
    assert unwrapped.sender == "MeganB@contoso.com"
    # Order of the report, spelling of the report; the distribution group is listed once.
    assert unwrapped.recipients == (
        "AlexW@contoso.com", "falcon@contoso.com", "LeeG@contoso.com", "wei.zhang@fabrikam.com",
        "PattiF@contoso.com", "NestorW@contoso.com", "Legal.Hold@contoso.com",
    )
    assert unwrapped.report_message_id == "<5d3f2a9e-7b1c-4c8e-9f2a-1e6b7d0c4a11@journal.report.generator>"
    assert unwrapped.original_message_id.startswith("<CY4PR11MB1671C0E5")


def test_original_is_the_exact_byte_slice_between_part_header_and_closing_delimiter() -> None:
    raw = report("o365-recipient-expanded-forwarded.eml")
    start = raw.index(b"Received: from CY4PR11MB1671")
    # RFC 2046 5.1.1: the CRLF before the outer delimiter belongs to the delimiter.
    end = raw.index(b"\r\n--_000_5d3f2a9e7b1c4c8e9f2a1e6b7d0c4a11journalreportgenerator_--")
    unwrapped = unwrap_journal_report(raw)
    assert unwrapped is not None and unwrapped.original == raw[start:end]
    original = message_from_bytes(unwrapped.original)
    assert original["Message-ID"] == unwrapped.original_message_id
    assert original.get_content_type() == "multipart/alternative"


def test_exchange_to_cc_bcc_form_with_on_behalf_of_and_quoted_printable_envelope() -> None:
    raw = report("exchange2016-to-cc-bcc-on-behalf-qp.eml")
    unwrapped = unwrap_journal_report(raw)
    assert unwrapped is not None
    assert unwrapped.sender == "assistant.ceo@contoso.com"
    assert unwrapped.on_behalf_of == "rene.dupont@contoso.com"
    assert unwrapped.recipients == (
        "jana.hoffmann@contoso.com",
        "anna.becker@contoso.com", "finance@contoso.com", "Jonas.Weber@contoso.com",
        "auditor@external-audit.example", "audit@contoso.com",  # Bcc, and the mailbox that forwarded to it
        "J.Hoffmann.Private@contoso.com",  # a Bcc recipient the headers of the report never show
    )
    assert unwrapped.original.startswith(b"Received: from EX16-MBX02") and unwrapped.original in raw
    assert unwrapped.original.endswith(b"--_004_8B3E1F0C2D5A4E6F9A7BEX16MBX02corpcontosolocal_--\r\n")


def test_base64_encoded_original_and_envelope_are_decoded() -> None:
    unwrapped = unwrap_journal_report(report("base64-encoded-original.eml"))
    assert unwrapped is not None
    assert unwrapped.original == (
        b"From: Bob <bob@fabrikam.com>\r\nTo: Megan <meganb@contoso.com>\r\nSubject: Lunch on Friday?\r\n"
        b"Date: Fri, 12 Jan 2024 11:02:08 +0000\r\nMessage-ID: <lunch-42@fabrikam.com>\r\n\r\nTacos?\r\n"
    )
    assert (unwrapped.sender, unwrapped.recipients) == ("bob@fabrikam.com", ("meganb@contoso.com",))


def test_report_saved_with_lf_line_ends_unwraps_too() -> None:
    raw = report("o365-recipient-expanded-forwarded.eml", crlf=False)
    unwrapped = unwrap_journal_report(raw)
    assert unwrapped is not None and len(unwrapped.recipients) == 7
    assert unwrapped.original.endswith(b"namp_--\n") and unwrapped.original in raw


def test_report_without_attached_original_is_recognised_but_not_unwrapped() -> None:
    raw = report("malformed-no-original.eml")
    assert is_journal_report(raw)
    assert unwrap_journal_report(raw) is None


def test_ordinary_message_with_an_attached_message_is_not_a_report() -> None:
    inner = make_message(subject="forwarded")
    outer = make_message(subject="FW: forwarded", attachments=[("fw.eml", "message/rfc822", inner)])
    assert not is_journal_report(outer)
    assert unwrap_journal_report(outer) is None
    assert unwrap_journal_report(b"") is None and unwrap_journal_report(b"\x00\x01garbage") is None


def _synthetic_report(envelope: str | bytes, *, marker: str = "X-MS-Journal-Report:", charset: str = "") -> bytes:
    original = make_message(subject="inner")
    content_type = f"text/plain; charset={charset}" if charset else "text/plain"
    envelope_bytes = envelope if isinstance(envelope, bytes) else envelope.encode()
    return (
        f"From: journal@contoso.com\r\n{marker}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: {content_type}\r\n\r\n"
    ).encode() + envelope_bytes + b"\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n" + original + b"\r\n--b--\r\n"


def test_recipients_deduplicate_case_insensitively_keeping_the_first_spelling() -> None:
    raw = _synthetic_report(
        "Sender: Unspecified Address\r\n"
        "To: Bob@Example.ORG\r\nBcc: bob@example.org\r\n"
        "Recipient: BOB@example.org, Expanded: Team@example.org\r\n"
        "Cc: team@EXAMPLE.org\r\n"
        "Recipient: /O=CONTOSO/OU=EXCHANGE ADMINISTRATIVE GROUP/CN=RECIPIENTS/CN=LEGACY\r\n"
    )
    unwrapped = unwrap_journal_report(raw)
    assert unwrapped is not None
    assert unwrapped.recipients == ("Bob@Example.ORG", "Team@example.org")
    assert unwrapped.sender == ""  # "Unspecified Address" is Exchange's word for none


@pytest.mark.parametrize("marker", ["X-MS-Journal-Report:", "x-ms-journal-report: ", "Content-Identifier: ExJournalReport"])
def test_marker_spellings_exchange_itself_accepts(marker: str) -> None:
    raw = _synthetic_report("Sender: a@x.org\r\nRecipients: b@x.org, c@x.org\r\n", marker=marker)
    unwrapped = unwrap_journal_report(raw)
    assert unwrapped is not None and unwrapped.recipients == ("b@x.org", "c@x.org")


# idna and punycode are codecs but not charsets (idna even refuses errors="replace"), the
# escape codecs would turn "\\x41" into "A", base64 is not a text codec at all: a report
# naming any of them, or a name Python does not know, is read with the same fallbacks as
# every other text in the archive (indexer.extraction.charsets.decode_bytes).
@pytest.mark.parametrize("charset", ["idna", "punycode", "unicode-escape", "raw-unicode-escape", "base64", "undefined",
                                     "x-no-such-charset", '"utf-8*en"', "utf-7"])
def test_envelope_part_in_any_declared_charset_is_read_with_the_common_fallbacks(charset: str) -> None:
    raw = _synthetic_report(b"Sender: a@x.org\r\nSubject: caf\xe9 \\x41\r\nTo: b@x.org\r\nBcc: c@x.org\r\n", charset=charset)
    unwrapped = unwrap_journal_report(raw)
    assert unwrapped is not None
    assert (unwrapped.sender, unwrapped.recipients) == ("a@x.org", ("b@x.org", "c@x.org"))
