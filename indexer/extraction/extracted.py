"""The outcome of extracting text from one attachment."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Extracted:
    """Text found (possibly truncated), why none was taken, and what went wrong on the way."""

    text: str = ""
    skipped: str = ""  # short reason, e.g. "too large", "encrypted", "corrupt", "zip bomb"
    defects: tuple[str, ...] = ()


def truncate(text: str, max_chars: int) -> str:
    """Cut text to the configured size; an index entry never needs more."""
    return text if len(text) <= max_chars else text[:max_chars]
