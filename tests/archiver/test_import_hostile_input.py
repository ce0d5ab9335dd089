"""`postvault import` on hostile input: odd file names, links, zip bombs, enormous lines, broken mbox, vanishing files."""

from __future__ import annotations

import inspect
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Table, func, select
from typer.testing import CliRunner

from archiver.importers import ImportSummary, import_paths
from archiver.importers.mbox import read_mbox
from archiver.importers.sources import FoundMessage, Refusal, SourceOptions, iter_items
from postvault.wiring import Archive
from storage import tables
from storage.text import escaped, unescaped
from tests import services
from tests.archive_factory import make_message

REPO = Path(__file__).resolve().parents[2]
NOT_UTF8 = os.fsdecode(b"caf\xe9\xff")  # Latin-1 "café" and a byte no encoding starts with
MIB = 1024 * 1024


def original(text: str) -> bytes:
    """The bytes of a file name that the catalogue and the import summary keep escaped."""
    return os.fsencode(unescaped(text))


def run(archive: Archive, *paths: Path, **options: object) -> ImportSummary:
    options.setdefault("max_message_bytes", archive.settings.max_message_bytes)
    return import_paths(list(paths), journal=archive.journal, sessions=archive.sessions, **options)  # type: ignore[arg-type]


def archived(archive: Archive) -> dict[bytes, bytes]:
    """The bytes of each import's source path (source_detail, decoded) -> the exact bytes archived for it."""
    query = select(tables.envelopes.c.source_detail, tables.messages.c.sha256).join(
        tables.messages, tables.messages.c.id == tables.envelopes.c.message_id)
    with archive.sessions() as session:
        rows = session.execute(query).all()
    return {original(detail): archive.blobs.get(digest) for detail, digest in rows}


def rows(archive: Archive, table: Table) -> int:
    with archive.sessions() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def mbox_entry(raw: bytes, date: str = "Thu Mar  7 16:45:02 2024") -> bytes:
    return f"From MAILER-DAEMON {date}\n".encode() + raw + (b"" if raw.endswith(b"\n") else b"\n") + b"\n"


