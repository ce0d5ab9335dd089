"""Text from mail as the catalogue stores it: NUL and lone surrogates made storable on every engine."""

from __future__ import annotations

import re

# PostgreSQL text cannot hold NUL (U+0000), and no UTF-8 driver (psycopg, sqlite3) encodes a
# lone surrogate: yet both reach us from mail. Header bytes that are not UTF-8 come through
# the ``surrogateescape`` error handler as U+DC80..U+DCFF (PEP 383), and a header may carry
# NUL (RFC 5322 section 4.1 lists it among the obsolete characters parsers meet). JSON
# columns need nothing of this: JSON escapes both (``\u0000``, ``\udce9``) and both engines
# keep those escapes, so the defect lists are lossless as they are.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD: the form of derived columns.

    For what the catalogue derives from a message's bytes (subject, header summaries,
    message-ids, list ids) and for the scope keys (mailbox, domain): the blob keeps the
    exact bytes, and reindex derives these again. U+FFFD is also what the search index
    puts in place of a lone surrogate (``indexer.query.analysis.without_surrogates``), so
    a mailbox indexed from the catalogue and one the query parser reads agree. Same
    length, and idempotent.
    """
    return text if text.isascii() and "\x00" not in text else _UNSTORABLE.sub("\ufffd", text)


# What ``escaped`` writes as an escape sequence: a backslash, NUL, a lone surrogate.
_TO_ESCAPE = re.compile("[\\\\\x00\ud800-\udfff]")
# What ``unescaped`` reads back. ``\xHH`` is also what archiver.envelope.envelope_text
# writes for a byte it escapes, so one function reads both back.
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[d][89a-f][0-9a-f]{2})")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x5C:
        return "\\\\"
    if code == 0 or 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code & 0xFF:02x}"  # NUL, or a byte that was not UTF-8 (PEP 383)
    return f"\\u{code:04x}"  # any other lone surrogate (from JSON's \\ud800, say)


def _unescape(match: re.Match[str]) -> str:
    sequence = match.group(1)
    if sequence == "\\":
        return "\\"
    code = int(sequence[1:], 16)
    return chr(0xDC00 + code if sequence[0] == "x" and code >= 0x80 else code)


def escaped(text: str) -> str:
    """``text`` in the reversible form of the columns whose text exists nowhere else.

    An import's source path, say, is not in the blob, and a file name need not be UTF-8.
    A backslash is doubled, NUL becomes ``\\x00``, a byte that was not UTF-8 (a lone
    surrogate U+DC80..U+DCFF under ``surrogateescape``) ``\\xHH`` and any other lone
    surrogate ``\\uHHHH``; ``unescaped`` gives the original back. Text with none of these
    is unchanged.
    """
    return _TO_ESCAPE.sub(_escape, text)


def unescaped(text: str) -> str:
    """The original of ``escaped(original)``, or the surrogateescape text of envelope text's bytes."""
    return _ESCAPE.sub(_unescape, text) if "\\" in text else text
