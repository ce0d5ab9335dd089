"""Key headers for the catalogue, read from the header block only (cheap, never raises)."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import datetime, timezone
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32

_HEADER_PARSER = BytesHeaderParser(policy=compat32)
# Catalogue columns are for display and scoping; the full text is in the blob and index.
_MAX_FIELD = 4000


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
        headers = _HEADER_PARSER.parsebytes(raw)
    except Exception as error:  # the stdlib parser is lenient, but never trust it fully
        return HeaderFacts(defects=(f"header block unparseable: {error}",))
    defects = tuple(type(defect).__name__ for defect in headers.defects)
    return HeaderFacts(
        subject=_decoded(headers, "Subject"),
        from_header=_decoded(headers, "From"),
        to_header=_decoded_all(headers, "To"),
        cc_header=_decoded_all(headers, "Cc"),
        date=_date(headers.get("Date")),
        message_id=_message_id(headers.get("Message-ID")),
        in_reply_to=_plain(headers.get("In-Reply-To")),
        references=_plain(headers.get("References")),
        list_id=_decoded(headers, "List-Id"),
        addresses=_addresses(headers),
        defects=defects,
    )


def _plain(value: object) -> str:
    return " ".join(str(value).split())[:_MAX_FIELD] if value is not None else ""


def _decode_words(value: str) -> str:
    # RFC 2047 encoded-words; unknown charsets and broken encodings fall back to the raw text.
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _decoded(headers, name: str) -> str:  # type: ignore[no-untyped-def]
    value = headers.get(name)
    if value is None:
        return ""
    return " ".join(_decode_words(str(value)).split())[:_MAX_FIELD]


def _decoded_all(headers, name: str) -> str:  # type: ignore[no-untyped-def]
    values = headers.get_all(name) or []
    return ", ".join(" ".join(_decode_words(str(v)).split()) for v in values)[:_MAX_FIELD]


def _date(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:  # RFC 5322 3.3: "-0000" means UTC with unknown local zone
        parsed = parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None


def _message_id(value: object) -> str:
    text = _plain(value)
    return text.strip().strip("<>").strip()


def _addresses(headers) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    fields: list[str] = []
    for name in ("From", "Sender", "To", "Cc", "Bcc", "Delivered-To"):
        fields.extend(str(v) for v in headers.get_all(name) or [])
    found: list[str] = []
    try:
        pairs = email.utils.getaddresses(fields)
    except Exception:
        return ()
    for _name, address in pairs:
        normalised = normalise_address(address)
        if normalised and normalised not in found:
            found.append(normalised)
    return tuple(found)


def normalise_address(address: str) -> str:
    """Lower-cased addr-spec if it looks like one (local@domain), else empty."""
    address = address.strip().strip("<>").strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or " " in address or len(address) > 320:
        return ""
    return address


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]
