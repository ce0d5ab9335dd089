"""The SQL catalogue: every archived message, its envelopes, its scope keys, the index outbox, domain policies."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for volume.
Id = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Message(Base):
    """One distinct raw message (by SHA-256). Header fields are derived and rebuildable."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    first_received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    source: Mapped[str] = mapped_column(String(32), nullable=False)  # smtp, journal-report, import
    subject: Mapped[str] = mapped_column(Text, default="", nullable=False)
    from_header: Mapped[str] = mapped_column(Text, default="", nullable=False)
    to_header: Mapped[str] = mapped_column(Text, default="", nullable=False)
    cc_header: Mapped[str] = mapped_column(Text, default="", nullable=False)
    date_header: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True, index=True)
    message_id_header: Mapped[str] = mapped_column(Text, default="", nullable=False)
    in_reply_to: Mapped[str] = mapped_column(Text, default="", nullable=False)
    references: Mapped[str] = mapped_column(Text, default="", nullable=False)
    list_id: Mapped[str] = mapped_column(Text, default="", nullable=False)
    header_defects: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    parse_defects: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # filled by the indexer
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    envelopes: Mapped[list["Envelope"]] = relationship(back_populates="message", cascade="all, delete-orphan")


class Envelope(Base):
    """One arrival of a message: the same bytes may arrive more than once with other recipients."""

    __tablename__ = "envelopes"
    __table_args__ = (UniqueConstraint("message_id", "fingerprint", name="uq_envelope_per_message"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True)
    # SHA-256 of the envelope's canonical form: makes a retried delivery of the same
    # message with the same envelope (a lost 250) idempotent under concurrency.
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    mail_from: Mapped[str] = mapped_column(Text, default="", nullable=False)
    rcpt_to: Mapped[list[str]] = mapped_column(JSON, default=list, nullable=False)
    client_address: Mapped[str] = mapped_column(String(255), default="", nullable=False)
    helo: Mapped[str] = mapped_column(Text, default="", nullable=False)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    source: Mapped[str] = mapped_column(String(32), nullable=False)
    source_detail: Mapped[str] = mapped_column(Text, default="", nullable=False)  # file path, listener, journal report id

    message: Mapped[Message] = relationship(back_populates="envelopes")


class MessageMailbox(Base):
    """A mailbox a message belongs to: the basis of per-user search scopes."""

    __tablename__ = "message_mailboxes"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(320), primary_key=True)

    __table_args__ = (Index("ix_message_mailboxes_mailbox", "mailbox"),)


class MessageDomain(Base):
    """A domain a message belongs to: the basis of per-domain search scopes."""

    __tablename__ = "message_domains"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    domain: Mapped[str] = mapped_column(String(255), primary_key=True)

    __table_args__ = (Index("ix_message_domains_domain", "domain"),)


class IndexOutbox(Base):
    """Messages stored but not yet (re)indexed. A row leaves only after the index commit."""

    __tablename__ = "index_outbox"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    # Bumped each time the message is enqueued again (say, a new mailbox was attributed
    # while a worker was indexing it): a worker removes the row only if the generation it
    # indexed is still current, so no later change is dropped.
    generation: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    last_error: Mapped[str] = mapped_column(Text, default="", nullable=False)
    # A worker leases rows; an expired lease means the worker died and the row is free again.
    leased_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ImportCheckpoint(Base):
    """How far an import of one source got, so that a re-run resumes instead of restarting."""

    __tablename__ = "import_checkpoints"

    source_key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of path + identity
    path: Mapped[str] = mapped_column(Text, nullable=False)
    position: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    finished: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class AuditEvent(Base):
    """Append-only, hash-chained record of what people did to the archive (invariant 5)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    actor: Mapped[str] = mapped_column(String(320), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict, nullable=False)
    previous_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)


class DomainPolicy(Base):
    """Archive settings of one hosted domain: how long its mail is kept, and whether
    S3 Object Lock makes that retention tamper-proof (WORM)."""

    __tablename__ = "domain_policies"
    __table_args__ = (
        CheckConstraint("retention_days IS NULL OR retention_days > 0", name="ck_domain_policies_retention_days"),
        CheckConstraint(
            "object_lock_mode IS NULL OR object_lock_mode IN ('GOVERNANCE', 'COMPLIANCE')",
            name="ck_domain_policies_object_lock_mode",
        ),
        # A lock needs an end date: "keep forever" under WORM is a legal hold, not a lock.
        CheckConstraint(
            "object_lock_mode IS NULL OR retention_days IS NOT NULL", name="ck_domain_policies_lock_needs_retention"
        ),
    )

    domain: Mapped[str] = mapped_column(String(255), primary_key=True)  # lower case, as in message_domains
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)  # NULL: keep forever
    object_lock_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)  # NULL: no Object Lock
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
