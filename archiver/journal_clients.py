"""Who may hand mail to the journal listener: clients on the allow list, or accounts authenticated over TLS."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from aiosmtpd.smtp import AuthResult, LoginPassword

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class JournalAccountError(ValueError):
    """A journal account name or accounts file that cannot be used."""


@dataclass(frozen=True)
class JournalClients:
    """The networks whose clients may journal without authenticating."""

    networks: tuple[_Network, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> JournalClients:
        """``["127.0.0.0/8", "::1", "10.1.2.3"]``; a bare address is a network of one."""
        try:
            return cls(tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip()))
        except ValueError as error:
            raise JournalAccountError(f"journal clients: {error}") from error

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d
        return any(ip in network for network in self.networks)


class JournalAccounts:
    """The accounts file: one ``name:argon2-hash`` per line, readable by its owner only.

    The file is read again when it changes, so an account added with
    ``postvault journal-account add`` works without a restart.
    """

    def __init__(self, path: Path | None, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        self._hasher = hasher or PasswordHasher()
        self._loaded: tuple[float, dict[str, str]] = (-1.0, {})

    @cached_property
    def _decoy(self) -> str:
        # Verifying against a real hash for unknown names too keeps a wrong name as slow
        # as a wrong password, so names cannot be probed by timing.
        return self._hasher.hash(os.urandom(16).hex())

    def exist(self) -> bool:
        return bool(self._accounts())

    def verify(self, name: str, password: str) -> bool:
        stored = self._accounts().get(name)
        try:
            return self._hasher.verify(stored or self._decoy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def _accounts(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return {}
        if mtime != self._loaded[0]:
            self._loaded = (mtime, read_accounts(self.path))
        return self._loaded[1]


def read_accounts(path: Path) -> dict[str, str]:
    accounts: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, colon, hashed = line.strip().partition(":")
        if colon and name and not name.startswith("#"):
            accounts[name] = hashed
    return accounts


def add_account(path: Path, name: str, password: str, hasher: PasswordHasher | None = None) -> bool:
    """Add ``name`` (or give it a new password); True if it was new. The file stays mode 0600."""
    if not name or any(char in name for char in ":#\r\n") or name != name.strip():
        raise JournalAccountError(f"journal account names cannot be empty or contain ':', '#', spaces at the ends or line breaks: {name!r}")
    if not password:
        raise JournalAccountError("the password is empty")
    accounts = read_accounts(path) if path.exists() else {}
    new = name not in accounts
    accounts[name] = (hasher or PasswordHasher()).hash(password)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".new")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{account}:{hashed}\n" for account, hashed in accounts.items()))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return new


class AccountAuthenticator:
    """aiosmtpd authenticator: AUTH PLAIN / LOGIN against the journal accounts file."""

    def __init__(self, accounts: JournalAccounts) -> None:
        self._accounts = accounts

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        if self._accounts.verify(login, auth_data.password.decode("utf-8", "replace")):
            return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)


__all__ = ["AccountAuthenticator", "JournalAccountError", "JournalAccounts", "JournalClients", "add_account", "read_accounts"]
