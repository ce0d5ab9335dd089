"""parse_message: raw RFC 5322 bytes to a ParsedMessage, never raising, defects recorded."""

# Why the stdlib parser with policy compat32, and not mail-parser or email.policy.default:
# it was several times faster than either on the SpamAssassin corpus (the figures are in
# bench/README.md, "Measurements behind design choices"), and none of the three raised
# on any message. mail-parser wraps the same stdlib parser (compat32), so
# it reads nothing the stdlib cannot, and then does work search does not need (regex
# parsing of every Received header, sender-IP guessing, JSON-ready dicts);
# policy.default builds a structured object per header. compat32 keeps raw header
# strings (undecodable bytes as surrogate escapes), and only the fields search uses are
# decoded here, with our own lenient RFC 2047, charset and transfer-encoding handling
# (indexer.extraction). mail-parser is therefore not used.

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.errors import StartBoundaryNotFoundDefect
from email.feedparser import BytesFeedParser
from email.message import Message
from email.parser import BytesParser
from email.policy import Compat32
from typing import Any, TypeVar

from indexer import mime_boundaries
from indexer.document import Attachment, ParsedMessage
from indexer.extraction import (
    Extracted,
    ExtractionLimits,
    decode_bytes,
    decode_header,
    decode_html,
    decode_raw_text,
    extract_attachment,
    html_to_text,
    parse_addresses,
    parse_date,
    parse_list_id,
    parse_message_id,
    parse_message_ids,
    truncate,
    unfold,
)

mime_boundaries.install()

_ADDRESS_FIELDS = ("from", "sender", "reply-to", "to", "cc", "bcc")
_SINGLE_FIELDS = ("subject", "date", "message-id", "in-reply-to", "references", "list-id")
_WANTED = frozenset(_ADDRESS_FIELDS + _SINGLE_FIELDS)
_ADDRESS_ATTRIBUTES = {
    "from": "from_",
    "sender": "sender",
    "reply-to": "reply_to",
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
}
_T = TypeVar("_T")
_NESTED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_UUENCODE = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_WORD = re.compile(r"\w{2,}")
_NESTED = "in attached message"
_FEED_CHUNK = 64 * 1024
# RFC 5322 section 4.5 (obs-optional): "field-name *WSP ':'". The stdlib parser takes a
# line like "Subject : x" for the start of the body and loses every header after it.
_OBSOLETE_NAME_BLANKS = re.compile(rb"^([!-9;-~]+)[ \t]+:", re.MULTILINE)


class _LenientPolicy(Compat32):
    """compat32 that unfolds (RFC 5322 section 2.2.3) before any header value is read.

    The stdlib reads parameters from the folded value, so ``boundary="foo<CRLF> bar"``
    becomes a boundary with a line break in it that no delimiter line can match.
    """

    def header_fetch_parse(self, name: str, value: str) -> object:
        if "\n" in value or "\r" in value:
            value = unfold(value)
        if ";" not in value and "=" in value and name.lower() == "content-type":
            value = _insert_parameter_separator(value)
        return super().header_fetch_parse(name, value)


_POLICY = _LenientPolicy()


def _insert_parameter_separator(value: str) -> str:
    # "multipart/mixed boundary=x": the semicolon of RFC 2045 section 5.1 forgotten.
    head, _, rest = value.strip().partition(" ") if " " in value.strip() else value.strip().partition("\t")
    return f"{head}; {rest.strip()}" if "/" in head and rest else value


def parse_message(raw: bytes, limits: ExtractionLimits = ExtractionLimits()) -> ParsedMessage:
    """Parse one message as far as it can be parsed; never raises.

    Body: every text/plain body part, then every HTML body part as text, joined by a
    blank line. In a multipart/alternative, HTML is the same content as the plain
    part by definition (RFC 2046 section 5.1.4), so its text is added only when it
    brings words the plain alternative lacks (``_adds_words``): a stub such as "This is
    an HTML message" must not hide the real text from search, and a faithful plain
    version must not be indexed twice.
    """
    try:
        data = raw if isinstance(raw, bytes) else _to_bytes(raw)
        return _MessageReader(limits, depth=0).read_bytes(data)
    except Exception as error:  # invariant 4: bad input gets an answer, never a crash
        return ParsedMessage(defects=(f"parser failure: {type(error).__name__}",))


def _to_bytes(raw: object) -> bytes:
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return bytes(raw)  # type: ignore[call-overload]


