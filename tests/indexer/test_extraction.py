"""Attachment text extraction: HTML, charsets, PDF, DOCX, XLSX, zip (bombs included)."""

from __future__ import annotations

import base64
import io
import struct
import time
import tracemalloc
import zipfile

import pypdf
import pytest

from indexer.extraction import ExtractionLimits, decode_bytes, extract_attachment, html_to_text
from indexer.extraction.charsets import resolve_charset
from indexer.parsing import parse_message

LIMITS = ExtractionLimits()


def extract(data: bytes, filename: str = "", content_type: str = "application/octet-stream", limits=LIMITS, **extra):
    return extract_attachment(data, content_type=content_type, filename=filename, limits=limits, **extra)


def message_with(attachment: bytes, filename: str, content_type: str = "application/octet-stream") -> bytes:
    return (
        b'Subject: with attachment\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
        b"--b\r\nContent-Type: " + content_type.encode() + b"\r\n"
        b'Content-Disposition: attachment; filename="' + filename.encode() + b'"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(attachment) + b"--b--\r\n"
    )


# -- HTML --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>one</p><p>two</p>", "one\ntwo"),
        ("Hel<b>lo</b> w<i>orld</i>", "Hello world"),
        ("a&amp;b &lt;tag&gt; &eacute;&#233;&#xE9; &nbsp;x", "a&b <tag> ééé x"),
        ("<style>.x{}</style><script>s = '<p>no</p>';</script><p>visible</p><noscript>hidden</noscript>", "visible"),
        ("<table><tr><td>r1c1</td><td>r1c2</td></tr><tr><td>r2c1</td></tr></table>", "r1c1 r1c2\nr2c1"),
        ("line<br>break<br/>again", "line\nbreak\nagain"),
        ("<ul><li>first<li>second</ul>after", "first\nsecond\nafter"),
        ("<!-- hidden comment --><div>\n\n   spaced    out \n</div>", "spaced out"),
        ("no markup at all", "no markup at all"),
        ("", ""),
    ],
)
def test_html_to_text(html, expected):
    assert html_to_text(html) == expected


@pytest.mark.parametrize("tag", ["div", "b", "table", "span"])
def test_deeply_nested_html_is_linear(tag):
    # Tree construction is quadratic in depth; 100k levels must not take half a minute.
    html = f"<{tag}>" * 100_000 + "needle" + f"</{tag}>" * 100_000
    started = time.perf_counter()
    assert html_to_text(html) == "needle"
    assert time.perf_counter() - started < 3


def test_deep_html_without_a_tree_still_drops_scripts_and_keeps_lines():
    body = "<script>hidden()</script><p>first</p>" * 20_000 + "<STYLE>x{}</style>last"
    html = "<div>" * 2000 + body + "</div>" * 2000
    started = time.perf_counter()
    text = html_to_text(html)
    assert time.perf_counter() - started < 3
    assert text.splitlines() == ["first"] * 20_000 + ["last"]


def test_html_attachment_uses_meta_charset_without_mime_charset():
    html = '<html><head><meta charset="windows-1251"></head><body>Привет</body></html>'.encode("cp1251")
    assert extract(html, "page.html", "text/html").text == "Привет"


# -- charsets ----------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["unicode_escape", "raw-unicode-escape", "idna", "punycode", "zlib", "rot13"])
def test_non_charset_codecs_are_refused(label):
    assert resolve_charset(label) == (None, False)


def test_decode_bytes_prefers_the_declared_multibyte_charset_with_one_bad_byte():
    data = "日本語のテキスト".encode("cp932") + b"\x81\x20" + "続き".encode("cp932")
    text, problem = decode_bytes(data, "shift_jis")
    assert text == "日本語のテキスト\ufffd 続き"
    assert problem == "invalid shift_jis bytes replaced"


# -- PDF ---------------------------------------------------------------------------------


