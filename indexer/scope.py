"""The set of archived messages one search may see."""

from __future__ import annotations

from dataclasses import dataclass

from addresses import address_key, domain_key


class ScopeRequiredError(ValueError):
    """Raised when a search is attempted without a scope (invariant 3)."""


@dataclass(frozen=True)
class Scope:
    """Mailboxes and domains whose messages a search may return.

    An empty restricted scope sees nothing. Seeing everything has to be asked for by
    name, with ``Scope.everything()``; no default ever widens to it. Mailboxes and
    domains are held as the keys the archive files mail under (``addresses``), however
    they were written, so every engine and the catalogue compare them as stored.
    """

    mailboxes: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()
    unrestricted: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mailboxes", frozenset(filter(None, map(address_key, self.mailboxes))))
        object.__setattr__(self, "domains", frozenset(filter(None, map(domain_key, self.domains))))

    @classmethod
    def everything(cls) -> "Scope":
        return cls(unrestricted=True)

    @classmethod
    def of(cls, *, mailboxes: tuple[str, ...] | list[str] = (), domains: tuple[str, ...] | list[str] = ()) -> "Scope":
        return cls(mailboxes=frozenset(mailboxes), domains=frozenset(domains))

    @property
    def is_empty(self) -> bool:
        return not self.unrestricted and not self.mailboxes and not self.domains


def require_scope(scope: object) -> Scope:
    """Backends call this first: no Scope, no search."""
    if not isinstance(scope, Scope):
        raise ScopeRequiredError("every search needs a Scope; use Scope.everything() to search all mail")
    return scope
