"""SMTP journal listener: make each message durable, then answer (RFC 5321)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope as SmtpEnvelope, Session

from archiver.envelope import Envelope, envelope_text
from archiver.exchange_journal import is_journal_report, unwrap_journal_report
from archiver.journal import Arrival, Journal, JournalError, JournalReceipt
from archiver.journal_clients import AccountAuthenticator, JournalAccounts, JournalClients
from archiver.smtp_limits import ConnectionGate, InFlightBytes
from archiver.smtp_replies import TooManyRecipientsError, UntrustedClientError, reply_for
from archiver.smtp_session import JournalSMTP, client_address
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
        mail_from=envelope_text(unwrapped.sender),
        rcpt_to=tuple(envelope_text(recipient) for recipient in unwrapped.recipients),
        client_address=envelope.client_address,
        helo=envelope.helo,
        received_at=envelope.received_at,
    )
    return Arrival(raw=unwrapped.original, envelope=report_envelope, source="journal-report",
                   source_detail=f"journal report {unwrapped.report_message_id}".strip())


class JournalHandler:
    """aiosmtpd handler: trusted clients only, every RCPT kept exactly, journal on DATA, 250 only when durable."""

    def __init__(self, journal: Journal, clients: JournalClients, executor: ThreadPoolExecutor | None = None,
                 notify_indexer: Callable[[int], None] | None = None) -> None:
        self._journal = journal
        self._clients = clients
        self._executor = executor
        self._notify_indexer = notify_indexer
        self._storage_failing = False

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str, mail_options: list[str]) -> str:
        # The journal archives whatever it is handed, under the recipients' scopes: only
        # an allow-listed client or an account that authenticated (over TLS) may hand it mail.
        client = client_address(session.peer)
        if not (session.authenticated or self._clients.allows(client)):
            log.info("refused mail from %s: not a journal client and not authenticated", client)
            return reply_for(UntrustedClientError(client))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return reply_for(TooManyRecipientsError(f"over {MAX_RECIPIENTS}"))
        # Kept as given: the spelling of a Bcc recipient is evidence, not something to tidy.
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        # aiosmtpd hands over arguments decoded as UTF-8 with surrogateescape (PEP 383);
        # envelope_text keeps those bytes exactly, in a form every catalogue can store.
        facts = Envelope(
            mail_from=envelope_text(envelope.mail_from or ""),
            rcpt_to=tuple(envelope_text(recipient) for recipient in envelope.rcpt_tos),
            client_address=client_address(session.peer),
            helo=envelope_text(session.host_name or ""),
            received_at=utcnow(),
        )
        # original_content is the DATA payload with dot-stuffing removed and nothing else
        # touched, i.e. exactly the bytes the client sent.
        raw = envelope.original_content or b""
        loop = asyncio.get_running_loop()
        try:
            # Unwrapping and journaling (fsync, SQL commit) run off the event loop so that
            # one slow disk does not stall every other connection.
            receipt = await loop.run_in_executor(self._executor, self._archive, raw, facts)
        except Exception as error:
            self._note_failure(error, facts, len(raw))
            return reply_for(error)
        if self._storage_failing:
            self._storage_failing = False
            log.warning("archive storage is working again")
        log.info("accepted message %d (%s, %d bytes, %d recipients%s) from %s", receipt.message_id, receipt.sha256[:16],
                 len(raw), len(facts.rcpt_to), ", already archived" if receipt.duplicate else "", facts.client_address)
        return f"250 2.0.0 Ok: archived {receipt.sha256[:16]}"

    def _note_failure(self, error: Exception, facts: Envelope, size: int) -> None:
        storage = isinstance(error, JournalError)
        if storage and not self._storage_failing:
            self._storage_failing = True
            log.error("archive storage is failing; mail gets 451 until it works: %s", error)
        log.warning("refused a message (%d bytes, %d recipients) from %s with 451: %s",
                    size, len(facts.rcpt_to), facts.client_address, error, exc_info=not storage)

    def _archive(self, raw: bytes, facts: Envelope) -> JournalReceipt:
        receipt = self._journal.journal(arrival_for(raw, facts))
        if self._notify_indexer is not None:
            try:
                self._notify_indexer(1)
            except Exception:  # the message is durable: a failed wake-up must not become a 451
                log.exception("could not notify the indexer; the outbox sweep will find the message")
        return receipt


class _Controller(Controller):
    """aiosmtpd's threaded controller, able to bind port 0 (tests) and report the real port."""

    def __init__(self, handler: Any, *, gate: ConnectionGate, in_flight: InFlightBytes, **options: Any) -> None:
        super().__init__(handler, **options)
        self._gate = gate
        self._in_flight = in_flight

    def factory(self) -> SMTP:
        return JournalSMTP(self.handler, gate=self._gate, in_flight=self._in_flight, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        if self.server is not None and self.server.sockets:
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def tls_context(settings: Any) -> ssl.SSLContext | None:
    """The STARTTLS context (RFC 3207) from smtp_tls_cert / smtp_tls_key, or None without them."""
    if not settings.smtp_tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.smtp_tls_cert, settings.smtp_tls_key or None)
    return context


class SmtpListener:
    """The journal listener: address, limits, trusted clients, TLS and accounts come from settings."""

    def __init__(self, archive: HasJournal, settings: Any, *, workers: int = 4,
                 notify_indexer: Callable[[int], None] | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="smtp-journal")
        clients = JournalClients.parse(settings.journal_clients)
        self.tls = tls_context(settings)
        accounts = JournalAccounts(settings.resolved_journal_accounts_file())
        self._controller = _Controller(
            JournalHandler(archive.journal, clients, self._executor, notify_indexer),
            gate=ConnectionGate(total=settings.smtp_max_connections, per_client=settings.smtp_max_connections_per_client),
            in_flight=InFlightBytes(settings.smtp_max_inflight_bytes),
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            server_hostname=settings.smtp_hostname,
            # RFC 1870: advertised as SIZE; larger messages get 552 (RFC 5321 4.5.3.1.10).
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,  # RFC 6531: internationalised addresses are archived as sent
            decode_data=False,  # keep bytes; also makes aiosmtpd announce 8BITMIME (RFC 6152)
            tls_context=self.tls,
            # RFC 4954 4: AUTH is offered only once TLS is up, so passwords never travel in clear.
            auth_require_tls=True,
            authenticator=AccountAuthenticator(accounts),
            # Three AUTH attempts per session, then 421 and close: guessing costs a reconnect.
            command_call_limit={"AUTH": 3, "*": 1_000_000},
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


__all__ = ["JournalHandler", "SmtpListener", "arrival_for", "reply_for", "tls_context"]
