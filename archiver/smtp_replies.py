"""The one place where a refusal or a failure at the SMTP edge becomes a reply (RFC 5321, RFC 3463)."""

from __future__ import annotations

from archiver.journal import JournalError


class SmtpRefusalError(Exception):
    """Mail the listener will not take now; ``reply_for`` says what the client is told."""


class TooManyConnectionsError(SmtpRefusalError):
    """The listener, or this client, has as many sessions open as it is allowed."""


class TooMuchInFlightError(SmtpRefusalError):
    """Taking this message now would exceed the memory set aside for messages being received."""


class MessageTooLargeError(SmtpRefusalError):
    """The message is larger than the configured maximum."""


class TooManyRecipientsError(SmtpRefusalError):
    """One transaction named more recipients than the listener takes."""


class UntrustedClientError(SmtpRefusalError):
    """The client is neither on the journal allow list nor authenticated."""


def reply_for(error: BaseException) -> str:
    """The SMTP reply for a refusal or failure.

    Everything but a permanent property of the message or the client is transient (4yz),
    so that the sender queues and retries: RFC 5321 4.2.5 says a 4yz after DATA means
    the server has not taken responsibility for the message.
    """
    if isinstance(error, TooManyConnectionsError):
        # RFC 5321 3.8 and 4.2.3: 421 closes the channel; the client tries again later.
        return "421 4.7.0 Too many connections; try again later"
    if isinstance(error, TooMuchInFlightError):
        # RFC 3463 4.3.1 "mail system full": a transient resource shortage.
        return "451 4.3.1 Too much mail in progress; message not accepted, try again later"
    if isinstance(error, MessageTooLargeError):
        # RFC 5321 4.5.3.1.10 (552) and RFC 3463 5.3.4 "message too big for system".
        return "552 5.3.4 Message too big for this system"
    if isinstance(error, TooManyRecipientsError):
        # RFC 5321 4.5.3.1.10: 452 for recipients past the limit; the client sends them in another transaction.
        return "452 4.5.3 Too many recipients"
    if isinstance(error, UntrustedClientError):
        # RFC 4954 6: 530 5.7.0 when the server policy requires authentication.
        return "530 5.7.0 Authentication required"
    if isinstance(error, JournalError):
        # RFC 5321 4.2.3 451 "local error in processing"; RFC 3463 4.3.0 "other mail system status".
        return "451 4.3.0 Archive storage unavailable; message not accepted, try again later"
    return "451 4.3.0 Temporary failure while archiving; message not accepted, try again later"


__all__ = [
    "MessageTooLargeError",
    "SmtpRefusalError",
    "TooManyConnectionsError",
    "TooManyRecipientsError",
    "TooMuchInFlightError",
    "UntrustedClientError",
    "reply_for",
]