def test_pdf_text_is_extracted(make_pdf):
    data = make_pdf("Quarterly revenue grew", "Second page (draft)")
    # The factory's PDF is valid for pypdf itself, independently of our extractor.
    assert pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text() == "Quarterly revenue grew"
    result = extract(data, "report.pdf", "application/pdf")
    assert result.text == "Quarterly revenue grew\nSecond page (draft)"
    assert (result.skipped, result.defects) == ("", ())


def test_pdf_found_by_magic_bytes_under_a_generic_type(make_pdf):
    assert extract(make_pdf("magic wins"), "unnamed.bin").text == "magic wins"


def test_pdf_text_is_truncated(make_pdf):
    result = extract(make_pdf("x" * 50, "y" * 50), "a.pdf", limits=ExtractionLimits(max_extracted_chars=60))
    assert result.text == "x" * 50 + "\n" + "y" * 9


def _encrypted(data: bytes, user_password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_password_protected_pdf_is_skipped_with_a_defect(make_pdf):
    result = extract(_encrypted(make_pdf("secret"), "hunter2"), "locked.pdf")
    assert (result.text, result.skipped, result.defects) == ("", "encrypted", ("PDF is encrypted",))


def test_permissions_only_pdf_is_read(make_pdf):
    # Encrypted with an empty user password: any reader opens it, so must we.
    assert extract(_encrypted(make_pdf("open to all"), ""), "perm.pdf").text == "open to all"


def test_corrupt_pdf_is_skipped_and_reported_through_parse_message(make_pdf):
    parsed = parse_message(message_with(make_pdf("truncated")[:150], "a.pdf", "application/pdf"))
    (attachment,) = parsed.attachments
    assert (attachment.filename, attachment.skipped, attachment.text) == ("a.pdf", "corrupt", "")
    assert attachment.size == 150
    (defect,) = parsed.defects
    assert defect.startswith("attachment 'a.pdf': PDF text extraction failed: ")


# -- DOCX and XLSX -----------------------------------------------------------------------


def test_docx_paragraphs_and_tables(make_docx):
    data = make_docx(["Merger agreement draft", "Confidential"], table=[["Party", "Share"], ["Acme", "60%"]])
    result = extract(data, "deal.docx")
    assert result.text.splitlines() == ["Merger agreement draft", "Confidential", "Party", "Share", "Acme", "60%"]
    assert result.skipped == ""


def test_docx_tabs_and_line_breaks_separate_words():
    import docx

    document = docx.Document()
    paragraph = document.add_paragraph("Name")
    paragraph.add_run().add_tab()
    paragraph.add_run("Value")
    paragraph.add_run().add_break()
    paragraph.add_run("Next line")
    buffer = io.BytesIO()
    document.save(buffer)
    assert extract(buffer.getvalue(), "form.docx").text == "Name\tValue\nNext line"


def test_docx_without_a_telling_name_or_type_is_recognised(make_docx):
    assert extract(make_docx(["found by content"]), "attachment").text == "found by content"


def test_encrypted_office_file_is_skipped():
    ole2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    result = extract(ole2, "locked.docx")
    assert result.skipped == "encrypted"
    assert result.defects == ("DOCX is encrypted or in a legacy binary format",)


def test_corrupt_docx_is_skipped(make_zip):
    result = extract(make_zip({"word/document.xml": b"<not really xml"}), "broken.docx")
    assert result.skipped == "corrupt"
    assert result.defects[0].startswith("DOCX text extraction failed")


def _rewritten(data: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        members = {name: source.read(name) for name in source.namelist()}
    change(members)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for name, content in members.items():
            target.writestr(name, content)
    return buffer.getvalue()


def test_docx_main_part_is_found_through_the_package_relationships(make_docx):
    def move_body(members: dict[str, bytes]) -> None:
        members["word/body-elsewhere.xml"] = members.pop("word/document.xml")
        members["_rels/.rels"] = members["_rels/.rels"].replace(b"word/document.xml", b"/word/body-elsewhere.xml")

    moved = _rewritten(make_docx(["Moved main part"]), move_body)
    assert extract(moved, "moved.docx").text == "Moved main part"


def test_docx_entities_are_not_expanded(make_docx):
    def add_entities(members: dict[str, bytes]) -> None:
        body = members["word/document.xml"]
        declaration, rest = body.split(b"?>", 1)
        doctype = (b'<!DOCTYPE w:document [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                   b'<!ENTITY secret SYSTEM "file:///etc/hostname">]>')
        members["word/document.xml"] = declaration + b"?>" + doctype + rest.replace(b"Harmless", b"Harmless &lol2; &secret;")

    result = extract(_rewritten(make_docx(["Harmless"]), add_entities), "entities.docx")
    # The entity references are dropped: no expansion, no file read, the real text kept.
    assert result.text.strip() == "Harmless"
    assert result.skipped == ""


def test_docx_without_a_main_document_relationship_is_corrupt(make_docx):
    def drop_relationship(members: dict[str, bytes]) -> None:
        members["_rels/.rels"] = members["_rels/.rels"].replace(b"officeDocument\"", b"somethingElse\"")

    result = extract(_rewritten(make_docx(["unreachable"]), drop_relationship), "norels.docx")
    assert result.skipped == "corrupt"
    assert result.defects[0] == "DOCX text extraction failed: KeyError"


def test_xlsx_sheets_and_cells(make_xlsx):
    data = make_xlsx({"Budget": [["Item", "Cost"], ["Servers", 1200], [None, "note"]], "Other": [["x"]]})
    result = extract(data, "budget.xlsx")
    assert result.text.splitlines() == ["Budget", "Item\tCost", "Servers\t1200", "note", "Other", "x"]


def test_xlsx_with_a_lying_dimension_is_fast(make_xlsx):
    def claim_the_whole_sheet(members: dict[str, bytes]) -> None:
        sheet = members["xl/worksheets/sheet1.xml"]
        members["xl/worksheets/sheet1.xml"] = sheet.replace(b'<dimension ref="A1:B1"/>', b'<dimension ref="A1:XFD1048576"/>')
        assert members["xl/worksheets/sheet1.xml"] != sheet

    wide = _rewritten(make_xlsx({"S": [["only", "cells"]]}), claim_the_whole_sheet)
    started = time.perf_counter()
    assert extract(wide, "wide.xlsx").text == "S\nonly\tcells"
    assert time.perf_counter() - started < 2


# -- zip archives ------------------------------------------------------------------------


def test_zip_lists_members_and_extracts_what_it_can(make_zip, make_pdf, make_docx):
    inner = make_zip({"deep/notes.txt": b"inner zip text"})
    data = make_zip(
        {
            "readme.txt": "plain words é".encode("utf-8"),
            "report.pdf": make_pdf("pdf in zip"),
            "letter.docx": make_docx(["docx in zip"]),
            "photo.jpg": b"\xff\xd8\xff" + b"\x00" * 100,
            "inner.zip": inner,
            "mail.eml": b"Subject: archived mail\r\nFrom: a@x.org\r\n\r\neml body in zip\r\n",
        }
    )
    result = extract(data, "bundle.zip", "application/zip", read_message=_eml_reader)
    listing, _, sections = result.text.partition("\n\n")
    assert listing.splitlines() == ["readme.txt", "report.pdf", "letter.docx", "photo.jpg", "inner.zip", "mail.eml"]
    expected = ["plain words é", "pdf in zip", "docx in zip", "deep/notes.txt", "inner zip text", "archived mail"]
    for text in [*expected, "eml body in zip"]:
        assert text in sections
    assert (result.skipped, result.defects) == ("", ())


def _eml_reader(raw: bytes, depth: int):
    from indexer.extraction import Extracted

    parsed = parse_message(raw)
    return Extracted(text=f"{parsed.subject}\n{parsed.body_text}")


def _zeros_zip(size: int = 10 * 1024 * 1024, name: str = "zeros.txt") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr(name, b"\x00" * size)
    return buffer.getvalue()


def _bounded(function):
    """Run ``function``; return its result and the peak of Python allocations meanwhile."""
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_zip_bomb_is_refused_by_its_ratio_and_still_listed():
    bomb = _zeros_zip()
    assert len(bomb) < 30_000  # 10 MiB of zeros deflate to about 10 KiB
    result, peak = _bounded(lambda: extract(bomb, "bomb.zip"))
    assert result.text == "zeros.txt"
    assert result.skipped == "zip bomb"
    assert result.defects == ("zip member 'zeros.txt': compression ratio above 100 (zip bomb)",)
    assert peak < 2 * 1024 * 1024


def _patch_sizes(data: bytes, uncompressed: int) -> bytes:
    """Make both the local header and the central directory lie about a member's size."""
    patched = bytearray(data)
    local = patched.index(b"PK\x03\x04")
    struct.pack_into("<I", patched, local + 22, uncompressed)
    central = patched.index(b"PK\x01\x02")
    struct.pack_into("<I", patched, central + 24, uncompressed)
    return bytes(patched)


def test_zip_whose_headers_understate_the_size_is_never_inflated_past_them():
    liar = _patch_sizes(_zeros_zip(name="small.txt"), 1000)
    with zipfile.ZipFile(io.BytesIO(liar)) as archive:
        assert archive.getinfo("small.txt").file_size == 1000  # the lie is what zipfile sees
    result, peak = _bounded(lambda: extract(liar, "liar.zip"))
    assert result.text == "small.txt"  # listed, but no text: the member fails its CRC
    (defect,) = result.defects
    assert defect.startswith("zip member 'small.txt': unreadable (BadZipFile")
    assert peak < 2 * 1024 * 1024


@pytest.mark.parametrize(
    ("claimed", "skipped", "reason"),
    [
        (5 * 1024 * 1024, "zip bomb", "compression ratio above 100 (zip bomb)"),
        (2**31, "", "declares 2147483648 bytes, above the attachment limit"),
    ],
)
def test_zip_whose_headers_overstate_the_size_is_not_read(claimed, skipped, reason):
    result = extract(_patch_sizes(_zeros_zip(size=1024, name="claims-huge.txt"), claimed), "big.zip")
    assert (result.text, result.skipped) == ("claims-huge.txt", skipped)
    assert result.defects == (f"zip member 'claims-huge.txt': {reason}",)


def test_zip_member_count_is_limited(make_zip):
    data = make_zip({f"file{index:04}.txt": b"x" for index in range(50)})
    result = extract(data, "many.zip", limits=ExtractionLimits(max_zip_members=10))
    listing = result.text.partition("\n\n")[0].splitlines()
    assert listing == [f"file{index:04}.txt" for index in range(10)]
    assert result.defects == ("zip has 50 members, only the first 10 are listed",)


def test_zip_byte_budget_covers_all_members(make_zip):
    megabyte = bytes(range(256)) * 4096  # 1 MiB that does not compress away
    data = make_zip({"a.txt": megabyte, "b.txt": megabyte, "c.txt": megabyte})
    result = extract(data, "budget.zip", limits=ExtractionLimits(max_attachment_bytes=int(2.5 * 1024 * 1024)))
    assert result.defects == ("zip member 'c.txt': archive byte budget spent",)
    assert "a.txt\n" in result.text.partition("\n\n")[2]


def test_nested_zips_stop_at_the_depth_limit(make_zip):
    data = make_zip({"core.txt": b"innermost words"})
    for level in range(12):
        data = make_zip({f"level{level}.zip": data})
    result = extract(data, "russian-doll.zip", limits=ExtractionLimits(max_nesting_depth=3))
    # The archive itself, then three nested archives are opened; the fourth is only listed.
    assert "level8.zip" in result.text
    assert "level7.zip" not in result.text and "innermost words" not in result.text
    assert result.defects == (
        "zip member 'level11.zip': zip member 'level10.zip': zip member 'level9.zip': "
        "zip member 'level8.zip': nesting deeper than 3",
    )


def test_encrypted_zip_member_is_not_read(make_zip):
    data = bytearray(make_zip({"secret.txt": b"classified"}))
    for signature, flags_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        position = data.index(signature)
        data[position + flags_offset] |= 0x01
    result = extract(bytes(data), "locked.zip")
    assert result.text == "secret.txt"
    assert result.defects == ("zip member 'secret.txt': encrypted",)


def test_zip_member_with_corrupt_compressed_data_is_reported_not_raised(make_zip):
    data = bytearray(make_zip({"a.txt": b"some words to compress " * 50, "b.txt": b"fine"}))
    start = 30 + len("a.txt")  # the first member's data follows its local header and name
    data[start : start + 8] = b"\xff" * 8
    result = extract(bytes(data), "damaged.zip")
    assert result.text.startswith("a.txt\nb.txt\n\nb.txt\nfine")
    (defect,) = result.defects
    assert defect.startswith("zip member 'a.txt': unreadable (")


def test_corrupt_zip_is_skipped():
    result = extract(b"PK\x03\x04" + b"\x00" * 40, "broken.zip", "application/zip")
    assert (result.skipped, result.defects) == ("corrupt", ("zip archive unreadable",))


# -- limits through parse_message ---------------------------------------------------------


def test_attachment_above_the_size_limit_is_listed_without_text():
    raw = message_with(b"words " * 2000, "big.txt", "text/plain")
    (attachment,) = parse_message(raw, ExtractionLimits(max_attachment_bytes=10_000)).attachments
    assert (attachment.filename, attachment.size) == ("big.txt", 12_000)
    assert (attachment.text, attachment.skipped) == ("", "too large")


def test_attachment_text_is_truncated():
    raw = message_with(b"abcdefghij" * 100, "long.txt", "text/plain")
    parsed = parse_message(raw, ExtractionLimits(max_extracted_chars=25))
    assert parsed.attachments[0].text == "abcdefghijabcdefghijabcde"


def test_zip_bomb_inside_a_message_is_reported_with_its_name():
    parsed = parse_message(message_with(_zeros_zip(), "bomb.zip", "application/zip"))
    (attachment,) = parsed.attachments
    assert (attachment.skipped, attachment.text) == ("zip bomb", "zeros.txt")
    assert parsed.defects == ("attachment 'bomb.zip': zip member 'zeros.txt': compression ratio above 100 (zip bomb)",)


def test_eml_inside_a_zip_inside_a_message_is_parsed(make_zip):
    archive = make_zip({"old.eml": b"Subject: archived thread\r\nTo: x@y.org\r\n\r\nthe archived words\r\n"})
    (attachment,) = parse_message(message_with(archive, "mails.zip")).attachments
    assert "Subject: archived thread" in attachment.text
    assert "To: x@y.org" in attachment.text
    assert "the archived words" in attachment.text


def test_xlsx_whose_sheet_inflates_past_its_declared_size_is_refused(make_xlsx):
    # calamine would inflate a lying member to its real size; the zipfile pre-pass stops
    # at the declared size and fails the CRC, so the workbook is refused before calamine.
    workbook = zipfile.ZipFile(io.BytesIO(make_xlsx({"S": [["ok"]]})))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as rebuilt:
        # The lie must be in the first member: _patch_sizes patches the first headers.
        rebuilt.writestr("xl/worksheets/sheet1.xml", b" " * (20 * 1024 * 1024))
        for info in workbook.infolist():
            if info.filename != "xl/worksheets/sheet1.xml":
                rebuilt.writestr(info.filename, workbook.read(info))
    liar = _patch_sizes(buffer.getvalue(), 1000)
    started = time.perf_counter()
    result = extract(liar, "liar.xlsx")
    assert result.skipped == "zip bomb"
    assert result.defects == ("XLSX member sizes or checksums do not match its directory (BadZipFile)",)
    assert time.perf_counter() - started < 2
