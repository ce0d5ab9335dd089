"""`postvault import`: every format, byte-exact, nothing twice, resumable, every refusal explained."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import Table, delete, func, select, update
from typer.testing import CliRunner

from archiver.importers import ImportSummary, import_paths
from archiver.importers.mbox import read_mbox
from postvault.settings import Settings
from postvault.wiring import Archive
from storage import tables
from storage.blobstore import sha256_hex
from tests.archive_factory import make_message


REPO = Path(__file__).resolve().parents[2]


def run(archive: Archive, *paths: Path, **options: object) -> ImportSummary:
    options.setdefault("max_message_bytes", archive.settings.max_message_bytes)
    return import_paths(list(paths), journal=archive.journal, sessions=archive.sessions, **options)  # type: ignore[arg-type]


def archived(archive: Archive) -> dict[str, bytes]:
    """source_detail of each import envelope -> the exact bytes archived for it."""
    with archive.sessions() as session:
        rows = session.execute(select(tables.envelopes.c.source_detail, tables.messages.c.sha256).join(tables.messages)).all()
    return {detail: archive.blobs.get(digest) for detail, digest in rows}


def count(archive: Archive, table: Table) -> int:
    with archive.sessions() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def mbox_entry(raw: bytes, sender: str = "MAILER-DAEMON", date: str = "Thu Mar  7 16:45:02 2024") -> bytes:
    return f"From {sender} {date}\n".encode() + raw + (b"" if raw.endswith(b"\n") else b"\n") + b"\n"


# ----------------------------------------------------------------------------- EML ----


def test_eml_file_and_folder_tree_are_archived_byte_exact_for_the_custodian(archive, tmp_path) -> None:
    folder = tmp_path / "export"
    (folder / "2023" / "q4").mkdir(parents=True)
    one = make_message(subject="one")
    two = make_message(subject="two", to="carol@example.net")
    crlf = make_message(subject="three").replace(b"\n", b"\r\n")
    (folder / "one.eml").write_bytes(one)
    (folder / "2023" / "q4" / "two.eml").write_bytes(two)
    (folder / "2023" / "three").write_bytes(crlf)  # no extension: content decides
    single = tmp_path / "single.eml"
    single.write_bytes(make_message(subject="single"))

    summary = run(archive, folder, single, custodian="custodian@example.com")
    assert (summary.archived, summary.duplicate, summary.refused) == (4, 0, [])
    found = archived(archive)
    assert found[str(folder / "one.eml")] == one
    assert found[str(folder / "2023" / "q4" / "two.eml")] == two
    assert found[str(folder / "2023" / "three")] == crlf
    with archive.sessions() as session:
        assert session.scalar(select(func.count()).select_from(tables.message_mailboxes).where(tables.message_mailboxes.c.mailbox == "custodian@example.com")) == 4
        assert set(session.scalars(select(tables.envelopes.c.source))) == {"import"}
        assert all(row.mail_from == "" and row.rcpt_to == [] for row in session.execute(select(tables.envelopes)))


def test_broken_mime_is_archived_byte_exact(archive, shared_corpus) -> None:
    broken = shared_corpus("ruby-mail") / "error_emails"
    files = sorted(p for p in broken.iterdir() if p.is_file())
    summary = run(archive, broken)
    assert summary.refused == [] and summary.archived + summary.duplicate == len(files)
    found = archived(archive)
    assert all(found[str(path)] == path.read_bytes() for path in files if str(path) in found)


# ------------------------------------------------------------------------- maildir ----


def test_maildir_plus_plus_tree_archives_cur_and_new_and_skips_bookkeeping(archive, tmp_path) -> None:
    root = tmp_path / "Maildir"
    delivered = datetime(2021, 6, 1, 12, 0, tzinfo=timezone.utc).timestamp()
    messages = {}
    for folder in (root, root / ".Sent", root / ".Projects.Falcon"):
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True)
        for sub in ("cur", "new"):
            raw = make_message(subject=f"{folder.name} {sub}")
            path = folder / sub / f"1622548800.M1P1.host{':2,S' if sub == 'cur' else ''}"
            path.write_bytes(raw)
            os.utime(path, (delivered, delivered))
            messages[str(path)] = raw
        (folder / "tmp" / "1622548801.M2P1.host").write_bytes(b"From: half-written")
    (root / "dovecot-uidlist").write_text("3 V1622548800 N3\n")
    (root / "subscriptions").write_text("Sent\nProjects.Falcon\n")
    (root / ".Sent" / "maildirfolder").write_bytes(b"")

    summary = run(archive, root)
    assert summary.archived == 6 and summary.refused == []
    assert {reason for _location, reason in summary.skipped} == {"maildir bookkeeping file", "maildir tmp/ (not delivered mail)"}
    assert len(summary.skipped) == 6  # 3 bookkeeping files, 3 half-written deliveries
    assert archived(archive) == messages
    with archive.sessions() as session:  # the mailbox's own delivery time, not the import's
        assert {m.first_received_at.replace(tzinfo=timezone.utc).timestamp() for m in session.execute(select(tables.messages))} == {delivered}


# ---------------------------------------------------------------------------- mbox ----


def test_mboxrd_quoting_is_undone_once_and_offsets_and_delivery_dates_are_kept(archive, tmp_path) -> None:
    original = make_message(body="From the desk of the CFO:\n>From a quoted line\nplain\n")
    quoted = original.replace(b"\n>From ", b"\n>>From ").replace(b"\nFrom the", b"\n>From the")
    second = make_message(subject="second")
    first_entry = mbox_entry(quoted, "cfo@example.com", "Sat Jan  3 01:05:34 2004")
    path = tmp_path / "mail.mbox"
    path.write_bytes(first_entry + mbox_entry(second))

    summary = run(archive, path)
    assert summary.archived == 2
    found = archived(archive)
    assert found[f"{path}:0"] == original
    assert found[f"{path}:{len(first_entry)}"] == second
    with archive.sessions() as session:
        first = session.execute(select(tables.messages).where(tables.messages.c.sha256 == sha256_hex(original))).one()
        assert first.first_received_at.replace(tzinfo=timezone.utc) == datetime(2004, 1, 3, 1, 5, 34, tzinfo=timezone.utc)


def test_content_length_mbox_keeps_from_lines_inside_a_body_and_ignores_stale_lengths(archive, tmp_path) -> None:
    body = b"Forwarded log follows.\n\nFrom bob@example.org Mon Jan  1 00:00:00 2024\nFrom: not a new message\n\nend\n"
    trusted = b"From: a@example.com\nSubject: cl2\nContent-Length: %d\n\n" % len(body) + body
    stale_body = b"short body\n"
    stale = b"From: c@example.com\nSubject: stale\nContent-Length: 9999\n\n" + stale_body
    last = make_message(subject="after the stale one")
    path = tmp_path / "mboxcl2"
    path.write_bytes(b"From a@example.com Mon Jan  1 00:00:00 2024\n" + trusted + b"\n"
                     b"From c@example.com Mon Jan  1 00:00:01 2024\n" + stale + b"\n" + mbox_entry(last))
    summary = run(archive, path)
    assert summary.archived == 3 and summary.refused == []
    assert set(archived(archive).values()) == {trusted, stale, last}


def test_unquoted_from_lines_in_bodies_do_not_split_messages(archive, tmp_path) -> None:
    prose = make_message(body="My favourite film:\n\nFrom Russia with love\nYear: 1963\n\nFrom Bob\n\nbye\n")
    path = tmp_path / "unmunged.mbox"
    path.write_bytes(mbox_entry(prose) + mbox_entry(make_message(subject="next")))
    summary = run(archive, path)
    assert summary.archived == 2
    assert prose in archived(archive).values()


@pytest.mark.corpus
@pytest.mark.parametrize("name,expected", [("content-length", 29), ("issue1189", 4), ("simple", 3), ("unmunged", 2)])
def test_real_mimekit_mbox_files(archive, shared_corpus, name: str, expected: int) -> None:
    # MimeKit finds 4 messages in unmunged.mbox.txt because it splits at "From Russia with
    # love"; we keep that line in its body (see archiver/importers/mbox.py).
    path = shared_corpus("mimekit") / "mbox" / f"{name}.mbox.txt"
    data = path.read_bytes()
    summary = run(archive, path)
    assert summary.archived + summary.duplicate == expected and summary.refused == []
    for location, raw in archived(archive).items():
        offset = int(location.rpartition(":")[2])
        body_start = data.index(b"\n", offset) + 1
        assert data[body_start : body_start + len(raw)] == raw  # a verbatim slice of the file


@pytest.mark.corpus
@pytest.mark.slow
def test_spam_assassin_corpus_every_file_is_one_message(archive, spam_assassin_corpus, mbox_entry) -> None:
    files = sorted(spam_assassin_corpus.rglob("*.txt"))
    summary = run(archive, *files)
    assert summary.refused == [] and summary.archived + summary.duplicate == len(files)
    with archive.sessions() as session:
        digests = set(session.scalars(select(tables.messages.c.sha256)))
    for path in files[:: max(1, len(files) // 100)]:
        raw = path.read_bytes()
        expected = raw  # a plain message file is archived whole
        if raw.startswith(b"From "):  # an mbox entry: minus its From_ line and its closing empty line,
            expected = mbox_entry(raw)  # with one level of >From quoting undone (mboxrd)
            expected = re.sub(rb"(?m)^>(>*From )", rb"\1", expected[:-1] if expected.endswith(b"\n\n") else expected)
        assert sha256_hex(expected) in digests, path


# ----------------------------------------------------------------------------- zip ----


def test_zip_with_eml_mbox_maildir_and_garbage_inside(archive, tmp_path, make_zip) -> None:
    eml = make_message(subject="zipped eml")
    in_mbox = [make_message(subject="zipped mbox 1"), make_message(subject="zipped mbox 2")]
    in_maildir = make_message(subject="zipped maildir")
    path = tmp_path / "export.zip"
    path.write_bytes(make_zip({
        "mail/one.eml": eml,
        "mail/archive.mbox": b"".join(mbox_entry(m) for m in in_mbox),
        "Maildir/cur/1.M1.host:2,S": in_maildir,
        "Maildir/new/.keep": b"",
        "Maildir/tmp/2.M2.host": b"From: half",
        "Maildir/dovecot-uidlist": b"3 V1 N1\n",
        "notes/readme.txt": b"Exported from Thunderbird",
        "notes/photo.jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)),
        "notes/empty.eml": b"",
        "inner.zip": make_zip({"x.eml": eml}),
    }))
    summary = run(archive, path)
    assert summary.archived == 4
    found = archived(archive)
    assert found[f"{path}!mail/one.eml"] == eml and found[f"{path}!Maildir/cur/1.M1.host:2,S"] == in_maildir
    assert {found[f"{path}!mail/archive.mbox:0"], found[f"{path}!mail/archive.mbox:{len(mbox_entry(in_mbox[0]))}"]} == set(in_mbox)
    refused = dict(summary.refused)
    assert refused[f"{path}!notes/readme.txt"].startswith("not a mail message")
    assert refused[f"{path}!notes/photo.jpg"] == "binary data, not a mail message"
    assert refused[f"{path}!notes/empty.eml"] == "empty file"
    assert refused[f"{path}!Maildir/new/.keep"] == "empty file"
    assert "zip inside a zip" in refused[f"{path}!inner.zip"]
    assert {location for location, _ in summary.skipped} == {f"{path}!Maildir/tmp/2.M2.host", f"{path}!Maildir/dovecot-uidlist"}


# ------------------------------------------------------------------------ refusals ----


def test_what_is_not_mail_is_refused_with_a_reason_never_silently(make_settings, tmp_path) -> None:
    archive = Archive(make_settings(max_message_bytes=2_000))
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "empty.eml").write_bytes(b"")
    (folder / "random.bin").write_bytes(bytes(range(256)) * 16)
    (folder / "notes.txt").write_text("Note: buy milk\nand bread\n")
    (folder / "big.eml").write_bytes(make_message(body="x" * 5_000))
    (folder / "mail.msg").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    (folder / "mail.mbox.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(64))
    (folder / "big.mbox").write_bytes(mbox_entry(make_message(body="y" * 5_000)) + mbox_entry(make_message(subject="small")))
    (folder / "ok.eml").write_bytes(make_message(subject="fits"))
    missing = tmp_path / "no-such-dir"
    try:
        summary = run(archive, folder, missing)
    finally:
        archive.close()
    assert summary.archived == 2  # ok.eml and the small message in big.mbox
    reasons = dict(summary.refused)
    assert reasons[str(folder / "empty.eml")] == "empty file"
    assert reasons[str(folder / "random.bin")] == "binary data, not a mail message"
    assert reasons[str(folder / "notes.txt")] == "not a mail message: no From, Date, Subject, Message-ID or Received header"
    assert "larger than the 2,000-byte message limit" in reasons[str(folder / "big.eml")]
    assert "larger than the 2,000-byte message limit" in reasons[f"{folder / 'big.mbox'}:0"]
    assert "Outlook .msg" in reasons[str(folder / "mail.msg")]
    assert "gzip" in reasons[str(folder / "mail.mbox.gz")]
    assert reasons[str(missing)] == "no such file or folder"
    assert len(summary.refused) == 8


def test_links_fifos_and_unreadable_folders_are_refused_not_skipped_silently(archive, tmp_path) -> None:
    folder = tmp_path / "tree"
    (folder / "real").mkdir(parents=True)
    (folder / "real" / "m.eml").write_bytes(make_message())
    (folder / "loop").symlink_to(folder)  # would import the tree forever if followed
    (folder / "dangling.eml").symlink_to(tmp_path / "gone.eml")
    os.mkfifo(folder / "pipe")
    locked = folder / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        summary = run(archive, folder)
    finally:
        locked.chmod(0o755)
    reasons = dict(summary.refused)
    assert summary.archived == 1
    assert "not followed" in reasons[str(folder / "loop")]
    assert reasons[str(folder / "dangling.eml")] == "broken symbolic link"
    assert reasons[str(folder / "pipe")] == "not a regular file"
    if os.geteuid() != 0:  # root reads any folder, whatever its mode
        assert reasons[str(locked)].startswith("cannot read folder")


# -------------------------------------------------------------- idempotence, resume ----


def test_rerun_archives_nothing_twice_and_queues_nothing_new(archive, tmp_path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    for index in range(30):
        (folder / f"{index}.eml").write_bytes(make_message(subject=f"message {index}"))
    (folder / "all.mbox").write_bytes(b"".join(mbox_entry(make_message(subject=f"mbox {i}")) for i in range(30)))
    first = run(archive, folder, custodian="alice@example.com", batch_messages=7)
    assert (first.archived, first.duplicate) == (60, 0)
    with archive.sessions.begin() as session:
        session.execute(delete(tables.index_outbox))  # as if indexed
    before = (count(archive, tables.messages), count(archive, tables.envelopes), count(archive, tables.message_mailboxes))

    again = run(archive, folder, custodian="alice@example.com", batch_messages=7)
    assert (again.archived, again.duplicate, again.refused) == (0, 60, [])
    assert (count(archive, tables.messages), count(archive, tables.envelopes), count(archive, tables.message_mailboxes)) == before
    assert count(archive, tables.index_outbox) == 0

    without_custodian = run(archive, folder)
    assert (without_custodian.archived, without_custodian.duplicate) == (0, 60)
    assert count(archive, tables.index_outbox) == 0


def test_rerun_for_another_mailbox_attributes_every_message_to_it(archive, tmp_path) -> None:
    path = tmp_path / "shared.mbox"
    path.write_bytes(b"".join(mbox_entry(make_message(subject=f"m{i}")) for i in range(5)))
    run(archive, path, custodian="alice@example.com")
    with archive.sessions.begin() as session:
        session.execute(delete(tables.index_outbox))  # as if indexed
    second = run(archive, path, custodian="Bob@Example.com")
    assert (second.archived, second.duplicate) == (0, 5)
    with archive.sessions() as session:
        bobs = session.scalar(select(func.count()).select_from(tables.message_mailboxes).where(tables.message_mailboxes.c.mailbox == "bob@example.com"))
    assert bobs == 5 and count(archive, tables.messages) == 5
    assert count(archive, tables.index_outbox) == 5  # their search scope widened: reindex them


def test_storage_failure_stops_the_import_reports_it_and_a_rerun_completes(archive, tmp_path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    for index in range(10):
        (folder / f"{index}.eml").write_bytes(make_message(subject=f"s{index}"))
    root: Path = archive.blobs.root  # type: ignore[attr-defined]
    shutil.rmtree(root)
    root.write_bytes(b"")  # root can write anywhere, so break the folder instead of chmod-ing it
    failed = run(archive, folder, batch_messages=4)
    assert failed.storage_error and "blob" in failed.storage_error
    # The batch that failed and the next one, already read while the first was being journaled.
    assert len(failed.not_archived) == 8 and failed.archived == 0
    assert count(archive, tables.messages) == 0

    root.unlink()
    root.mkdir()
    done = run(archive, folder, batch_messages=4)
    assert (done.archived, done.storage_error) == (10, "")


def test_a_catalogue_failure_mid_import_accounts_for_every_message_once(archive, tmp_path) -> None:
    """The next batch is read (and may be journaled) while one commits: when a commit
    fails, the batches behind it are reported not archived (any blobs they left are
    unacknowledged orphans), nothing is counted twice, and a re-run archives exactly
    what is missing."""
    folder = tmp_path / "mail"
    folder.mkdir()
    for index in range(20):
        (folder / f"{index:02}.eml").write_bytes(make_message(subject=f"s{index}"))
    with archive.catalogue.begin() as connection:  # a real SQLite failure, from the ninth row on
        connection.exec_driver_sql(
            "CREATE TRIGGER disk_full AFTER INSERT ON messages WHEN (SELECT count(*) FROM messages) > 8 "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    failed = run(archive, folder, batch_messages=4)
    assert "disk is full" in failed.storage_error
    assert failed.archived == 8 and failed.duplicate == 0 and count(archive, tables.messages) == 8
    assert len(failed.not_archived) == len(set(failed.not_archived)) >= 4
    assert failed.archived + len(failed.not_archived) <= 20  # the rest was never read
    stored = set(archived(archive).values())
    assert not any(Path(location).read_bytes() in stored for location in failed.not_archived)

    with archive.catalogue.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER disk_full")
    done = run(archive, folder, batch_messages=4)
    assert (done.archived, done.duplicate, done.storage_error) == (12, 8, "")
    assert sorted(archived(archive).values()) == sorted((folder / f"{i:02}.eml").read_bytes() for i in range(20))


def _write_big_mbox(path: Path, messages: int) -> list[tuple[int, bytes]]:
    entries = []
    with path.open("wb") as handle:
        for index in range(messages):
            raw = make_message(subject=f"bulk {index}", body=f"line {index}\n" * 40)
            entries.append((handle.tell(), raw))
            handle.write(mbox_entry(raw))
    return entries


def _checkpoint_position(database: Path) -> int:
    try:
        with sqlite3.connect(database, timeout=1) as connection:
            row = connection.execute("SELECT max(position) FROM import_checkpoints").fetchone()
    except sqlite3.Error:
        return 0
    return row[0] or 0


@pytest.mark.slow
def test_mbox_import_killed_midway_resumes_from_its_checkpoint(tmp_path, make_settings) -> None:
    path = tmp_path / "big.mbox"
    entries = _write_big_mbox(path, 12_000)
    size = path.stat().st_size
    assert size > 4 * 1024 * 1024  # large enough to be checkpointed
    settings = make_settings()
    env = {**os.environ, "POSTVAULT_DATA_DIR": str(settings.data_dir), "POSTVAULT_INDEX_WORKERS": "1"}
    command = [sys.executable, "-m", "postvault.cli", "import", str(path), "--mailbox", "alice@example.com",
               "--batch-size", "100", "--no-index"]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    database = settings.data_dir / "catalogue.sqlite3"
    deadline = time.monotonic() + 120
    while _checkpoint_position(database) < size // 4:
        assert process.poll() is None, f"import ended before it could be killed: {process.stderr.read().decode()}"
        assert time.monotonic() < deadline, "no checkpoint written within 2 minutes"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()

    archive = Archive(settings)
    try:
        committed = count(archive, tables.messages)
        assert 0 < committed < len(entries)
        summary = run(archive, path, custodian="alice@example.com", batch_messages=100)
        [(location, resumed_at)] = summary.resumed
        assert location == str(path) and resumed_at >= size // 4
        before_resume = sum(1 for offset, _ in entries if offset < resumed_at)
        # Only what lies after the checkpoint was read again; at most one batch of it had
        # been committed after the checkpoint was written.
        assert summary.archived + summary.duplicate == len(entries) - before_resume
        assert summary.duplicate <= 100
        assert count(archive, tables.messages) == len(entries)
        with archive.sessions() as session:
            assert set(session.scalars(select(tables.messages.c.sha256))) == {sha256_hex(raw) for _, raw in entries}
            assert session.scalars(select(tables.import_checkpoints.c.finished)).one() is True

        finished = run(archive, path, custodian="alice@example.com")
        assert (finished.archived, finished.duplicate, finished.resumed) == (0, 0, [(str(path), size)])
    finally:
        archive.close()


def test_resume_point_that_no_longer_matches_the_file_reads_it_again(archive, tmp_path) -> None:
    path = tmp_path / "edited.mbox"
    path.write_bytes(b"".join(mbox_entry(make_message(subject=f"e{i}", body="z" * 300)) for i in range(20)))
    first = run(archive, path, checkpoint_min_bytes=0)
    assert first.archived == 20
    with archive.sessions.begin() as session:  # as if the file had been rewritten under the checkpoint
        session.execute(update(tables.import_checkpoints).values(position=7, finished=False))
    again = run(archive, path, checkpoint_min_bytes=0)
    assert (again.archived, again.duplicate) == (0, 20)


def test_mbox_reader_resumes_at_every_message_boundary(tmp_path) -> None:
    path = tmp_path / "m.mbox"
    path.write_bytes(b"".join(mbox_entry(make_message(subject=f"r{i}")) for i in range(6)))
    with path.open("rb") as handle:
        everything = list(read_mbox(handle, max_message_bytes=10**6))
    for index, message in enumerate(everything):
        with path.open("rb") as handle:
            rest = list(read_mbox(handle, start=message.end, max_message_bytes=10**6))
        assert [m.raw for m in rest] == [m.raw for m in everything[index + 1 :]]


# ----------------------------------------------------------------------------- CLI ----

runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Archive]:
    monkeypatch.setenv("POSTVAULT_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("POSTVAULT_INDEX_WORKERS", "1")
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal width; keep messages on one line
    return lambda: Archive(Settings())


def test_cli_import_to_searchable_in_one_command(cli_env, tmp_path) -> None:
    from postvault.cli import app

    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "a.eml").write_bytes(make_message(subject="Falcon schedule", body="Prototype delivery moves to June."))
    (folder / "b.mbox").write_bytes(mbox_entry(make_message(subject="Budget", body="Quarterly numbers.")))
    (folder / "junk.bin").write_bytes(b"\x00\x01\x02garbage")
    result = runner.invoke(app, ["import", str(folder), "--mailbox", "Alice@Example.com"])
    assert result.exit_code == 0, result.output
    assert "archived (new)" in result.output and "junk.bin" in result.output and "binary data" in result.output
    archive = cli_env()
    try:
        assert count(archive, tables.messages) == 2
        assert count(archive, tables.index_outbox) == 0  # drained: indexed before the command returned
        assert archive.search.count() == 2
    finally:
        archive.close()

    again = runner.invoke(app, ["import", str(folder), "--mailbox", "alice@example.com"])
    assert again.exit_code == 0 and "already in the archive" in again.output


def test_cli_rejects_a_mailbox_that_is_not_an_address(cli_env, tmp_path) -> None:
    from postvault.cli import app

    result = runner.invoke(app, ["import", str(tmp_path), "--mailbox", "not an address"])
    assert result.exit_code == 2 and "not an email address" in result.output


def test_cli_exits_1_when_storage_cannot_be_opened(cli_env, tmp_path) -> None:
    from postvault.cli import app

    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "blobs").write_bytes(b"")  # the blob folder cannot be created
    (tmp_path / "m.eml").write_bytes(make_message())
    result = runner.invoke(app, ["import", str(tmp_path / "m.eml"), "--no-index"])
    assert result.exit_code == 1 and "Storage unavailable; nothing was imported" in result.output


def test_cli_exits_1_and_says_how_to_resume_when_storage_fails_midway(cli_env, tmp_path) -> None:
    from postvault.cli import app

    blobs = tmp_path / "var" / "blobs"
    (blobs / "packs" / "00000001.pack").mkdir(parents=True)  # a folder where the first pack goes: each write fails
    (tmp_path / "m.eml").write_bytes(make_message())
    result = runner.invoke(app, ["import", str(tmp_path / "m.eml"), "--no-index"])
    assert result.exit_code == 1
    assert "Storage failed; the import stopped" in result.output and "run the same command again" in result.output
    assert "1 message(s) read but not archived" in result.output
