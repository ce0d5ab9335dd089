"""Text derived from mail as the catalogue stores it: NUL and lone surrogates made storable on every engine."""

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
