"""The SMTP envelope of one received message, as plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


@dataclass(frozen=True)
class Envelope:
    """What the transport said about a message, kept exactly as received.

    ``rcpt_to`` keeps every RCPT TO (and so every Bcc recipient) in the order given and
    with its original spelling; lower-casing happens only where scopes are computed.
    """

    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    client_address: str = ""
    helo: str = ""
    received_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
