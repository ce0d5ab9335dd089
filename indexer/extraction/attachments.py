"""Text of one attachment, whatever its type; every failure becomes a skipped reason."""

from __future__ import annotations

from collections.abc import Callable

from indexer.extraction.archives import ByteBudget, open_zip, zip_text
from indexer.extraction.charsets import decode_bytes
from indexer.extraction.extracted import Extracted, truncate
from indexer.extraction.html import decode_html, html_to_text
from indexer.extraction.kinds import Kind, kind_of
from indexer.extraction.limits import ExtractionLimits
from indexer.extraction.memo import shared_memo
from indexer.extraction.office import docx_text, xlsx_text
from indexer.extraction.pdf import pdf_text

# Parses raw RFC 5322 bytes found inside an attachment (an .eml in a zip) at a depth;
# supplied by the parser so that extraction does not import it back.
MessageReader = Callable[[bytes, int], Extracted]


def extract_attachment(
    data: bytes,
    *,
    content_type: str,
    filename: str,
    limits: ExtractionLimits,
    charset: str | None = None,
    depth: int = 0,
    read_message: MessageReader | None = None,
    budget: ByteBudget | None = None,
) -> Extracted:
    """Text of ``data`` by its kind (PDF, DOCX, XLSX, zip, HTML, text, message), truncated."""
    if len(data) > limits.max_attachment_bytes:
        return Extracted(skipped="too large")
    if not data:
        return Extracted()
    kind = kind_of(content_type.lower(), filename, data[:1024])
    if kind is Kind.ZIP:
        kind = _ooxml_kind(data)
    if kind in _DOCUMENT_READERS:
        read = _DOCUMENT_READERS[kind]
        return shared_memo(limits.extraction_memo_bytes).extracted(kind, data, limits, lambda: read(data, limits))
    if kind is Kind.ZIP:
        budget = budget if budget is not None else ByteBudget(limits.archive_budget_bytes)

        def read_member(member: bytes, name: str, member_depth: int) -> Extracted:
            return extract_attachment(
                member,
                content_type="",
                filename=name,
                limits=limits,
                depth=member_depth,
                read_message=read_message,
                budget=budget,
            )

        return zip_text(data, limits=limits, depth=depth, read_member=read_member, budget=budget)
    if kind is Kind.HTML:
        text, problem = decode_html(data, charset)
        return _text(html_to_text(text), problem, limits)
    if kind is Kind.TEXT:
        text, problem = decode_bytes(data, charset)
        return _text(text, problem, limits)
    if kind is Kind.MESSAGE:
        if read_message is None:
            return Extracted(skipped="unsupported type")
        return read_message(data, depth)
    return Extracted(skipped="unsupported type")


# Kinds whose text depends on their bytes and the limits alone, so it can be remembered.
_DOCUMENT_READERS: dict[Kind, Callable[[bytes, ExtractionLimits], Extracted]] = {
    Kind.PDF: lambda data, limits: pdf_text(data, limits.max_extracted_chars),
    Kind.DOCX: docx_text,
    Kind.XLSX: xlsx_text,
}


def _ooxml_kind(data: bytes) -> Kind:
    # Word and Excel files sent as application/octet-stream without a telling name.
    archive = open_zip(data)
    if archive is None:
        return Kind.ZIP
    with archive:
        names = set(archive.namelist())
    if "word/document.xml" in names:
        return Kind.DOCX
    if "xl/workbook.xml" in names:
        return Kind.XLSX
    return Kind.ZIP


def _text(text: str, problem: str, limits: ExtractionLimits) -> Extracted:
    return Extracted(text=truncate(text, limits.max_extracted_chars), defects=(problem,) if problem else ())