def maildir(root: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    return root


# ------------------------------------------------------------- names not in UTF-8 ----


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def any_catalogue(request: pytest.FixtureRequest, make_settings) -> Iterator[Archive]:  # type: ignore[no-untyped-def]
    """An archive whose catalogue is SQLite, or a throw-away PostgreSQL schema."""
    if request.param == "sqlite":
        built = Archive(make_settings())
        yield built
        built.close()
        return
    with services.postgres_schema() as url:
        built = Archive(make_settings(database_url=url))
        yield built
        built.close()


def test_file_names_that_are_not_utf8_are_imported_byte_exact_and_a_rerun_is_idempotent(any_catalogue, tmp_path) -> None:
    archive = any_catalogue
    box = maildir(tmp_path / "Maildir")
    in_cur = box / "cur" / f"1700000000.M1P1.{NOT_UTF8}:2,S"
    in_new = box / "new" / f"1700000001.M2P1.{NOT_UTF8}"
    folder = tmp_path / os.fsdecode(b"Bo\xeete")  # the folder's own name is Latin-1 too
    folder.mkdir()
    eml = folder / f"{NOT_UTF8}.eml"
    mbox = folder / f"{NOT_UTF8}.mbox"
    junk = folder / f"{NOT_UTF8}.txt"
    messages = {in_cur: make_message(subject="cur"), in_new: make_message(subject="new"), eml: make_message(subject="eml")}
    for path, raw in messages.items():
        path.write_bytes(raw)
    in_mbox = [make_message(subject=f"mbox {i}") for i in range(3)]
    mbox.write_bytes(b"".join(mbox_entry(raw) for raw in in_mbox))
    junk.write_bytes(b"shopping list\n")

    # checkpoint_min_bytes=0: the mbox gets a checkpoint row, keyed and named by its path.
    first = run(archive, box, folder, custodian="alice@example.com", checkpoint_min_bytes=0)
    assert (first.archived, first.duplicate, first.storage_error) == (6, 0, "")
    [(location, reason)] = first.refused
    assert original(location) == os.fsencode(junk) and reason.startswith("not a mail message")
    found = archived(archive)
    for path, raw in messages.items():
        assert found[os.fsencode(path)] == raw
    offset = 0
    for raw in in_mbox:
        assert found[os.fsencode(f"{mbox}:{offset}")] == raw
        offset += len(mbox_entry(raw))
    with archive.sessions() as session:
        [(saved_path, finished)] = session.execute(select(tables.import_checkpoints.c.path, tables.import_checkpoints.c.finished)).all()
    assert original(saved_path) == os.fsencode(mbox.resolve()) and finished

    before = (rows(archive, tables.messages), rows(archive, tables.envelopes), rows(archive, tables.import_checkpoints))
    again = run(archive, box, folder, custodian="alice@example.com", checkpoint_min_bytes=0)
    assert (again.archived, again.duplicate, again.refused, again.storage_error) == (0, 3, first.refused, "")
    assert again.resumed == [(escaped(str(mbox)), mbox.stat().st_size)]  # finished: not read again
    assert (rows(archive, tables.messages), rows(archive, tables.envelopes), rows(archive, tables.import_checkpoints)) == before


def test_cli_prints_and_writes_names_that_are_not_utf8_without_crashing(tmp_path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / f"{NOT_UTF8}.eml").write_bytes(make_message(subject="accented name"))
    junk = folder / f"{NOT_UTF8}\x1b[2J[red].txt"  # an escape sequence and rich markup: names are data, not commands
    junk.write_bytes(b"not mail\n")
    refusals = tmp_path / "refusals.jsonl"
    env = {key: value for key, value in os.environ.items() if not key.startswith("POSTVAULT_")}
    env.update(POSTVAULT_DATA_DIR=str(tmp_path / "var"), POSTVAULT_INDEX_WORKERS="1", LANG="C.UTF-8", COLUMNS="200")
    command = [sys.executable, "-m", "postvault.cli", "import", str(folder), "--refusals-file", str(refusals)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, timeout=120)
    output = result.stdout.decode("utf-8")  # strict: whatever was printed is UTF-8
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert "\x1b[2J" not in output and "caf\\xe9\\xff\u241b[2J[red].txt" in output  # ESC shown as the control picture
    [line] = refusals.read_text(encoding="utf-8").splitlines()
    assert original(json.loads(line)["location"]) == os.fsencode(junk)


# ------------------------------------------------------------------ symbolic links ----


def test_links_out_of_the_tree_are_refused_and_links_inside_it_are_read_once(archive, tmp_path) -> None:
    bobs = maildir(tmp_path / "bob" / "Maildir")
    secret = bobs / "cur" / "1700000000.M1P1.host:2,S"
    secret.write_bytes(make_message(subject="bob's private mail", to="bob@example.org"))
    alices = maildir(tmp_path / "alice" / "Maildir")
    own = alices / "cur" / "1700000001.M2P1.host:2,S"
    own.write_bytes(make_message(subject="alice's own mail"))
    outside = alices / "cur" / "1700000002.M3P1.host:2,S"
    outside.symlink_to(secret)
    chained = alices / "cur" / "1700000003.M4P1.host:2,S"
    chained.symlink_to(alices / "new" / "hop")  # a link inside the tree, to a link out of it
    (alices / "new" / "hop").symlink_to(secret)
    inside = alices / "new" / "1700000004.M5P1.host"
    inside.symlink_to("../cur/1700000001.M2P1.host:2,S")
    loop = alices / "cur" / "loop-a"
    loop.symlink_to(alices / "cur" / "loop-b")
    (alices / "cur" / "loop-b").symlink_to(loop)
    folder_out = alices / ".Bob"
    folder_out.symlink_to(bobs)

    summary = run(archive, alices, custodian="alice@example.com")

    assert summary.archived == 1 and archived(archive) == {os.fsencode(own): own.read_bytes()}
    reasons = dict(summary.refused)
    assert reasons[str(outside)] == f"symbolic link to {secret}, outside the folder being imported: not followed"
    assert reasons[str(chained)] == reasons[str(alices / "new" / "hop")] == reasons[str(outside)]
    assert reasons[str(loop)] == reasons[str(alices / "cur" / "loop-b")] == "symbolic link loop: not followed"
    assert reasons[str(folder_out)].startswith("symbolic link to a folder outside the folder being imported")
    assert len(summary.refused) == 6
    assert dict(summary.skipped)[str(inside)] == ("symbolic link to cur/1700000001.M2P1.host:2,S in the folder being "
                                                  "imported, which is read under its own name")
    with archive.sessions() as session:
        subjects = set(session.scalars(select(tables.messages.c.subject)))
    assert subjects == {"alice's own mail"}

    # Named on the command line, a link is the operator's choice and is followed.
    assert run(archive, outside, custodian="bob@example.org").archived == 1


def test_cli_says_which_links_it_did_not_follow(tmp_path, monkeypatch) -> None:
    from postvault import cli_import
    from postvault.cli import app

    monkeypatch.setenv("POSTVAULT_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("POSTVAULT_INDEX_WORKERS", "1")
    monkeypatch.setattr(cli_import.console, "width", 400)  # room for the location and the reason on one row
    elsewhere = tmp_path / "elsewhere.eml"
    elsewhere.write_bytes(make_message(subject="not in the tree"))
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "link.eml").symlink_to(elsewhere)
    result = CliRunner().invoke(app, ["import", str(folder), "--no-index"])
    assert result.exit_code == 0, result.output
    assert str(folder / "link.eml") in result.output
    assert f"symbolic link to {elsewhere}, outside the folder being imported: not followed" in result.output


def test_cli_imports_a_zip_export_with_more_members_than_an_attachment_may_list(tmp_path, monkeypatch) -> None:
    """POSTVAULT_MAX_ZIP_MEMBERS guards attachments; a mailbox export of 1,500 messages is imported whole."""
    from postvault.cli import app
    from postvault.settings import Settings

    monkeypatch.setenv("POSTVAULT_DATA_DIR", str(tmp_path / "var"))
    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w", zipfile.ZIP_DEFLATED) as archive_file:
        for number in range(1500):
            archive_file.writestr(f"mail/{number}.eml", make_message(subject=f"exported {number}"))
    result = CliRunner().invoke(app, ["import", str(export), "--no-index"])
    assert result.exit_code == 0, result.output
    archive = Archive(Settings(data_dir=tmp_path / "var"))
    try:
        with archive.sessions() as session:
            assert session.scalar(select(func.count()).select_from(tables.messages)) == 1500
    finally:
        archive.close()


# ---------------------------------------------------------------------- zip bombs ----


_PEAK_RSS = r"""
import json, sys, threading
from pathlib import Path
import psutil
from archiver.importers import import_paths
from postvault.settings import Settings
from postvault.wiring import Archive

archive = Archive(Settings(data_dir=Path(sys.argv[1]), index_workers=1))
process = psutil.Process()
before = peak = process.memory_info().rss
done = threading.Event()

def sample():
    global peak
    while not done.wait(0.001):
        peak = max(peak, process.memory_info().rss)

sampler = threading.Thread(target=sample)
sampler.start()
try:
    summary = import_paths([Path(p) for p in sys.argv[3:]], journal=archive.journal, sessions=archive.sessions,
                           max_message_bytes=int(sys.argv[2]))
finally:
    done.set()
    sampler.join()
    archive.close()
print(json.dumps({"archived": summary.archived, "refused": summary.refused, "growth": peak - before}))
"""


def import_in_child(data_dir: Path, *paths: Path, max_message_bytes: int) -> dict:
    """Import in a fresh process; also report how far its RSS rose above where it started (psutil, every ms)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("POSTVAULT_")}
    command = [sys.executable, "-c", _PEAK_RSS, str(data_dir), str(max_message_bytes), *map(str, paths)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def write_bomb(archive: zipfile.ZipFile, name: str, head: bytes, megabytes: int) -> None:
    """A member of ``megabytes`` MiB, nearly all zeros, deflated as it is written (never held whole)."""
    with archive.open(name, "w", force_zip64=True) as member:
        member.write(head)
        zeros = bytes(MIB)
        for _ in range(megabytes):
            member.write(zeros)


def test_a_zip_bomb_is_refused_member_by_member_without_inflating_it(tmp_path, make_settings) -> None:
    good = [make_message(subject="first"), make_message(subject="last")]
    path = tmp_path / "export.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("a.eml", good[0])
        write_bomb(archive, "b.mbox", b"From a@b Thu Mar  7 16:45:02 2024\nFrom: a@b\nSubject: zeros\n\n", 300)
        write_bomb(archive, "c.eml", b"From: a@b\nSubject: zeros\n\n", 300)
        archive.writestr("d.eml", good[1])
    assert path.stat().st_size < 3 * MIB

    result = import_in_child(make_settings().data_dir, path, max_message_bytes=50 * MIB)

    assert result["archived"] == 2
    reasons = dict(result["refused"])
    for member in ("b.mbox", "c.eml"):
        assert reasons.pop(f"{path}!{member}") == "not read: compression ratio above 100 (zip bomb); the limit is POSTVAULT_MAX_ZIP_RATIO"
    assert reasons == {}
    assert result["growth"] < 32 * MIB  # 600 MiB declared: nothing of it was inflated


def _rewrite_sizes(data: bytes, *, file_size: int | None = None, compress_size: int | None = None) -> bytes:
    """The zip with the sizes of its only member rewritten, in the local header and the central directory alike."""
    out = bytearray(data)
    local = out.index(b"PK\x03\x04")
    central = out.index(b"PK\x01\x02")
    for header, at in ((local, 18), (central, 20)):  # compressed size, then uncompressed size (APPNOTE 4.3.7, 4.3.12)
        if compress_size is not None:
            struct.pack_into("<I", out, header + at, compress_size)
        if file_size is not None:
            struct.pack_into("<I", out, header + at + 4, file_size)
    return bytes(out)


def test_a_zip_whose_directory_lies_about_sizes_is_refused_and_read_no_further(tmp_path, make_settings, make_zip) -> None:
    body = b"".join(b"line %d of a long message\n" % n for n in range(100_000))  # 2.7 MB, compresses 10:1 or so
    raw = b"From: a@b\nSubject: long\n\n" + body
    understated = tmp_path / "understated.zip"  # says 4,000 bytes: zipfile stops there and the CRC fails
    understated.write_bytes(_rewrite_sizes(make_zip({"m.eml": raw}), file_size=4_000))
    overstated = tmp_path / "overstated.zip"  # claims 1 GB compressed so the ratio looks honest
    overstated.write_bytes(_rewrite_sizes(make_zip({"m.eml": raw}), file_size=2**31, compress_size=2**31 - 1))
    honest = tmp_path / "honest.zip"
    honest.write_bytes(make_zip({"m.eml": raw}))

    result = import_in_child(make_settings().data_dir, understated, overstated, honest, max_message_bytes=50 * MIB)

    assert result["archived"] == 1
    reasons = dict(result["refused"])
    assert reasons[f"{understated}!m.eml"].startswith("unreadable zip member: Bad CRC-32")
    # The budget is the ratio applied to the file's real size, not to what its directory claims.
    assert reasons[f"{overstated}!m.eml"] == (
        f"not read: archive byte budget spent: the members of this zip may inflate to {100 * overstated.stat().st_size:,} "
        "bytes in all, 100 times its size (POSTVAULT_MAX_ZIP_RATIO)")
    assert len(reasons) == 2 and result["growth"] < 32 * MIB


def test_zip_entries_that_share_their_data_are_stopped_by_the_total_budget(archive, tmp_path) -> None:
    # Many directory entries pointing at one member's data (an "overlapping" bomb): each one
    # has an honest ratio, so only a budget for the whole zip stops the inflation.
    raw = make_message(subject="shared", body=os.urandom(400_000).hex())  # 800 kB that deflates about 2:1
    single = io.BytesIO()
    with zipfile.ZipFile(single, "w", compression=zipfile.ZIP_DEFLATED) as built:
        built.writestr("m.eml", raw)
    data = single.getvalue()
    central = data.index(b"PK\x01\x02")
    end = data.index(b"PK\x05\x06")
    copies = 500
    directory = data[central:end] * copies
    record = bytearray(data[end:])
    struct.pack_into("<HHII", record, 8, copies, copies, len(directory), central)
    path = tmp_path / "overlapping.zip"
    path.write_bytes(data[:central] + directory + bytes(record))
    allowance = 100 * path.stat().st_size

    summary = run(archive, path)

    read = summary.archived + summary.duplicate
    assert summary.archived == 1 and read == allowance // len(raw)
    assert len(summary.refused) == copies - read
    assert all(reason.startswith("not read: archive byte budget spent") for _, reason in summary.refused)


def test_zip_members_beyond_the_member_limit_are_each_refused(archive, tmp_path, make_zip) -> None:
    path = tmp_path / "many.zip"
    path.write_bytes(make_zip({f"{n}.eml": make_message(subject=f"m{n}") for n in range(5)}))
    summary = run(archive, path, max_zip_members=3)
    assert summary.archived == 3
    assert summary.refused == [(f"{path}!{n}.eml", "not read: beyond the first 3 members of the zip (POSTVAULT_MAX_ZIP_MEMBERS)")
                               for n in (3, 4)]


def test_a_symbolic_link_stored_in_a_zip_is_refused_as_a_link(archive, tmp_path) -> None:
    path = tmp_path / "links.zip"
    with zipfile.ZipFile(path, "w") as built:
        link = zipfile.ZipInfo("Maildir/cur/1.M1.host:2,S")
        link.create_system = 3  # Unix: the mode is in the high half of external_attr (zip -y stores links so)
        link.external_attr = 0o120777 << 16
        built.writestr(link, "/home/bob/Maildir/cur/1.M1.host:2,S")
        built.writestr("Maildir/new/2.M2.host", make_message(subject="real"))
    summary = run(archive, path)
    assert summary.archived == 1
    assert summary.refused == [(f"{path}!Maildir/cur/1.M1.host:2,S", "symbolic link inside the zip: not followed")]


def test_a_zip_with_a_member_name_that_breaks_its_own_encoding_flag_is_refused(archive, tmp_path, make_zip) -> None:
    data = bytearray(make_zip({"AAAA.eml": make_message()}).replace(b"AAAA", b"\xe9\xff\xe9\xff"))
    data[data.index(b"PK\x03\x04") + 7] |= 0x08  # general purpose bit 11: "the name is UTF-8" (APPNOTE 4.4.4)
    data[data.index(b"PK\x01\x02") + 9] |= 0x08
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "names.zip").write_bytes(bytes(data))
    (tmp_path / "in" / "ok.eml").write_bytes(make_message(subject="still imported"))
    summary = run(archive, tmp_path / "in")
    assert summary.archived == 1
    [(location, reason)] = summary.refused
    assert location == str(tmp_path / "in" / "names.zip") and reason.startswith("unreadable zip file: 'utf-8' codec")


# -------------------------------------------------------------------- long lines ----


def test_a_200_mb_line_in_an_mbox_is_read_in_bounded_memory_and_reported(tmp_path, make_settings) -> None:
    limit = 16 * MIB
    long_but_fits = make_message(subject="a 3 MB line").replace(b"Please review", b"Please " + b"review " * 450_000)
    normal = make_message(subject="after the long lines")
    path = tmp_path / "long-line.mbox"
    with path.open("wb") as handle:
        handle.write(b"From MAILER-DAEMON Thu Mar  7 16:45:02 2024\nFrom: a@b\nSubject: one enormous line\n\nstart:")
        handle.seek(200 * MIB, os.SEEK_CUR)  # a hole: 200 MiB of NUL bytes that take no disk space
        handle.write(b":end\n\n" + mbox_entry(long_but_fits) + mbox_entry(normal))
    huge_size = 200 * MIB + len(b"From: a@b\nSubject: one enormous line\n\nstart::end\n")

    result = import_in_child(make_settings().data_dir, path, max_message_bytes=limit)

    assert result["archived"] == 2
    assert result["refused"] == [[f"{path}:0", f"{huge_size:,} bytes is larger than the {limit:,}-byte message limit"]]
    assert result["growth"] < 3 * limit  # the line is 200 MiB; what is held stays near the message limit
    archive = Archive(make_settings())
    try:
        assert sorted(archived(archive).values()) == sorted([long_but_fits, normal])
    finally:
        archive.close()


def test_lines_longer_than_a_piece_are_kept_byte_exact_whatever_the_piece_size(tmp_path) -> None:
    piece = 256
    # Long lines whose pieces end just before "From ", a CR/LF pair, an empty line or a
    # header field: none of those may be taken for the structure of the mbox.
    tricky = b"".join([
        b"x" * (piece - 1) + b"\n",
        b"y" * piece + b"From bob@example.org Mon Jan  1 00:00:00 2024\n",
        b"z" * (piece - 1) + b"\r\n",
        b"w" * piece + b"\n",
        b"v" * piece + b"Subject: not a header\n",
        b"u" * (3 * piece + 7) + b"\n",
    ])
    header_line = b"References: " + b" ".join(b"<%d@example.org>" % n for n in range(100)) + b"\n"
    entries = [
        b"From: a@b\nSubject: long body lines\n\n" + tricky,
        b"From: a@b\n" + header_line + b"Subject: a long header line\n\nbody\n",
        b"From: a@b\nContent-Length: %d\n\n" % len(tricky) + tricky,
        b"From: a@b\r\nSubject: crlf\r\n\r\n" + tricky.replace(b"\n", b"\r\n"),
    ]
    path = tmp_path / "pieces.mbox"
    path.write_bytes(b"".join(mbox_entry(raw) for raw in entries))
    for size in (piece, piece + 1, piece + 2, 333, 4096, 64 * 1024):
        with path.open("rb") as handle:
            assert [m.raw for m in read_mbox(handle, max_message_bytes=MIB, piece_bytes=size)] == entries, size


# ------------------------------------------------- broken mbox, vanishing files ----


def test_broken_from_lines_and_far_dates_do_not_stop_an_mbox_import(archive, tmp_path) -> None:
    messages = [make_message(subject=f"m{n}") for n in range(4)]
    path = tmp_path / "broken.mbox"
    path.write_bytes(b"".join([
        b"From \n" + messages[0] + b"\n",  # a From_ line without sender or date
        mbox_entry(messages[1], date="Fri Dec 31 23:59:59 9999"),  # the last second datetime can hold
        mbox_entry(messages[2], date="Sat Feb 30 25:61:61 0000"),  # no such date
        b"From " + b"\xff" * 300 + b" Thu Mar  7 16:45:02 2024\n" + messages[3] + b"\n",
    ]))
    overlong = tmp_path / "overlong-first-line.mbox"  # a first From_ line of several pieces: the mbox's, all of it
    overlong.write_bytes(b"From " + b"x" * 200_000 + b" Thu Mar  7 16:45:02 2024\n" + messages[0] + b"\n")
    summary = run(archive, path, overlong)
    assert (summary.archived, summary.duplicate, summary.refused, summary.storage_error) == (4, 1, [], "")
    with archive.sessions() as session:
        received = {subject: when for subject, when in session.execute(
            select(tables.messages.c.subject, tables.messages.c.first_received_at))}
    assert received["m1"].year == 9999


def test_files_and_folders_that_vanish_or_cannot_be_read_are_reported_not_fatal(tmp_path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / "tree" / name).mkdir(parents=True)
    (tmp_path / "tree" / "a" / "1.eml").write_bytes(make_message(subject="a1"))
    (tmp_path / "tree" / "a" / "2.eml").write_bytes(make_message(subject="a2"))
    (tmp_path / "tree" / "b" / "1.eml").write_bytes(make_message(subject="b1"))
    (tmp_path / "tree" / "c" / "1.eml").write_bytes(make_message(subject="c1"))
    os.mkfifo(tmp_path / "pipe")  # named on the command line: refused, and opening it does not block
    items = iter_items([tmp_path / "tree", tmp_path / "pipe"], SourceOptions(max_message_bytes=MIB))
    first = next(items)
    assert isinstance(first, FoundMessage) and first.location == str(tmp_path / "tree" / "a" / "1.eml")
    (tmp_path / "tree" / "a" / "2.eml").unlink()  # listed with a/, gone before it is read
    shutil.rmtree(tmp_path / "tree" / "b")  # listed in tree/, gone before it is walked
    rest = list(items)
    assert [(item.location, item.reason) for item in rest if isinstance(item, Refusal)] == [
        (str(tmp_path / "tree" / "a" / "2.eml"), "cannot read: No such file or directory"),
        (str(tmp_path / "tree" / "b"), "cannot read folder: No such file or directory"),
        (str(tmp_path / "pipe"), "not a regular file"),
    ]
    assert [item.location for item in rest if isinstance(item, FoundMessage)] == [str(tmp_path / "tree" / "c" / "1.eml")]


_LIST_AS_NOBODY = r"""
import json, os, sys
from pathlib import Path
from archiver.importers.sources import SourceOptions, iter_items
if os.geteuid() == 0:  # root reads everything: become nobody, with every module already loaded
    os.setgid(65534)
    os.setuid(65534)
items = iter_items([Path(sys.argv[1])], SourceOptions(max_message_bytes=1 << 20))
print(json.dumps([(type(item).__name__, item.location, getattr(item, "reason", "")) for item in items]))
"""


def test_files_and_folders_the_importer_may_not_read_are_refused_one_by_one() -> None:
    root = Path(tempfile.mkdtemp(prefix="pv-unreadable-"))  # not under tmp_path: nobody must reach it
    try:
        root.chmod(0o755)
        for folder in ("ok", "unsearchable", "unlistable"):
            (root / folder).mkdir()
            (root / folder).chmod(0o755)  # whatever the umask (the CLI, run in-process by other tests, sets 077)
        for path in (root / "ok" / "fine.eml", root / "locked.eml", root / "unsearchable" / "x.eml", root / "unlistable" / "y.eml"):
            path.write_bytes(make_message(subject=path.name))
            path.chmod(0o644)
        (root / "locked.eml").chmod(0)
        (root / "unsearchable").chmod(0o444)  # its names can be listed, its files not opened
        (root / "unlistable").chmod(0o311)  # its files can be opened, its names not listed
        result = subprocess.run([sys.executable, "-c", _LIST_AS_NOBODY, str(root)], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert sorted(map(tuple, json.loads(result.stdout))) == sorted([
            ("FoundMessage", str(root / "ok" / "fine.eml"), ""),
            ("Refusal", str(root / "locked.eml"), "cannot read: Permission denied"),
            ("Refusal", str(root / "unsearchable" / "x.eml"), "cannot read: Permission denied"),
            ("Refusal", str(root / "unlistable"), "cannot read folder: Permission denied"),
        ])
    finally:
        for folder in ("unsearchable", "unlistable"):
            (root / folder).chmod(0o755)
        shutil.rmtree(root)


def test_a_folder_tree_deeper_than_the_recursion_limit_is_walked(tmp_path) -> None:
    # Python 3.11's os.walk recurses once per level. Rather than a tree deeper than the
    # default limit (which shutil.rmtree, and so pytest's clean-up, could not remove
    # either), the limit is lowered below this tree's depth while it is walked.
    depth = 400
    path = tmp_path
    for _ in range(depth):
        path = path / "d"
    path.mkdir(parents=True)
    (path / "deep.eml").write_bytes(make_message(subject="deep"))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + depth // 2)
    try:
        items = list(iter_items([tmp_path / "d"], SourceOptions(max_message_bytes=MIB)))
    finally:
        sys.setrecursionlimit(limit)
    assert [(type(item), item.location) for item in items] == [(FoundMessage, str(path / "deep.eml"))]
