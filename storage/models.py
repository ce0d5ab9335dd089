"""The SQL catalogue: every archived message, its envelopes, its scope keys, the index outbox, domain policies."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import DeclarativeBase, Mapped, relationship

from storage import tables

# The columns, constraints and indexes are declared once, in storage.tables; each class
# here maps one of those tables and annotates its columns for type checkers.


class Base(DeclarativeBase):
    metadata = tables.metadata


class Message(Base):
    """One distinct raw message (by SHA-256). Header fields are derived and rebuildable."""

    __table__ = tables.messages

    id: Mapped[int]
    sha256: Mapped[str]
    size: Mapped[int]
    first_received_at: Mapped[datetime]
    source: Mapped[str]
    subject: Mapped[str]
    from_header: Mapped[str]
    to_header: Mapped[str]
    cc_header: Mapped[str]
    date_header: Mapped[datetime | None]
    message_id_header: Mapped[str]
    in_reply_to: Mapped[str]
    references: Mapped[str]
    list_id: Mapped[str]
    header_defects: Mapped[list[str]]
    parse_defects: Mapped[list[str] | None]
    indexed_at: Mapped[datetime | None]

    envelopes: Mapped[list["Envelope"]] = relationship(back_populates="message", cascade="all, delete-orphan")


class Envelope(Base):
    """One arrival of a message: the same bytes may arrive more than once with other recipients."""

    __table__ = tables.envelopes

    id: Mapped[int]
    message_id: Mapped[int]
    fingerprint: Mapped[str]
    mail_from: Mapped[str]
    rcpt_to: Mapped[list[str]]
    client_address: Mapped[str]
    helo: Mapped[str]
    received_at: Mapped[datetime]
    source: Mapped[str]
    source_detail: Mapped[str]

    message: Mapped[Message] = relationship(back_populates="envelopes")


class MessageMailbox(Base):
    """A mailbox a message belongs to: the basis of per-user search scopes."""

    __table__ = tables.message_mailboxes

    message_id: Mapped[int]
    mailbox: Mapped[str]


class MessageDomain(Base):
    """A domain a message belongs to: the basis of per-domain search scopes."""

    __table__ = tables.message_domains

    message_id: Mapped[int]
    domain: Mapped[str]


class IndexOutbox(Base):
    """Messages stored but not yet (re)indexed. A row leaves only after the index commit."""

    __table__ = tables.index_outbox

    message_id: Mapped[int]
    enqueued_at: Mapped[datetime]
    generation: Mapped[int]
    attempts: Mapped[int]
    last_error: Mapped[str]
    leased_until: Mapped[datetime | None]


class ImportCheckpoint(Base):
    """How far an import of one source got, so that a re-run resumes instead of restarting."""

    __table__ = tables.import_checkpoints

    source_key: Mapped[str]
    path: Mapped[str]
    position: Mapped[int]
    finished: Mapped[bool]
    updated_at: Mapped[datetime]


class AuditEvent(Base):
    """Append-only, hash-chained record of what people did to the archive (invariant 5)."""

    __table__ = tables.audit_events

    id: Mapped[int]
    at: Mapped[datetime]
    actor: Mapped[str]
    action: Mapped[str]
    detail: Mapped[dict]
    previous_hash: Mapped[str]
    hash: Mapped[str]


class DomainPolicy(Base):
    """Archive settings of one hosted domain: how long its mail is kept, and whether
    S3 Object Lock makes that retention tamper-proof (WORM)."""

    __table__ = tables.domain_policies

    domain: Mapped[str]
    retention_days: Mapped[int | None]
    object_lock_mode: Mapped[str | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
