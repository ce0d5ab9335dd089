"""The catalogue's tables in SQLAlchemy Core: the one declaration of its schema, for every read and write."""

from __future__ import annotations

# Core rather than ORM classes: a short-lived process that only reads and audits
# (`postvault search`) queries them without importing and configuring the ORM, a large share
# of its start-up time, and there is one idiom for every row. Code that wants a transaction
# handle may still use a Session: it executes these statements as they are. The migrations
# build exactly this schema: tests/storage/test_migrations.py compares the two.
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for volume.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

# The longest mailbox the journal attributes (addresses.mailbox_key refuses
# longer ones), and so also the longest domain: mail carries domains far beyond RFC 1035's
# 255 octets, and a scope key is never truncated (two domains would share one scope).
ADDRESS_LENGTH = 320

# Text from mail goes in through storage.text, so that no engine refuses it: what is derived
# from the blob (the header summaries of ``messages``, the scope keys) as ``storable``; what
# exists only here exactly, as ``escaped`` (envelopes.source_detail, import_checkpoints.path)
# or as envelope text (the rest of ``envelopes``, escaped the same way at the SMTP edge).


def _message_id(*, primary_key: bool = False, index: bool | None = None) -> Column[int]:
    """The message a row belongs to; its rows go when the message is purged."""
    return Column("message_id", ForeignKey("messages.id", ondelete="CASCADE"), nullable=False,
                  primary_key=primary_key, index=index)


# One distinct raw message (by SHA-256). Header fields are derived and rebuildable.
messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("sha256", String(64), unique=True, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("first_received_at", DateTime(timezone=True), nullable=False, index=True),
    Column("source", String(32), nullable=False),  # smtp, journal-report, import
    Column("subject", Text, default="", nullable=False),
    Column("from_header", Text, default="", nullable=False),
    Column("to_header", Text, default="", nullable=False),
    Column("cc_header", Text, default="", nullable=False),
    Column("date_header", DateTime(timezone=True), nullable=True, index=True),
    Column("message_id_header", Text, default="", nullable=False),
    Column("in_reply_to", Text, default="", nullable=False),
    Column("references", Text, default="", nullable=False),
    Column("list_id", Text, default="", nullable=False),
    Column("header_defects", JSON, default=list, nullable=False),
    Column("parse_defects", JSON, nullable=True),  # filled by the indexer
    Column("indexed_at", DateTime(timezone=True), nullable=True),
)

# One arrival of a message: the same bytes may arrive more than once with other recipients.
envelopes = Table(
    "envelopes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _message_id(index=True),
    # SHA-256 of the envelope's canonical form: makes a retried delivery of the same
    # message with the same envelope (a lost 250) idempotent under concurrency.
    Column("fingerprint", String(64), nullable=False),
    Column("mail_from", Text, default="", nullable=False),
    Column("rcpt_to", JSON, default=list, nullable=False),
    Column("client_address", String(255), default="", nullable=False),
    Column("helo", Text, default="", nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("source", String(32), nullable=False),
    Column("source_detail", Text, default="", nullable=False),  # file path, listener, journal report id
    UniqueConstraint("message_id", "fingerprint", name="uq_envelope_per_message"),
)

# A mailbox a message belongs to: the basis of per-user search scopes.
message_mailboxes = Table(
    "message_mailboxes",
    metadata,
    _message_id(primary_key=True),
    Column("mailbox", String(ADDRESS_LENGTH), primary_key=True),
    Index("ix_message_mailboxes_mailbox", "mailbox"),
)

# A domain a message belongs to: the basis of per-domain search scopes.
message_domains = Table(
    "message_domains",
    metadata,
    _message_id(primary_key=True),
    Column("domain", String(ADDRESS_LENGTH), primary_key=True),
    Index("ix_message_domains_domain", "domain"),
)

# Messages stored but not yet (re)indexed. A row leaves only after the index commit.
index_outbox = Table(
    "index_outbox",
    metadata,
    _message_id(primary_key=True),
    Column("enqueued_at", DateTime(timezone=True), nullable=False, index=True),
    # Bumped each time the message is enqueued again (say, a new mailbox was attributed
    # while a worker was indexing it): a worker removes the row only if the generation it
    # indexed is still current, so no later change is dropped.
    Column("generation", Integer, default=1, nullable=False),
    Column("attempts", Integer, default=0, nullable=False),
    Column("last_error", Text, default="", nullable=False),
    # A worker leases rows; an expired lease means the worker died and the row is free again.
    Column("leased_until", DateTime(timezone=True), nullable=True),
)

# How far an import of one source got, so that a re-run resumes instead of restarting.
import_checkpoints = Table(
    "import_checkpoints",
    metadata,
    Column("source_key", String(64), primary_key=True),  # SHA-256 of path + identity
    Column("path", Text, nullable=False),
    Column("position", BigInteger, default=0, nullable=False),
    Column("finished", Boolean, default=False, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Append-only, hash-chained record of what people did to the archive (invariant 5).
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(320), nullable=False),
    Column("action", String(64), nullable=False, index=True),
    Column("detail", JSON, default=dict, nullable=False),
    Column("previous_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
)

# Archive settings of one hosted domain: how long its mail is kept, and whether S3 Object
# Lock makes that retention tamper-proof (WORM).
domain_policies = Table(
    "domain_policies",
    metadata,
    Column("domain", String(ADDRESS_LENGTH), primary_key=True),  # lower case, as in message_domains
    Column("retention_days", Integer, nullable=True),  # NULL: keep forever
    Column("object_lock_mode", String(16), nullable=True),  # NULL: no Object Lock
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("retention_days IS NULL OR retention_days > 0", name="ck_domain_policies_retention_days"),
    CheckConstraint(
        "object_lock_mode IS NULL OR object_lock_mode IN ('GOVERNANCE', 'COMPLIANCE')",
        name="ck_domain_policies_object_lock_mode",
    ),
    # A lock needs an end date: "keep forever" under WORM is a legal hold, not a lock.
    CheckConstraint("object_lock_mode IS NULL OR retention_days IS NOT NULL", name="ck_domain_policies_lock_needs_retention"),
)
