"""Text extraction for the index: charsets, header words, HTML, attachments and archives."""

from indexer.extraction.archives import ByteBudget
from indexer.extraction.attachments import MessageReader, extract_attachment
from indexer.extraction.charsets import decode_bytes
from indexer.extraction.encoded_words import decode_header, decode_raw_text, unfold
from indexer.extraction.extracted import Extracted, truncate
from indexer.extraction.header_fields import (
    parse_addresses,
    parse_date,
    parse_list_id,
    parse_message_id,
    parse_message_ids,
)
from indexer.extraction.html import decode_html, html_to_text
from indexer.extraction.limits import ExtractionLimits

__all__ = [
    "ByteBudget",
    "Extracted",
    "ExtractionLimits",
    "MessageReader",
    "decode_bytes",
    "decode_header",
    "decode_html",
    "decode_raw_text",
    "extract_attachment",
    "html_to_text",
    "parse_addresses",
    "parse_date",
    "parse_list_id",
    "parse_message_id",
    "parse_message_ids",
    "truncate",
    "unfold",
]
