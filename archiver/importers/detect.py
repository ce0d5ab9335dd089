"""Tell what an import path holds (EML, mbox, zip, maildir) from its bytes, or say why it is refused."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path

from archiver.importers.mbox import looks_like_mbox

HEAD_BYTES = 64 * 1024  # enough for any sane header block

_BOM = b"\xef\xbb\xbf"
_HEADER_FIELD = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:")
# Fields nearly every stored message has; requiring one of them keeps "Note: buy milk"
# text files out while letting broken-but-real messages in (invariant 4: they are
# archived byte-exact, whatever their MIME looks like).
_COMMON_FIELDS = frozenset({
    b"from", b"date", b"subject", b"message-id", b"received", b"return-path", b"to", b"cc",
    b"mime-version", b"delivered-to", b"sender", b"reply-to", b"x-mozilla-status", b"content-type",
})
# Known containers we cannot read, named so the refusal says what to do instead.
_FOREIGN = (
    (b"PK\x03\x04", None),
    (b"PK\x05\x06", None),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "Outlook .msg (OLE compound file) is not supported; export the mail as EML or mbox"),
    (b"!BDN", "Outlook .pst/.ost is not supported; export the mail as EML or mbox"),
    (b"\x1f\x8b", "gzip-compressed file; decompress it first"),
    (b"BZh", "bzip2-compressed file; decompress it first"),
    (b"\xfd7zXZ\x00", "xz-compressed file; decompress it first"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive is not supported; use zip"),
    (b"Rar!", "RAR archive is not supported; use zip"),
)
# Files a maildir keeps beside its messages (Dovecot, Courier, Maildir++); never mail.
MAILDIR_BOOKKEEPING_DIRS = frozenset({"tmp", "courierimapkeywords"})


class Kind(enum.Enum):
    EML = "eml"
    MBOX = "mbox"
    ZIP = "zip"


@dataclass(frozen=True)
class Verdict:
    """What a file is, or (kind None) the plain reason it is refused."""

    kind: Kind | None
    reason: str = ""


def sniff(head: bytes, size: int) -> Verdict:
    """Classify a file from its first bytes (up to ``HEAD_BYTES``) and its size."""
    if size == 0 or not head.strip():
        return Verdict(None, "empty file" if size == 0 else "only whitespace, no message")
    for magic, reason in _FOREIGN:
        if head.startswith(magic):
            return Verdict(Kind.ZIP) if reason is None else Verdict(None, reason)
    if looks_like_mbox(head):
        return Verdict(Kind.MBOX)
    problem = header_problem(head.removeprefix(_BOM))
    if problem:
        if b"\x00" in head:  # a body may be binary (RFC 3030 BINARYMIME), a header never is
            return Verdict(None, "binary data, not a mail message")
        return Verdict(None, f"not a mail message: {problem}")
    return Verdict(Kind.EML)


def header_problem(head: bytes) -> str:
    """Why ``head`` does not start like an RFC 5322 message, or "" if it does."""
    first = head.split(b"\n", 1)[0]
    if not _HEADER_FIELD.match(first):
        return "it does not start with a header field"
    for line in head.split(b"\n"):
        if line in (b"", b"\r"):
            break
        if b"\x00" in line:
            return "NUL bytes in the header"
        match = _HEADER_FIELD.match(line)
        if match and match.group(1).lower() in _COMMON_FIELDS:
            return ""
    return "no From, Date, Subject, Message-ID or Received header"


def is_maildir(folder: Path) -> bool:
    """A maildir has cur/ and new/ (and tmp/, which some exports leave out)."""
    try:
        return (folder / "cur").is_dir() and (folder / "new").is_dir()
    except OSError:  # a folder that may be listed but not searched: its files are refused one by one
        return False


__all__ = ["HEAD_BYTES", "Kind", "MAILDIR_BOOKKEEPING_DIRS", "Verdict", "header_problem", "is_maildir", "sniff"]
