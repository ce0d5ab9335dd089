"""Text of OOXML attachments: Word documents (python-docx) and workbooks (openpyxl, read-only)."""

from __future__ import annotations

import io

from indexer.extraction.archives import declared_size_problem, open_zip
from indexer.extraction.extracted import Extracted, truncate
from indexer.extraction.limits import ExtractionLimits

# An encrypted OOXML file is not a zip but an OLE2 compound file (MS-OFFCRYPTO 2.3.4);
# so is a legacy .doc/.xls, which this extractor does not read either.
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
# Inside a paragraph: text runs, and the tabs and breaks that separate their words.
_RUN_TEXT = {f"{_W}tab": "\t", f"{_W}br": "\n", f"{_W}cr": "\n"}
_RUN_TAGS = (f"{_W}t", *_RUN_TEXT)


def docx_text(data: bytes, limits: ExtractionLimits) -> Extracted:
    """Paragraph text in document order, tables and text boxes included."""
    refusal = _refusal(data, limits, "DOCX")
    if refusal is not None:
        return refusal
    try:
        import docx  # python-docx; imported here so that mail without Word files never pays for it

        body = docx.Document(io.BytesIO(data)).element.body
        lines: list[str] = []
        length = 0
        for paragraph in body.iter(f"{_W}p"):
            line = "".join(_RUN_TEXT.get(node.tag) or node.text or "" for node in paragraph.iter(*_RUN_TAGS))
            if line:
                lines.append(line)
                length += len(line)
                if length >= limits.max_extracted_chars:
                    break
    except Exception as error:
        return Extracted(skipped="corrupt", defects=(f"DOCX text extraction failed: {type(error).__name__}",))
    return Extracted(text=truncate("\n".join(lines), limits.max_extracted_chars))


def xlsx_text(data: bytes, limits: ExtractionLimits) -> Extracted:
    """Sheet names and cell values, one line per row, cells separated by tabs."""
    refusal = _refusal(data, limits, "XLSX")
    if refusal is not None:
        return refusal
    try:
        import openpyxl

        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        lines: list[str] = []
        length = 0
        try:
            for sheet in workbook.worksheets:
                lines.append(sheet.title)
                # A hostile <dimension ref="A1:XFD1048576"> would make read-only
                # mode pad every row to 16384 cells; count what is really there.
                sheet.reset_dimensions()
                for row in sheet.iter_rows(values_only=True):
                    line = "\t".join(str(value) for value in row if value is not None)
                    if line:
                        lines.append(line)
                        length += len(line)
                    if length >= limits.max_extracted_chars:
                        break
                if length >= limits.max_extracted_chars:
                    break
        finally:
            workbook.close()
    except Exception as error:
        return Extracted(skipped="corrupt", defects=(f"XLSX text extraction failed: {type(error).__name__}",))
    return Extracted(text=truncate("\n".join(lines), limits.max_extracted_chars))


def _refusal(data: bytes, limits: ExtractionLimits, label: str) -> Extracted | None:
    if data.startswith(_OLE2_MAGIC):
        return Extracted(skipped="encrypted", defects=(f"{label} is encrypted or in a legacy binary format",))
    archive = open_zip(data)
    if archive is None:
        return Extracted(skipped="corrupt", defects=(f"{label} is not a valid OOXML package",))
    with archive:
        problem = declared_size_problem(archive, limits.archive_budget_bytes)
    if problem:
        return Extracted(skipped="zip bomb", defects=(f"{label} {problem}",))
    return None
