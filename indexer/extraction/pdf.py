"""Text of a PDF attachment (PDFium via pypdfium2), page by page until the character budget is spent.

PDFium is Chrome's PDF engine: fuzzed continuously against hostile files, and much
faster than pure-Python pypdf on ordinary documents. The pool that runs parsing isolates
a native crash.
"""

from __future__ import annotations

import pypdfium2 as pdfium

from indexer.extraction.extracted import Extracted, truncate


def pdf_text(data: bytes, max_chars: int) -> Extracted:
    """Extract page text; encrypted or corrupt files give a ``skipped`` reason, never raise."""
    try:
        # An empty user password (permissions-only encryption) opens without asking.
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as error:
        if "password" in str(error).lower():
            return Extracted(skipped="encrypted", defects=("PDF is encrypted",))
        return Extracted(skipped="corrupt", defects=(f"PDF text extraction failed: {_describe(error)}",))
    except Exception as error:
        return Extracted(skipped="corrupt", defects=(f"PDF text extraction failed: {_describe(error)}",))
    pages: list[str] = []
    length = 0
    try:
        for index in range(len(document)):
            page = document[index]
            try:
                textpage = page.get_textpage()
                try:
                    text = textpage.get_text_bounded() or ""
                finally:
                    textpage.close()
            finally:
                page.close()
            pages.append(text)
            length += len(text)
            if length >= max_chars:
                break
    except Exception as error:
        return Extracted(text=truncate("\n".join(pages).strip(), max_chars),
                         defects=(f"PDF text extraction stopped early: {_describe(error)}",))
    finally:
        document.close()
    return Extracted(text=truncate(_normalise("\n".join(pages)), max_chars))


def _normalise(text: str) -> str:
    # PDFium ends lines with CRLF and marks hyphenation points with U+FFFE / U+0002.
    return text.replace("\r\n", "\n").replace("\ufffe", "").replace("\x02", "").strip()


def _describe(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
