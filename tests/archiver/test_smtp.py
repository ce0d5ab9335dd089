"""The SMTP journal listener: 250 only when durable, 451 when storage fails, 552 when too big."""

from __future__ import annotations

import shutil
import smtplib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Row, func, select

from archiver.envelope import envelope_bytes
from archiver.exchange_journal import unwrap_journal_report
from archiver.smtp import SmtpListener
from postvault.settings import Settings
from postvault.wiring import Archive
from storage.blobstore import BlobStore, sha256_hex
from storage import tables
from tests import services
from tests.archive_factory import make_message
from tests.archiver.smtp_client import RawSmtp


FIXTURES = Path(__file__).parent / "fixtures" / "exchange"
LIMIT = 20_000


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(smtp_host="127.0.0.1", smtp_port=0, max_message_bytes=LIMIT)


@pytest.fixture
def archive(settings: Settings) -> Iterator[Archive]:
    built = Archive(settings)
    built.sessions  # migrate before mail arrives, as `postvault serve` does
    yield built
    built.close()


@pytest.fixture
def listener(archive: Archive, settings: Settings) -> Iterator[SmtpListener]:
    with SmtpListener(archive, settings) as running:
        yield running


def wire_message(**fields: object) -> bytes:
    """A test message with the CRLF line ends SMTP carries (smtplib would convert bare LFs)."""
    return make_message(**fields).replace(b"\n", b"\r\n")  # type: ignore[arg-type]


@contextmanager
def client(listener: SmtpListener) -> Iterator[smtplib.SMTP]:
    with smtplib.SMTP(listener.host, listener.port, timeout=30) as connection:
        connection.ehlo("client.example.net")
        yield connection


def deliver(listener: SmtpListener, raw: bytes, sender: str = "alice@example.com",
            recipients: Sequence[str] = ("bob@example.org",)) -> tuple[int, bytes]:
    with client(listener) as connection:
        return transaction(connection, raw, sender, recipients)


def transaction(connection: smtplib.SMTP, raw: bytes, sender: str, recipients: Sequence[str]) -> tuple[int, bytes]:
    code, reply = connection.mail(sender)
    assert code == 250, reply
    for recipient in recipients:
        code, reply = connection.rcpt(recipient)
        assert code == 250, reply
    return connection.data(raw)


def messages(archive: Archive) -> list[Row[Any]]:
    with archive.sessions() as session:
        return list(session.execute(select(tables.messages)))


def envelopes(archive: Archive) -> list[Row[Any]]:
    with archive.sessions() as session:
        return list(session.execute(select(tables.envelopes)))


def test_250_arrives_only_once_blob_and_catalogue_row_exist(listener, archive) -> None:
    raw = wire_message(subject="durable before 250")
    code, reply = deliver(listener, raw)
    # Nothing has run between the reply and these checks: the handler answered after the journal returned.
    digest = sha256_hex(raw)
    assert code == 250 and reply.decode().startswith(f"2.0.0 Ok: archived {digest[:16]}")
    assert archive.blobs.exists(digest) and archive.blobs.get(digest) == raw
    [message] = messages(archive)
    assert message.sha256 == digest and message.source == "smtp"


def test_every_recipient_is_kept_exactly_as_given_including_bcc(listener, archive) -> None:
    raw = wire_message(to="Bob <bob@example.org>")  # the Bcc recipients appear in no header
    recipients = ["Bob@Example.ORG", "Secret.Auditor@Hidden.example", "bob@example.org"]
    code, _ = deliver(listener, raw, sender="Alice@Example.com", recipients=recipients)
    assert code == 250
    [row] = envelopes(archive)
    assert row.rcpt_to == recipients and row.mail_from == "Alice@Example.com"
    assert (row.client_address, row.helo) == ("127.0.0.1", "client.example.net")
    with archive.sessions() as session:
        assert "secret.auditor@hidden.example" in set(session.scalars(select(tables.message_mailboxes.c.mailbox)))


