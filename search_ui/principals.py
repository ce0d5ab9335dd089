"""Who is asking, and the one function that turns them into a search scope (invariant 3)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from addresses import address_key, domain_key, domain_of
from indexer.scope import Scope


class Role(str, Enum):
    ADMIN = "admin"  # the whole archive, but must say so explicitly
    COMPLIANCE = "compliance"  # the domains they are assigned
    USER = "user"  # their own mailboxes only


class ScopeDeniedError(PermissionError):
    """The principal asked for mail outside what their role allows."""


@dataclass(frozen=True)
class Principal:
    """Someone asking; their own mailboxes and domains held as archive keys (``addresses``)."""

    name: str
    role: Role
    mailboxes: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "mailboxes", frozenset(filter(None, map(address_key, self.mailboxes))))
        object.__setattr__(self, "domains", frozenset(filter(None, map(domain_key, self.domains))))


def scope_for(principal: Principal, requested: Scope | None) -> Scope:
    """The only place a search scope is made.

    - No request: a user gets their own mailboxes, a compliance officer their domains;
      an admin gets nothing, because "everything" has to be asked for by name.
    - A request is honoured only where the role allows it; otherwise it is refused,
      never silently narrowed, so that a compliance search is never quietly incomplete.
    """
    own = Scope(mailboxes=principal.mailboxes, domains=principal.domains)
    if requested is None:
        if principal.role is Role.ADMIN:
            raise ScopeDeniedError("say which mailboxes or domains to search, or ask for everything explicitly")
        return own
    if principal.role is Role.ADMIN:
        return requested
    if requested.unrestricted:
        raise ScopeDeniedError(f"{principal.name} may not search the whole archive")
    # Both sides are keys already (Scope and Principal normalise what they are given).
    allowed_mailboxes = {m for m in requested.mailboxes if m in principal.mailboxes or domain_of(m) in principal.domains}
    allowed_domains = {d for d in requested.domains if d in principal.domains}
    denied = (requested.mailboxes - allowed_mailboxes) | (requested.domains - allowed_domains)
    if denied:
        raise ScopeDeniedError(f"{principal.name} may not search {', '.join(sorted(denied))}")
    return requested
