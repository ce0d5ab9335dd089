"""Header text: unfolding (RFC 5322 2.2.3), encoded-words (RFC 2047) and raw 8-bit bytes."""

from __future__ import annotations

import binascii
import re

from indexer.extraction.charsets import decode_bytes

# RFC 2047 section 2, leniently: any charset token (RFC 2231 section 5 language suffix
# included), and the encoded text may hold spaces, which broken mailers emit.
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([bBqQ])\?([^?]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r?\n|\r")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


def unfold(value: str) -> str:
    """Remove the line breaks of a folded header (RFC 5322 section 2.2.3), keep the blanks."""
    if "\n" not in value and "\r" not in value:
        return value
    return _FOLD.sub("", value)


def decode_header(value: object) -> tuple[str, tuple[str, ...]]:
    """Decode one header value to text; returns ``(text, problems)``.

    Whitespace between two adjacent encoded-words is dropped (RFC 2047 section 6.2);
    adjacent words in the same charset are decoded together, because mailers split
    multi-byte characters across words. Malformed words stay as written.
    """
    text = unfold(value if isinstance(value, str) else str(value))
    if "=?" not in text:
        return (text if text.isascii() else _decode_raw(text)[0]), ()
    problems: list[str] = []
    # (charset, encoded chunks) for runs of encoded-words, (None, [text]) for the rest.
    pieces: list[tuple[str | None, list]] = []
    position = 0
    last_was_word = False
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        if between and not (last_was_word and between.isspace()):
            pieces.append((None, [between]))
        charset, encoding, encoded = match.groups()
        payload = _decode_word(encoding, encoded)
        if payload is None:
            problems.append(f"malformed encoded-word {match.group(0)[:40]!r}")
            pieces.append((None, [match.group(0)]))
            last_was_word = False
        else:
            previous = pieces[-1][0] if pieces else None
            if previous is not None and previous.lower() == charset.lower():
                pieces[-1][1].append(payload)
            else:
                pieces.append((charset, [payload]))
            last_was_word = True
        position = match.end()
    if position < len(text):
        pieces.append((None, [text[position:]]))
    out: list[str] = []
    for charset, chunks in pieces:
        if charset is None:
            out.append(decode_raw_text(chunks[0]))
            continue
        decoded, problem = decode_bytes(b"".join(chunks), charset)
        if problem:
            problems.append(problem)
        out.append(decoded)
    return "".join(out), tuple(problems)


def decode_raw_text(value: str) -> str:
    """Text for a value whose non-ASCII bytes arrived raw (kept as surrogate escapes)."""
    return value if value.isascii() else _decode_raw(value)[0]


def _decode_raw(value: str) -> tuple[str, str]:
    # RFC 6532 allows raw UTF-8 in headers; older mailers sent raw windows-1252.
    # The parser keeps undecodable bytes as surrogate escapes, so this round-trips.
    return decode_bytes(value.encode("utf-8", "surrogateescape"), None)


def _decode_word(encoding: str, encoded: str) -> bytes | None:
    data = encoded.encode("utf-8", "surrogateescape")
    if encoding in "qQ":
        return binascii.a2b_qp(data, header=True)
    data = data.replace(b" ", b"").rstrip(b"=")
    if _NOT_BASE64.search(data):
        return None
    remainder = len(data) % 4
    if remainder == 1:  # one dangling sextet carries no whole byte
        data = data[:-1]
    elif remainder:
        data += b"=" * (4 - remainder)
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        return None