def test_dot_stuffing_is_undone_and_8bit_smtputf8_bytes_are_archived_exactly(listener, archive) -> None:
    raw = ("From: Jörg <jörg@exämple.de>\r\nTo: bob@example.org\r\nSubject: Grüße\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           ".leading dot\r\n..two dots\r\nÜmlaut body\r\n").encode()
    with client(listener) as connection:
        assert connection.has_extn("smtputf8") and connection.has_extn("8bitmime")
        code, _ = connection.mail("jörg@exämple.de", ["SMTPUTF8", "BODY=8BITMIME"])
        assert code == 250
        assert connection.rcpt("bob@example.org")[0] == 250
        code, _ = connection.data(raw)
    assert code == 250
    assert archive.blobs.get(sha256_hex(raw)) == raw
    assert envelopes(archive)[0].mail_from == "jörg@exämple.de"


def test_oversize_gets_552_whether_announced_with_size_or_not(listener, archive) -> None:
    big = wire_message(body="x" * (LIMIT * 2))
    with client(listener) as connection:
        assert connection.has_extn("size") and int(connection.esmtp_features["size"]) == LIMIT
        # RFC 1870: a declared SIZE over the limit is refused at MAIL FROM ...
        code, _ = connection.mail("alice@example.com", [f"SIZE={len(big)}"])
        assert code == 552
        connection.rset()
        # ... and an undeclared one once the data exceeds it (RFC 5321 4.5.3.1.10).
        code, _ = transaction(connection, big, "alice@example.com", ["bob@example.org"])
        assert code == 552
    assert messages(archive) == []


def test_451_while_the_blob_folder_is_unusable_then_the_retry_is_archived_once(listener, archive) -> None:
    # Tests run as root, so chmod cannot make the folder unwritable: put a file where it was.
    root: Path = archive.blobs.root  # type: ignore[attr-defined]
    shutil.rmtree(root)
    root.write_bytes(b"not a folder")
    raw = wire_message(subject="retry me")
    code, reply = deliver(listener, raw)
    assert code == 451 and reply.startswith(b"4.3.0")
    assert messages(archive) == []

    root.unlink()
    root.mkdir()
    code, _ = deliver(listener, raw)  # the sender's retry, same bytes and envelope
    assert code == 250
    assert [m.sha256 for m in messages(archive)] == [sha256_hex(raw)]
    assert len(envelopes(archive)) == 1


def test_451_while_the_catalogue_refuses_writes_then_the_retry_is_archived_once(listener, archive, settings) -> None:
    database = settings.resolved_database_url().removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TRIGGER refuse BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    raw = wire_message(subject="catalogue down")
    code, reply = deliver(listener, raw)
    assert code == 451 and b"storage" in reply
    assert messages(archive) == []

    with sqlite3.connect(database) as connection:
        connection.execute("DROP TRIGGER refuse")
    code, _ = deliver(listener, raw)
    assert code == 250
    assert len(messages(archive)) == 1 and len(envelopes(archive)) == 1


class _FailsOnce:
    """The real blob store, except that its first write raises an unexpected error."""

    def __init__(self, real: BlobStore) -> None:
        self._real = real
        self._failed = False

    def put_many(self, blobs: Sequence[bytes]) -> list[str]:
        if not self._failed:
            self._failed = True
            raise ValueError("a bug, not a storage error")
        return self._real.put_many(blobs)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._real, name)


def test_an_unexpected_error_is_451_and_the_listener_keeps_serving(archive, settings) -> None:
    archive.__dict__["blobs"] = _FailsOnce(archive.blobs)
    archive.__dict__.pop("journal", None)
    with SmtpListener(archive, settings) as listener, client(listener) as connection:
        first = wire_message(subject="first")
        code, _ = transaction(connection, first, "alice@example.com", ["bob@example.org"])
        assert code == 451
        code, _ = transaction(connection, first, "alice@example.com", ["bob@example.org"])
        assert code == 250  # same connection: the failure crashed nothing
    assert len(messages(archive)) == 1


def test_exchange_journal_report_archives_the_original_with_the_report_recipients(listener, archive) -> None:
    report = (FIXTURES / "exchange2016-to-cc-bcc-on-behalf-qp.eml").read_bytes().replace(b"\n", b"\r\n")
    expected = unwrap_journal_report(report)
    assert expected is not None
    code, _ = deliver(listener, report, sender="", recipients=["journal@archive.contoso.com"])  # MAIL FROM:<>
    assert code == 250
    [message] = messages(archive)
    assert message.sha256 == sha256_hex(expected.original)  # the original, not the report
    assert archive.blobs.get(message.sha256) == expected.original
    [row] = envelopes(archive)
    assert row.source == "journal-report"
    assert row.mail_from == "assistant.ceo@contoso.com"
    assert row.rcpt_to == list(expected.recipients) and "J.Hoffmann.Private@contoso.com" in row.rcpt_to
    assert row.source_detail == "journal report <a0c4e9d2-33b1-4e7f-8c5d-9b0f6a2e1d44@journal.report.generator>"
    with archive.sessions() as session:
        mailboxes = set(session.scalars(select(tables.message_mailboxes.c.mailbox)))
    assert {"j.hoffmann.private@contoso.com", "auditor@external-audit.example", "audit@contoso.com"} <= mailboxes
    assert "journal@archive.contoso.com" not in mailboxes  # the journal address is transport, not a party


def test_malformed_journal_report_is_archived_as_received_with_a_note(listener, archive) -> None:
    report = (FIXTURES / "malformed-no-original.eml").read_bytes().replace(b"\n", b"\r\n")
    code, _ = deliver(listener, report, sender="", recipients=["journal@archive.contoso.com"])
    assert code == 250
    [message] = messages(archive)
    assert archive.blobs.get(message.sha256) == report
    [row] = envelopes(archive)
    assert row.source == "smtp" and "malformed journal report" in row.source_detail


