"""The query language: what each construct parses to, and where malformed queries are reported."""

from __future__ import annotations

import random
from datetime import date, datetime, timezone

import pytest

from indexer.query.ast import (
    And,
    DateRange,
    Field,
    HasAttachment,
    MatchAll,
    Near,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    SizeCompare,
    SizeOp,
    Term,
)
from indexer.query.parser import MAX_DEPTH, QuerySyntaxError, parse_query

TODAY = date(2025, 6, 15)
T = Field.TEXT


def text(word: str) -> Term:
    return Term(T, word)


# fmt: off
PARSES: list[tuple[str, Node]] = [
    ("", MatchAll()),
    ("   \t ", MatchAll()),
    ("budget", text("budget")),
    ("Budget", text("Budget")),  # as written: the backends lower-case, once
    ("budget forecast", And((text("budget"), text("forecast")))),
    ("budget AND forecast", And((text("budget"), text("forecast")))),
    ("budget OR forecast", Or((text("budget"), text("forecast")))),
    ("a b OR c", Or((And((text("a"), text("b"))), text("c")))),
    ("a OR b c", Or((text("a"), And((text("b"), text("c")))))),
    ("NOT a b", And((Not(text("a")), text("b")))),
    ("NOT (a b)", Not(And((text("a"), text("b"))))),
    ("NOT NOT a", Not(Not(text("a")))),
    ("a (b OR c)", And((text("a"), Or((text("b"), text("c")))))),
    ("(a b) c", And((text("a"), text("b"), text("c")))),
    ("a and b or c", And(tuple(text(w) for w in ("a", "and", "b", "or", "c")))),
    ("-a", Not(text("a"))),
    ("-from:alice", Not(Term(Field.FROM, "alice"))),
    ("-(a OR b)", Not(Or((text("a"), text("b"))))),
    ('-"a b"', Not(Phrase(T, ("a", "b")))),
    ("-AND", Not(text("AND"))),
    ("a - b", And((text("a"), text("b")))),
    ("budget-2024", Phrase(T, ("budget", "2024"))),
    ("e-mail", Phrase(T, ("e", "mail"))),
    ("12:30", Phrase(T, ("12", "30"))),
    ('"Budget  Forecast"', Phrase(T, ("Budget", "Forecast"))),
    ('"budget"', text("budget")),
    ("a & b", And((text("a"), text("b")))),
    ("budget (&)", text("budget")),
    ("& OR budget", text("budget")),
    ("NOT (& budget)", Not(text("budget"))),
    ("ΟΔΟΣ", text("ΟΔΟΣ")),
    ("Straße", text("Straße")),
    ("हिन्दी", Phrase(T, ("हिन", "दी"))),
    # 40 bytes or more: the phrase of the pieces the index cuts it into (rule 2 of the analysis)
    ("x" * 40 + " y", And((Phrase(T, ("x" * 39, "x")), text("y")))),
    ("3F786850E387550FDAB836ED7E6DC881DE23001B", Phrase(T, ("3F786850E387550FDAB836ED7E6DC881DE23001", "B"))),
    ("NOT " + "é" * 20, Not(Phrase(T, ("é" * 19, "é")))),
    # fields
    ("from:alice", Term(Field.FROM, "alice")),
    ("FROM:alice", Term(Field.FROM, "alice")),
    ("from:Alice@Example.com", Term(Field.FROM, "alice@example.com")),
    ("from:<alice@example.com>", Term(Field.FROM, "alice@example.com")),
    ('from:"alice@example.com"', Term(Field.FROM, "alice@example.com")),
    ("from:example.com", Phrase(Field.FROM, ("example", "com"))),
    ('from:"Alice Smith"', Phrase(Field.FROM, ("Alice", "Smith"))),
    ("to:bob cc:carol bcc:dave", And((Term(Field.TO, "bob"), Term(Field.CC, "carol"), Term(Field.BCC, "dave")))),
    ("participants:carol@example.com", Term(Field.PARTICIPANTS, "carol@example.com")),
    ("alice@example.com", text("alice@example.com")),
    ("alice@example.com.", Term(T, "alice@example.com")),  # the root's dot: the same address
    ("subject:budget", Term(Field.SUBJECT, "budget")),
    ('subject:"Q3 plan"', Phrase(Field.SUBJECT, ("Q3", "plan"))),
    ("subject:(budget OR forecast)", Or((Term(Field.SUBJECT, "budget"), Term(Field.SUBJECT, "forecast")))),
    ("subject:(budget -draft)", And((Term(Field.SUBJECT, "budget"), Not(Term(Field.SUBJECT, "draft"))))),
    ('subject:(a "b c")', And((Term(Field.SUBJECT, "a"), Phrase(Field.SUBJECT, ("b", "c"))))),
    ("body:x attachment:y filename:report.pdf", And((
        Term(Field.BODY, "x"), Term(Field.ATTACHMENT, "y"), Phrase(Field.FILENAME, ("report", "pdf"))))),
    ("mailbox:Alice@Example.com", Term(Field.MAILBOX, "alice@example.com")),
    ("domain:@Example.COM", Term(Field.DOMAIN, "example.com")),
    ("domain:(a.com OR b.org)", Or((Term(Field.DOMAIN, "a.com"), Term(Field.DOMAIN, "b.org")))),
    ("message-id:<ABC.123@mail.example.com>", Term(Field.MESSAGE_ID, "abc.123@mail.example.com")),
    ("message-id:abc.123@mail.example.com", Term(Field.MESSAGE_ID, "abc.123@mail.example.com")),
    ("has:attachment", HasAttachment()),
    ("has:Attachment", HasAttachment()),
    # prefixes
    ("budg*", Prefix(T, "budg")),
    ("Budg*", Prefix(T, "Budg")),
    ("subject:budg*", Prefix(Field.SUBJECT, "budg")),
    ("from:alice@ex*", Prefix(Field.FROM, "alice@ex")),
    ("mailbox:Alice*", Prefix(Field.MAILBOX, "alice")),
    ('"budg*"', text("budg")),
    # NEAR
    ("budget NEAR/3 meeting", Near(T, "budget", "meeting", 3)),
    ("Budget NEAR/0 Meeting", Near(T, "Budget", "Meeting", 0)),
    ("body:budget NEAR/3 meeting", Near(Field.BODY, "budget", "meeting", 3)),
    ("body:(budget NEAR/3 meeting)", Near(Field.BODY, "budget", "meeting", 3)),
    ("-budget NEAR/3 meeting", Not(Near(T, "budget", "meeting", 3))),
    ("a NEAR/1 b c", And((Near(T, "a", "b", 1), text("c")))),
    ("near/3", Phrase(T, ("near", "3"))),
    # dates: periods [first day, day after last); before is before the first day, after is after the last
    ("before:2024-01-15", DateRange(None, date(2024, 1, 15))),
    ("after:2024-01-15", DateRange(date(2024, 1, 16), None)),
    ("on:2024-01-15", DateRange(date(2024, 1, 15), date(2024, 1, 16))),
    ("on:2024-02", DateRange(date(2024, 2, 1), date(2024, 3, 1))),
    ("on:2023-12", DateRange(date(2023, 12, 1), date(2024, 1, 1))),
    ("before:2024-02", DateRange(None, date(2024, 2, 1))),
    ("after:2024-02", DateRange(date(2024, 3, 1), None)),
    ("on:2024", DateRange(date(2024, 1, 1), date(2025, 1, 1))),
    ("before:2024", DateRange(None, date(2024, 1, 1))),
    ("after:2024", DateRange(date(2025, 1, 1), None)),
    ("on:today", DateRange(TODAY, date(2025, 6, 16))),
    ("on:Yesterday", DateRange(date(2025, 6, 14), TODAY)),
    ("before:today", DateRange(None, TODAY)),
    ("after:yesterday", DateRange(TODAY, None)),
    ("on:9999-12-31", DateRange(date(9999, 12, 31), None)),
    # sizes: binary suffixes
    ("size>10", SizeCompare(SizeOp.GREATER, 10)),
    ("size<1K", SizeCompare(SizeOp.LESS, 1024)),
    ("size>5m", SizeCompare(SizeOp.GREATER, 5 * 1024**2)),
    ("SIZE<2G", SizeCompare(SizeOp.LESS, 2 * 1024**3)),
    ("size>1M size<4M", And((SizeCompare(SizeOp.GREATER, 1024**2), SizeCompare(SizeOp.LESS, 4 * 1024**2)))),
]
# fmt: on


