"""The OpenSearch index layout, and IndexDocuments turned into the JSON it stores."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from indexer.document import IndexDocument
from indexer.query import fields
from indexer.query.analysis import MAX_TOKEN_BYTES, is_word_char, split_words

# Sort key for the date orders: whole UTC seconds, ties broken by id (``fields.ID``).
DATE_ORDER = "date_order"
# Text fields hold words already split by ``indexer.query.analysis`` and joined by spaces,
# so the engine only splits at those spaces: the one word rule runs in Python, at index
# and at query time, and cannot drift from tantivy's (Java's Unicode tables, its
# lower-casing of "İ" and its character-counting length filter would each differ).
WORDS_ANALYZER = "postvault_words"
# Stands where tantivy leaves a position empty (a dropped long word, the gap between two
# values of one field), so phrases and NEAR count the same distances. No query can match
# it: every query word is a run of alphanumeric characters.
FILLER = "_"
# Lucene refuses a term over 32766 UTF-8 bytes, and the whole document with it; a keyword
# value longer than this many characters (4 bytes each at most) is left unindexed instead.
KEYWORD_MAX_CHARS = 8191
MAX_LONG = 2**63 - 1

# Tantivy keeps dates as i64 nanoseconds and clamps the rest into this span; clamping the
# same way here makes ``before:1600`` or ``after:3000`` find the same messages in both.
EARLIEST = datetime(1677, 9, 21, 0, 12, 43, 145225, tzinfo=timezone.utc)
LATEST = datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=timezone.utc)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# ASCII text: every character that is not a letter or digit becomes a space, so that
# str.split finds the words (C calls only, where a regular expression made a string per match).
_ASCII_SEPARATORS = str.maketrans({code: " " for code in range(128) if not chr(code).isalnum()})
# A run of words joined by spaces, in UTF-8: each byte of a word (an ASCII letter or digit,
# or any byte of a non-ASCII character) becomes "a" and each space stays, so a word of
# MAX_TOKEN_BYTES bytes or more is a run of that many "a"s.
_WORD_BYTES = bytes(ord("a") if byte >= 0x80 or chr(byte).isalnum() else ord(" ") for byte in range(256))
_LONG_WORD = b"a" * MAX_TOKEN_BYTES


def analysis_settings() -> dict[str, Any]:
    return {"analyzer": {WORDS_ANALYZER: {"type": "custom", "tokenizer": "whitespace"}}}


def mappings() -> dict[str, Any]:
    """The mapping every index version gets; ``mapping_problems`` compares a live one with it."""
    properties: dict[str, Any] = {
        fields.ID: {"type": "long"},
        fields.DATE: {"type": "date"},
        DATE_ORDER: {"type": "long", "index": False},  # sorted on, never searched
        fields.SIZE: {"type": "long"},
        fields.HAS_ATTACHMENT: {"type": "boolean"},
    }
    for name in fields.ANALYSED_FIELDS:
        properties[name] = {"type": "text", "analyzer": WORDS_ANALYZER}
    for name in fields.KEYWORD_FIELDS:
        properties[name] = {"type": "keyword", "ignore_above": KEYWORD_MAX_CHARS}
    return {
        "dynamic": "strict",  # a field this code does not know is a bug, not a new column
        # The index is rebuilt from blobs, never from itself (invariant 2), and hits are read
        # from doc values, so the word streams, most of the bytes, are not kept a second time.
        "_source": {"excludes": list(fields.ANALYSED_FIELDS)},
        "properties": properties,
    }


def index_body(*, shards: int, replicas: int, building: bool = False) -> dict[str, Any]:
    """Settings and mappings for a new index version; ``building`` tunes it for a bulk load."""
    settings: dict[str, Any] = {
        "number_of_shards": shards,
        # While a rebuild loads it nobody searches it: no replicas to feed, no refreshes.
        "number_of_replicas": 0 if building else replicas,
        "analysis": analysis_settings(),
    }
    if building:
        settings["refresh_interval"] = "-1"
    return {"settings": settings, "mappings": mappings()}


# --- documents ---


def _ranges(code_points: list[int]) -> str:
    """A regex character class body for ``code_points`` (ascending)."""
    parts: list[str] = []
    first = previous = -2
    for code_point in [*code_points, -2]:
        if code_point == previous + 1:
            previous = code_point
            continue
        if first >= 0:
            parts.append(f"\\U{first:08x}" + (f"-\\U{previous:08x}" if previous > first else ""))
        first = previous = code_point
    return "".join(parts)


class _WordPatterns(NamedTuple):
    """Word runs, and word characters this Python has no case mapping for; ``*_bmp`` for text
    without characters beyond U+FFFF, where the regex engine checks a class in one lookup
    instead of walking its list of ranges."""

    runs: re.Pattern[str]
    runs_bmp: re.Pattern[str]
    unknown: re.Pattern[str]
    unknown_bmp: re.Pattern[str]


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@functools.cache
def _word_patterns() -> _WordPatterns:
    """Built once per process from ``is_word_char``: the regex engine then finds words at
    C speed, where asking character by character made indexing much slower."""
    extra = [
        code_point
        for code_point in range(0x80, 0x110000)
        if not 0xD800 <= code_point <= 0xDFFF and not chr(code_point).isalnum() and is_word_char(chr(code_point))
    ]
    # Unassigned in this Python's Unicode tables: ``str.lower`` leaves such a character
    # alone while the word rule may lower-case it, so text holding one takes the slow path.
    unknown = [code_point for code_point in extra if unicodedata.category(chr(code_point)) == "Cn"]

    def bmp(code_points: list[int]) -> list[int]:
        return [code_point for code_point in code_points if code_point <= 0xFFFF]

    # \w is str.isalnum plus "_", which ``_value_words`` turns into a space first. "\x00"
    # keeps a class valid when it would otherwise be empty; it is never a word character.
    return _WordPatterns(
        runs=re.compile(f"[\\w{_ranges(extra)}]+"),
        runs_bmp=re.compile(f"[\\w{_ranges(bmp(extra))}]+"),
        unknown=re.compile(f"[\\x00{_ranges(unknown)}]"),
        unknown_bmp=re.compile(f"[\\x00{_ranges(bmp(unknown))}]"),
    )


def prepare() -> None:
    """Build the word patterns now: a process about to fork workers gives them all one copy."""
    _word_patterns()


def _value_words(value: str) -> str:
    """The positions tantivy gives one value, space-separated: its words, FILLER for each
    dropped long word. Whole-string operations only, unless a word is long or unusual."""
    if value.isascii():
        runs = value.translate(_ASCII_SEPARATORS).split()
        joined = " ".join(runs)
        lowered = joined.lower()
    else:
        patterns = _word_patterns()
        astral = _ASTRAL.search(value) is not None
        runs = (patterns.runs if astral else patterns.runs_bmp).findall(value.replace("_", " "))
        joined = " ".join(runs)
        if (patterns.unknown if astral else patterns.unknown_bmp).search(value):
            lowered = " ".join((split_words(run) or ("",))[0] for run in runs)
        else:
            # Lower-cased all at once, as the word rule does it character by character: the
            # one context rule of ``str.lower`` (a final capital sigma) is taken out first.
            lowered = joined.replace("Σ", "σ").lower()
    if _LONG_WORD not in joined.encode("utf-8").translate(_WORD_BYTES):
        return lowered
    words = [
        low if len(run.encode("utf-8")) < MAX_TOKEN_BYTES else FILLER
        for run, low in zip(runs, lowered.split(" "), strict=True)
    ]
    # Tantivy places the next value after the last word it kept: a dropped word at the end
    # of a value takes no position.
    while words and words[-1] == FILLER:
        words.pop()
    return " ".join(words)


def word_stream(values: Iterable[str]) -> str:
    """The text an analysed field is indexed as: one space-separated word per position.

    ``values`` are a document's values as ``fields.document_values`` gives them, that is
    after ``index_text`` has set Chinese and Japanese characters apart.

    Tantivy leaves one empty position between two values of a multi-valued field (measured:
    ``filename:a NEAR/1 b`` matches file names "x a" and "b y"), even after a value with no
    words; a FILLER holds it.
    """
    positions: list[str] = []
    for number, value in enumerate(values):
        if number:
            positions.append(FILLER)
        words = _value_words(value)
        if words:
            positions.append(words)
    return " ".join(positions)


def clamp_date(moment: datetime) -> datetime:
    # Naive dates are taken as UTC, as the tantivy backend does. Years outside the span are
    # clamped before converting: 9999-12-31 west of UTC is past what a datetime can hold.
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    if moment.year > LATEST.year:
        return LATEST
    if moment.year < EARLIEST.year:
        return EARLIEST
    return min(max(moment.astimezone(timezone.utc), EARLIEST), LATEST)


def epoch_millis(moment: datetime) -> int:
    return (clamp_date(moment) - UNIX_EPOCH) // timedelta(milliseconds=1)


def date_from_millis(millis: int) -> datetime:
    return UNIX_EPOCH + timedelta(milliseconds=millis)


def to_source(document: IndexDocument) -> dict[str, Any]:
    """The JSON document OpenSearch indexes for ``document``."""
    moment = clamp_date(document.date)
    source: dict[str, Any] = {
        fields.ID: document.id,
        fields.DATE: epoch_millis(moment),
        DATE_ORDER: (moment - UNIX_EPOCH) // timedelta(seconds=1),
        fields.SIZE: min(max(document.size, 0), MAX_LONG),
        fields.HAS_ATTACHMENT: document.has_attachment,
    }
    values = fields.document_values(document)
    for name in fields.ANALYSED_FIELDS:
        if values.get(name):
            source[name] = word_stream(values[name])
    for name in fields.KEYWORD_FIELDS:
        if values.get(name):
            source[name] = list(values[name])
    return source


# --- comparing a live index with the layout above ---


def mapping_problems(live_mappings: Mapping[str, Any], live_settings: Mapping[str, Any]) -> list[str]:
    """What differs between a live index and ``index_body``, in plain words; empty if nothing."""
    expected = mappings()
    problems: list[str] = []
    live_properties = live_mappings.get("properties", {})
    for name, wanted in expected["properties"].items():
        found = live_properties.get(name)
        if found is None:
            problems.append(f"field {name!r} is missing")
            continue
        for key, value in wanted.items():
            if _normal(found.get(key)) != _normal(value):
                problems.append(f"field {name!r} has {key} {found.get(key)!r}, expected {value!r}")
    for name in sorted(set(live_properties) - set(expected["properties"])):
        problems.append(f"field {name!r} is not one postvault defines")
    if _normal(live_mappings.get("dynamic")) != "strict":
        problems.append("the mapping accepts unknown fields (dynamic is not strict)")
    wanted_analyzer = analysis_settings()["analyzer"][WORDS_ANALYZER]
    found_analyzer = live_settings.get("analysis", {}).get("analyzer", {}).get(WORDS_ANALYZER)
    if found_analyzer is None:
        problems.append(f"analyzer {WORDS_ANALYZER!r} is missing")
    elif any(_normal(found_analyzer.get(key)) != value for key, value in wanted_analyzer.items()):
        problems.append(f"analyzer {WORDS_ANALYZER!r} is {found_analyzer!r}, expected {wanted_analyzer!r}")
    if live_settings.get("translog", {}).get("durability", "request") != "request":
        # Without it a bulk request is acknowledged before its translog is fsynced.
        problems.append("index.translog.durability is not 'request': acknowledged documents may be lost")
    return problems


def _normal(value: object) -> object:
    # The settings and mapping APIs may answer "false" or "8191" for false and 8191.
    return str(value).lower() if isinstance(value, (bool, int)) else value
