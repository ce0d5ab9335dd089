"""Typed values from header fields: mailboxes, message ids, dates, list ids."""

from __future__ import annotations

import inspect
import re
from datetime import datetime, timezone
from email.utils import getaddresses, parsedate_to_datetime
from functools import partial

from indexer.document import Address
from indexer.extraction.encoded_words import decode_header, decode_raw_text, unfold

# Python 3.11.10+/3.12.6+ made getaddresses strict (CVE-2023-27043): a malformed list
# becomes one empty pair. An archive wants every mailbox it can recover, so ask for the
# lenient parser where the choice exists.
_getaddresses = (
    partial(getaddresses, strict=False)
    if "strict" in inspect.signature(getaddresses).parameters
    else getaddresses
)
_MSG_ID = re.compile(r"<([^<>\s]+)>")
# An address header longer than this is cut before parsing: the stdlib address parser
# walks it character by character in Python. 256 KiB is several thousand recipients.
MAX_ADDRESS_HEADER_CHARS = 256 * 1024


def parse_addresses(values: list[str]) -> tuple[tuple[Address, ...], tuple[str, ...]]:
    """Mailboxes from all occurrences of one address header (RFC 5322 section 3.4).

    Group names ("undisclosed-recipients:;") are dropped, their members kept; a bare
    word without "@" is kept only as a local mailbox ("root"), never as a name.
    """
    problems: list[str] = []
    joined = ", ".join(unfold(value) for value in values if value)
    if len(joined) > MAX_ADDRESS_HEADER_CHARS:
        problems.append(f"address header of {len(joined)} characters truncated")
        joined = joined[:MAX_ADDRESS_HEADER_CHARS].rpartition(",")[0]
    mailboxes: list[Address] = []
    seen: set[tuple[str, str]] = set()
    for name, address in _getaddresses([joined]):
        address = decode_raw_text(address.strip().strip("<>")).lower()
        if not address or " " in address:
            continue
        display, name_problems = decode_header(name) if name else ("", ())
        problems.extend(name_problems)
        display = " ".join(display.split())
        if (display, address) not in seen:
            seen.add((display, address))
            mailboxes.append(Address(name=display, address=address))
    return tuple(mailboxes), tuple(problems)


def parse_message_ids(value: str | None) -> tuple[str, ...]:
    """Ids from In-Reply-To or References (RFC 5322 section 3.6.4), without brackets."""
    if not value:
        return ()
    text = unfold(value)
    ids = _MSG_ID.findall(text)
    if not ids:
        # Brackets missing altogether: keep anything that looks like local@domain.
        ids = [token.strip("<>,;") for token in text.split() if "@" in token]
    return tuple(dict.fromkeys(decode_raw_text(each) for each in ids if each))


def parse_message_id(value: str | None) -> str:
    """The one id of a Message-ID header, without brackets; garbage is kept trimmed."""
    if not value:
        return ""
    text = unfold(value).strip()
    match = _MSG_ID.search(text)
    return decode_raw_text(match.group(1) if match else text.strip("<>").strip())


def parse_list_id(value: str | None) -> str:
    """The list-id of a List-Id header (RFC 2919 section 3): the part in angle brackets."""
    if not value:
        return ""
    text = unfold(value).strip()
    match = _MSG_ID.search(text)
    return decode_raw_text(match.group(1) if match else text).lower()


def parse_date(value: str | None) -> datetime | None:
    """An RFC 5322 date as timezone-aware UTC; ``None`` when absent or unparseable.

    "-0000" (RFC 5322 section 3.3: zone unknown) and zone-less dates are taken as UTC.
    """
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(unfold(value).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    try:
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None
