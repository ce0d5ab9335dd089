"""Backend-neutral conformance suite: one corpus, queries and the ids every SearchBackend must return."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

from indexer.document import Address, IndexDocument
from indexer.query.parser import parse_query
from indexer.scope import Scope
from indexer.search_backend import SearchBackend, SortOrder

# Each backend's test module indexes ``corpus()`` into a fresh engine and runs every CASES
# and ORDER_CASES entry through ``matching_ids`` / ``ordered_ids``. The expected ids were
# worked out by hand from the corpus, not recorded from an engine: a backend that disagrees
# is wrong until someone shows the table is.

# "today" for the relative-date cases; ids 14 and 15 were sent yesterday and today.
TODAY = date(2025, 6, 15)
HOSTED = ("example.com", "example.org")

ALICE = Address("Alice Smith", "alice@example.com")
BOB = Address("Bob Jones", "bob@example.com")
CAROL = Address("Carol White", "carol@example.com")
DAVE = Address("Dave Brown", "dave@example.org")
FRANK = Address("Frank", "frank@example.org")
MALLORY = Address("Mallory", "mallory@evil.test")


def _bare(address: str) -> Address:
    return Address("", address)


def _doc(
    id: int,
    when: str,
    subject: str,
    body: str,
    *,
    from_: tuple[Address, ...] = (),
    to: tuple[Address, ...] = (),
    cc: tuple[Address, ...] = (),
    bcc: tuple[Address, ...] = (),
    size: int = 1500,
    files: tuple[str, ...] = (),
    attachment_text: str = "",
    message_id: str = "",
) -> IndexDocument:
    people = from_ + to + cc + bcc
    # Scope facts follow one rule: every participant at a hosted domain is an archived mailbox.
    mailboxes = tuple(sorted({p.address for p in people if p.domain in HOSTED}))
    return IndexDocument(
        id=id,
        sha256=f"{id:064x}",
        date=datetime.fromisoformat(when).replace(tzinfo=timezone.utc),
        size=size,
        subject=subject,
        from_=from_,
        to=to,
        cc=cc,
        bcc=bcc,
        body=body,
        attachment_text=attachment_text,
        filenames=files,
        has_attachment=bool(files),
        mailboxes=mailboxes,
        domains=tuple(sorted({m.rpartition("@")[2] for m in mailboxes})),
        message_id=message_id or f"<msg{id}@example.com>",
    )


def corpus() -> tuple[IndexDocument, ...]:
    """Twenty messages; every date is UTC and distinct except ids 6 and 7 (same second)."""
    # One message per entry reads better as a table than formatted one argument a line.
    # fmt: off
    return (
        _doc(1, "2023-01-10 09:00", "Budget 2024 forecast", "Please review the budget forecast before the board meeting.",
             from_=(ALICE,), to=(BOB,), size=2000),
        _doc(2, "2023-03-05 14:30", "Re: Budget 2024 forecast", "The budget-2024 numbers look fine. Meeting moved to Thursday.",
             from_=(BOB,), to=(ALICE,), cc=(CAROL,), size=150_000,
             files=("forecast-Q3.xlsx",), attachment_text="Quarterly forecast revenue 1200000"),
        _doc(3, "2023-12-31 23:30", "Happy new year", "Fireworks at midnight",
             from_=(DAVE,), to=(_bare("alice@example.com"),)),
        _doc(4, "2024-01-01 00:30", "Straße und Café",
             "Größe der Datei: 5 MB. Ελληνικά ΟΔΟΣ. Treffen in İstanbul. Donaudampfschifffahrtsgesellschaftskapitän",
             from_=(Address("Zoë Ångström", "zoe@example.org"),), to=(Address("Jürgen Müller", "juergen@example.com"),),
             size=4096),
        _doc(5, "2024-02-29 10:00", "Confidential: merger plans", "Keep the merger confidential until the announcement.",
             from_=(BOB,), to=(ALICE,), bcc=(CAROL,), size=3000),
        _doc(6, "2024-03-15 12:00:00", "Invoice overdue", "Pay the invoice now",
             from_=(MALLORY,), to=(_bare("bob@example.com"),), size=3_500_000,
             files=("invoice.pdf",), attachment_text="Invoice number 4711 total due"),
        _doc(7, "2024-03-15 12:00:00", "Re: Invoice overdue", "We never ordered anything.",
             from_=(BOB,), to=(MALLORY,), size=2500),
        _doc(8, "2024-06-01 08:00", "Your ticket 12345",
             "Ticket status: resolved, ref E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
             from_=(Address("Support Team", "support@mail.example.com"),), to=(_bare("alice@example.com"),), size=1200),
        _doc(9, "2024-06-02 09:15", "Hello from Eve", "alice@example.com told me to write",
             from_=(Address("Eve Adams", "eve.alice@other.net"),), to=(_bare("carol@example.com"),), size=1100),
        _doc(10, "2024-07-04 16:00", "Project Phoenix kickoff", "The project phoenix kickoff meeting agenda is attached",
             from_=(CAROL,), to=(_bare("dave@example.org"), _bare("frank@example.org")), cc=(ALICE,), size=48_000,
             files=("agenda.docx",), attachment_text="Agenda: introductions, budget, timeline"),
        _doc(11, "2024-08-20 07:45", "Golf on Saturday?", "Tee time at 9",
             from_=(FRANK,), to=(_bare("dave@example.org"),), size=900),
        _doc(12, "2024-09-09 11:11", "Q3 numbers", "Revenue grew; the meeting about the budget is tomorrow.",
             from_=(ALICE,), to=(BOB,), size=2200),
        _doc(13, "2025-01-15 10:00", "Contract draft v2", "Draft attached for review, commit 3f786850e387550fdab836ed7e6dc881de23001b",
             from_=(BOB,), to=(_bare("legal@example.com"),), size=5_500_000,
             files=("contract_v2.pdf", "notes.txt"), attachment_text="This agreement is made between ACME and Globex"),
        _doc(14, "2025-06-14 12:00", "Lunch tomorrow?", "Sushi or pizza", from_=(ALICE,), to=(CAROL,), size=800),
        _doc(15, "2025-06-15 08:00", "Re: Lunch tomorrow?", "Pizza please", from_=(CAROL,), to=(ALICE,), size=700),
        _doc(16, "2022-05-05 10:00", "Meeting notes (draft)", "Action items: follow-up with O'Brien",
             from_=(Address("O'Brien, Pat", "pat.obrien@example.com"),), to=(ALICE,), size=1800,
             message_id="<CAF=abc+123@mail.example.com>"),
        _doc(17, "2022-11-11 11:11", "ping", "pong", from_=(BOB,), to=(CAROL,), size=1024),
        _doc(18, "2021-07-01 09:00", "Отчёт за квартал", "日本語のテキスト हिन्दी पाठ",
             from_=(Address("Иван Петров", "ivan@example.org"),), to=(_bare("alice@example.com"),), size=2048),
        _doc(19, "2020-02-02 02:02", "", "", bcc=(_bare("dave@example.org"),), size=300),
        _doc(20, "2024-12-31 23:59:59", "Year-end report", "See the attached summary",
             from_=(ALICE,), to=(DAVE,), size=2 * 1024 * 1024,
             files=("year-end-report.pdf",), attachment_text="Summary of 2024"),
    )
    # fmt: on


EVERYTHING = Scope.everything()
ALL_IDS = frozenset(range(1, 21))


@dataclass(frozen=True)
class Case:
    query: str
    expected: frozenset[int]
    scope: Scope = EVERYTHING
    why: str = ""


def _case(query: str, *ids: int, scope: Scope = EVERYTHING, why: str = "") -> Case:
    return Case(query, frozenset(ids), scope, why)


def _all_but(query: str, *ids: int, scope: Scope = EVERYTHING, why: str = "") -> Case:
    return Case(query, ALL_IDS - frozenset(ids), scope, why)


BUDGET = (1, 2, 10, 12)  # "budget" anywhere: subjects, bodies, 10's attachment
CAROLS_MAILBOX = Scope.of(mailboxes=["carol@example.com"])  # ids 2, 5, 9, 10, 14, 15, 17

# fmt: off
CASES: tuple[Case, ...] = (
    # free text, operators, precedence
    _all_but("", why="the empty query is everything in scope"),
    _case("budget", *BUDGET),
    _case("BUDGET", *BUDGET, why="case-insensitive"),
    _case("budget forecast", 1, 2, why="implicit AND; 2 has forecast in subject and attachment"),
    _case("budget AND forecast", 1, 2),
    _case("budget OR invoice", 1, 2, 6, 7, 10, 12),
    _case("budget-2024", 1, 2, why="split like the index: the phrase 'budget 2024'"),
    _case('"budget forecast"', 1, why="phrase: adjacent and in order"),
    _all_but("NOT budget", *BUDGET),
    _all_but("-budget", *BUDGET),
    _case("invoice -from:mallory", 7),
    _case("invoice NOT filename:pdf", 7),
    _case("pizza OR ticket resolved", 8, 14, 15, why="AND binds tighter than OR"),
    _case("(pizza OR ticket) resolved", 8),
    _case("NOT sushi pizza", 15, why="NOT binds tighter than AND"),
    _all_but("NOT (sushi pizza)", 14),
    _case("sushi or pizza", 14, why="lower-case 'or' is a word (14's body has it)"),
    _case("sushi OR pizza", 14, 15),
    _case("-(budget OR invoice OR lunch OR pizza) subject:re", why="every 'Re:' is about one of those"),
    # prefixes
    _case("invo*", 6, 7),
    _case("fore*", 1, 2),
    _case("subject:lun*", 14, 15),
    _case("from:alice@ex*", 1, 12, 14, 20, why="a prefix with '@' is a prefix of the whole address"),
    # NEAR: at most n words between, either order
    _case("budget NEAR/0 forecast", 1),
    _case("forecast NEAR/0 budget", 1),
    _case("budget NEAR/1 forecast", 1, 2, why="2's subject: budget 2024 forecast"),
    _case("meeting NEAR/1 budget"),
    _case("meeting NEAR/2 budget", 12, why="12: meeting about the budget (2 between)"),
    _case("budget NEAR/2 meeting", 12, why="reversed order counts the same"),
    _case("budget NEAR/3 meeting", 12, why="1 and 2 have 4 words between"),
    _case("budget NEAR/4 meeting", 1, 2, 12),
    _case("body:budget NEAR/4 meeting", 1, 2, 12),
    _case("subject:budget NEAR/4 meeting"),
    # addresses
    _case("from:alice@example.com", 1, 12, 14, 20),
    _case("from:ALICE@Example.COM", 1, 12, 14, 20),
    _case("from:<alice@example.com>", 1, 12, 14, 20),
    _case("from:alice", 1, 9, 12, 14, 20, why="local part or display name word; 9 is eve.alice@"),
    _case("from:example.com", 1, 2, 5, 7, 8, 10, 12, 13, 14, 15, 16, 17, 20, why="domain part (8: mail.example.com)"),
    _case("from:mail.example.com", 8),
    _case('from:"Alice Smith"', 1, 12, 14, 20),
    _case("to:alice@example.com", 2, 3, 5, 8, 15, 16, 18),
    _case("cc:alice", 10),
    _case("bcc:carol@example.com", 5),
    _case("participants:carol@example.com", 2, 5, 9, 10, 14, 15, 17),
    _case("alice@example.com", 1, 2, 3, 5, 8, 9, 10, 12, 14, 15, 16, 18, 20, why="whole address in headers, or written in text (9)"),
    _case("from:pat.obrien@example.com", 16),
    _case('from:"O\'Brien"', 16),
    _case("o'brien", 16),
    # fields
    _case("subject:budget", 1, 2),
    _case("subject:(budget OR invoice)", 1, 2, 6, 7),
    _case('subject:"2024 forecast"', 1, 2),
    _case("body:budget", 1, 2, 12),
    _case("attachment:budget", 10),
    _case("attachment:globex", 13),
    _case("filename:pdf", 6, 13, 20),
    _case("filename:contract_v2.pdf", 13),
    _case("filename:notes.txt", 13),
    _case("has:attachment", 2, 6, 10, 13, 20),
    _case("has:attachment -filename:pdf", 2, 10),
    _case("mailbox:dave@example.org", 3, 10, 11, 19, 20),
    _case("mailbox:DAVE@EXAMPLE.ORG", 3, 10, 11, 19, 20),
    _case("domain:example.org", 3, 4, 10, 11, 18, 19, 20),
    _case("domain:@Example.ORG", 3, 4, 10, 11, 18, 19, 20),
    _case("domain:mail.example.com", why="exact: only the domains a message is archived under"),
    _case("message-id:<CAF=abc+123@mail.example.com>", 16),
    _case("message-id:caf=abc+123@mail.example.com", 16),
    _case("message-id:msg1@example.com", 1, why="exact, not msg10..msg19"),
    _case("12345", 8),
    # long tokens (40 bytes or more: cut into pieces by the index, searched as their phrase)
    _case("3f786850e387550fdab836ed7e6dc881de23001b", 13, why="a SHA-1: exactly 40 bytes"),
    _case("3F786850E387550FDAB836ED7E6DC881DE23001B", 13),
    _case("body:3f786850e387550fdab836ed7e6dc881de23001b", 13),
    _case("subject:3f786850e387550fdab836ed7e6dc881de23001b"),
    _case('"commit 3f786850e387550fdab836ed7e6dc881de23001b"', 13),
    _case("commit NEAR/1 review", 13, why="the long token after them moves no earlier position"),
    _all_but("NOT 3f786850e387550fdab836ed7e6dc881de23001b", 13, why="NOT of a long token is not everything"),
    _all_but("-3f786850e387550fdab836ed7e6dc881de23001b", 13),
    _case("3f786850e387550fdab836ed7e6dc881de23001c", why="one character differs"),
    _case("3f786850e387550fdab836ed7e6dc881de23001bb", why="longer"),
    _case("3f786850e387550fdab836ed7e6dc881de2300", why="shorter: a word of its own, not a prefix"),
    _case("3f786850*", 13, why="a prefix of the first piece"),
    _case("3f786850e387550fdab836ed7e6dc881de23001", 13, why="39 bytes: the long token's first piece is this word"),
    _case("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 8, why="a SHA-256: two pieces and a rest"),
    _case("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 OR 3f786850e387550fdab836ed7e6dc881de23001b",
          8, 13),
    _case("ref-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 8),
    _case("Donaudampfschifffahrtsgesellschaftskapitän", 4, why="43 bytes with the ä"),
    _case("DONAUDAMPFSCHIFFFAHRTSGESELLSCHAFTSKAPITÄN", 4),
    _case("Donaudampfschifffahrtsgesellschaftskapitan", why="no accent folding, in pieces too"),
    _case("Donaudampf*", 4),
    # words with nothing to search for are dropped beside others, never stand for everything
    _case("budget & forecast", 1, 2),
    _case("invoice OR &", 6, 7),
    _case("follow-up", 16),
    # dates (UTC days; TODAY is 2025-06-15)
    _case("on:2024-03-15", 6, 7),
    _case("on:2024-12-31", 20, why="23:59:59 is still that day"),
    _case("after:2024-12-31", 13, 14, 15),
    _case("before:2022-01-01", 18, 19),
    _case("on:2024", 4, 5, 6, 7, 8, 9, 10, 11, 12, 20, why="3 is 2023-12-31 23:30"),
    _case("on:2023-12", 3),
    _case("on:2024-02", 5),
    _case("before:2024", 1, 2, 3, 16, 17, 18, 19),
    _case("after:2023", 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 20),
    _case("after:2024-01-01 before:2024-03-15", 5, why="both ends exclusive of the named days"),
    _case("on:today", 15),
    _case("on:yesterday", 14),
    _case("after:yesterday", 15),
    _all_but("before:yesterday", 14, 15),
    # sizes (binary suffixes; strict comparisons)
    _all_but("size>1K", 11, 14, 15, 17, 19, why="17 is exactly 1024 bytes"),
    _case("size<1K", 11, 14, 15, 19),
    _case("size>2M", 6, 13, why="20 is exactly 2 MiB"),
    _case("size>1m size<4M", 6, 20),
    _case("size>4096", 2, 6, 10, 13, 20, why="4 is exactly 4096"),
    # non-ASCII: lower-cased, never stemmed or accent-folded
    _case("straße", 4),
    _case("STRASSE"),
    _case("Café", 4),
    _case("cafe"),
    _case("ΟΔΟΣ", 4),
    # "İ" lower-cases to "i" + U+0307 (a combining mark, not a word character): the query
    # must be analysed once, or "i̇stanbul" splits into "i" and "stanbul".
    _case("İstanbul", 4),
    _case("body:İSTANBUL", 4),
    _case("İstan*", 4),
    _case('"in İstanbul"', 4),
    _case("treffen NEAR/1 İstanbul", 4),
    _case("istanbul", why="a plain i is another letter: no folding"),
    _case("from:zoë", 4),
    _case("from:Ångström", 4),
    _case("to:jürgen", 4),
    _case("Отчёт", 18),
    _case("日本語のテキスト", 18),
    _case("हिन्दी", 18),
    _case("from:иван", 18),
    # scope: always applied, never widened by the query
    _case("budget", 2, 10, scope=CAROLS_MAILBOX),
    _case("NOT budget", 5, 9, 14, 15, 17, scope=CAROLS_MAILBOX),
    _case("golf", scope=Scope.of(mailboxes=["alice@example.com"]), why="the message exists, outside scope"),
    _case("golf", 11, scope=Scope.of(mailboxes=["dave@example.org"])),
    _case("invoice", 6, 7, scope=Scope.of(mailboxes=["BOB@Example.COM"])),
    _case("", 3, 4, 10, 11, 18, 19, 20, scope=Scope.of(domains=["example.org"])),
    _case("", 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 17, 18, 19, 20,
          scope=Scope.of(mailboxes=["bob@example.com"], domains=["@example.org"])),
    _case("domain:example.org", scope=Scope.of(mailboxes=["bob@example.com"])),
    _case("from:frank@example.org OR golf", scope=Scope.of(domains=["example.com"])),
    _case("", scope=Scope(), why="an empty restricted scope sees nothing"),
    _case("budget", scope=Scope.of(mailboxes=["nobody@example.com"])),
)
# fmt: on


@dataclass(frozen=True)
class OrderCase:
    query: str
    sort: SortOrder
    expected: tuple[int, ...]
    offset: int = 0
    limit: int = 50


_NEWEST_FIRST = (15, 14, 13, 20, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 17, 16, 18, 19)

# Date order is to the second; equal dates are ordered by id in the same direction.
ORDER_CASES: tuple[OrderCase, ...] = (
    OrderCase("", SortOrder.DATE_DESC, _NEWEST_FIRST),
    OrderCase("", SortOrder.DATE_ASC, _NEWEST_FIRST[::-1]),
    OrderCase("invoice", SortOrder.DATE_DESC, (7, 6)),
    OrderCase("invoice", SortOrder.DATE_ASC, (6, 7)),
    OrderCase("", SortOrder.DATE_DESC, (8, 7, 6), offset=8, limit=3),
    OrderCase("", SortOrder.DATE_ASC, (6, 7, 8), offset=9, limit=3),
    OrderCase("", SortOrder.DATE_DESC, (18, 19), offset=18, limit=5),
    OrderCase("", SortOrder.DATE_DESC, (), offset=40, limit=5),
    # 6 says "invoice" in four fields, 7 in one: robust to engines' scoring differences.
    OrderCase("invoice", SortOrder.RELEVANCE, (6, 7)),
)


def matching_ids(backend: SearchBackend, case: Case) -> frozenset[int]:
    """Run ``case`` and return the ids found; also checks that ``total`` agrees with them."""
    page = backend.search(parse_query(case.query, today=TODAY), case.scope, limit=100)
    ids = frozenset(hit.id for hit in page.hits)
    assert page.total == len(ids), f"total {page.total} but {len(ids)} hits for {case.query!r}"
    return ids


def ordered_ids(backend: SearchBackend, case: OrderCase) -> tuple[int, ...]:
    page = backend.search(
        parse_query(case.query, today=TODAY), EVERYTHING, sort=case.sort, limit=case.limit, offset=case.offset
    )
    return tuple(hit.id for hit in page.hits)