def test_same_report_delivered_twice_is_one_message_and_one_envelope(listener, archive) -> None:
    report = (FIXTURES / "o365-recipient-expanded-forwarded.eml").read_bytes().replace(b"\n", b"\r\n")
    for _ in range(2):  # a lost 250 makes Exchange deliver the report again
        assert deliver(listener, report, sender="", recipients=["journal@archive.contoso.com"])[0] == 250
    with archive.sessions() as session:
        assert session.scalar(select(func.count()).select_from(tables.messages)) == 1
        assert session.scalar(select(func.count()).select_from(tables.envelopes)) == 1


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def catalogue_listener(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Iterator[tuple[SmtpListener, Archive]]:
    """A listener whose catalogue is SQLite, or a throw-away PostgreSQL schema."""
    def run(database_url: str = "") -> Iterator[tuple[SmtpListener, Archive]]:
        settings = make_settings(smtp_host="127.0.0.1", smtp_port=0, max_message_bytes=LIMIT, database_url=database_url)
        built = Archive(settings)
        built.sessions
        try:
            with SmtpListener(built, settings) as running:
                yield running, built
        finally:
            built.close()

    if request.param == "sqlite":
        yield from run()
    else:
        with services.postgres_schema() as url:
            yield from run(url)


def envelope_rows(archive: Archive) -> list:  # type: ignore[type-arg]
    with archive.sessions() as session:
        return list(session.execute(select(tables.envelopes)).mappings())


def test_an_8bit_envelope_is_archived_with_its_exact_bytes_and_a_retry_is_one_envelope(catalogue_listener) -> None:
    # Latin-1 in HELO, MAIL FROM and RCPT TO (old MTAs send it; RFC 6531 allows only UTF-8),
    # a NUL PostgreSQL text cannot hold, and a backslash, which the stored form escapes.
    listener, archive = catalogue_listener
    helo, sender = b"mta\\caf\xe9\x00.example", b"caf\xe9@example.com"
    recipients = [b"b\xffb@example.org", "jörg@exämple.de".encode()]
    raw = b"From: caf\xe9@example.com\r\nTo: b\xffb@example.org\r\nSubject: 8-bit envelope\r\n\r\nbody\r\n"
    for _ in range(2):  # the second delivery is the sender's retry after a lost 250
        with RawSmtp(listener.host, listener.port) as smtp:
            assert smtp.command(b"EHLO " + helo)[0] == 250
            assert smtp.command(b"MAIL FROM:<" + sender + b">")[0] == 250
            for recipient in recipients:
                assert smtp.command(b"RCPT TO:<" + recipient + b">")[0] == 250
            code, reply = smtp.data(raw)
            assert code == 250, reply
    assert archive.blobs.get(sha256_hex(raw)) == raw
    [row] = envelope_rows(archive)
    assert envelope_bytes(row["helo"]) == helo
    assert envelope_bytes(row["mail_from"]) == sender
    assert [envelope_bytes(recipient) for recipient in row["rcpt_to"]] == recipients
    assert "\x00" not in row["helo"] and row["mail_from"].isprintable()
    # Scope keys compare the bytes, not their escapes: the envelope sender and the From
    # header are one mailbox, and no escape's backslash is read as a quoted-pair.
    with archive.sessions() as session:
        mailboxes = set(session.scalars(select(tables.message_mailboxes.c.mailbox)))
    assert len(mailboxes) == 3 and "jörg@exämple.de" in mailboxes, mailboxes
    assert not {"cafxe9@example.com", "bxffb@example.org"} & mailboxes


def test_long_lines_and_bare_lf_line_ends_are_archived_byte_exact(listener, archive) -> None:
    # Journal mail has both; Postfix takes both. Only CRLF.CRLF ends the data: ".\n" after a
    # bare LF is content (RFC 5321 2.3.8, 4.1.1.4), as is "\r\n.\n".
    message = (b"From: a@example.com\nTo: bob@example.org\nSubject: bare LF and long lines\n\n"
               + b"x" * 5000 + b"\n" + b"y" * 3000 + b"\r\n"
               + b".dot at the start of a 2000-byte line " + b"z" * 2000 + b"\r\n"
               + b"a bare-LF dot line follows\n.\nand CRLF dot LF\r\n.\nend\r\n")
    stuffed = message.replace(b"\r\n.", b"\r\n..")  # RFC 5321 4.5.2: the client doubles a dot after CRLF
    with RawSmtp(listener.host, listener.port) as smtp:
        assert smtp.command(b"EHLO client.example.net")[0] == 250
        assert smtp.command(b"MAIL FROM:<a@example.com>")[0] == 250
        assert smtp.command(b"RCPT TO:<bob@example.org>")[0] == 250
        smtp.socket.sendall(b"DATA\r\n")
        assert smtp.reply()[0] == 354
        smtp.socket.sendall(stuffed + b".\r\n")
        code, reply = smtp.reply()
        assert code == 250, reply
        assert smtp.command(b"NOOP")[0] == 250  # the session is still in step
    [stored] = messages(archive)
    assert archive.blobs.get(stored.sha256) == message


def test_a_long_line_counts_towards_the_size_limit(listener, archive) -> None:
    with RawSmtp(listener.host, listener.port) as smtp:
        assert smtp.command(b"EHLO client.example.net")[0] == 250
        assert smtp.command(b"MAIL FROM:<a@example.com>")[0] == 250
        assert smtp.command(b"RCPT TO:<bob@example.org>")[0] == 250
        assert smtp.data(b"Subject: big\r\n\r\n" + b"x" * (LIMIT * 3))[0] == 552
        assert smtp.command(b"NOOP")[0] == 250
    assert messages(archive) == []


def test_a_journal_report_with_a_charset_that_is_no_charset_is_archived(listener, archive) -> None:
    report = (FIXTURES / "exchange2016-to-cc-bcc-on-behalf-qp.eml").read_bytes().replace(b"\n", b"\r\n")
    first_text_part = report.index(b"text/plain; charset=")
    end = report.index(b"\r\n", first_text_part)
    report = report[:first_text_part] + b"text/plain; charset=idna" + report[end:]
    code, reply = deliver(listener, report, sender="", recipients=["journal@archive.contoso.com"])
    assert code == 250, reply
    [row] = envelopes(archive)
    assert row.source == "journal-report" and row.mail_from == "assistant.ceo@contoso.com"


def test_recipients_past_the_limit_get_452_and_the_rest_are_archived(listener, archive) -> None:
    from archiver.smtp import MAX_RECIPIENTS

    with RawSmtp(listener.host, listener.port) as smtp:
        assert smtp.command(b"EHLO client.example.net")[0] == 250
        assert smtp.command(b"MAIL FROM:<a@example.com>")[0] == 250
        for number in range(MAX_RECIPIENTS):
            assert smtp.command(b"RCPT TO:<r%d@example.org>" % number)[0] == 250
        assert smtp.command(b"RCPT TO:<one.too.many@example.org>") == (452, b"4.5.3 Too many recipients")
        assert smtp.data(wire_message(subject="many recipients"))[0] == 250
    [row] = envelopes(archive)
    assert len(row.rcpt_to) == MAX_RECIPIENTS and "one.too.many@example.org" not in row.rcpt_to


def test_envelope_paths_are_kept_as_written_and_their_mailboxes_are_the_addresses(listener, archive) -> None:
    # RFC 5321 4.1.2 paths that a parser would rewrite: a quoted local part, a source route.
    with RawSmtp(listener.host, listener.port) as smtp:
        assert smtp.command(b"EHLO client.example.net")[0] == 250
        assert smtp.command(b'MAIL FROM:<"Alice"@Example.com> BODY=8BITMIME')[0] == 250
        assert smtp.command(b"RCPT TO:<@relay.example:bob@example.org>")[0] == 250
        assert smtp.command(b"RCPT TO:carol@example.org")[0] == 250
        assert smtp.data(wire_message(subject="paths as written", to="nobody@example.net"))[0] == 250
    [row] = envelopes(archive)
    assert row.mail_from == '"Alice"@Example.com'
    assert row.rcpt_to == ["@relay.example:bob@example.org", "carol@example.org"]
    with archive.sessions() as session:
        mailboxes = set(session.scalars(select(tables.message_mailboxes.c.mailbox)))
    assert {"alice@example.com", "bob@example.org", "carol@example.org"} <= mailboxes


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(listener, archive, settings, caplog) -> None:
    database = settings.resolved_database_url().removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TRIGGER refuse BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    caplog.set_level("INFO", logger="archiver.smtp")
    for subject in ("first", "second"):
        assert deliver(listener, wire_message(subject=subject))[0] == 451
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TRIGGER refuse")
    assert deliver(listener, wire_message(subject="third"))[0] == 250
    lines = [record.getMessage() for record in caplog.records if record.name == "archiver.smtp"]
    kinds = [next((kind for prefix, kind in (("archive storage is failing", "down"), ("refused a message", "refused"),
                                              ("archive storage is working again", "up"), ("accepted message 1 ", "accepted"))
                   if line.startswith(prefix)), line) for line in lines]
    assert kinds == ["down", "refused", "refused", "up", "accepted"], lines
    assert "disk full" in lines[0] and "bytes, 1 recipients) from 127.0.0.1 with 451" in lines[1]
