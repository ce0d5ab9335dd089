"""`postvault import` indexes in the background to the last message, and steps aside for a process that owns the index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postvault.cli import app
from postvault.settings import Settings
from postvault.wiring import Archive
from tests.archive_factory import make_message

runner = CliRunner()


@pytest.fixture
def mail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POSTVAULT_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("POSTVAULT_INDEX_WORKERS", "2")  # the parser pool, as a real import has it
    folder = tmp_path / "mail"
    folder.mkdir()
    for number in range(300):
        (folder / f"{number}.eml").write_bytes(make_message(subject=f"report {number}", body=f"figures {number}"))
    return folder


def test_the_background_indexer_drains_to_the_end_and_every_message_is_searchable(mail: Path) -> None:
    result = runner.invoke(app, ["import", str(mail), "--batch-size", "50"])
    assert result.exit_code == 0, result.output
    assert "Indexed 300 message(s); 0 failed." in result.output
    status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert status["messages"] == 300 and status["indexed"] == 300 and status["backlog"] == 0


def test_an_index_owned_by_another_process_leaves_the_messages_queued_for_it(mail: Path, tmp_path: Path) -> None:
    from indexer.backends.tantivy_backend import TantivyBackend

    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "0.eml").write_bytes(make_message(subject="indexed before"))
    first = runner.invoke(app, ["import", str(tmp_path / "one")])
    assert first.exit_code == 0, first.output
    owner = Archive(Settings(data_dir=tmp_path / "var"))
    try:
        assert isinstance(owner.search, TantivyBackend)
        owner.search._open_writer()  # noqa: SLF001 - the writer lock, as a running `postvault serve` holds it
        result = runner.invoke(app, ["import", str(mail)])
        assert result.exit_code == 0, result.output
        assert "owns the search index" in result.output
        status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
        assert status["messages"] == 301 and status["backlog"] == 300  # archived, and queued for the owner
    finally:
        owner.close()
