"""SMTP journal listener: make each message durable, then answer (RFC 5321)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope as SmtpEnvelope, Session

from archiver.envelope import Envelope
from archiver.exchange_journal import is_journal_report, unwrap_journal_report
from archiver.journal import Arrival, Journal, JournalError, JournalReceipt
from storage.timeutil import utcnow

log = logging.getLogger(__name__)

# RFC 5321 4.5.3.1.8 asks servers to accept at least 100 recipients; far more than that
# on one transaction is abuse, and RFC 5321 4.5.3.1.10 says to answer 452 for the rest.
MAX_RECIPIENTS = 1000


class HasJournal(Protocol):
    journal: Journal


def arrival_for(raw: bytes, envelope: Envelope) -> Arrival:
    """What to archive for the bytes and envelope one SMTP transaction delivered.

    An Exchange / Microsoft 365 envelope journal report stands for its attached original:
    the original is archived with the report's envelope sender and recipients (Bcc and
    expanded groups included), and the report's own Message-ID is kept as provenance.
    The report bytes themselves are not archived a second time.
    """
    if not is_journal_report(raw):
        return Arrival(raw=raw, envelope=envelope, source="smtp")
    unwrapped = unwrap_journal_report(raw)
    if unwrapped is None:
        # Invariant 4: a report we cannot unwrap is kept byte-exact, never refused.
        log.warning("journal report from %s has no usable attached original; archiving it as received", envelope.client_address)
        return Arrival(raw=raw, envelope=envelope, source="smtp",
                       source_detail="malformed journal report: no attached original message; archived as received")
    report_envelope = Envelope(
        mail_from=unwrapped.sender,
        rcpt_to=unwrapped.recipients,
        client_address=envelope.client_address,
        helo=envelope.helo,
        received_at=envelope.received_at,
    )
    return Arrival(raw=unwrapped.original, envelope=report_envelope, source="journal-report",
                   source_detail=f"journal report {unwrapped.report_message_id}".strip())


def reply_for_failure(error: BaseException) -> str:
    """The one place a failure becomes an SMTP reply: always transient, so the sender retries.

    RFC 5321 4.2.5: once DATA is in, a 4yz reply means the server has not taken
    responsibility and the client must try again later; 451 is "local error in
    processing" and 4.3.0 (RFC 3463) "other or undefined mail system status".
    """
    if isinstance(error, JournalError):
        return "451 4.3.0 Archive storage unavailable; message not accepted, try again later"
    return "451 4.3.0 Temporary failure while archiving; message not accepted, try again later"


class JournalHandler:
    """aiosmtpd handler: records every RCPT exactly, journals on DATA, answers 250 only when durable."""

    def __init__(self, journal: Journal, executor: ThreadPoolExecutor | None = None,
                 notify_indexer: Callable[[int], None] | None = None) -> None:
        self._journal = journal
        self._executor = executor
        self._notify_indexer = notify_indexer

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        # Kept as given: the spelling of a Bcc recipient is evidence, not something to tidy.
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        facts = Envelope(
            mail_from=envelope.mail_from or "",
            rcpt_to=tuple(envelope.rcpt_tos),
            client_address=_client_address(session.peer),
            helo=session.host_name or "",
            received_at=utcnow(),
        )
        # original_content is the DATA payload with dot-stuffing removed and nothing else
        # touched (decode_data=False), i.e. exactly the bytes the client sent.
        raw = envelope.original_content or b""
        loop = asyncio.get_running_loop()
        try:
            # Unwrapping and journaling (fsync, SQL commit) run off the event loop so that
            # one slow disk does not stall every other connection.
            receipt = await loop.run_in_executor(self._executor, self._archive, raw, facts)
        except Exception as error:
            log.error("not archived (from %s, %d bytes, %d recipients): %s",
                      facts.client_address, len(raw), len(facts.rcpt_to), error, exc_info=not isinstance(error, JournalError))
            return reply_for_failure(error)
        return f"250 2.0.0 Ok: archived {receipt.sha256[:16]}"

    def _archive(self, raw: bytes, facts: Envelope) -> JournalReceipt:
        receipt = self._journal.journal(arrival_for(raw, facts))
        if self._notify_indexer is not None:
            try:
                self._notify_indexer(1)
            except Exception:  # the message is durable: a failed wake-up must not become a 451
                log.exception("could not notify the indexer; the outbox sweep will find the message")
        return receipt


def _client_address(peer: Any) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


class _Controller(Controller):
    """aiosmtpd's threaded controller, able to bind port 0 (tests) and report the real port."""

    def _trigger_server(self) -> None:
        if self.server is not None and self.server.sockets:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpListener:
    """The journal listener: host, port, size limit and greeting name come from settings."""

    def __init__(self, archive: HasJournal, settings: Any, *, workers: int = 4,
                 notify_indexer: Callable[[int], None] | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="smtp-journal")
        self._controller = _Controller(
            JournalHandler(archive.journal, self._executor, notify_indexer),
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            server_hostname=settings.smtp_hostname,
            # RFC 1870: advertised as SIZE; larger messages get 552 (RFC 5321 4.5.3.1.10).
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,  # RFC 6531: internationalised addresses are archived as sent
            decode_data=False,  # keep bytes; also makes aiosmtpd announce 8BITMIME (RFC 6152)
        )

    @property
    def host(self) -> str:
        return self._controller.hostname

    @property
    def port(self) -> int:
        return self._controller.port

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
        # Let in-flight journal writes finish: a message being fsynced must not be cut short.
        self._executor.shutdown(wait=True)

    def __enter__(self) -> SmtpListener:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


__all__ = ["JournalHandler", "SmtpListener", "arrival_for", "reply_for_failure"]