@pytest.mark.parametrize(("query", "expected"), PARSES, ids=[q or "<empty>" for q, _ in PARSES])
def test_parses_to(query: str, expected: Node) -> None:
    assert parse_query(query, today=TODAY) == expected


# (query, position of the problem, words the message must contain)
ERRORS: list[tuple[str, int, str]] = [
    ("(budget forecast", 0, "unbalanced parenthesis"),
    ("budget forecast)", 15, "unbalanced parenthesis"),
    ("(a OR (b c) OR d", 0, "unbalanced parenthesis"),
    ("subject:(budget OR forecast", 8, "unbalanced parenthesis"),
    (")", 0, "unbalanced parenthesis"),
    ('say "hello', 4, "unbalanced quote"),
    ('subject:"hello', 8, "unbalanced quote"),
    ("budget AND", 7, "dangling AND"),
    ("AND budget", 0, "dangling AND"),
    ("budget OR", 7, "dangling OR"),
    ("a OR OR b", 5, "dangling OR"),
    ("a AND OR b", 6, "dangling OR"),
    ("(a OR) b", 3, "dangling OR"),
    ("budget NOT", 7, "dangling NOT"),
    ("()", 0, "empty parentheses"),
    ("a ( ) b", 2, "empty parentheses"),
    ("foo:bar", 0, "unknown field 'foo'"),
    ("budget Re:lunch", 7, "unknown field 're'"),
    ("size:10", 0, "size>N"),
    ("has:pdf", 4, "has:pdf"),
    ("subject:", 0, "subject: needs a value"),
    ("subject: budget", 0, "subject: needs a value"),
    ("subject:!!!", 8, "nothing searchable"),
    # free-text words with nothing to search for: never "everything"
    ("&", 0, "'&' has nothing to search for"),
    ('""', 0, "'' has nothing to search for"),
    ("& ... ,", 0, "nothing to search for"),
    ("(&) OR !!", 1, "nothing to search for"),
    ("NOT &", 4, "excluding it would exclude nothing"),
    ("budget -&", 8, "excluding it would exclude nothing"),
    ("budget NOT (& !!)", 12, "excluding it would exclude nothing"),
    ("x" * 40 + "*", 0, "fewer than 40 bytes"),
    ("a NEAR/" + "1" * 5000 + " b", 7, "at most 1000"),
    ("from:" + "&" * 1000, 5, "'" + "&" * 40 + "…'"),
    ("mailbox:<>", 8, "mailbox: needs a value"),
    ("subject:(from:alice)", 9, "from: cannot be used inside subject:"),
    ("body:(size>1M)", 6, "size cannot be used inside body:"),
    ("a NEAR/x b", 2, "NEAR/3"),
    ("a NEAR b", 2, "NEAR/3"),
    ("a NEAR/-1 b", 2, "NEAR/3"),
    ("a NEAR/1001 b", 7, "at most 1000"),
    ("NEAR/3 b", 0, "single word on each side"),
    ("a NEAR/3", 2, "single word on each side"),
    ('"a b" NEAR/3 c', 6, "single word on each side"),
    ("a NEAR/3 from:b", 2, "single word on each side"),
    ("a-b NEAR/3 c", 0, "single word on each side"),
    ("a NEAR/3 c*", 9, "single word on each side"),
    ("a NEAR/2 b NEAR/2 c", 11, "joins two words"),
    ("domain:a.com NEAR/2 b", 13, "works on words"),
    ("on:2024-02-30", 3, "bad date '2024-02-30'"),
    ("before:24-01-01", 7, "bad date"),
    ("after:2024-13", 6, "bad date"),
    ("on:", 3, "bad date"),
    ("on:tomorrow", 3, "bad date"),
    ("after:9999-12-31", 6, "no date comes after"),
    ("size>10X", 5, "bad size '10X'"),
    ("size<", 5, "bad size"),
    ("size>1.5M", 5, "bad size"),
    ("size>-1", 5, "bad size"),
    ("size>99999999999G", 5, "too large"),
    ("*", 0, "lone *"),
    ("budget *", 7, "lone *"),
    ("bu*get", 2, "* may only end a word"),
    ("*budget", 0, "* may only end a word"),
    ("budget**", 6, "* may only end a word"),
    ("subject:bu*g", 10, "* may only end a word"),
    ("budget-20*", 0, "one word only"),
]