@dataclass
class _Collected:
    """What the walk over one message's tree has found so far."""

    plain: list[tuple[int | None, str]] = field(default_factory=list)  # (alternative group, text)
    html: list[tuple[int | None, str]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    defects: dict[str, None] = field(default_factory=dict)  # ordered set
    # Preambles and epilogues (RFC 2046 section 5.1.1): ignored in well-formed mail,
    # but where a boundary is broken the parser files real text there.
    margins: list[str] = field(default_factory=list)
    broken_structure: bool = False
    # Multiparts whose opening delimiter never came: (boundary, enclosing boundaries).
    unopened: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


class _MessageReader:
    """Reads one message (top-level or nested at ``depth``) into a ParsedMessage."""

    def __init__(self, limits: ExtractionLimits, depth: int, boundaries: tuple[str, ...] = ()) -> None:
        self.limits = limits
        self.depth = depth
        self.boundaries = boundaries  # of the multiparts enclosing this message
        self.found = _Collected()

    def read_bytes(self, data: bytes) -> ParsedMessage:
        data = self._repaired_header_names(data)
        try:
            message = self._parse_bounded(data)
        except RecursionError:
            # The stdlib parser recurses once per nesting level; thousands of levels
            # exhaust the stack. Keep the headers and index the body as raw text.
            message = BytesParser(policy=_POLICY).parsebytes(data, headersonly=True)
            self._defect("MIME nesting too deep to parse; body indexed as raw text")
        except Exception as error:  # not seen in any corpus; the same way out if it happens
            message = BytesParser(policy=_POLICY).parsebytes(data, headersonly=True)
            self._defect(f"MIME structure unparseable ({type(error).__name__}); body indexed as raw text")
        parsed = self.read(message)
        dropped = _dropped_text(data, self.found.unopened)
        if dropped:
            parsed = replace(parsed, body_text="\n\n".join(filter(None, (parsed.body_text, dropped))))
        return parsed

    def _parse_bounded(self, data: bytes) -> Message:
        """The stdlib feed parser, fed in chunks and stopped once max_mime_parts exist.

        The parser pays for every part it creates, so a message of 100k tiny parts costs
        seconds before any limit here could apply; counting the parts it creates lets the
        feeding stop early instead.
        """
        created = 0

        def counting_factory(policy: Compat32 = _POLICY) -> Message:
            nonlocal created
            created += 1
            return Message(policy=policy)

        parser = BytesFeedParser(_factory=counting_factory, policy=_POLICY)
        created = 0  # the constructor calls the factory once to probe its signature
        for start in range(0, len(data), _FEED_CHUNK):
            parser.feed(data[start : start + _FEED_CHUNK])
            if created > self.limits.max_mime_parts:
                self._defect(f"more than {self.limits.max_mime_parts} MIME parts; the rest is not indexed")
                break
        return parser.close()

    def _repaired_header_names(self, data: bytes) -> bytes:
        end = data.find(b"\n\n")
        crlf_end = data.find(b"\n\r\n")
        if end < 0 or 0 <= crlf_end < end:
            end = crlf_end
        head = data if end < 0 else data[:end]
        if _OBSOLETE_NAME_BLANKS.search(head) is None:
            return data
        self._defect("blank between header name and colon (obsolete syntax)")
        return _OBSOLETE_NAME_BLANKS.sub(rb"\1:", head) + (b"" if end < 0 else data[end:])

    def read(self, message: Message) -> ParsedMessage:
        # Each stage is guarded on its own, so that a failure in one keeps the rest:
        # headers survive a broken tree, and the body survives broken headers.
        try:
            headers = self._headers(message)
        except Exception as error:
            self._defect(f"header fields unreadable: {type(error).__name__}")
            headers = {}
        try:
            self._walk(message)
        except Exception as error:
            self._defect(f"MIME structure partly unreadable: {type(error).__name__}")
        return ParsedMessage(
            body_text=self._body_text(),
            attachments=tuple(self.found.attachments),
            defects=tuple(self.found.defects)[: self.limits.max_defects],
            **headers,
        )

    # -- headers ---------------------------------------------------------------------

    def _headers(self, message: Message) -> dict[str, object]:
        values: dict[str, list[str]] = {}
        for name, value in message.raw_items():
            key = name.lower()
            if key in _WANTED:
                values.setdefault(key, []).append(value if isinstance(value, str) else str(value))
        first = {key: found[0] for key, found in values.items()}
        fields: dict[str, object] = {}
        if "subject" in first:
            subject, problems = self._guarded("Subject", decode_header, first["subject"], ("", ()))
            fields["subject"] = subject.strip()
            self._defects("Subject", problems)
        for key in _ADDRESS_FIELDS:
            if key in values:
                mailboxes, problems = self._guarded(key.title(), parse_addresses, values[key], ((), ()))
                fields[_ADDRESS_ATTRIBUTES[key]] = mailboxes
                self._defects(key.title(), problems)
        if first.get("date", "").strip():
            fields["date"] = self._guarded("Date", parse_date, first["date"], None)
            if fields["date"] is None:
                self._defect("unparseable Date header")
        fields["message_id"] = self._guarded("Message-ID", parse_message_id, first.get("message-id"), "")
        fields["in_reply_to"] = self._guarded("In-Reply-To", parse_message_ids, first.get("in-reply-to"), ())
        references = " ".join(values.get("references", []))
        fields["references"] = self._guarded("References", parse_message_ids, references, ())
        fields["list_id"] = self._guarded("List-Id", parse_list_id, first.get("list-id"), "")
        return fields

    def _guarded(self, label: str, read: Callable[[Any], _T], value: Any, fallback: _T) -> _T:
        # One unreadable header field must not cost the others (invariant 4).
        try:
            return read(value)
        except Exception as error:
            self._defect(f"{label} header unreadable: {type(error).__name__}")
            return fallback

    # -- the MIME tree ---------------------------------------------------------------

    def _walk(self, message: Message) -> None:
        # Iterative, depth-first, in document order: a recursive walk (or the stdlib's
        # walk(), a chain of generators) costs a Python frame per nesting level.
        # Each entry: part, its multipart/alternative ancestor, enclosing boundaries.
        stack: list[tuple[Message, int | None, tuple[str, ...]]] = [(message, None, self.boundaries)]
        number = 0
        while stack:
            part, group, boundaries = stack.pop()
            number += 1
            if number > self.limits.max_mime_parts:
                self._defect(f"more than {self.limits.max_mime_parts} MIME parts; the rest is not indexed")
                return
            for defect in part.defects:
                name = type(defect).__name__
                self._defect(name if number == 1 else f"{name} in part {number}")
                self.found.broken_structure = True
                if isinstance(defect, StartBoundaryNotFoundDefect):
                    self.found.unopened.append((str(part.get_boundary("")), boundaries))
            # _payload, not get_payload(): for a str payload that re-decodes 8-bit bytes
            # with the declared charset and U+FFFD, losing text our fallbacks would keep.
            payload = part._payload
            content_type = _content_type(part)
            if isinstance(payload, list):
                if content_type.startswith("message/"):
                    self._message_part(part, content_type, payload, number, boundaries)
                    continue
                for margin in (part.preamble, part.epilogue):
                    if margin and not margin.isspace():
                        self.found.margins.append(decode_raw_text(margin))
                child_group = number if content_type == "multipart/alternative" else group
                inside = (*boundaries, str(part.get_boundary("")))
                stack.extend((child, child_group, inside) for child in reversed(payload) if isinstance(child, Message))
                continue
            self._leaf(part, content_type, payload if isinstance(payload, str) else "", number, group)

    def _leaf(self, part: Message, content_type: str, payload: str, number: int, group: int | None) -> None:
        filename = self._filename(part, number)
        disposition = _disposition(part)
        data = self._decoded(part, payload, number)
        if content_type.startswith("multipart/"):
            # A multipart without a usable boundary (RFC 2046 section 5.1.1 requires
            # one): the parser kept it whole, so read it as text rather than lose it.
            content_type = "text/plain"
        if disposition != "attachment" and not filename and content_type in ("text/plain", "text/html"):
            charset = _charset(part)
            if content_type == "text/plain":
                text, problem = decode_bytes(data, charset)
                self.found.plain.append((group, _newlines(text)))
            else:
                html, problem = decode_html(data, charset)
                self.found.html.append((group, html_to_text(html)))
            if problem:
                self._defect(f"{problem} in part {number}")
            return
        try:
            extracted = extract_attachment(
                data,
                content_type=content_type,
                filename=filename,
                limits=self.limits,
                charset=_charset(part),
                depth=self.depth,
                read_message=self._read_attached_bytes,
            )
        except Exception as error:  # each extractor guards itself; this is the last line
            failure = f"extraction failed: {type(error).__name__}"
            extracted = Extracted(skipped="extraction failed", defects=(failure,))
        attachment = Attachment(filename, content_type, len(data), extracted.text, extracted.skipped)
        self._attach(attachment, extracted.defects)

    def _message_part(
        self, part: Message, content_type: str, payload: list[Message], number: int, boundaries: tuple[str, ...]
    ) -> None:
        filename = self._filename(part, number)
        inner = payload[0] if payload and isinstance(payload[0], Message) else None
        if content_type not in _NESTED_MESSAGE_TYPES or inner is None:
            # message/delivery-status, disposition-notification, feedback-report...:
            # blocks of header fields (RFC 3464 section 2), indexed as text.
            text = "\n\n".join(_header_block_text(block) for block in payload if isinstance(block, Message))
            kept = truncate(text, self.limits.max_extracted_chars)
            self._attach(Attachment(filename, content_type, len(text), kept), ())
            return
        if self.depth + 1 > self.limits.max_nesting_depth:
            self._attach(Attachment(filename, content_type, len(_serialised(inner)), skipped="nesting too deep"), ())
            self._defect(f"attached message in part {number} nested deeper than {self.limits.max_nesting_depth}")
            return
        encoding = _transfer_encoding(part)
        nested_reader = _MessageReader(self.limits, self.depth + 1, boundaries)
        if encoding in ("base64", "quoted-printable"):
            # RFC 2046 section 5.2.1 forbids encoding message/rfc822, but mailers do it;
            # the parser then read the encoded text as a message. Decode and re-read.
            raw = _serialised(inner)
            nested = nested_reader.read_bytes(_decode_transfer(raw, encoding)[0])
        else:
            nested = nested_reader.read(inner)
            raw = _serialised(inner)
            # Text the stdlib dropped inside the attached message is only in our raw bytes.
            self.found.unopened.extend(nested_reader.found.unopened)
        text = truncate(_message_summary(nested), self.limits.max_extracted_chars)
        self._attach(Attachment(filename, content_type, len(raw), text), ())
        # Attachments of the attached message are listed after it, so their names and
        # text are searchable like any other attachment's.
        self.found.attachments.extend(nested.attachments)
        for defect in nested.defects:
            # One prefix however deep: the nested reader already prefixed its own.
            self._defect(defect if defect.startswith(_NESTED) else f"{_NESTED} (part {number}): {defect}")

    def _read_attached_bytes(self, raw: bytes, depth: int) -> Extracted:
        """Reads an .eml found inside an archive (extraction calls back into parsing)."""
        if depth + 1 > self.limits.max_nesting_depth:
            too_deep = f"message nested deeper than {self.limits.max_nesting_depth}"
            return Extracted(skipped="nesting too deep", defects=(too_deep,))
        nested = _MessageReader(self.limits, depth + 1).read_bytes(raw)
        sections = [_message_summary(nested)]
        sections.extend(f"{each.filename}\n{each.text}" for each in nested.attachments if each.text)
        return Extracted(text=truncate("\n\n".join(sections), self.limits.max_extracted_chars), defects=nested.defects)

    # -- parts -----------------------------------------------------------------------

    def _decoded(self, part: Message, payload: str, number: int) -> bytes:
        raw = payload.encode("utf-8", "surrogateescape")
        encoding = _transfer_encoding(part)
        if encoding in _UUENCODE:
            decoded = part.get_payload(decode=True)
            return decoded if isinstance(decoded, bytes) else raw
        data, problem = _decode_transfer(raw, encoding)
        if problem:
            self._defect(f"{problem} in part {number}")
        return data

    def _filename(self, part: Message, number: int) -> str:
        try:
            # RFC 2231 parameters (filename*0*=utf-8''...) are collapsed by the stdlib;
            # RFC 2047 words inside a quoted filename are not standard but common.
            name = part.get_filename() or ""
        except Exception:
            self._defect(f"unparseable filename parameter in part {number}")
            return ""
        if not name:
            return ""
        text, problems = decode_header(name)
        self._defects(f"filename in part {number}", problems)
        return text.strip()

    def _attach(self, attachment: Attachment, defects: tuple[str, ...]) -> None:
        self.found.attachments.append(attachment)
        label = attachment.filename or attachment.content_type
        for defect in defects:
            self._defect(f"attachment {label!r}: {defect}")

    # -- body ------------------------------------------------------------------------

    def _body_text(self) -> str:
        # Words of the non-blank plain alternatives, per multipart/alternative.
        plain_words: dict[int, set[str]] = {}
        for group, text in self.found.plain:
            if group is not None and text.strip():
                plain_words.setdefault(group, set()).update(_WORD.findall(text.lower()))
        sections = [text for _, text in self.found.plain]
        if self.found.broken_structure:
            sections.extend(_newlines(margin) for margin in self.found.margins)
        for group, text in self.found.html:
            if group not in plain_words or _adds_words(text, plain_words[group]):  # type: ignore[index]
                sections.append(text)
        return "\n\n".join(section.strip() for section in sections if section and not section.isspace())

    # -- defects ---------------------------------------------------------------------

    def _defect(self, text: str) -> None:
        if len(self.found.defects) < self.limits.max_defects:
            self.found.defects[text] = None

    def _defects(self, where: str, problems: tuple[str, ...]) -> None:
        for problem in problems:
            self._defect(f"{where}: {problem}")


def _dropped_text(data: bytes, unopened: list[tuple[str, tuple[str, ...]]]) -> str:
    """Text that the stdlib parser read past and dropped, taken from the raw bytes.

    CPython's feed parser (3.11 to 3.13) keeps nothing after the close delimiter of a
    multipart whose opening delimiter never came: the loop meant to collect that
    epilogue never appends a line. The lost text runs from that close delimiter to the
    next delimiter of an enclosing multipart (RFC 2046 section 5.1.1), or the end.
    """
    found: list[str] = []
    for boundary, enclosing in unopened:
        if not boundary:
            continue
        close = re.search(b"(?m)^--" + re.escape(_raw(boundary)) + b"--[ \t]*\r?$", data)
        if close is None:
            continue
        end = len(data)
        if enclosing:
            alternatives = b"|".join(re.escape(_raw(each)) for each in enclosing if each)
            following = re.compile(b"(?m)^--(?:" + alternatives + b")").search(data, close.end())
            end = following.start() if following else end
        text, _ = decode_bytes(data[close.end() : end], None)
        if text.strip():
            found.append(_newlines(text).strip())
    return "\n\n".join(found)


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _adds_words(html_text: str, plain_words: set[str]) -> bool:
    """True when the HTML alternative holds words that its plain sibling does not.

    A fifth of the HTML's distinct words (and at least 3) missing from the plain part
    means the plain part is a stub or a different text, not a rendering of the HTML.
    """
    html_words = set(_WORD.findall(html_text.lower()))
    missing = len(html_words - plain_words)
    return missing >= 3 and missing * 5 >= len(html_words)


def _content_type(part: Message) -> str:
    content_type = part.get_content_type()
    return content_type if content_type.isascii() else decode_raw_text(content_type)


def _disposition(part: Message) -> str:
    value = part.get("content-disposition")
    if value is None:
        return ""
    return str(value).split(";", 1)[0].strip().lower()


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:
        return None


def _transfer_encoding(part: Message) -> str:
    value = part.get("content-transfer-encoding")
    if value is None:
        return ""
    # Seen in the wild: "base64;", "Base64 ", "quoted-printable; charset=...".
    tokens = str(value).replace(";", " ").split()
    return tokens[0].lower() if tokens else ""


def _decode_transfer(raw: bytes, encoding: str) -> tuple[bytes, str]:
    """Undo a Content-Transfer-Encoding (RFC 2045 section 6), leniently."""
    if encoding == "base64":
        try:
            return binascii.a2b_base64(raw), ""
        except binascii.Error:
            # Broken padding or a truncated final quantum: decode what is whole.
            cleaned = _NOT_BASE64.sub(b"", raw)
            cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
            try:
                return binascii.a2b_base64(cleaned), "invalid base64"
            except binascii.Error:
                return raw, "undecodable base64"
    if encoding == "quoted-printable":
        return binascii.a2b_qp(raw), ""
    return raw, ""


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _serialised(message: Message) -> bytes:
    try:
        return message.as_bytes()
    except Exception:
        return b""


def _header_block_text(block: Message) -> str:
    lines = [f"{name}: {decode_header(value)[0]}" for name, value in block.raw_items()]
    payload = block.get_payload()
    if isinstance(payload, str) and payload.strip():
        lines.append(decode_raw_text(payload.strip()))
    return "\n".join(lines)


def _message_summary(message: ParsedMessage) -> str:
    """The searchable text of an attached message: its header facts, then its body."""
    lines = [f"Subject: {message.subject}"] if message.subject else []
    for label, mailboxes in (("From", message.from_), ("To", message.to), ("Cc", message.cc)):
        if mailboxes:
            lines.append(f"{label}: {', '.join(str(mailbox) for mailbox in mailboxes)}")
    if message.date is not None:
        lines.append(f"Date: {message.date.isoformat()}")
    if message.body_text:
        lines.extend(("", message.body_text) if lines else (message.body_text,))
    return "\n".join(lines)
