"""`postvault check`: names a missing extra and the command that installs it, and refuses bad engine URLs by setting."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Runs `postvault check` in a Python where the named modules cannot be imported, as in a
# .venv that scripts/serve made (it installs no extras).
_WITHOUT = """
import sys
hidden = set(sys.argv[1].split(","))

class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Hide())
from postvault.cli import app
app(["check"], prog_name="postvault")
"""


def check(tmp_path: Path, *, hide: str = "", **settings: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("POSTVAULT_")}
    env.update({"POSTVAULT_DATA_DIR": str(tmp_path / "var"), "COLUMNS": "300",
                **{f"POSTVAULT_{key.upper()}": value for key, value in settings.items()}})
    return subprocess.run([sys.executable, "-c", _WITHOUT, hide], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def engine_line(result: subprocess.CompletedProcess[str], engine: str) -> str:
    return next(line for line in result.stdout.splitlines() if line.split()[1:2] == [engine])


def test_a_postgresql_catalogue_without_psycopg_names_the_postgres_extra_and_how_to_install_it(tmp_path: Path) -> None:
    result = check(tmp_path, hide="psycopg", database_url="postgresql+psycopg://postvault:pw@127.0.0.1:1/postvault")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "No module named" not in result.stderr
    line = engine_line(result, "catalogue")
    assert "the catalogue URL needs the 'postgres' extra" in line and ":pw@" not in line
    # The venv scripts/serve makes holds an editable install of this checkout: reinstall it with the extra.
    assert line.endswith(f"{Path(sys.executable).parent.relative_to(REPO) / 'pip'} install -e '.[postgres]'"), line
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("psycopg") for requirement in extras["postgres"])
    # The other engines are still checked.
    assert "✓ blob store" in result.stdout and "✓ search" in result.stdout


def test_a_redis_broker_without_the_redis_module_names_the_redis_extra(tmp_path: Path) -> None:
    result = check(tmp_path, hide="redis", broker_url="redis://:secret@127.0.0.1:1/0")
    assert result.returncode == 1, result.stdout + result.stderr
    line = engine_line(result, "broker")
    assert "the broker URL needs the 'redis' extra" in line and line.endswith("install -e '.[redis]'"), line
    assert "secret" not in result.stdout
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("redis==") for requirement in extras["redis"])


def test_a_bad_engine_url_is_named_by_its_setting_without_a_traceback(tmp_path: Path) -> None:
    result = check(tmp_path, blobstore_url="s3://archive?endpoint=127.0.0.1:1&object_lock=flase", broker_url="amqp://h//")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "POSTVAULT_BLOBSTORE_URL: object_lock='flase' is not a boolean" in result.stdout
    assert "POSTVAULT_BROKER_URL: must be redis://" in result.stdout
    assert "✓ catalogue" in result.stdout


def test_an_embedded_archive_checks_clean(tmp_path: Path) -> None:
    result = check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [
        ["✓", "catalogue"], ["✓", "blob"], ["✓", "search"], ["-", "broker"]]
