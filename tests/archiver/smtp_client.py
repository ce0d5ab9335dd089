"""A raw-socket SMTP client for tests: sends exactly the bytes given (smtplib would re-encode them)."""

from __future__ import annotations

import socket
import ssl


class RawSmtp:
    """One SMTP session over a plain socket; ``source`` binds the client end (e.g. 127.0.0.2)."""

    def __init__(self, host: str, port: int, *, source: str | None = None, timeout: float = 30.0) -> None:
        self.socket = socket.create_connection((host, port), timeout=timeout,
                                               source_address=(source, 0) if source else None)
        self._file = self.socket.makefile("rb")
        self.greeting = self.reply()

    def reply(self) -> tuple[int, bytes]:
        """The next (possibly multi-line) reply: its code and the text of all its lines."""
        lines = []
        while True:
            line = self._file.readline()
            if not line:
                raise ConnectionError("the server closed the connection")
            lines.append(line[4:].rstrip(b"\r\n"))
            if line[3:4] != b"-":
                return int(line[:3]), b"\n".join(lines)

    def command(self, line: bytes) -> tuple[int, bytes]:
        self.socket.sendall(line + b"\r\n")
        return self.reply()

    def data(self, payload: bytes) -> tuple[int, bytes]:
        """DATA with ``payload`` sent as given (the caller does any dot-stuffing), ended as smtplib does."""
        code, text = self.command(b"DATA")
        assert code == 354, text
        self.socket.sendall(payload + (b"" if payload.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        return self.reply()

    def starttls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        code, text = self.command(b"STARTTLS")
        assert code == 220, text
        self.socket = context.wrap_socket(self.socket, server_hostname=server_hostname)
        self._file = self.socket.makefile("rb")

    def close(self) -> None:
        try:
            self.socket.sendall(b"QUIT\r\n")
        except OSError:
            pass
        self._file.close()
        self.socket.close()

    def __enter__(self) -> RawSmtp:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
