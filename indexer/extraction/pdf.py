"""Text of a PDF attachment (pypdf), page by page until the character budget is spent."""

from __future__ import annotations

import io

from pypdf import PdfReader

from indexer.extraction.extracted import Extracted, truncate


def pdf_text(data: bytes, max_chars: int) -> Extracted:
    """Extract page text; encrypted or corrupt files give a ``skipped`` reason, never raise."""
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not _opens_without_password(reader):
            return Extracted(skipped="encrypted", defects=("PDF is encrypted",))
        pages: list[str] = []
        length = 0
        for page in reader.pages:
            text = page.extract_text() or ""
            pages.append(text)
            length += len(text)
            if length >= max_chars:
                break
    except Exception as error:  # pypdf raises many types on hostile input
        return Extracted(skipped="corrupt", defects=(f"PDF text extraction failed: {_describe(error)}",))
    return Extracted(text=truncate("\n".join(pages).strip(), max_chars))


def _opens_without_password(reader: PdfReader) -> bool:
    # Many PDFs are "encrypted" only to set permissions, with an empty user password.
    try:
        return bool(reader.decrypt(""))
    except Exception:
        return False


def _describe(error: BaseException) -> str:
    message = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
