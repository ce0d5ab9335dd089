"""The SMTP envelope of one received message, as plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

from storage.text import escaped, unescaped


@dataclass(frozen=True)
class Envelope:
    """What the transport said about a message, kept exactly as received.

    ``rcpt_to`` keeps every RCPT TO (and so every Bcc recipient) in the order given and
    with its original spelling; lower-casing happens only where scopes are computed.
    ``mail_from``, ``rcpt_to`` and ``helo`` are envelope text (see ``envelope_text``):
    storable in any catalogue, and ``envelope_bytes`` gives back the bytes the client sent.
    """

    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    client_address: str = ""
    helo: str = ""
    received_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


# Envelope text is the client's bytes read as UTF-8 (surrogateescape for the rest, PEP 383)
# in the catalogue's reversible form (storage.text.escaped): bytes that are not UTF-8 (old
# MTAs send Latin-1 in HELO and MAIL FROM; RFC 6531 allows only UTF-8, but Postfix accepts
# them) and NUL (PostgreSQL text refuses it) are written \xHH, and a backslash is doubled.


def envelope_text(value: bytes | str) -> str:
    """Envelope text for the bytes a client sent (or for a str decoded with surrogateescape,
    as aiosmtpd hands over command arguments)."""
    return escaped(value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value)


def envelope_str(text: str) -> str:
    """Envelope text as Python reads the client's bytes: UTF-8, surrogateescape for the rest (PEP 383).

    The form to compare addresses in, as header text is: an escape's backslash must never
    be taken for an RFC 5322 quoted-pair (``caf\\xe9@x`` is not the mailbox cafxe9@x).
    """
    return unescaped(text)


def envelope_bytes(text: str) -> bytes:
    """The exact bytes behind a piece of envelope text: the inverse of ``envelope_text``."""
    return unescaped(text).encode("utf-8", "surrogateescape")


__all__ = ["Envelope", "envelope_bytes", "envelope_str", "envelope_text"]
