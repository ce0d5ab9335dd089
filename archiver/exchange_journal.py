"""Exchange / Microsoft 365 envelope journal reports: find the original message and its real recipients."""

from __future__ import annotations

import base64
import binascii
import email.utils
import quopri
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from indexer.extraction.charsets import decode_bytes

# A journal report (MS-XJRNL; "Understanding Journal Reports", Exchange 2007-2019 and
# Exchange Online) is a multipart/mixed message marked by an X-MS-Journal-Report header
# (usually with an empty value). Its first text/plain part is the envelope, one field per
# line, written by the journaling agent:
#
#   Sender: alice@contoso.com
#   On-Behalf-Of: boss@contoso.com            (only when Sender and From differ)
#   Subject: ...
#   Message-Id: <...>
#   To: bob@contoso.com                        (To/Cc/Bcc: addressing known to Exchange)
#   Cc: fwd@contoso.com, Forwarded: carol@contoso.com
#   Bcc: member@contoso.com, Expanded: dl@contoso.com
#   Recipient: dave@fabrikam.com               (addressing unknown, e.g. mail from the internet)
#
# The original message is attached, unaltered, as a message/rfc822 part. Exchange 2003
# marked its reports with "Content-Identifier: ExJournalReport" instead (Exchange's own
# CheckJournalReportVersion accepts both), so that marker is honoured too.

_HEADER_PARSER = BytesHeaderParser(policy=compat32)
_RECIPIENT_FIELDS = frozenset({"to", "cc", "bcc", "recipient", "recipients"})
_REDIRECTIONS = frozenset({"expanded", "forwarded"})
_MARKER = re.compile(rb"(?im)^(x-ms-journal-report[ \t]*:|content-identifi?er[ \t]*:[ \t]*exjournalreport)")
_MAX_DEPTH = 4  # the original sits at the top level; a wrapper or two is tolerated


@dataclass(frozen=True)
class UnwrappedJournal:
    """What a journal report says: the original's exact bytes and who it was really sent to."""

    original: bytes
    sender: str
    recipients: tuple[str, ...]  # To, Cc, Bcc, Recipient, plus Expanded/Forwarded sources; first spelling kept
    on_behalf_of: str = ""
    original_message_id: str = ""
    report_message_id: str = ""


def is_journal_report(raw: bytes) -> bool:
    """True if the top-level header block carries a journal-report marker."""
    header, _ = _split_head(raw)
    return _MARKER.search(header) is not None


def unwrap_journal_report(raw: bytes) -> UnwrappedJournal | None:
    """The original message of a journal report, or None if ``raw`` is not a usable report.

    None covers both "not a report" and "a report without an attached original" (or with
    one that cannot be decoded); callers tell them apart with ``is_journal_report`` and
    archive the bytes as an ordinary message.
    """
    header_bytes, body_start = _split_head(raw)
    if _MARKER.search(header_bytes) is None:
        return None
    headers = _HEADER_PARSER.parsebytes(header_bytes)
    envelope_text: str | None = None
    original: bytes | None = None
    for part_headers, start, end in _walk_parts(raw, headers, body_start, end=len(raw), depth=0):
        content_type = part_headers.get_content_type()
        if content_type == "text/plain" and envelope_text is None:
            envelope_text = _decoded_text(part_headers, raw[start:end])
        elif content_type == "message/rfc822":
            original = _transfer_decoded(part_headers, raw[start:end])
            break
    if not original:
        return None
    fields = _envelope_fields(envelope_text or "")
    return UnwrappedJournal(
        original=original,
        sender=fields.sender,
        recipients=fields.recipients,
        on_behalf_of=fields.on_behalf_of,
        original_message_id=fields.message_id,
        report_message_id=" ".join(str(headers.get("Message-ID", "")).split()),
    )


@dataclass(frozen=True)
class _EnvelopeFields:
    sender: str
    on_behalf_of: str
    message_id: str
    recipients: tuple[str, ...]


def _envelope_fields(text: str) -> _EnvelopeFields:
    sender = on_behalf_of = message_id = ""
    recipients: dict[str, str] = {}  # lower-cased -> first spelling, in order
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if not colon:
            continue
        name = name.strip().lower()
        value = value.strip()
        if name == "sender" and not sender:
            sender = _address(value)
        elif name == "on-behalf-of" and not on_behalf_of:
            on_behalf_of = _address(value)
        elif name == "message-id" and not message_id:
            message_id = value
        elif name in _RECIPIENT_FIELDS:
            for address in _recipient_addresses(value):
                recipients.setdefault(address.lower(), address)
    return _EnvelopeFields(sender, on_behalf_of, message_id, tuple(recipients.values()))


