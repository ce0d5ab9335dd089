"""Who may journal: allow-listed clients, or journal accounts that authenticate over STARTTLS (RFC 3207, RFC 4954)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from archiver.journal_clients import JournalClients
from archiver.smtp import SmtpListener
from postvault.settings import Settings
from postvault.wiring import Archive
from storage import tables
from storage.blobstore import sha256_hex
from tests.archive_factory import make_message
from tests.archiver.smtp_client import RawSmtp

POSTVAULT = str(Path(sys.executable).with_name("postvault"))
OUTSIDER = "127.0.0.2"  # Linux answers for all of 127.0.0.0/8, so a test can be another client
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert file, key file)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "postvault.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("postvault.test"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def settings(make_settings: Callable[..., Settings], certificate: tuple[Path, Path]) -> Settings:
    return make_settings(smtp_host="127.0.0.1", smtp_port=0, journal_clients=("127.0.0.1",),
                         smtp_tls_cert=certificate[0], smtp_tls_key=certificate[1])


@pytest.fixture
def listener(settings: Settings) -> Iterator[tuple[SmtpListener, Archive]]:
    archive = Archive(settings)
    archive.sessions
    try:
        with SmtpListener(archive, settings) as running:
            yield running, archive
    finally:
        archive.close()


def add_account(settings: Settings, name: str, password: str) -> subprocess.CompletedProcess[str]:
    """`postvault journal-account add NAME --password-stdin`, as an operator runs it."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("POSTVAULT_")}, "POSTVAULT_DATA_DIR": str(settings.data_dir)}
    return subprocess.run([POSTVAULT, "journal-account", "add", name, "--password-stdin"], input=password + "\n",
                          capture_output=True, text=True, env=env, timeout=60, check=True)


def client_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    return context


def auth_plain(name: str, password: str) -> bytes:
    return b"AUTH PLAIN " + base64.b64encode(b"\0" + name.encode() + b"\0" + password.encode())


def stored_digests(archive: Archive) -> list[str]:
    with archive.sessions() as session:
        return list(session.scalars(select(tables.messages.c.sha256)))


def test_a_client_off_the_allow_list_is_refused_at_mail_with_530(listener) -> None:
    running, archive = listener
    with RawSmtp(running.host, running.port, source=OUTSIDER) as smtp:
        assert smtp.command(b"EHLO outsider.example")[0] == 250
        code, reply = smtp.command(b"MAIL FROM:<mallory@example.com>")
        assert (code, reply) == (530, b"5.7.0 Authentication required")
        assert smtp.command(b"RCPT TO:<victim@example.org>")[0] >= 500
        assert smtp.command(b"DATA")[0] >= 500
    assert stored_digests(archive) == []


def test_an_allow_listed_client_journals_without_authenticating(listener) -> None:
    running, archive = listener
    raw = make_message(subject="from the allow list").replace(b"\n", b"\r\n")
    with RawSmtp(running.host, running.port) as smtp:
        assert smtp.command(b"EHLO mta.example")[0] == 250
        assert smtp.command(b"MAIL FROM:<a@example.com>")[0] == 250
        assert smtp.command(b"RCPT TO:<b@example.org>")[0] == 250
        assert smtp.data(raw)[0] == 250
    assert stored_digests(archive) == [sha256_hex(raw)]


def test_auth_is_neither_offered_nor_accepted_before_starttls(listener, settings) -> None:
    running, archive = listener
    add_account(settings, "exchange", PASSWORD)
    with RawSmtp(running.host, running.port, source=OUTSIDER) as smtp:
        code, features = smtp.command(b"EHLO outsider.example")
        assert code == 250 and b"STARTTLS" in features and b"AUTH" not in features
        code, reply = smtp.command(auth_plain("exchange", PASSWORD))
        assert code == 538  # RFC 4954 6: 5.7.11 encryption required for the mechanism
        assert smtp.command(b"MAIL FROM:<a@example.com>")[0] == 530
    assert stored_digests(archive) == []


def test_a_journal_account_over_starttls_journals_and_a_wrong_password_does_not(listener, settings, certificate) -> None:
    running, archive = listener
    created = add_account(settings, "exchange", PASSWORD)
    accounts = settings.resolved_journal_accounts_file()
    assert PASSWORD not in created.stdout + created.stderr + accounts.read_text()
    assert accounts.stat().st_mode & 0o777 == 0o600
    raw = make_message(subject="journaled over TLS").replace(b"\n", b"\r\n")
    with RawSmtp(running.host, running.port, source=OUTSIDER) as smtp:
        assert smtp.command(b"EHLO outsider.example")[0] == 250
        smtp.starttls(client_tls(certificate), server_hostname="127.0.0.1")
        code, features = smtp.command(b"EHLO outsider.example")
        assert code == 250 and b"AUTH" in features and b"PLAIN" in features
        assert smtp.command(auth_plain("exchange", "wrong password"))[0] == 535
        assert smtp.command(auth_plain("nobody", PASSWORD))[0] == 535
        assert smtp.command(b"MAIL FROM:<a@example.com>")[0] == 530
        assert smtp.command(auth_plain("exchange", PASSWORD))[0] == 235
        assert smtp.command(b"MAIL FROM:<a@example.com>")[0] == 250
        assert smtp.command(b"RCPT TO:<b@example.org>")[0] == 250
        assert smtp.data(raw)[0] == 250
    assert stored_digests(archive) == [sha256_hex(raw)]


def test_a_fourth_auth_attempt_in_one_session_gets_421_and_the_session_ends(listener, settings, certificate) -> None:
    running, _archive = listener
    add_account(settings, "exchange", PASSWORD)
    with RawSmtp(running.host, running.port, source=OUTSIDER) as smtp:
        assert smtp.command(b"EHLO outsider.example")[0] == 250
        smtp.starttls(client_tls(certificate), server_hostname="127.0.0.1")
        assert smtp.command(b"EHLO outsider.example")[0] == 250
        for guess in ("one", "two", "three"):
            assert smtp.command(auth_plain("exchange", guess))[0] == 535
        assert smtp.command(auth_plain("exchange", PASSWORD))[0] == 421
        with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
            smtp.command(b"NOOP")


@pytest.mark.parametrize(("address", "allowed"), [
    ("127.0.0.1", True), ("127.0.0.2", False), ("10.1.2.3", True), ("10.2.0.1", False),
    ("::ffff:10.1.9.9", True), ("2001:db8::5", True), ("2001:db9::5", False), ("not an address", False),
])
def test_allow_list_entries_are_addresses_or_networks(address: str, allowed: bool) -> None:
    clients = JournalClients.parse(["127.0.0.1", "10.1.0.0/16", " 2001:db8::/32 "])
    assert clients.allows(address) is allowed
