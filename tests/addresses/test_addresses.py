"""Every package keys an address, a domain and a message id the same way, however it is written (scope correctness)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from addresses import address_key, domain_key, domain_of, mailbox_key, message_id_key
from archiver.envelope import Envelope
from archiver.headers import HeaderFacts, normalise_address, read_header_facts
from archiver.journal import Arrival, mailboxes_of
from indexer.document import Address, IndexDocument
from indexer.query import fields
from indexer.query.ast import Field, Term
from indexer.query.parser import parse_query
from indexer.scope import Scope
from retention import policies
from search_ui.principals import Principal, Role, ScopeDeniedError, scope_for

# --- spellings of one address ---

# Letters whose upper case lower-cases back to them (not ß -> SS, ı -> I), so that a
# change of case is a spelling of the same address.
_LOCAL = "abcxyzABC019.+-_éÉñÑöÖ"
_ASCII_LABEL = "abcdefxyzABCXYZ0129-"
_UNICODE_LABEL = "aböüßéñÜÖÉ日本語中文한국"


def _recased(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    out = []
    for char, flip in zip(text, flips):
        other = char.upper() if char.islower() else char.lower()
        out.append(other if flip and len(other) == 1 and other.lower() == char.lower() else char)
    return "".join(out)


_label = st.one_of(st.text(_ASCII_LABEL, min_size=1, max_size=10), st.text(_UNICODE_LABEL, min_size=1, max_size=8))
_domain_labels = st.lists(_label, min_size=1, max_size=3).map(lambda labels: [*labels, "example"])


@st.composite
def domain_spellings(draw: st.DrawFn, labels: list[str]) -> str:
    """One way to write the domain of ``labels``: case, A- or U-labels, full-width or root dots."""
    written = []
    for label in labels:
        key = domain_key(label)
        if not key.isascii() and draw(st.booleans()):
            written.append("xn--" + key.encode("punycode").decode("ascii"))  # the A-label (RFC 3492)
        else:
            written.append(_recased(draw, label))
    domain = draw(st.sampled_from([".", "\uff0e", "\u3002"])).join(written)
    return domain + draw(st.sampled_from(["", "", "."]))


@st.composite
def address_spellings(draw: st.DrawFn) -> tuple[str, list[str]]:
    """(the canonical key, several spellings of one address)."""
    local = draw(st.text(_LOCAL, min_size=1, max_size=12))
    labels = draw(_domain_labels)
    spellings = []
    for _ in range(4):
        written_local = _recased(draw, local)
        if draw(st.booleans()):
            written_local = '"' + written_local + '"'  # a quoted local part (RFC 5322 3.2.4)
        address = f"{written_local}@{draw(domain_spellings(labels))}"
        if draw(st.booleans()):
            address = f"<{address}>"
        spellings.append(draw(st.sampled_from(["", " ", "\t"])) + address + draw(st.sampled_from(["", " "])))
    return address_key(spellings[0]), spellings


def _document(**values: object) -> IndexDocument:
    base: dict[str, object] = dict(
        id=1, sha256="0" * 64, date=datetime(2024, 1, 1, tzinfo=timezone.utc), size=1, subject="", from_=(), to=(),
        cc=(), bcc=(), body="", attachment_text="", filenames=(), has_attachment=False, mailboxes=(), domains=(),
    )
    base.update(values)
    return IndexDocument(**base)  # type: ignore[arg-type]


def keys_of_an_address(written: str) -> dict[str, object]:
    """The key each caller makes of one written address."""
    arrival = Arrival(raw=b"", envelope=Envelope(rcpt_to=(written,)), source="import")
    return {
        "archiver: mailboxes_of": mailboxes_of(arrival, HeaderFacts()),
        "archiver: normalise_address": normalise_address(written),
        "query: mailbox:": fields.normalise_exact(Field.MAILBOX, written),
        "index: mailbox values": fields.document_values(_document(mailboxes=(written,)))[fields.MAILBOX],
        "index: from_addr values": fields.document_values(_document(from_=(Address("", written),)))["from_addr"],
        "scope: Scope.of": Scope.of(mailboxes=[written]).mailboxes,
        "scope: Scope()": Scope(mailboxes=frozenset({written})).mailboxes,
        "scope: Principal": Principal("p", Role.USER, mailboxes=frozenset({written})).mailboxes,
        "domain: journal": domain_of(mailbox_key(written)),
    }


@settings(max_examples=300, deadline=None)
@given(address_spellings())
def test_every_caller_keys_every_spelling_of_an_address_alike(spelled: tuple[str, list[str]]) -> None:
    key, spellings = spelled
    assert address_key(key) == key  # a key is its own key
    assert mailbox_key(key) == key
    expected = {
        "archiver: mailboxes_of": (key,),
        "archiver: normalise_address": key,
        "query: mailbox:": key,
        "index: mailbox values": (key,),
        "index: from_addr values": (key,),
        "scope: Scope.of": {key},
        "scope: Scope()": {key},
        "scope: Principal": {key},
        "domain: journal": key.rpartition("@")[2],
    }
    for written in spellings:
        assert keys_of_an_address(written) == expected, written
        if '"' not in written:  # the query language writes a quoted local part as a phrase
            assert parse_query(f"from:{written.strip()}") == Term(Field.FROM, key), written
            assert parse_query(f"mailbox:{written.strip()}") == Term(Field.MAILBOX, key), written
    # A user's own mailbox, asked for in another spelling, is theirs; so is a compliance
    # officer's domain.
    user = Principal("u", Role.USER, mailboxes=frozenset({spellings[0]}))
    officer = Principal("c", Role.COMPLIANCE, domains=frozenset({spellings[1].strip().strip("<>").rpartition("@")[2]}))
    for written in spellings[1:]:
        assert scope_for(user, Scope.of(mailboxes=[written])).mailboxes == {key}
        assert scope_for(officer, Scope.of(mailboxes=[written])).mailboxes == {key}


@settings(max_examples=300, deadline=None)
@given(_domain_labels.flatmap(lambda labels: st.lists(domain_spellings(labels), min_size=3, max_size=3)))
def test_every_caller_keys_every_spelling_of_a_domain_alike(spellings: list[str]) -> None:
    key = domain_key(spellings[0])
    assert domain_key(key) == key
    for written in spellings:
        assert domain_key(written) == key
        assert domain_key("@" + written) == key  # as people write a domain in a scope
        assert fields.normalise_exact(Field.DOMAIN, written) == key
        assert fields.document_values(_document(domains=(written,)))[fields.DOMAIN] == (key,)
        assert Scope.of(domains=[written]).domains == {key}
        assert Principal("c", Role.COMPLIANCE, domains=frozenset({written})).domains == {key}
        assert domain_of(mailbox_key(f"alice@{written}")) == key
        assert policies._normalise(written) == key
    officer = Principal("c", Role.COMPLIANCE, domains=frozenset({spellings[0]}))
    assert scope_for(officer, Scope.of(domains=[spellings[1]])).domains == {key}


@settings(max_examples=200, deadline=None)
@given(st.text("abcXYZ019.$=+-_@", min_size=1, max_size=30).filter(lambda text: text.strip("<> ")))
def test_every_caller_keys_a_message_id_alike(text: str) -> None:
    key = message_id_key(text)
    assert message_id_key(key) == key
    for written in (text, f"<{text}>", f" <{text.upper()}> "):
        assert message_id_key(written) == key
        assert fields.normalise_exact(Field.MESSAGE_ID, written) == key
        assert fields.document_values(_document(message_id=written))[fields.MESSAGE_ID] == (key,)
        assert parse_query(f"message-id:{written.strip()}") == Term(Field.MESSAGE_ID, key)


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("<alice@example.com>", "alice@example.com"),
        (" alice@example.com. ", "alice@example.com"),
        ('"alice"@example.com', "alice@example.com"),
        ('"a\\"b"@example.com', 'a"b@example.com'),
        ('"a@b"@example.com', "a@b@example.com"),
        ("<@relay.example:alice@example.com>", "alice@example.com"),
        ("jürgen@Bücher.Example", "jürgen@bücher.example"),
        ("jurgen@xn--bcher-kva.example", "jurgen@bücher.example"),
        ("x@XN--BCHER-KVA.example", "x@bücher.example"),
        ("x@ｅｘａｍｐｌｅ．ｃｏｍ", "x@example.com"),
        ("x@example。com", "x@example.com"),
        # A-labels that are not the encoding of their U-label stay themselves: no spelling
        # may file mail under another domain's key.
        ("x@xn--example-.com", "x@xn--example-.com"),
        ("x@xn--zzzz.example", "x@xn--zzzz.example"),
        ("alice", "alice"),
        ("", ""),
    ],
)
def test_address_keys(written: str, key: str) -> None:
    assert address_key(written) == key


@pytest.mark.parametrize("written", ["alice", "@example.com", "alice@", '"a b"@example.com', "a" * 310 + "@example.com", ""])
def test_what_is_not_a_mailbox_files_nothing(written: str) -> None:
    assert mailbox_key(written) == ""
    assert mailboxes_of(Arrival(raw=b"", envelope=Envelope(mail_from=written), source="smtp"), HeaderFacts()) == ()


def test_header_addresses_are_keyed_like_the_envelope() -> None:
    raw = (b"From: =?utf-8?q?J=C3=BCrgen?= <Juergen@XN--BCHER-KVA.Example.>\r\n"
           b'To: "Alice"@Example.COM, <@relay.example:bob@example.com>\r\n\r\nbody\r\n')
    facts = read_header_facts(raw)
    assert set(facts.addresses) == {"juergen@bücher.example", "alice@example.com", "bob@example.com"}
    arrival = Arrival(raw=raw, envelope=Envelope(mail_from="juergen@bücher.example", rcpt_to=("ALICE@example.com",)),
                      source="smtp")
    assert sorted(mailboxes_of(arrival, facts)) == ["alice@example.com", "bob@example.com", "juergen@bücher.example"]


def test_scope_for_refuses_what_no_spelling_makes_yours() -> None:
    user = Principal("u", Role.USER, mailboxes=frozenset({"alice@bücher.example"}))
    with pytest.raises(ScopeDeniedError):
        scope_for(user, Scope.of(mailboxes=["alice@xn--bcher-kva.example.evil"]))
    with pytest.raises(ScopeDeniedError):
        scope_for(user, Scope.of(mailboxes=["alice@xn--bcher-.example"]))
