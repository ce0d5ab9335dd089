"""Key headers for the catalogue, read from the header block only (cheap, never raises)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32

from addresses import domain_of, mailbox_key
from indexer.document import Address
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
    # One pass over the header fields (Message.get and get_all each walk all of them), and
    # each address field parsed once for both its text and the scope's addresses.
    fields: dict[str, list[str]] = {}
    fetch = headers.policy.header_fetch_parse
    for name, value in headers.raw_items():
        key = name.lower()
        if key in _FIELDS:
            fields.setdefault(key, []).append(str(fetch(name, value)))
    addresses = {key: parse_addresses(fields[key])[0] for key in _ADDRESS_FIELDS if key in fields}
    return HeaderFacts(
        subject=_text(_first(fields, "subject")),
        from_header=_addresses_text(addresses.get("from")),
        to_header=_addresses_text(addresses.get("to")),
        cc_header=_addresses_text(addresses.get("cc")),
        date=parse_date(_first(fields, "date")),
        message_id=parse_message_id(_first(fields, "message-id")),
        in_reply_to=" ".join(parse_message_ids(_first(fields, "in-reply-to")))[:_MAX_FIELD],
        references=" ".join(parse_message_ids(_first(fields, "references")))[:_MAX_FIELD],
        list_id=parse_list_id(_first(fields, "list-id")),
        addresses=_all_addresses(addresses),
        defects=defects,
    )


# The address fields whose mailboxes join a message's scope, and every field read here.
_ADDRESS_FIELDS = ("from", "sender", "to", "cc", "bcc", "delivered-to")
_FIELDS = frozenset(_ADDRESS_FIELDS + ("subject", "date", "message-id", "in-reply-to", "references", "list-id"))


def _first(fields: dict[str, list[str]], key: str) -> str | None:
    values = fields.get(key)
    return values[0] if values else None


def header_block(raw: bytes) -> bytes:
    """The bytes up to the first empty line (RFC 5322 section 2.1): the parser never sees the body."""
    ends = [end for end in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if end >= 0]
    return raw[: min(ends) + 2] if ends else raw


def _text(value: object) -> str:
    if value is None:
        return ""
    text, _problems = decode_header(str(value))
    return " ".join(text.split())[:_MAX_FIELD]


def _addresses_text(addresses: tuple[Address, ...] | None) -> str:
    if not addresses:
        return ""
    return ", ".join(str(address) for address in addresses)[:_MAX_FIELD]


def _all_addresses(addresses: dict[str, tuple[Address, ...]]) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for parsed in addresses.values():
        for address in parsed:
            normalised = mailbox_key(address.address)
            if normalised:
                found[normalised] = None
    return tuple(found)
