"""The memo of attachment texts: one extraction per distinct file, bounded memory, no mix-ups."""

from __future__ import annotations

from dataclasses import replace

from indexer.extraction import ExtractionLimits, extract_attachment
from indexer.extraction.extracted import Extracted
from indexer.extraction.kinds import Kind
from indexer.extraction.memo import ExtractionMemo, shared_memo
from indexer.parsing import parse_message

LIMITS = ExtractionLimits()


def long_pdf(make_pdf, word: str) -> bytes:
    """A PDF well over the size worth remembering, whose every page names ``word``."""
    data = make_pdf(*(f"page {n} of the {word} report" for n in range(60)))
    assert len(data) > 8 * 1024
    return data


def counting(text: str):
    calls = []

    def extract() -> Extracted:
        calls.append(1)
        return Extracted(text=text)

    return extract, calls


def test_the_same_bytes_are_extracted_once(make_pdf) -> None:
    memo = ExtractionMemo(max_bytes=1024 * 1024)
    data = long_pdf(make_pdf, "alpha")
    extract, calls = counting("alpha text")
    first = memo.extracted(Kind.PDF, data, LIMITS, extract)
    second = memo.extracted(Kind.PDF, bytes(data), LIMITS, extract)  # equal bytes, another object
    assert first == second == Extracted(text="alpha text")
    assert len(calls) == 1 and (memo.stats.hits, memo.stats.misses) == (1, 1)


def test_different_bytes_limits_or_kinds_never_share_a_text(make_pdf) -> None:
    memo = ExtractionMemo(max_bytes=1024 * 1024)
    data = long_pdf(make_pdf, "alpha")
    one_byte_changed = data[:-10] + bytes([data[-10] ^ 1]) + data[-9:]
    assert memo.extracted(Kind.PDF, data, LIMITS, lambda: Extracted(text="a")).text == "a"
    assert memo.extracted(Kind.PDF, one_byte_changed, LIMITS, lambda: Extracted(text="b")).text == "b"
    assert memo.extracted(Kind.DOCX, data, LIMITS, lambda: Extracted(text="c")).text == "c"
    tighter = replace(LIMITS, max_extracted_chars=5)
    assert memo.extracted(Kind.PDF, data, tighter, lambda: Extracted(text="d")).text == "d"
    assert memo.extracted(Kind.PDF, data, LIMITS, lambda: Extracted(text="never called")).text == "a"


def test_memory_is_bounded_and_the_least_recently_used_goes_first() -> None:
    memo = ExtractionMemo(max_bytes=40_000)
    files = [bytes([n]) * 8192 for n in range(6)]
    for n, data in enumerate(files):
        memo.extracted(Kind.PDF, data, LIMITS, lambda n=n: Extracted(text=f"{n}" * 9000))
        memo.extracted(Kind.PDF, files[0], LIMITS, lambda: Extracted(text="evicted"))  # keep file 0 in use
    assert memo._held <= 40_000
    assert memo.extracted(Kind.PDF, files[0], LIMITS, lambda: Extracted(text="evicted")).text == "0" * 9000
    assert memo.extracted(Kind.PDF, files[1], LIMITS, lambda: Extracted(text="read again")).text == "read again"


def test_small_files_huge_texts_and_a_zero_budget_are_not_kept() -> None:
    memo = ExtractionMemo(max_bytes=100_000)
    small, calls = counting("small")
    memo.extracted(Kind.PDF, b"%PDF-1.4 tiny", LIMITS, small)
    memo.extracted(Kind.PDF, b"%PDF-1.4 tiny", LIMITS, small)
    huge, huge_calls = counting("x" * 50_000)  # more than a quarter of the budget
    memo.extracted(Kind.PDF, b"h" * 10_000, LIMITS, huge)
    memo.extracted(Kind.PDF, b"h" * 10_000, LIMITS, huge)
    off = ExtractionMemo(max_bytes=0)
    off_extract, off_calls = counting("off")
    off.extracted(Kind.PDF, b"o" * 10_000, LIMITS, off_extract)
    off.extracted(Kind.PDF, b"o" * 10_000, LIMITS, off_extract)
    assert (len(calls), len(huge_calls), len(off_calls)) == (2, 2, 2)


def test_a_pdf_attached_to_two_messages_gives_both_its_text_from_one_reading(make_pdf) -> None:
    data = long_pdf(make_pdf, "zephyrine")
    limits = replace(LIMITS, max_defects=99)  # limits no other test uses: a memo entry of this test's own
    memo = shared_memo(limits.extraction_memo_bytes)
    before = (memo.stats.hits, memo.stats.misses)
    texts = [
        extract_attachment(data, content_type="application/pdf", filename=name, limits=limits).text
        for name in ("report.pdf", "copy of report.pdf")
    ]
    assert texts[0] == texts[1] and "page 59 of the zephyrine report" in texts[0]
    assert (memo.stats.hits - before[0], memo.stats.misses - before[1]) == (1, 1)


def test_parse_message_finds_the_remembered_text_in_each_message(make_pdf) -> None:
    import base64

    data = long_pdf(make_pdf, "xylophonic")

    def message(subject: str) -> bytes:
        return (
            f'Subject: {subject}\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            '--b\r\nContent-Type: application/pdf; name="r.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        ).encode() + base64.encodebytes(data) + b"--b--\r\n"

    first, second = parse_message(message("one")), parse_message(message("two"))
    assert "page 3 of the xylophonic report" in first.attachments[0].text
    assert first.attachments == second.attachments
    assert (first.subject, second.subject) == ("one", "two")
