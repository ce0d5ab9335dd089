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
# The common shapes of a mailbox, matched in C: ["quoted" | plain words] <local@domain>,
# or a bare local@domain. Anything else (comments, groups, quoted local parts, route
# addresses, garbage) goes to the stdlib parser, which walks characters in Python and
# was a quarter of all parsing time on the SpamAssassin corpus.
_ADDR_SPEC = r"[^<>\s\"(),;:\\@\[\]]+@[^<>\s\"(),;:\\@]+"
_SIMPLE_MAILBOX = re.compile(
    r"[ \t]*(?:"
    r"(?:\"((?:[^\"\\]|\\.)*)\"|([^\"<>(),;:\\@\[\]]*?))[ \t]*<[ \t]*(" + _ADDR_SPEC + r")[ \t]*>"
    r"|(" + _ADDR_SPEC + r"))[ \t]*(?:,|$)"
)
_QUOTED_PAIR = re.compile(r"\\(.)")
_BARE_ADDRESS = re.compile(_ADDR_SPEC)
# An address header longer than this that needs the stdlib parser is cut first: that
# parser walks characters in Python. 256 KiB is several thousand recipients.
MAX_ADDRESS_HEADER_CHARS = 256 * 1024


def parse_addresses(values: list[str]) -> tuple[tuple[Address, ...], tuple[str, ...]]:
    """Mailboxes from all occurrences of one address header (RFC 5322 section 3.4).

    Group names ("undisclosed-recipients:;") are dropped, their members kept. A header
    with no "@" at all ("From: Whomever") holds names, not addresses: they are kept as
    mailboxes with an empty address so that they stay searchable.
    """
    problems: list[str] = []
    joined = ", ".join(unfold(value) for value in values if value)
    if "@" not in joined and "<" not in joined:
        return _names_only(joined[:MAX_ADDRESS_HEADER_CHARS]), ()
    pairs = _simple_mailboxes(joined)
    if pairs is None:
        if len(joined) > MAX_ADDRESS_HEADER_CHARS:
            problems.append(f"address header of {len(joined)} characters truncated")
            joined = joined[:MAX_ADDRESS_HEADER_CHARS].rpartition(",")[0]
        try:
            pairs = _getaddresses([joined])
        except RecursionError:
            # Every ":" opens a group to the stdlib parser, recursively: a long enough
            # run of them ("10:08:28" in 3000 encoded-words) exhausts the stack.
            problems.append("address header too deeply grouped; bare addresses kept")
            pairs = [("", address) for address in _BARE_ADDRESS.findall(joined)]
    mailboxes: list[Address] = []
    seen: set[tuple[str, str]] = set()
    for name, address in pairs:
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


def _simple_mailboxes(value: str) -> list[tuple[str, str]] | None:
    """(name, address) pairs if every item has a common shape, else None."""
    pairs: list[tuple[str, str]] = []
    position, end = 0, len(value.rstrip())
    while position < end:
        match = _SIMPLE_MAILBOX.match(value, position)
        if match is None:
            return None
        quoted, plain, bracketed, bare = match.groups()
        if bare is not None:
            pairs.append(("", bare))
        else:
            name = _QUOTED_PAIR.sub(r"\1", quoted) if quoted is not None else plain
            pairs.append((name, bracketed))
        position = match.end()
    return pairs


def _names_only(value: str) -> tuple[Address, ...]:
    names: list[Address] = []
    for piece in value.split(","):
        group, colon, members = piece.partition(":")
        # "undisclosed-recipients:;" is an empty group: its name is nobody.
        text = (members if colon else group).strip().rstrip(";").strip().strip('"')
        if text:
            names.append(Address(name=" ".join(decode_header(text)[0].split()), address=""))
    return tuple(dict.fromkeys(names))


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
