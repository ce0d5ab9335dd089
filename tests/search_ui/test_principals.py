"""scope_for is the one door to search: roles get their scope, never more, never silently less."""

import pytest

from indexer.scope import Scope
from search_ui.principals import Principal, Role, ScopeDeniedError, scope_for


def test_user_gets_own_mailboxes_and_cannot_widen() -> None:
    alice = Principal("alice", Role.USER, mailboxes=frozenset({"alice@example.com"}))
    assert scope_for(alice, None) == Scope(mailboxes=frozenset({"alice@example.com"}))
    with pytest.raises(ScopeDeniedError):
        scope_for(alice, Scope.of(mailboxes=["bob@example.com"]))
    with pytest.raises(ScopeDeniedError):
        scope_for(alice, Scope.everything())


def test_compliance_officer_limited_to_domains() -> None:
    officer = Principal("co", Role.COMPLIANCE, domains=frozenset({"example.com"}))
    assert scope_for(officer, Scope.of(mailboxes=["bob@example.com"])).mailboxes == {"bob@example.com"}
    with pytest.raises(ScopeDeniedError):
        scope_for(officer, Scope.of(domains=["other.org"]))


def test_admin_must_ask_for_everything_explicitly() -> None:
    admin = Principal("root", Role.ADMIN)
    with pytest.raises(ScopeDeniedError):
        scope_for(admin, None)
    assert scope_for(admin, Scope.everything()).unrestricted
