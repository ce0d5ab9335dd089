"""View and download check scope on a real archive: out of scope answers exactly as missing (invariant 8)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from archiver.envelope import Envelope
from archiver.journal import Arrival
from indexer.scope import Scope
from postvault.indexing import drain_outbox
from postvault.wiring import Archive as WiredArchive
from search_ui.archive import Archive
from search_ui.principals import Principal, Role, ScopeDeniedError
from search_ui.search import MessageNotVisibleError, fetch_message, in_scope, search_archive
from storage.tables import audit_events
from tests.archive_factory import make_message

ALICE = Principal("alice", Role.USER, mailboxes=frozenset({"alice@example.com"}))
BOB = Principal("bob", Role.USER, mailboxes=frozenset({"bob@example.org"}))
OFFICER = Principal("officer", Role.COMPLIANCE, domains=frozenset({"bücher.example"}))
ADMIN = Principal("admin", Role.ADMIN)


@dataclass(frozen=True)
class Archived:
    alices: int  # alice@example.com <-> carol@example.net
    bobs: int  # bob@example.org <-> dave@xn--bcher-kva.example (bücher.example)
    raw_alices: bytes
    missing: int


@pytest.fixture
def archived(archive: WiredArchive) -> Archived:
    raw_alice = make_message(sender="Alice <alice@example.com>", to="carol@example.net", subject="Falcon plans",
                             body="Alice's falcon plans.")
    raw_bob = make_message(sender="Bob <bob@example.org>", to="Dave <dave@xn--bcher-kva.example>", subject="Falcon budget",
                           body="Bob's falcon budget.")
    alices = archive.journal.journal(Arrival(raw_alice, Envelope(mail_from="alice@example.com", rcpt_to=("carol@example.net",)), "smtp"))
    bobs = archive.journal.journal(Arrival(raw_bob, Envelope(mail_from="bob@example.org", rcpt_to=("DAVE@Bücher.Example.",)), "smtp"))
    report = drain_outbox(archive)
    assert report.indexed == 2
    return Archived(alices.message_id, bobs.message_id, raw_alice, missing=max(alices.message_id, bobs.message_id) + 100)


def _audit_rows(archive: WiredArchive) -> list[tuple[str, str, dict]]:
    with archive.catalogue.connect() as connection:
        return [tuple(row) for row in connection.execute(select(audit_events.c.actor, audit_events.c.action, audit_events.c.detail)
                                                          .order_by(audit_events.c.id))]


def test_the_wired_archive_is_the_archive_search_ui_asks_for(archive: WiredArchive) -> None:
    assert isinstance(archive, Archive)


def test_a_message_in_scope_is_viewed_and_downloaded_and_each_is_audited(archive: WiredArchive, archived: Archived) -> None:
    summary, data = fetch_message(archive, ALICE, archived.alices, requested=None, raw=False)
    assert (summary.id, summary.subject, data) == (archived.alices, "Falcon plans", archived.raw_alices)
    fetch_message(archive, ALICE, archived.alices, requested=None, raw=True)
    assert [row[:2] for row in _audit_rows(archive)] == [("alice", "view"), ("alice", "download")]
    assert _audit_rows(archive)[-1][2]["message_id"] == archived.alices


def test_out_of_scope_answers_exactly_like_a_missing_message(archive: WiredArchive, archived: Archived) -> None:
    answers = []
    for message_id in (archived.bobs, archived.missing):  # Bob's message exists; the other does not
        for raw in (False, True):
            with pytest.raises(MessageNotVisibleError) as refused:
                fetch_message(archive, ALICE, message_id, requested=None, raw=raw)
            answers.append((type(refused.value), str(refused.value).replace(str(message_id), "N"), refused.value.args[1:]))
    assert len(set(answers)) == 1, answers
    assert _audit_rows(archive) == []  # neither the refusal nor the miss leaves a trace that could tell them apart


def test_a_scope_the_role_does_not_allow_is_refused_before_any_lookup(archive: WiredArchive, archived: Archived) -> None:
    with pytest.raises(ScopeDeniedError):
        fetch_message(archive, ALICE, archived.bobs, requested=Scope.of(mailboxes=["bob@example.org"]), raw=False)
    with pytest.raises(ScopeDeniedError):
        fetch_message(archive, ADMIN, archived.bobs, requested=None, raw=False)  # everything must be asked for


def test_domains_and_any_spelling_of_a_mailbox_reach_the_stored_keys(archive: WiredArchive, archived: Archived) -> None:
    # The journal filed Bob's message under bücher.example from an A-label header and a
    # differently written envelope; every spelling of a principal's scope finds it.
    assert fetch_message(archive, OFFICER, archived.bobs, requested=None, raw=False)[0].id == archived.bobs
    officer_by_a_label = Principal("o2", Role.COMPLIANCE, domains=frozenset({"XN--BCHER-KVA.example."}))
    assert fetch_message(archive, officer_by_a_label, archived.bobs, requested=None, raw=False)[0].id == archived.bobs
    bob_spelled = Principal("bob", Role.USER, mailboxes=frozenset({"<Bob@Example.ORG.>"}))
    assert fetch_message(archive, bob_spelled, archived.bobs, requested=None, raw=True)[1].startswith(b"From: Bob")
    with pytest.raises(MessageNotVisibleError):
        fetch_message(archive, OFFICER, archived.alices, requested=None, raw=False)
    assert fetch_message(archive, ADMIN, archived.alices, requested=Scope.everything(), raw=False)[0].id == archived.alices


def test_in_scope_looks_at_mailboxes_then_domains(archive: WiredArchive, archived: Archived) -> None:
    with archive.reader.connect() as connection:
        assert in_scope(connection, archived.alices, Scope.of(mailboxes=["carol@example.net"]))
        assert in_scope(connection, archived.alices, Scope.of(domains=["example.net"]))
        assert in_scope(connection, archived.bobs, Scope.of(mailboxes=["nobody@example.com"], domains=["bücher.example"]))
        assert in_scope(connection, archived.alices, Scope.everything())
        assert not in_scope(connection, archived.alices, Scope.of(mailboxes=["bob@example.org"], domains=["example.org"]))
        assert not in_scope(connection, archived.alices, Scope())  # an empty restricted scope sees nothing


def test_search_and_view_agree_on_the_scope(archive: WiredArchive, archived: Archived) -> None:
    """What a principal finds by searching is exactly what they may open."""
    for principal in (ALICE, BOB, OFFICER):
        found = {hit.id for hit in search_archive(archive, principal, "falcon", requested=None).hits}
        viewable = set()
        for message_id in (archived.alices, archived.bobs):
            try:
                fetch_message(archive, principal, message_id, requested=None, raw=False)
            except MessageNotVisibleError:
                continue
            viewable.add(message_id)
        assert found == viewable and found, principal.name
    with archive.catalogue.connect() as connection:
        searches = connection.scalar(select(func.count()).select_from(audit_events).where(audit_events.c.action == "search"))
    assert searches == 3
