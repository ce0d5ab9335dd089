"""Text of OOXML attachments: Word documents (lxml on the document part) and workbooks (calamine)."""

from __future__ import annotations

import io
import posixpath
import zipfile

from lxml import etree

from indexer.extraction.archives import declared_size_problem, inflation_problem, open_zip
from indexer.extraction.extracted import Extracted, truncate
from indexer.extraction.limits import ExtractionLimits

# An encrypted OOXML file is not a zip but an OLE2 compound file (MS-OFFCRYPTO 2.3.4);
# so is a legacy .doc/.xls, which this extractor does not read either.
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
# Inside a paragraph: text runs, and the tabs and breaks that separate their words.
_RUN_TEXT = {f"{_W}tab": "\t", f"{_W}br": "\n", f"{_W}cr": "\n"}
_RUN_TAGS = (f"{_W}t", *_RUN_TEXT)
_PACKAGE_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
# Transitional and Strict OOXML name the relationship differently.
_OFFICE_DOCUMENT = {
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument",
    "http://purl.oclc.org/ooxml/officeDocument/relationships/officeDocument",
}
# Attachments are hostile: no entity expansion (billion laughs), no DTD or network fetches.
_SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True)


def docx_text(data: bytes, limits: ExtractionLimits) -> Extracted:
    """Paragraph text of the main document part in document order, tables and text boxes included.

    Only that one part is read and parsed (with lxml, as python-docx would), found through
    the package's relationships. python-docx's ``Document()`` parses every XML part first
    (styles, numbering, settings, theme, fonts...), many times the work for the same text.
    """
    refusal = _refusal(data, limits, "DOCX")
    if refusal is not None:
        return refusal
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            body = etree.fromstring(package.read(_main_part(package)), parser=_SAFE_XML)
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


def _main_part(package: zipfile.ZipFile) -> str:
    """The member holding the document body: the target of the package's officeDocument
    relationship (ECMA-376 Part 2, 9.3), usually ``word/document.xml``."""
    root = etree.fromstring(package.read("_rels/.rels"), parser=_SAFE_XML)
    for relationship in root.iter(f"{_PACKAGE_RELS}Relationship"):
        if relationship.get("Type") in _OFFICE_DOCUMENT and relationship.get("TargetMode") != "External":
            # Targets are relative to the package root; a leading "/" means the same.
            return posixpath.normpath(relationship.get("Target", "")).lstrip("/")
    raise KeyError("the package names no main document part")


def xlsx_text(data: bytes, limits: ExtractionLimits) -> Extracted:
    """Sheet names and cell values, one line per row, cells separated by tabs.

    Read with calamine (Rust, via python-calamine), far faster than openpyxl's
    read-only mode on the bench corpus.
    """
    refusal = _refusal(data, limits, "XLSX", check_inflation=True)
    if refusal is not None:
        return refusal
    try:
        from python_calamine import CalamineWorkbook

        workbook = CalamineWorkbook.from_filelike(io.BytesIO(data))
        lines: list[str] = []
        length = 0
        for name in workbook.sheet_names:
            lines.append(name)
            for row in workbook.get_sheet_by_name(name).iter_rows():
                line = "\t".join(_cell_text(value) for value in row if value not in (None, ""))
                if line:
                    lines.append(line)
                    length += len(line)
                if length >= limits.max_extracted_chars:
                    break
            if length >= limits.max_extracted_chars:
                break
    except Exception as error:
        return Extracted(skipped="corrupt", defects=(f"XLSX text extraction failed: {type(error).__name__}",))
    return Extracted(text=truncate("\n".join(lines), limits.max_extracted_chars))


def _cell_text(value: object) -> str:
    # calamine returns every number as a float; 42.0 is shown as 42 in the sheet.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _refusal(data: bytes, limits: ExtractionLimits, label: str, *, check_inflation: bool = False) -> Extracted | None:
    if data.startswith(_OLE2_MAGIC):
        return Extracted(skipped="encrypted", defects=(f"{label} is encrypted or in a legacy binary format",))
    archive = open_zip(data)
    if archive is None:
        return Extracted(skipped="corrupt", defects=(f"{label} is not a valid OOXML package",))
    with archive:
        problem = declared_size_problem(archive, limits.archive_budget_bytes)
        if not problem and check_inflation:
            problem = inflation_problem(archive)
    if problem:
        return Extracted(skipped="zip bomb", defects=(f"{label} {problem}",))
    return None
