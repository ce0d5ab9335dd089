"""Fixture factories for a real embedded archive (SQLite, blob folder, tantivy) in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timezone
from pathlib import Path

import pytest

from postvault.settings import Settings
from postvault.wiring import Archive


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {"data_dir": tmp_path / "var", "index_workers": 1}
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def archive(make_settings: Callable[..., Settings]) -> Iterator[Archive]:
    built = Archive(make_settings())
    yield built
    built.close()


def make_message(
    *,
    sender: str = "Alice Example <alice@example.com>",
    to: str = "Bob <bob@example.org>",
    cc: str | None = None,
    subject: str = "Quarterly budget",
    body: str = "Please review the budget before Friday.",
    date: datetime = datetime(2024, 3, 5, 9, 30, tzinfo=timezone.utc),
    message_id: str | None = None,
    attachments: list[tuple[str, str, bytes]] = (),  # (filename, mime type, data)
) -> bytes:
    """A well-formed RFC 5322 message as bytes, built with the stdlib."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id or f"<{abs(hash((sender, to, subject, body, date)))}@test.postvault>"
    message.set_content(body)
    for filename, mime_type, data in attachments:
        maintype, _, subtype = mime_type.partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return bytes(message)
