"""One SMTP session of the journal listener: admission under the limits, and DATA read byte-exact."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, syntax

from archiver.smtp_limits import ConnectionGate, InFlightBytes, Reservation
from archiver.smtp_replies import MessageTooLargeError, SmtpRefusalError, reply_for

log = logging.getLogger(__name__)


def client_address(peer: Any) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


async def read_data(reader: asyncio.StreamReader, *, size_limit: int | None, reservation: Reservation) -> bytes:
    """The message of one DATA command, dot-stuffing undone and every other byte kept.

    Lines end at CRLF (RFC 5321 2.3.8), so only ``CRLF . CRLF`` ends the data; a bare LF
    is content, and a line may be of any length. RFC 5321 4.5.3.1.6 caps lines at 1000
    octets, but journal mail carries longer ones and bare-LF line ends, and Postfix
    accepts both: an archive that refused them would lose that mail. Refusing to take
    the message (too large, too much in flight) still reads to the end of the data, so
    the reply lands where the client expects it (RFC 5321 4.2.5); the partial message is
    dropped at once.
    """
    data = bytearray()
    refusal: SmtpRefusalError | None = None
    in_line = False  # the last piece read ended inside a line longer than the reader's buffer
    while True:
        try:
            piece = await reader.readuntil(b"\r\n")
            complete = True
        except asyncio.LimitOverrunError as overrun:
            piece = await reader.read(overrun.consumed)
            complete = False
        except asyncio.IncompleteReadError as error:
            raise ConnectionResetError("connection closed during DATA") from error
        if not in_line:
            if complete and piece == b".\r\n":
                break
            if piece.startswith(b"."):
                piece = piece[1:]  # RFC 5321 4.5.2: the client doubled a leading dot
        in_line = not complete
        if refusal is not None:
            continue
        try:
            if size_limit and len(data) + len(piece) > size_limit:
                raise MessageTooLargeError(f"over {size_limit} bytes")
            reservation.take(len(piece))
        except SmtpRefusalError as error:
            refusal = error
            data = bytearray()
            reservation.release()
            continue
        data += piece
    if refusal is not None:
        raise refusal
    return bytes(data)


@dataclass(frozen=True)
class _Credentials:
    """What a client sent in AUTH, waiting to be checked off the event loop."""

    mechanism: str
    auth_data: Any


class JournalSMTP(SMTP):
    """aiosmtpd's protocol, with session limits at connect and a DATA reader that keeps every byte."""

    def __init__(self, handler: Any, *, gate: ConnectionGate, in_flight: InFlightBytes, **options: Any) -> None:
        super().__init__(handler, **options)
        self._gate = gate
        self._in_flight = in_flight

    async def _handle_client(self) -> None:
        assert self.session is not None and self.transport is not None
        client = client_address(self.session.peer)
        try:
            self._gate.admit(client)
        except SmtpRefusalError as error:
            log.info("refused a session from %s: %s", client, error)
            await self.push(reply_for(error))
            self.transport.close()
            return
        try:
            await super()._handle_client()
        finally:
            self._gate.release(client)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd validates the path with the RFC 5322 parser and hands over its re-written
        # addr-spec: quotes dropped or added, a source route gone. The archive keeps the
        # path as the client wrote it (RFC 5321 4.1.2); scope keys are worked out later.
        address, rest = super()._getaddr(arg)
        if not address or address == "<>" or rest is None:
            return address, rest
        written = arg[: len(arg) - len(rest)].strip()
        if written.startswith("<") and written.endswith(">"):
            written = written[1:-1].strip()
        return (written or address), rest

    # aiosmtpd checks credentials inline on the event loop; an argon2 verification takes
    # a good fraction of a second, so it runs on a thread and the other sessions go on.
    def _authenticate(self, mechanism: str, auth_data: Any) -> Any:
        return _Credentials(mechanism, auth_data)

    async def auth_PLAIN(self, server: Any, args: list[str]) -> Any:
        return await self._verify(await super().auth_PLAIN(server, args))

    async def auth_LOGIN(self, server: Any, args: list[str]) -> Any:
        return await self._verify(await super().auth_LOGIN(server, args))

    async def _verify(self, result: Any) -> Any:
        if not isinstance(result, _Credentials):
            return result  # the exchange itself failed and was answered
        assert self._authenticator is not None
        return await asyncio.get_running_loop().run_in_executor(
            None, self._authenticator, self, self.session, self.envelope, result.mechanism, result.auth_data)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        reservation = self._in_flight.reservation()
        try:
            try:
                content = await read_data(self._reader, size_limit=self.data_size_limit, reservation=reservation)
            except SmtpRefusalError as error:
                log.info("refused a message from %s: %s", client_address(self.session.peer), error)
                status = reply_for(error)
            else:
                self.envelope.content = self.envelope.original_content = content
                status = await self._call_handler_hook("DATA")
        finally:
            # Held until the journal is done with the bytes, not only until they are read.
            reservation.release()
        self._set_post_data_state()
        await self.push(status)


__all__ = ["JournalSMTP", "client_address", "read_data"]