@pytest.mark.parametrize(("query", "position", "words"), ERRORS, ids=[q[:50] for q, _, _ in ERRORS])
def test_syntax_error_names_the_position(query: str, position: int, words: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query, today=TODAY)
    assert caught.value.position == position
    assert words in str(caught.value)
    assert str(caught.value).endswith(f"at position {position}")


def test_syntax_error_is_a_value_error_for_callers_that_catch_broadly() -> None:
    with pytest.raises(ValueError):
        parse_query("(")


def test_today_defaults_to_the_current_utc_day() -> None:
    before = datetime.now(timezone.utc).date()
    node = parse_query("on:today")
    after = datetime.now(timezone.utc).date()
    assert isinstance(node, DateRange) and node.start in (before, after)


def test_nesting_deeper_than_the_limit_is_a_syntax_error_not_a_recursion_error() -> None:
    assert parse_query("(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH) == text("a")
    with pytest.raises(QuerySyntaxError, match="nested too deeply"):
        parse_query("(" * 5000 + "a" + ")" * 5000)
    with pytest.raises(QuerySyntaxError, match="nested too deeply"):
        parse_query("NOT " * 5000 + "a")
    with pytest.raises(QuerySyntaxError, match="nested too deeply"):
        parse_query("-" * 5000 + "a")


_SNIPPETS = [
    "a",
    "Budget",
    "AND",
    "OR",
    "NOT",
    "and",
    "NEAR/2",
    "NEAR/",
    "NEAR",
    "(",
    ")",
    '"',
    "-",
    "*",
    ":",
    "@",
    "from:",
    "subject:",
    "domain:",
    "message-id:",
    "has:",
    "on:",
    "before:",
    "after:",
    "size>",
    "size<",
    "2024-01-01",
    "2024-13",
    "10K",
    "x@y.z",
    "<id@x>",
    "ΟΔΟΣ",
    "हिन्दी",
    "日本",
    "\t",
    "\n",
    "\x00",
    "\u200b",
    "😀",
    " ",
]


def test_no_input_raises_anything_but_query_syntax_error() -> None:
    rng = random.Random(20240615)
    for _ in range(20_000):
        if rng.random() < 0.5:
            query = "".join(rng.choice(_SNIPPETS) + rng.choice(["", " "]) for _ in range(rng.randint(1, 12)))
        else:
            query = "".join(
                chr(rng.choice([rng.randint(32, 126), rng.randint(0, 0x2FFFF)])) for _ in range(rng.randint(1, 30))
            )
        try:
            node = parse_query(query, today=TODAY)
        except QuerySyntaxError as error:
            assert 0 <= error.position <= len(query), query
        else:
            assert isinstance(
                node, (Term, Phrase, Prefix, Near, DateRange, SizeCompare, HasAttachment, And, Or, Not, MatchAll)
            )
