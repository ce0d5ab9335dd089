"""Key headers for the catalogue, read from the header block only (cheap, never raises)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

from addresses import domain_of, mailbox_key
from indexer.extraction.encoded_words import decode_header
from indexer.extraction.header_fields import parse_addresses, parse_date, parse_list_id, parse_message_id, parse_message_ids

_HEADER_PARSER = BytesHeaderParser(policy=compat32)
# Catalogue columns are for display and scoping; the full text is in the blob and index.
_MAX_FIELD = 4000


# The archiver's callers know the one normaliser (``addresses``) by these names.
normalise_address = mailbox_key
__all__ = ["HeaderFacts", "domain_of", "header_block", "normalise_address", "read_header_facts"]


@dataclass(frozen=True)
class HeaderFacts:
    subject: str = ""
    from_header: str = ""
    to_header: str = ""
    cc_header: str = ""
    date: datetime | None = None
    message_id: str = ""
    in_reply_to: str = ""
    references: str = ""
    list_id: str = ""
    addresses: tuple[str, ...] = ()  # lower-cased From, Sender, To, Cc, Bcc, Delivered-To addresses
    defects: tuple[str, ...] = ()


def read_header_facts(raw: bytes) -> HeaderFacts:
    try:
        headers = _HEADER_PARSER.parsebytes(header_block(raw))
    except Exception as error:  # the stdlib parser is lenient, but never trust it fully
        return HeaderFacts(defects=(f"header block unparseable: {error}",))
    defects = tuple(type(defect).__name__ for defect in headers.defects)
    return HeaderFacts(
        subject=_text(headers.get("Subject")),
        from_header=_addresses_text(headers, "From"),
        to_header=_addresses_text(headers, "To"),
        cc_header=_addresses_text(headers, "Cc"),
        date=parse_date(_str(headers.get("Date"))),
        message_id=parse_message_id(_str(headers.get("Message-ID"))),
        in_reply_to=" ".join(parse_message_ids(_str(headers.get("In-Reply-To"))))[:_MAX_FIELD],
        references=" ".join(parse_message_ids(_str(headers.get("References"))))[:_MAX_FIELD],
        list_id=parse_list_id(_str(headers.get("List-Id"))),
        addresses=_all_addresses(headers),
        defects=defects,
    )


def header_block(raw: bytes) -> bytes:
    """The bytes up to the first empty line (RFC 5322 section 2.1): the parser never sees the body."""
    ends = [end for end in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if end >= 0]
    return raw[: min(ends) + 2] if ends else raw


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def _text(value: object) -> str:
    if value is None:
        return ""
    text, _problems = decode_header(str(value))
    return " ".join(text.split())[:_MAX_FIELD]


def _values(headers, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(value) for value in headers.get_all(name) or []]


def _addresses_text(headers, name: str) -> str:  # type: ignore[no-untyped-def]
    values = _values(headers, name)
    if not values:
        return ""
    addresses, _problems = parse_addresses(values)
    return ", ".join(str(address) for address in addresses)[:_MAX_FIELD]


def _all_addresses(headers) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    found: dict[str, None] = {}
    for name in ("From", "Sender", "To", "Cc", "Bcc", "Delivered-To"):
        values = _values(headers, name)
        if not values:
            continue
        addresses, _problems = parse_addresses(values)
        for address in addresses:
            normalised = mailbox_key(address.address)
            if normalised:
                found[normalised] = None
    return tuple(found)
