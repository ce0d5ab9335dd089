"""How much work extraction may do on one message: sizes, counts, ratios, depth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ExtractionLimits:
    """Bounds that keep one hostile message from starving the indexer.

    Every field mirrors a ``Settings`` key of the same name and default.
    """

    max_attachment_bytes: int = 25 * 1024 * 1024
    max_extracted_chars: int = 2_000_000
    max_zip_members: int = 1000
    max_zip_ratio: int = 100
    max_nesting_depth: int = 8
    # MIME leaf parts examined per message: the stdlib parser pays for every part it
    # creates, so a 100k-part message is a denial of service long before it is mail
    # anyone sent (bench/README.md, "Measurements behind design choices").
    max_mime_parts: int = 10_000
    # Distinct defects kept per message; a broken message can produce one per part.
    max_defects: int = 100
    # Texts of PDF/DOCX/XLSX attachments remembered by their bytes, per indexing process.
    extraction_memo_bytes: int = 32 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings: Any) -> ExtractionLimits:
        """Build from a ``postvault.settings.Settings`` (or anything with those attributes)."""
        return cls(
            max_attachment_bytes=settings.max_attachment_bytes,
            max_extracted_chars=settings.max_extracted_chars,
            max_zip_members=settings.max_zip_members,
            max_zip_ratio=settings.max_zip_ratio,
            max_nesting_depth=settings.max_nesting_depth,
            max_mime_parts=settings.max_mime_parts,
            max_defects=settings.max_defects,
            extraction_memo_bytes=settings.extraction_memo_bytes,
        )

    @property
    def archive_budget_bytes(self) -> int:
        """Uncompressed bytes read from one archive, all members and nested archives together."""
        return self.max_attachment_bytes
