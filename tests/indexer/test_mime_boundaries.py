"""The feed parser with the shared boundary matcher builds exactly the tree the stdlib's own regex builds."""

from __future__ import annotations

import re
from email import feedparser
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path

import pytest

from indexer import mime_boundaries

TRICKY_BOUNDARIES = ["simple", "a.b*c+d?(e)[f]{g}|h^i$j\\k", "=_NextPart_000_0001_01C2", "  spaced  ", "'quoted'", "x--y--"]


def tree(message: Message) -> list:  # type: ignore[type-arg]
    """Everything the parser decided about each part: structure, payloads, preamble, epilogue, defects."""
    out = []
    for part in message.walk():
        payload = part.get_payload() if not part.is_multipart() else None
        out.append((part.get_content_type(), part.preamble, part.epilogue, payload,
                    [type(defect).__name__ for defect in part.defects], list(part.items())))
    return out


def parse_both(raw: bytes) -> tuple[list, list]:  # type: ignore[type-arg]
    mime_boundaries.install()
    shim, end_of_line = feedparser.re, feedparser.NLCRE_eol
    feedparser.re, feedparser.NLCRE_eol = re, mime_boundaries._END_OF_LINE  # noqa: SLF001 - the stdlib's own
    try:
        expected = tree(BytesParser(policy=compat32).parsebytes(raw))
    finally:
        feedparser.re, feedparser.NLCRE_eol = shim, end_of_line
    assert feedparser.re.compile is not re.compile and isinstance(feedparser.NLCRE_eol, mime_boundaries.EndOfLine)
    return expected, tree(BytesParser(policy=compat32).parsebytes(raw))


@pytest.mark.parametrize("text", ["", "x", "\n", "\r", "\r\n", "a\r\n", "a\n\n", "a\r\r\n", "a\n\r", "a\nb", "\r\n\r\n"])
def test_the_end_of_line_matcher_finds_what_the_stdlib_pattern_finds(text: str) -> None:
    expected = mime_boundaries._END_OF_LINE.search(text)  # noqa: SLF001
    actual = mime_boundaries.EndOfLine().search(text)
    assert (actual and (actual.group(0), actual.span())) == (expected and (expected.group(0), expected.span()))


def multipart(boundary: str, newline: bytes, closing: bytes) -> bytes:
    b = boundary.encode()
    lines = [b"From: a@example.com", b'Content-Type: multipart/mixed; boundary="' + b + b'"', b"",
             b"preamble", b"--" + b, b"Content-Type: text/plain", b"", b"one",
             b"--" + b + b"   ", b"", b"two (boundary with trailing blanks before it)",
             b"--" + b + b"x", b"not a boundary: the separator is a prefix of this line", closing, b"epilogue"]
    return newline.join(lines) + newline


@pytest.mark.parametrize("boundary", TRICKY_BOUNDARIES)
@pytest.mark.parametrize("newline", [b"\r\n", b"\n", b"\r"])
def test_tricky_boundaries_parse_the_same(boundary: str, newline: bytes) -> None:
    for closing in (b"--" + boundary.encode() + b"--", b"--" + boundary.encode() + b"-- \t", b"--" + boundary.encode()):
        expected, actual = parse_both(multipart(boundary, newline, closing))
        assert actual == expected


def test_the_spam_assassin_corpus_parses_the_same(spam_assassin_corpus: Path) -> None:
    files = sorted(p for p in spam_assassin_corpus.rglob("*.txt") if p.name != "LICENSE.txt")
    multiparts = 0
    for path in files:
        raw = path.read_bytes()
        expected, actual = parse_both(raw)
        assert actual == expected, path
        multiparts += len(expected) > 1
    assert multiparts > 500  # the corpus has plenty of multipart mail to compare
