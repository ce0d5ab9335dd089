"""Everything postvault writes under its data folder is its own: no file or folder there is open to the group or the world."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from postvault.settings import Settings
from postvault.wiring import Archive
from tests.archive_factory import make_message

POSTVAULT = str(Path(sys.executable).with_name("postvault"))


def shared_paths(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that the group or others may use, with its mode."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_IMODE(mode) & 0o077:
            found.append(f"{path.relative_to(root.parent)} {stat.filemode(mode)}")
    return found


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most systems give a login (022): what a careless admin's shell has."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_an_import_into_a_new_data_folder_leaves_nothing_readable_by_others(tmp_path: Path, usual_umask: None) -> None:
    """The catalogue (with its -wal and -shm) and the index were created 0644 in 0755
    folders, while blobs were 0600: anyone on the machine could read every subject,
    address and indexed body."""
    mail = tmp_path / "mail"
    mail.mkdir()
    for n in range(3):
        (mail / f"{n}.eml").write_bytes(make_message(subject=f"private {n}", body=f"only for the archive {n}"))
    data_dir = tmp_path / "var"
    env = {key: value for key, value in os.environ.items() if not key.startswith("POSTVAULT_")}
    env["POSTVAULT_DATA_DIR"] = str(data_dir)
    env["POSTVAULT_INDEX_WORKERS"] = "1"
    imported = subprocess.run([POSTVAULT, "import", "--mailbox", "custodian@example.com", str(mail)],
                              env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    searched = subprocess.run([POSTVAULT, "search", "--all", "--json", "private"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
    assert searched.returncode == 0 and "private 0" in searched.stdout, searched.stdout + searched.stderr
    names = {path.name for path in data_dir.rglob("*")}
    assert {"catalogue.sqlite3", "blobs", "index", "meta.json"} <= names, names
    assert shared_paths(data_dir) == []


def test_the_catalogue_and_index_are_private_without_the_cli(tmp_path: Path, usual_umask: None) -> None:
    """A process that is not the CLI (a test, an embedding program) still creates the
    catalogue 0600 and the data and index folders 0700."""
    data_dir = tmp_path / "var"
    archive = Archive(Settings(data_dir=data_dir, index_workers=1))
    try:
        with archive.catalogue.connect() as connection:  # opens the WAL and its shared memory
            connection.exec_driver_sql("SELECT 1")
            _ = archive.search
            modes = {path.name: stat.S_IMODE(path.stat().st_mode)
                     for path in [data_dir, *data_dir.iterdir()] if not path.name.startswith(".")}
    finally:
        archive.close()
    assert modes == {"var": 0o700, "catalogue.sqlite3": 0o600, "catalogue.sqlite3-wal": 0o600,
                     "catalogue.sqlite3-shm": 0o600, "index": 0o700}
