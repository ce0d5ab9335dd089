"""The CLI starts quickly: each command imports only what it uses (checked by module, not by clock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postvault.cli import _import_summary, app
from tests.archive_factory import make_message

# Run in a fresh interpreter: the modules a command leaves in sys.modules are the ones it imported.
_PROBE = """
import json, sys
modules_file, *args = sys.argv[1:]
try:
    if args:
        from postvault.cli import app
        app(args, prog_name="postvault")
    else:
        import postvault.cli
finally:
    with open(modules_file, "w") as handle:
        json.dump(sorted(sys.modules), handle)
"""

# Never needed to start the CLI or to search: schema migrations, the importers and the MIME
# stack behind them, and the engines of the scale-out profile.
_NEVER_ON_START = ("alembic", "mako", "postvault.cli_import", "archiver", "indexer.parsing",
                   "celery", "opensearchpy", "minio", "psycopg")
# What only a command that opens the archive needs: not the help text or a bare import.
_ARCHIVE = ("sqlalchemy", "tantivy", "pydantic_settings", "postvault.settings")


def modules_after(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """Modules loaded by `postvault ARGS` (or by ``import postvault.cli`` alone) in a new process."""
    modules_file = tmp_path / "modules.json"
    result = subprocess.run([sys.executable, "-c", _PROBE, str(modules_file), *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, cwd=tmp_path)
    return set(json.loads(modules_file.read_text())), result


def loaded(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(f"{p}.") for p in packages))


def test_importing_the_cli_loads_no_engine_and_no_rich(tmp_path: Path) -> None:
    modules, _ = modules_after(tmp_path)
    assert loaded(modules, (*_NEVER_ON_START, *_ARCHIVE, "rich")) == []


def test_help_lists_every_command_without_importing_any_engine(tmp_path: Path) -> None:
    modules, result = modules_after(tmp_path, "--help", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for command in ("serve", "import", "search", "show", "reindex", "verify", "status", "check"):
        assert f" {command} " in result.stdout
    assert loaded(modules, (*_NEVER_ON_START, *_ARCHIVE)) == []  # rich renders typer's help


def test_search_json_needs_no_migrations_no_orm_no_rich_and_no_importer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "var"
    monkeypatch.setenv("POSTVAULT_DATA_DIR", str(data_dir))
    monkeypatch.setenv("POSTVAULT_INDEX_WORKERS", "1")
    (tmp_path / "a.eml").write_bytes(make_message(subject="Falcon schedule", body="Prototype delivery moves to June."))
    imported = CliRunner().invoke(app, ["import", str(tmp_path / "a.eml")])
    assert imported.exit_code == 0, imported.output

    modules, result = modules_after(tmp_path, "search", "falcon", "--all", "--json")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["subject"] for line in result.stdout.splitlines()] == ["Falcon schedule"]
    # The catalogue is read and audited with Core statements: the ORM is not set up either.
    assert loaded(modules, (*_NEVER_ON_START, "rich", "sqlalchemy.orm")) == []


def test_import_is_listed_with_the_summary_of_the_command_that_runs() -> None:
    """`postvault --help` shows import's summary without importing it; it must not drift from the real one."""
    from postvault.cli_import import import_command

    assert import_command.__doc__ is not None and _import_summary.__doc__ is not None
    assert _import_summary.__doc__.strip() == import_command.__doc__.split("\n\n")[0].strip()


def test_import_help_is_the_real_commands_help() -> None:
    result = CliRunner().invoke(app, ["import", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--mailbox" in result.output and "--refusals-file" in result.output
