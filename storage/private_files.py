"""Files only postvault's own user may open: the data folder, the catalogue, the index."""

from __future__ import annotations

import os
from pathlib import Path

# Mail is personal data (GDPR art. 32 asks for access control on it), and the catalogue and
# the index hold its subjects, addresses and text as plainly as the blobs hold its bytes:
# nothing postvault writes is for the group or the world, whatever umask it was started with.
PRIVATE_UMASK = 0o077
_FOLDER_MODE = 0o700
_FILE_MODE = 0o600


def keep_private() -> None:
    """Make every file and folder this process creates from now on private to its user.

    Called where a postvault process starts (the CLI): it also covers what libraries create
    with their own modes, such as tantivy's segment files and SQLite's -wal and -shm.
    """
    os.umask(PRIVATE_UMASK)


def private_folder(path: Path) -> Path:
    """``path`` as a folder, created (with any missing parents) private to this user if it is new."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):  # mkdir(parents=True) would give the parents the umask's mode
        folder.mkdir(mode=_FOLDER_MODE, exist_ok=True)
    return path


def private_file(path: Path) -> Path:
    """``path`` created empty and private to this user if it does not exist; left as it is if it does."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE))
    return path