def _recipient_addresses(value: str) -> list[str]:
    # "member@x, Expanded: dl@x" or "fwd@x, Forwarded: orig@x": the redirection source is
    # a recipient too (the group or mailbox the sender actually addressed). Exchange 2003
    # style "Recipients: a@x, b@y" lists several addresses on one line.
    found = []
    for segment in value.split(","):
        label, colon, rest = segment.partition(":")
        if colon and label.strip().lower() in _REDIRECTIONS:
            segment = rest
        address = _address(segment)
        if address:
            found.append(address)
    return found


def _address(text: str) -> str:
    """The SMTP address in ``text`` exactly as spelled, or "" ("Unspecified Address", X.500 DNs)."""
    _name, address = email.utils.parseaddr(text.strip())
    address = address.strip()
    local, at, domain = address.rpartition("@")
    return address if at and local and domain and " " not in address else ""


def _split_head(raw: bytes, start: int = 0, end: int | None = None) -> tuple[bytes, int]:
    """Header bytes of the entity at raw[start:end] and where its body starts (RFC 5322 2.1)."""
    end = len(raw) if end is None else end
    position = start
    while position < end:
        newline = raw.find(b"\n", position, end)
        if newline == -1:
            return raw[start:end], end
        line = raw[position : newline + 1]
        if line in (b"\n", b"\r\n"):
            return raw[start:position], newline + 1
        position = newline + 1
    return raw[start:end], end


def _walk_parts(raw: bytes, headers: Message, body_start: int, *, end: int, depth: int):  # type: ignore[no-untyped-def]
    """Yield (headers, start, end) of each leaf part, depth first, without copying or re-serialising."""
    boundary = headers.get_param("boundary") if headers.get_content_maintype() == "multipart" else None
    if not isinstance(boundary, str) or not boundary or depth > _MAX_DEPTH:
        if depth > 0:
            yield headers, body_start, end
        return
    for part_start, part_end in _multipart_spans(raw, boundary.encode("latin-1", "replace"), body_start, end):
        part_header, part_body = _split_head(raw, part_start, part_end)
        part_headers = _HEADER_PARSER.parsebytes(part_header)
        yield from _walk_parts(raw, part_headers, part_body, end=part_end, depth=depth + 1)


def _multipart_spans(raw: bytes, boundary: bytes, start: int, end: int) -> list[tuple[int, int]]:
    # RFC 2046 5.1.1: a delimiter is "--boundary" at the start of a line, optionally
    # followed by whitespace; the line break before it belongs to the delimiter, not to
    # the preceding part. "--boundary--" closes the multipart.
    pattern = re.compile(rb"^--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r?\n|\Z)", re.MULTILINE)
    spans: list[tuple[int, int]] = []
    part_start: int | None = None
    for match in pattern.finditer(raw, start, end):
        if part_start is not None:
            part_end = match.start()
            if raw[part_end - 2 : part_end] == b"\r\n":
                part_end -= 2
            elif raw[part_end - 1 : part_end] == b"\n":
                part_end -= 1
            spans.append((part_start, max(part_start, part_end)))
        if match.group(1):  # close delimiter
            return spans
        part_start = match.end()
    if part_start is not None and part_start < end:
        spans.append((part_start, end))  # unterminated multipart: the last part runs to the end
    return spans


def _transfer_decoded(headers: Message, body: bytes) -> bytes | None:
    # RFC 2046 5.2.1 allows only 7bit, 8bit or binary for message/rfc822, but some
    # gateways base64- or qp-encode it anyway; the original is what lies beneath.
    encoding = str(headers.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64":
        try:
            return base64.b64decode(re.sub(rb"\s+", b"", body), validate=True)
        except (binascii.Error, ValueError):
            return None
    if encoding == "quoted-printable":
        return quopri.decodestring(body)
    return body


def _decoded_text(headers: Message, body: bytes) -> str:
    # The same charset rules as header and body text in the index: a label that is unknown
    # or names a codec that is no charset (idna, unicode-escape) falls back, never raises.
    text, _problem = decode_bytes(_transfer_decoded(headers, body) or b"", headers.get_content_charset())
    return text


__all__ = ["UnwrappedJournal", "is_journal_report", "unwrap_journal_report"]
