"""Query AST nodes: frozen, backend-neutral, produced only by ``indexer.query.parser``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import Enum


class Field(str, Enum):
    """Searchable fields. ``TEXT`` is free text: subject, body, attachments, people, file names."""

    TEXT = "text"
    FROM = "from"
    TO = "to"
    CC = "cc"
    BCC = "bcc"
    PARTICIPANTS = "participants"
    SUBJECT = "subject"
    BODY = "body"
    ATTACHMENT = "attachment"  # text extracted from attachments
    FILENAME = "filename"
    MAILBOX = "mailbox"
    DOMAIN = "domain"
    MESSAGE_ID = "message-id"


@dataclass(frozen=True)
class Term:
    """One word, or one address/domain/id token, in a field."""

    field: Field
    text: str


@dataclass(frozen=True)
class Phrase:
    """Words that must appear adjacent and in order."""

    field: Field
    words: tuple[str, ...]


@dataclass(frozen=True)
class Prefix:
    """``prefix*``: any word that starts with ``prefix``."""

    field: Field
    prefix: str


@dataclass(frozen=True)
class Near:
    """``a NEAR/n b``: both words in the same field with at most ``distance`` words between, in either order."""

    field: Field
    left: str
    right: str
    distance: int


@dataclass(frozen=True)
class DateRange:
    """Message date within [start, end) in UTC days; either bound may be open.

    ``before:D`` is [-, D), ``after:D`` is [D+1, -), ``on:D`` is [D, D+1).
    """

    start: date | None
    end: date | None


class SizeOp(str, Enum):
    GREATER = ">"
    LESS = "<"


@dataclass(frozen=True)
class SizeCompare:
    """``size>N`` / ``size<N`` on the raw message size in bytes (N may end in K, M or G)."""

    op: SizeOp
    size: int


@dataclass(frozen=True)
class HasAttachment:
    """``has:attachment``."""


@dataclass(frozen=True)
class And:
    children: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    children: tuple["Node", ...]


@dataclass(frozen=True)
class Not:
    child: "Node"


@dataclass(frozen=True)
class MatchAll:
    """The empty query: everything in scope (useful with sorting by date)."""


Node = Term | Phrase | Prefix | Near | DateRange | SizeCompare | HasAttachment | And | Or | Not | MatchAll
