"""Split an mbox stream into messages, byte-exact, resumable at any message boundary (RFC 4155)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import BinaryIO

# How messages are delimited and what is kept, decided once for every mbox variant:
#
# - A message starts at a "From " line (RFC 4155 section 2). After the first message, a
#   "From " line is a separator only when it looks like a real From_ line ("From
#   <sender>", optionally followed by a date with a time of day) and is followed by a
#   header block (header fields up to an empty line, at least one of them a field every
#   message has, such as From, Date or Received). RFC 4155 wants an empty line before
#   it, but Netscape-era files omit it, so that is not required. Writers that never quote
#   body lines ("unmunged" files) leave lines such as "From Russia with love" in bodies;
#   splitting there would invent a message and truncate another, so they stay in the body.
# - Content-Length (mboxcl, mboxcl2): when a message's header has one and a body of that
#   length ends exactly at end of file or at the next From_ line (after an optional empty
#   line), it is trusted and "From " lines inside that body are left alone. Mail programs
#   often leave stale lengths behind, so any other value is ignored.
# - The From_ line and the one empty line that ends each message (RFC 4155: the writer
#   adds it before the next From_ line and at the end of the file) belong to the mbox,
#   not to the message (as Python's mailbox module and mutt read them).
# - ">From " quoting: in From_-delimited messages one level of quoting is removed from
#   lines matching ^>+From (the mboxrd rule), because the archive keeps the message, not
#   the mbox's encoding of it. For mboxrd this restores the original exactly; for mboxo
#   it restores every quoted "From " line (the common case) and errs only where a body
#   line originally began with ">From ". Content-Length delimited messages need no
#   quoting and are kept untouched. Each message's location (path:offset) is recorded,
#   so the file region it came from can always be read again.
# - Line endings stay as they are in the file (LF or CRLF); nothing is converted.
# - Lines are read in pieces of at most ``LINE_PIECE_BYTES``, so one enormous line cannot
#   exhaust memory: a message keeps every piece (byte-exact) up to the message limit, and
#   only the first piece of a line can be a From_ line, an empty line or a header field.

_FROM = b"From "
_BOM = b"\xef\xbb\xbf"
_QUOTED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)
_HEADER_FIELD = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
_TIME_OF_DAY = re.compile(rb"\b\d{1,2}:\d{2}(:\d{2})?\b")
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_ASCTIME = re.compile(rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+(\d{1,2})\s+"
                      rb"(\d{1,2}):(\d{2})(?::(\d{2}))?\s+(?:[A-Z]{3,5}\s+)?(\d{4})")
_MONTHS = {m: i for i, m in enumerate(b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
_EMPTY_LINES = (b"\n", b"\r\n")
_LOOKAHEAD_LINES = 200
_LOOKAHEAD_BYTES = 1024 * 1024
LINE_PIECE_BYTES = 64 * 1024
_COMMON_FIELDS = frozenset({b"from", b"date", b"subject", b"message-id", b"received", b"return-path", b"to",
                            b"mime-version", b"delivered-to", b"x-mozilla-status", b"sender", b"reply-to"})


class NotAtFromLineError(ValueError):
    """The stream does not have a From_ line where reading was asked to start."""


@dataclass(frozen=True)
class MboxMessage:
    """One message: its bytes (None if over the size limit), where it lies, and its From_ date."""

    offset: int  # byte offset of its From_ line
    end: int  # byte offset where the next From_ line (or end of file) starts: a safe resume point
    raw: bytes | None
    size: int
    delivered_at: datetime | None


def looks_like_mbox(head: bytes) -> bool:
    return head.removeprefix(_BOM).startswith(_FROM)


def read_mbox(
    stream: BinaryIO, *, start: int = 0, max_message_bytes: int, piece_bytes: int = LINE_PIECE_BYTES
) -> Iterator[MboxMessage]:
    """Messages of ``stream`` from byte ``start``: 0, or an ``end`` an earlier read yielded.

    Raises ``NotAtFromLineError`` (before yielding anything) if no From_ line is there.
    Lines are read ``piece_bytes`` at a time, so memory stays near ``max_message_bytes``
    however long a line is.
    """
    reader = _Lines(stream, start, piece_bytes)
    line = reader.readline()
    if not line:
        return  # nothing (more) to read: an empty stream, or the end of the last message
    if not line.startswith(_FROM):
        raise NotAtFromLineError(f"no From_ line at byte {start}")
    while line:
        offset = reader.position - len(line)
        rest = line
        while rest and not rest.endswith(b"\n"):
            rest = reader.readline()  # an overlong first From_ line: the mbox's, like all of it
        collected, next_line = _read_one(reader, max_message_bytes)
        yield MboxMessage(
            offset=offset,
            end=reader.position - len(next_line),
            raw=collected.raw,
            size=collected.size,
            delivered_at=delivery_date(line),
        )
        line = next_line


def delivery_date(from_line: bytes) -> datetime | None:
    """The asctime date of a From_ line ("From a@b Sat Jan  3 01:05:34 1996"), taken as UTC.

    RFC 4155 leaves the zone unstated (it is the delivering host's local time).
    """
    match = _ASCTIME.search(from_line)
    if match is None:
        return None
    month, day, hour, minute, second, year = match.groups()
    try:
        return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second or 0), tzinfo=timezone.utc)
    except ValueError:
        return None


@dataclass(frozen=True)
class _Collected:
    raw: bytes | None
    size: int


def _read_one(reader: _Lines, limit: int) -> tuple[_Collected, bytes]:
    """Read the message after a From_ line; return it and the next From_ line (b"" at the end)."""
    message = _Collector(limit)
    in_header = True
    while True:
        line = reader.readline()
        if line and reader.continued:
            message.add(line)  # the rest of a long line: content, whatever it starts with
            continue
        if not line:
            if not in_header and message.ends_with_empty_line():
                # Dropped at the end of the file too: the last message must hash the same
                # as it will once more mail is appended after it.
                message.drop_last_line()
            return message.finish(unquote=True), b""
        if in_header:
            if line.startswith(_FROM) and _is_separator(reader, line):
                return message.finish(unquote=True), line  # a header-only message (no body, no empty line)
            message.add(line)
            if line in _EMPTY_LINES:
                in_header = False
                trusted = _by_content_length(reader, message)
                if trusted is not None:
                    return trusted
            continue
        if line.startswith(_FROM) and _is_separator(reader, line):
            if message.ends_with_empty_line():
                message.drop_last_line()  # the empty line before a From_ line separates messages
            return message.finish(unquote=True), line
        message.add(line)


def _by_content_length(reader: _Lines, message: _Collector) -> tuple[_Collected, bytes] | None:
    match = _CONTENT_LENGTH.search(message.kept())
    if match is None or message.discarded:
        return None
    length = int(match.group(1))
    if message.size + length > message.limit:
        return None  # the line scan below finds the real end and refuses it if it is too big
    body = reader.read(length)
    consumed = [body]
    if len(body) == length:
        following = reader.readline()
        consumed.append(following)
        if following in _EMPTY_LINES:
            following = reader.readline()
            consumed.append(following)
        if not following or (following.startswith(_FROM) and _is_separator(reader, following)):
            message.add(body)
            return message.finish(unquote=False), following
    reader.unread(b"".join(consumed))  # a stale length: let the line scan decide
    return None


def _is_separator(reader: _Lines, line: bytes) -> bool:
    """Is this "From " line a From_ line rather than body text?"""
    if not line.endswith(b"\n"):
        return False  # longer than a piece, or the file's last bytes: no envelope line is
    sender, _, date = line[len(_FROM) :].strip().partition(b" ")
    if not sender:
        return False
    if date.strip() and not _TIME_OF_DAY.search(date):
        return False  # "From Russia with love" is prose, not an envelope line
    return _header_block_follows(reader)


def _header_block_follows(reader: _Lines) -> bool:
    """Do the next lines form a message header (RFC 5322 2.2) with at least one common field?"""
    if not _HEADER_FIELD.match(reader.peekline()):
        return False  # the usual case for body text: settle it without reading ahead
    seen: list[bytes] = []
    seen_bytes = 0
    verdict = False
    try:
        for _ in range(_LOOKAHEAD_LINES):
            if seen_bytes > _LOOKAHEAD_BYTES:
                break
            line = reader.readline()
            seen.append(line)
            seen_bytes += len(line)
            if line and reader.continued:
                continue  # the rest of a long header line
            if not line or line in _EMPTY_LINES:
                break
            field = _HEADER_FIELD.match(line)
            if field:
                verdict = verdict or field.group(0).rstrip(b": \t").lower() in _COMMON_FIELDS
            elif line[:1] not in (b" ", b"\t"):
                return False  # neither a field nor a folded continuation: body text
        return verdict
    finally:
        reader.unread(b"".join(seen))


class _Collector:
    """Accumulates one message; stops keeping bytes once it is certainly over the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # Keep a little beyond the limit: the separator line that is dropped at the end
        # must not turn a message of exactly ``limit`` bytes into a refused one.
        self._keep = limit + 2
        self._parts: list[bytes] = []
        self.size = 0
        self.discarded = False
        self._tail = b""

    def add(self, data: bytes) -> None:
        self.size += len(data)
        self._tail = (self._tail + data[-3:])[-3:]
        if self.discarded:
            return
        if self.size > self._keep:
            self.discarded = True
            self._parts = []
        else:
            self._parts.append(data)

    def kept(self) -> bytes:
        return b"".join(self._parts)

    def ends_with_empty_line(self) -> bool:
        return self._tail.endswith(b"\n\n") or self._tail.endswith(b"\n\r\n")

    def drop_last_line(self) -> None:
        cut = 2 if self._tail.endswith(b"\r\n") else 1
        self.size -= cut
        if not self.discarded and self._parts:
            self._parts.pop()  # in the line scan every part is one line: this is the empty one

    def finish(self, *, unquote: bool) -> _Collected:
        if self.discarded or self.size > self.limit:
            return _Collected(raw=None, size=self.size)
        raw = b"".join(self._parts)
        if unquote and b">From " in raw:
            raw = _QUOTED_FROM.sub(rb"\1", raw)
        return _Collected(raw=raw, size=self.size)


class _Lines:
    """Line reader over a binary stream with lookahead, push-back and a byte position.

    A line longer than ``piece_bytes`` comes back in pieces; ``continued`` says whether the
    piece ``readline`` returned last continues a line rather than starting one.
    """

    def __init__(self, stream: BinaryIO, start: int, piece_bytes: int = LINE_PIECE_BYTES) -> None:
        self._stream = stream
        self._piece_bytes = piece_bytes
        if start:
            stream.seek(start)
        self.position = start  # offset of the next byte readline() returns
        self._pending: list[bytes] = []  # pushed-back lines, the next one last
        self._at_line_start = True
        self.continued = False
        if start == 0 and self.peekline().startswith(_BOM):
            self.read(len(_BOM))  # a UTF-8 byte-order mark before the first From_ line

    def readline(self) -> bytes:
        line = self._pending.pop() if self._pending else self._stream.readline(self._piece_bytes)
        self.continued = not self._at_line_start
        self._at_line_start = line.endswith(b"\n")
        self.position += len(line)
        return line

    def peekline(self) -> bytes:
        """The next piece, left to be read; it starts a line if the last one ended one."""
        line = self._pending.pop() if self._pending else self._stream.readline(self._piece_bytes)
        if line:
            self._pending.append(line)
        return line

    def read(self, size: int) -> bytes:
        parts: list[bytes] = []
        wanted = size
        while wanted and self._pending:
            line = self._pending.pop()
            if len(line) > wanted:
                self._pending.append(line[wanted:])
                line = line[:wanted]
            parts.append(line)
            wanted -= len(line)
        if wanted:
            parts.append(self._stream.read(wanted))
        data = b"".join(parts)
        self.position += len(data)
        # What follows a counted body is taken as the start of a line (the mboxcl rule).
        self._at_line_start = True
        return data

    def unread(self, data: bytes) -> None:
        """Push ``data``, which must begin at the start of a line, back to be read again first."""
        if not data:
            return
        self._at_line_start = True
        self.position -= len(data)
        pieces = data.split(b"\n")
        lines = [piece + b"\n" for piece in pieces[:-1]]
        if pieces[-1]:
            lines.append(pieces[-1])
        self._pending.extend(reversed(lines))


__all__ = ["MboxMessage", "NotAtFromLineError", "delivery_date", "looks_like_mbox", "read_mbox"]
