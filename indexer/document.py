"""Frozen values that flow from parsing to the search backends."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Address:
    """One mailbox from a header: display name (decoded) and lower-cased address."""

    name: str
    address: str

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] if "@" in self.address else ""

    def __str__(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


@dataclass(frozen=True)
class Attachment:
    """A non-body part: its name, declared type, decoded size and the text found in it."""

    filename: str
    content_type: str
    size: int
    text: str = ""
    # Why no text was taken, if none was: "too large", "zip bomb", "encrypted", ...
    skipped: str = ""


@dataclass(frozen=True)
class ParsedMessage:
    """Everything search needs from one raw message; built once by ``parse_message``."""

    subject: str = ""
    from_: tuple[Address, ...] = ()
    sender: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    date: datetime | None = None  # timezone-aware UTC, or None if absent/unparseable
    message_id: str = ""
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    list_id: str = ""
    body_text: str = ""  # text/plain parts, then HTML parts converted to text
    attachments: tuple[Attachment, ...] = ()
    defects: tuple[str, ...] = ()

    @property
    def participants(self) -> tuple[Address, ...]:
        return self.from_ + self.sender + self.to + self.cc + self.bcc


@dataclass(frozen=True)
class IndexDocument:
    """One message as the search backends store it: parsed fields plus catalogue facts."""

    id: int
    sha256: str
    date: datetime  # header Date, or the time received when Date is missing or absurd
    size: int
    subject: str
    from_: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    # Header Bcc plus envelope recipients that appear in no To/Cc header (RFC 5321 4.5.4.1
    # lets Bcc disappear from headers, so the envelope is the only trace of them).
    bcc: tuple[Address, ...]
    body: str
    attachment_text: str
    filenames: tuple[str, ...]
    has_attachment: bool
    mailboxes: tuple[str, ...]
    domains: tuple[str, ...]
    message_id: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)
