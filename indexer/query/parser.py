"""The search language: text in, AST out, or a QuerySyntaxError that says where it went wrong."""

from __future__ import annotations

import re
from calendar import monthrange
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import Enum

from addresses import address_key
from indexer.query.analysis import MAX_TOKEN_BYTES, is_ideographic, words_as_written, without_surrogates
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
from indexer.query.fields import is_address, is_keyword_field, normalise_exact, takes_addresses

# Deep enough for any query a person writes; shallow enough that recursion never overflows.
MAX_DEPTH = 64
MAX_NEAR_DISTANCE = 1000
MAX_SIZE = 2**63 - 1  # engines store sizes as signed 64-bit

_SEARCH_FIELDS = {field.value: field for field in Field if field is not Field.TEXT}
_DATE_FIELDS = ("before", "after", "on")
_FIELD_RE = re.compile(r"([A-Za-z][A-Za-z-]*):(.*)", re.DOTALL)
_SIZE_RE = re.compile(r"size([<>])(.*)", re.DOTALL | re.IGNORECASE)
_SIZE_VALUE_RE = re.compile(r"([0-9]+)([KMG]?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_DAY_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_MONTH_RE = re.compile(r"([0-9]{4})-([0-9]{2})")
_YEAR_RE = re.compile(r"[0-9]{4}")


# Error messages quote the offending text up to this many characters: a query may be any
# length, and its error is echoed to a terminal or a web page.
MAX_QUOTED = 40


def _quoted(text: str) -> str:
    return repr(text if len(text) <= MAX_QUOTED else text[:MAX_QUOTED] + "…")


class QuerySyntaxError(ValueError):
    """The query cannot be parsed; ``position`` is the 0-based offset of the problem."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"{reason} at position {position}")
        self.reason = reason
        self.position = position


def parse_query(text: str, *, today: date | None = None) -> Node:
    """Parse ``text``; ``today`` (default: the current UTC day) anchors ``today``/``yesterday``.

    Grammar (precedence NOT > AND > OR; adjacent terms are ANDed)::

        query   := or? EOF                    empty query -> MatchAll
        or      := and ("OR" and)*
        and     := unary (["AND"] unary)*
        unary   := ("NOT" | "-") unary | primary
        primary := "(" or ")" | field ":" "(" or ")" | word ["NEAR/" n word] | "quoted phrase"
                 | field ":" (word | "quoted phrase") | size (">" | "<") N[K|M|G]
                 | (before | after | on) ":" date | "has:attachment"

    Operators are upper case only; ``and``/``or``/``not`` are words. A word is split into index
    words the way the index splits text, so ``budget-2024`` is the phrase "budget 2024"; a word
    with nothing searchable in it (``&``) is ignored in free text beside other terms ("Tom & Jerry"),
    and an error where nothing else is left to search for, or to exclude. A word of 40 bytes or
    more (a SHA-1, a tracking id) is the phrase of the pieces the index cuts it into, so it finds
    itself exactly (``indexer.query.analysis``, rule 2). ``prefix*`` is a word prefix.
    ``a NEAR/n b`` finds both words with at most n words between them, in either order
    (``a NEAR/n a``: two occurrences of a).
    ``field:(...)`` applies the field to every term inside, where no other field may appear.

    Addresses: in ``from: to: cc: bcc: participants:`` and in free text, a value shaped like
    ``local@domain`` is one whole address, matched exactly and case-insensitively. Any other
    value is words: ``from:alice`` matches a word of the local part or of the display name,
    ``from:example.com`` the domain (as the words "example com", so also mail.example.com),
    ``from:"Alice Smith"`` the display name. ``mailbox: domain: message-id:`` match whole
    values only (message ids with or without their angle brackets).

    Dates are UTC days. ``YYYY-MM-DD``, ``YYYY-MM`` and ``YYYY`` name a day, month or year;
    ``today`` and ``yesterday`` a day. ``on:P`` is every day of P; ``before:P`` is before P's
    first day; ``after:P`` is after P's last day (``after:2024`` starts on 2025-01-01).
    Sizes are bytes with binary suffixes: ``size>1K`` means more than 1024 bytes.

    Raises ``QuerySyntaxError`` (never anything else) for text that does not parse.
    """
    tokens = _lex(without_surrogates(text))
    if not tokens:
        return MatchAll()
    parser = _Parser(tokens, today or datetime.now(timezone.utc).date())
    node = parser.parse()
    if isinstance(node, _Unsearchable):
        # Matching everything would answer a question nobody asked.
        raise QuerySyntaxError(f"{_quoted(node.text)} has nothing to search for: words are letters and digits", node.pos)
    return node


# --- tokens ---


class _Kind(Enum):
    LPAREN = "("
    RPAREN = ")"
    AND = "AND"
    OR = "OR"
    NOT = "NOT"
    NEG = "-"
    NEAR = "NEAR"
    WORD = "word"
    QUOTED = "quoted"
    FIELD = "field"
    SIZE = "size"


@dataclass(frozen=True)
class _Token:
    kind: _Kind
    pos: int
    end: int
    text: str = ""  # the word, the phrase, or the field's value
    name: str = ""  # the field name, or the size operator
    value_pos: int = 0
    distance: int = 0  # NEAR/n


_STARTS_UNARY = {_Kind.WORD, _Kind.QUOTED, _Kind.FIELD, _Kind.SIZE, _Kind.LPAREN, _Kind.NOT, _Kind.NEG}
_BREAK = set('()"')


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    after_neg = False
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
            after_neg = False
        elif char in "()":
            tokens.append(_Token(_Kind.LPAREN if char == "(" else _Kind.RPAREN, i, i + 1))
            i += 1
            after_neg = False
        elif char == '"':
            close = text.find('"', i + 1)
            if close < 0:
                raise QuerySyntaxError("unbalanced quote", i)
            tokens.append(_Token(_Kind.QUOTED, i, close + 1, text=text[i + 1 : close]))
            i = close + 1
            after_neg = False
        elif char == "-" and i + 1 < n and not text[i + 1].isspace() and text[i + 1] != ")":
            tokens.append(_Token(_Kind.NEG, i, i + 1))
            i += 1
            after_neg = True  # "-AND" excludes the word "and"; it is not an operator
        else:
            end = i
            while end < n and not text[end].isspace() and text[end] not in _BREAK:
                end += 1
            tokens.append(_classify(text[i:end], i, end, operators=not after_neg))
            i = end
            after_neg = False
    return tokens


def _classify(chunk: str, pos: int, end: int, *, operators: bool) -> _Token:
    if operators and chunk in ("AND", "OR", "NOT"):
        return _Token(_Kind[chunk], pos, end, text=chunk)
    if operators and (chunk == "NEAR" or chunk.startswith("NEAR/")):
        digits = chunk[5:]
        if not (digits.isascii() and digits.isdigit()):
            raise QuerySyntaxError(f"{_quoted(chunk)} needs a whole number of words, like NEAR/3", pos)
        distance = int(digits) if len(digits) <= len(str(MAX_NEAR_DISTANCE)) else MAX_NEAR_DISTANCE + 1
        if distance > MAX_NEAR_DISTANCE:
            raise QuerySyntaxError(f"NEAR distance must be at most {MAX_NEAR_DISTANCE}", pos + 5)
        return _Token(_Kind.NEAR, pos, end, text=chunk, distance=distance)
    size = _SIZE_RE.fullmatch(chunk)
    if size:
        return _Token(_Kind.SIZE, pos, end, text=size.group(2), name=size.group(1), value_pos=pos + 5)
    field = _FIELD_RE.fullmatch(chunk)
    if field:
        name = field.group(1).lower()
        if name not in _SEARCH_FIELDS and name not in _DATE_FIELDS and name != "has":
            hint = "; sizes are written size>N or size<N" if name == "size" else "; put text with a colon in quotes"
            raise QuerySyntaxError(f"unknown field {_quoted(name)}{hint}", pos)
        return _Token(_Kind.FIELD, pos, end, text=field.group(2), name=name, value_pos=pos + len(name) + 1)
    return _Token(_Kind.WORD, pos, end, text=chunk)


# --- parser ---


@dataclass(frozen=True)
class _Unsearchable:
    """A free-text word with no letters or digits (``&``): dropped beside other terms, as
    "Tom & Jerry" means; an error where it would be all there is, or all a NOT excludes."""

    text: str
    pos: int


_Parsed = Node | _Unsearchable


class _Parser:
    """Recursive descent over the token list."""

    def __init__(self, tokens: list[_Token], today: date) -> None:
        self._tokens = tokens
        self._i = 0
        self._today = today
        self._depth = 0

    def parse(self) -> _Parsed:
        node = self._or(None, None)
        token = self._peek()
        if token is not None:  # only a ')' without its '(' can stop the top level early
            raise QuerySyntaxError("unbalanced parenthesis", token.pos)
        return node

    def _peek(self) -> _Token | None:
        return self._tokens[self._i] if self._i < len(self._tokens) else None

    def _next(self) -> _Token:
        token = self._tokens[self._i]
        self._i += 1
        return token

    def _or(self, field: Field | None, after: _Token | None) -> _Parsed:
        children = [self._and(field, after)]
        while (token := self._peek()) is not None and token.kind is _Kind.OR:
            self._next()
            children.append(self._and(field, token))
        return _combine(Or, children)

    def _and(self, field: Field | None, after: _Token | None) -> _Parsed:
        children = [self._unary(field, after)]
        while (token := self._peek()) is not None:
            if token.kind is _Kind.AND:
                self._next()
                children.append(self._unary(field, token))
            elif token.kind in _STARTS_UNARY:
                children.append(self._unary(field, None))
            elif token.kind is _Kind.NEAR:
                raise QuerySyntaxError(f"{token.text} needs a single word on each side", token.pos)
            else:
                break
        return _combine(And, children)

    def _unary(self, field: Field | None, after: _Token | None) -> _Parsed:
        """One operand; ``after`` is the operator or '(' that asked for it, for error messages."""
        token = self._peek()
        if token is None or token.kind is _Kind.RPAREN:
            if after is None:  # only a stray ')' gets here: an empty query never reaches the parser
                raise QuerySyntaxError("unbalanced parenthesis", token.pos if token else 0)
            if after.kind is _Kind.LPAREN:
                raise QuerySyntaxError("empty parentheses", after.pos)
            raise QuerySyntaxError(f"dangling {after.text or after.kind.value}", after.pos)
        if token.kind in (_Kind.AND, _Kind.OR):
            raise QuerySyntaxError(f"dangling {token.text}", token.pos)
        if token.kind is _Kind.NEAR:
            raise QuerySyntaxError(f"{token.text} needs a single word on each side", token.pos)
        if token.kind in (_Kind.NOT, _Kind.NEG):
            self._next()
            self._enter(token)
            child = self._unary(field, token)
            self._depth -= 1
            if isinstance(child, _Unsearchable):
                raise QuerySyntaxError(
                    f"{_quoted(child.text)} has nothing to search for, so excluding it would exclude nothing", child.pos
                )
            return Not(child)
        return self._primary(field)

    def _enter(self, token: _Token) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise QuerySyntaxError("query is nested too deeply", token.pos)

    def _primary(self, field: Field | None) -> _Parsed:
        token = self._next()
        if token.kind is _Kind.LPAREN:
            return self._group(field, token)
        if token.kind is _Kind.QUOTED:
            return self._value(field or Field.TEXT, token.text, token.pos)
        if token.kind is _Kind.WORD:
            return self._word(field or Field.TEXT, token.text, token.pos)
        if field is not None:
            what = "size" if token.kind is _Kind.SIZE else f"{token.name}:"
            raise QuerySyntaxError(f"{what} cannot be used inside {field.value}:(...)", token.pos)
        if token.kind is _Kind.SIZE:
            return _size(token)
        return self._field(token)

    def _group(self, field: Field | None, opener: _Token) -> _Parsed:
        self._enter(opener)
        node = self._or(field, opener)
        self._depth -= 1
        closer = self._peek()
        if closer is None or closer.kind is not _Kind.RPAREN:
            raise QuerySyntaxError("unbalanced parenthesis", opener.pos)
        self._next()
        return node

    def _field(self, token: _Token) -> _Parsed:
        name, value = token.name, token.text
        if name in _DATE_FIELDS:
            return _date_range(name, value, token.value_pos, self._today)
        if name == "has":
            if value.lower() != "attachment":
                raise QuerySyntaxError(f"unknown has:{value}; only has:attachment is supported", token.value_pos)
            return HasAttachment()
        field = _SEARCH_FIELDS[name]
        if value:
            return self._word(field, value, token.value_pos)
        following = self._peek()
        if following is not None and following.pos == token.end:
            if following.kind is _Kind.QUOTED:
                self._next()
                return self._value(field, following.text, following.pos)
            if following.kind is _Kind.LPAREN:
                self._next()
                return self._group(field, following)
        raise QuerySyntaxError(f"{name}: needs a value right after the colon", token.pos)

    def _word(self, field: Field, text: str, pos: int) -> _Parsed:
        """A bare word: maybe a prefix, maybe the left side of NEAR/n."""
        near = self._peek()
        if near is not None and near.kind is _Kind.NEAR:
            self._next()
            return self._near(field, text, pos, near)
        star = text.find("*")
        if star >= 0:
            return _prefix(field, text, pos, star)
        return self._value(field, text, pos)

    def _near(self, field: Field, left: str, pos: int, near: _Token) -> Node:
        right = self._peek()
        if right is None or right.kind is not _Kind.WORD:
            raise QuerySyntaxError(f"{near.text} needs a single word on each side", near.pos)
        self._next()
        if is_keyword_field(field):
            raise QuerySyntaxError(f"{near.text} works on words, not on {field.value}:", near.pos)
        words = []
        for text, at in ((left, pos), (right.text, right.pos)):
            split = words_as_written(text)
            if "*" in text or len(split) != 1:
                raise QuerySyntaxError(f"{near.text} needs a single word on each side", at)
            words.append(split[0])
        following = self._peek()
        if following is not None and following.kind is _Kind.NEAR:
            raise QuerySyntaxError(f"{following.text} joins two words; combine pairs with AND", following.pos)
        return Near(field, words[0], words[1], near.distance)

    def _value(self, field: Field, text: str, pos: int) -> _Parsed:
        """A word or phrase in ``field``; in free text an unsearchable one is marked as such."""
        if is_keyword_field(field):
            value = normalise_exact(field, text)
            if not value:
                raise QuerySyntaxError(f"{field.value}: needs a value", pos)
            return Term(field, value)
        if takes_addresses(field) and is_address(text):
            return Term(field, address_key(text))
        words = words_as_written(text)
        if not words:
            if field is Field.TEXT:
                return _Unsearchable(text, pos)
            raise QuerySyntaxError(f"{field.value}: has nothing searchable in {_quoted(text)}", pos)
        return Term(field, words[0]) if len(words) == 1 else Phrase(field, words)


def _prefix(field: Field, text: str, pos: int, star: int) -> Prefix | Phrase:
    if text == "*":
        raise QuerySyntaxError("a lone * matches nothing; put it after a word, like budg*", pos)
    if star != len(text) - 1:
        raise QuerySyntaxError("* may only end a word", pos + star)
    stem = text[:-1]
    if is_keyword_field(field) or (takes_addresses(field) and "@" in stem):
        value = stem.strip().lower().lstrip("<")
        if field is Field.DOMAIN:
            value = value.lstrip("@")
        if not value:
            raise QuerySyntaxError("* needs something before it", pos)
        return Prefix(field, value)
    words = words_as_written(stem)
    if len(words) > 1 and all(is_ideographic(word) for word in words):
        # Chinese and Japanese are indexed a character at a time and searched as phrases
        # of characters, which already finds them inside longer words: "議事*" is "議事".
        return Phrase(field, words)
    if len(words) != 1:
        raise QuerySyntaxError(f"* makes a prefix of one word only, of fewer than {MAX_TOKEN_BYTES} bytes", pos)
    return Prefix(field, words[0])


def _size(token: _Token) -> SizeCompare:
    match = _SIZE_VALUE_RE.fullmatch(token.text)
    if not match:
        raise QuerySyntaxError(
            f"bad size {_quoted(token.text)}; write a whole number with an optional K, M or G", token.value_pos
        )
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    if size > MAX_SIZE:
        raise QuerySyntaxError("size is too large", token.value_pos)
    return SizeCompare(SizeOp(token.name), size)


def _date_range(name: str, value: str, pos: int, today: date) -> DateRange:
    try:
        start, end = _period(value, today)
    except (ValueError, OverflowError):
        raise QuerySyntaxError(
            f"bad date {_quoted(value)} for {name}:; write YYYY-MM-DD, YYYY-MM, YYYY, today or yesterday", pos
        ) from None
    if name == "before":
        return DateRange(None, start)
    if name == "after":
        if end is None:
            raise QuerySyntaxError(f"no date comes after {_quoted(value)}", pos)
        return DateRange(end, None)
    return DateRange(start, end)


def _period(value: str, today: date) -> tuple[date, date | None]:
    """The days ``value`` names, as [first day, day after the last); None if that is past 9999."""
    word = value.lower()
    if word == "today":
        return today, _day_after(today)
    if word == "yesterday":
        return today - timedelta(days=1), today
    if day := _DAY_RE.fullmatch(value):
        start = date(int(day.group(1)), int(day.group(2)), int(day.group(3)))
        return start, _day_after(start)
    if month := _MONTH_RE.fullmatch(value):
        year, number = int(month.group(1)), int(month.group(2))
        start = date(year, number, 1)
        return start, _day_after(date(year, number, monthrange(year, number)[1]))
    if _YEAR_RE.fullmatch(value):
        return date(int(value), 1, 1), _day_after(date(int(value), 12, 31))
    raise ValueError(value)


def _day_after(day: date) -> date | None:
    return None if day == date.max else day + timedelta(days=1)


def _combine(kind: type[And] | type[Or], children: list[_Parsed]) -> _Parsed:
    """Drop unsearchable operands while others remain, and flatten nested operators of the same kind."""
    flat: list[Node] = []
    for child in children:
        if isinstance(child, _Unsearchable):
            continue
        flat.extend(child.children if isinstance(child, kind) else (child,))
    if not flat:
        return children[0]  # all unsearchable: the first stands for them, with its position
    return flat[0] if len(flat) == 1 else kind(tuple(flat))
