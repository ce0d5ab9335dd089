"""Which extractor reads a file: from its declared type, its name and its first bytes."""

from __future__ import annotations

from enum import Enum


class Kind(str, Enum):
    PDF = "pdf"
    DOCX = "docx"
    XLSX = "xlsx"
    ZIP = "zip"
    HTML = "html"
    TEXT = "text"
    MESSAGE = "message"
    NONE = "none"


_BY_TYPE = {
    "application/pdf": Kind.PDF,
    "application/x-pdf": Kind.PDF,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": Kind.DOCX,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template": Kind.DOCX,
    "application/vnd.ms-word.document.macroenabled.12": Kind.DOCX,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": Kind.XLSX,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.template": Kind.XLSX,
    "application/vnd.ms-excel.sheet.macroenabled.12": Kind.XLSX,
    "application/zip": Kind.ZIP,
    "application/x-zip": Kind.ZIP,
    "application/x-zip-compressed": Kind.ZIP,
    "text/html": Kind.HTML,
    "application/xhtml+xml": Kind.HTML,
    "message/rfc822": Kind.MESSAGE,
    "message/global": Kind.MESSAGE,  # RFC 6532 section 3.5
    "application/json": Kind.TEXT,
    "application/xml": Kind.TEXT,
    "application/x-sh": Kind.TEXT,
    "application/pgp-signature": Kind.NONE,
}
_BY_EXTENSION = {
    "pdf": Kind.PDF,
    "docx": Kind.DOCX,
    "docm": Kind.DOCX,
    "dotx": Kind.DOCX,
    "xlsx": Kind.XLSX,
    "xlsm": Kind.XLSX,
    "xltx": Kind.XLSX,
    "zip": Kind.ZIP,
    "htm": Kind.HTML,
    "html": Kind.HTML,
    "xhtml": Kind.HTML,
    "eml": Kind.MESSAGE,
    **{
        ext: Kind.TEXT
        for ext in ("txt", "text", "csv", "tsv", "log", "md", "json", "xml", "ics", "vcf", "yaml", "yml", "ini", "conf")
    },
}


def extension(filename: str) -> str:
    return filename.rpartition(".")[2].lower() if "." in filename else ""


def kind_by_name(filename: str) -> Kind:
    """What a name alone says (zip members have nothing else before they are read)."""
    return _BY_EXTENSION.get(extension(filename), Kind.NONE)


def kind_of(content_type: str, filename: str, head: bytes) -> Kind:
    """Decide the extractor; the first bytes beat a wrong label (application/octet-stream)."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        by_name = kind_by_name(filename)
        return by_name if by_name in (Kind.DOCX, Kind.XLSX) else _BY_TYPE.get(content_type, Kind.ZIP)
    if b"%PDF-" in head[:1024]:
        return Kind.PDF
    declared = _BY_TYPE.get(content_type)
    if declared is not None:
        return declared
    by_name = kind_by_name(filename)
    if by_name is not Kind.NONE:
        return by_name
    if content_type.startswith("text/"):
        return Kind.TEXT
    if content_type.startswith("message/"):
        return Kind.TEXT  # delivery-status, disposition-notification: header-like text
    return Kind.NONE
