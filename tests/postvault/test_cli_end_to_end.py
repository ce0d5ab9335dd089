"""The CLI end to end on the embedded profile: import, search, show, status, verify, reindex."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postvault.cli import app
from tests.archive_factory import make_message

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POSTVAULT_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("POSTVAULT_INDEX_WORKERS", "1")
    return tmp_path / "var"


@pytest.fixture
def imported(tmp_path: Path, data_dir: Path) -> dict[str, bytes]:
    mail = tmp_path / "mail"
    mail.mkdir()
    messages = {
        "budget": make_message(subject="Q3 budget review", body="The quarterly budget meeting moved to Thursday.",
                               date=datetime(2024, 3, 5, tzinfo=timezone.utc)),
        "lunch": make_message(sender="Bob <bob@example.org>", to="alice@example.com", subject="Lunch?",
                              body="Tacos or ramen today?", date=datetime(2023, 7, 1, tzinfo=timezone.utc)),
        "invoice": make_message(sender="billing@vendor.net", to="alice@example.com", subject="Invoice 1042",
                                body="Attached.", date=datetime(2024, 11, 20, tzinfo=timezone.utc),
                                attachments=[("invoice-1042.txt", "text/plain", b"Total due: 4,200 EUR for consulting")]),
    }
    for name, raw in messages.items():
        (mail / f"{name}.eml").write_bytes(raw)
    result = runner.invoke(app, ["import", str(mail), "--mailbox", "alice@example.com"])
    assert result.exit_code == 0, result.output
    return messages


def _search(*args: str) -> list[dict]:
    result = runner.invoke(app, ["search", *args, "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_search_fields_phrases_booleans_dates_and_attachments(imported) -> None:
    subjects = lambda hits: sorted(h["subject"] for h in hits)  # noqa: E731
    assert subjects(_search("budget", "--mailbox", "alice@example.com")) == ["Q3 budget review"]
    assert subjects(_search('"budget meeting"', "--all")) == ["Q3 budget review"]
    assert subjects(_search('"meeting budget"', "--all")) == []
    assert subjects(_search("from:bob@example.org", "--all")) == ["Lunch?"]
    assert subjects(_search("from:example.org OR from:vendor.net", "--all")) == ["Invoice 1042", "Lunch?"]
    assert subjects(_search("to:alice -from:bob", "--all")) == ["Invoice 1042"]
    assert subjects(_search("after:2024-01-01", "--all")) == ["Invoice 1042", "Q3 budget review"]
    assert subjects(_search("has:attachment consulting", "--all")) == ["Invoice 1042"]
    assert subjects(_search("filename:invoice-1042.txt", "--all")) == ["Invoice 1042"]
    assert subjects(_search("budget", "--mailbox", "nobody@example.com")) == []


def test_json_hits_have_the_documented_keys(imported) -> None:
    hits = _search("invoice", "--all")
    assert len(hits) == 1
    assert set(hits[0]) == {"id", "sha256", "date", "from", "to", "subject"}
    assert hits[0]["date"].startswith("2024-11-20")
    assert hits[0]["from"] == "billing@vendor.net"


def test_search_needs_a_scope_and_reports_bad_queries_by_position(imported) -> None:
    no_scope = runner.invoke(app, ["search", "budget"])
    assert no_scope.exit_code == 2 and "--all" in no_scope.output
    bad = runner.invoke(app, ["search", "subject:(budget", "--all"])
    assert bad.exit_code == 2
    assert "position" in bad.output and "Traceback" not in bad.output


def test_show_raw_returns_the_exact_bytes(imported) -> None:
    hit = _search("lunch", "--all")[0]
    shown = runner.invoke(app, ["show", str(hit["id"]), "--raw"])
    assert shown.exit_code == 0
    assert shown.stdout_bytes == imported["lunch"]
    pretty = runner.invoke(app, ["show", str(hit["id"])])
    assert "Tacos or ramen" in pretty.output


def test_status_verify_and_a_flipped_byte(imported, data_dir: Path) -> None:
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["messages"] == 3 and status["indexed"] == 3 and status["backlog"] == 0
    healthy = runner.invoke(app, ["verify"])
    assert healthy.exit_code == 0, healthy.output

    pack = next((data_dir / "blobs" / "packs").glob("*.pack"))  # all three messages, one after another
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit of one byte, inside one message's record
    pack.write_bytes(bytes(raw))
    broken = runner.invoke(app, ["verify"])
    assert broken.exit_code == 1
    assert "corrupt" in broken.output


def test_reindex_rebuilds_a_lost_index_from_blobs_and_catalogue(imported, data_dir: Path) -> None:
    shutil.rmtree(data_dir / "index")
    assert runner.invoke(app, ["verify"]).exit_code == 1  # nothing indexed any more
    result = runner.invoke(app, ["reindex"])
    assert result.exit_code == 0, result.output
    assert len(_search("budget OR lunch OR invoice", "--all")) == 3
    assert runner.invoke(app, ["verify"]).exit_code == 0


def test_every_search_and_view_is_audited(imported) -> None:
    from sqlalchemy import select

    from postvault.settings import Settings
    from postvault.wiring import Archive
    from retention.audit import verify_chain
    from storage.tables import audit_events

    hit = _search("lunch", "--all")[0]
    runner.invoke(app, ["show", str(hit["id"]), "--raw"])
    archive = Archive(Settings())
    with archive.sessions() as session:
        actions = list(session.scalars(select(audit_events.c.action).order_by(audit_events.c.id)))
    assert actions[-2:] == ["search", "download"]
    assert list(verify_chain(archive.sessions)) == []
    archive.close()


def test_status_and_verify_answer_while_a_writer_holds_the_catalogue(imported, data_dir: Path) -> None:
    """An import or the SMTP listener mid-transaction holds SQLite's write lock; `status`
    and `verify` only read, so they must answer at once rather than queue behind it."""
    import os
    import sqlite3
    import subprocess
    import sys

    holder = sqlite3.connect(data_dir / "catalogue.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE messages SET size = size WHERE id = (SELECT min(id) FROM messages)")
    def postvault(*command: str) -> subprocess.CompletedProcess[str]:
        # Before, both waited the catalogue's 60 s busy timeout and then failed "locked".
        done = subprocess.run([sys.executable, "-m", "postvault.cli", *command], env=dict(os.environ),
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    try:
        assert json.loads(postvault("status", "--json").stdout)["messages"] == 3
        postvault("verify")  # exit status 0: nothing missing, corrupt or unindexed
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_an_index_built_for_another_schema_is_named_and_reindex_replaces_it(imported, data_dir: Path) -> None:
    """After an upgrade that changes the index's fields, search says what to do, and reindex does it."""
    import tantivy

    index = data_dir / "index"
    shutil.rmtree(index)
    index.mkdir()
    older = tantivy.SchemaBuilder()
    older.add_text_field("subject", stored=True)
    writer = tantivy.Index(older.build(), path=str(index)).writer()
    writer.add_document(tantivy.Document(subject="from an older version"))
    writer.commit()
    writer.wait_merging_threads()

    refused = runner.invoke(app, ["search", "budget", "--all"])
    assert refused.exit_code != 0
    assert "postvault reindex" in refused.output and "Traceback" not in refused.output

    rebuilt = runner.invoke(app, ["reindex"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "moved to" in rebuilt.output
    assert [h["subject"] for h in _search("budget", "--all")] == ["Q3 budget review"]
    kept = [path.name for path in data_dir.iterdir() if path.name.startswith("index.outdated-")]
    assert len(kept) == 1  # set aside, not deleted
