"""The optional dependencies (extras) that engine URLs need, and the command that installs one into this Python."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from storage.engine_urls import ClientLibrary

DISTRIBUTION = "postvault"


@dataclass(frozen=True)
class MissingExtra:
    """An engine's client library is not importable here; ``command`` installs the extra that provides it."""

    what: str  # "catalogue", "broker"
    library: ClientLibrary
    command: str

    def __str__(self) -> str:
        return f"the {self.what} URL needs the {self.library.extra!r} extra (Python module {self.library.module} " \
               f"is missing): {self.command}"


def missing(what: str, library: ClientLibrary) -> MissingExtra | None:
    """None when ``library`` imports (or is a core dependency); else what to install, and how."""
    if library.extra is None:
        return None
    try:
        importlib.import_module(library.module)
    except ImportError:
        return MissingExtra(what, library, install_command(library.extra))
    return None


def install_command(extra: str) -> str:
    """How to add ``extra`` to the Python running postvault.

    An editable install from a checkout (what scripts/serve makes in .venv) is reinstalled
    from that checkout with the extra; any other install gets the extra's pinned
    requirements, as postvault's own metadata lists them.
    """
    pip = _pip()
    checkout = _editable_checkout()
    if checkout is not None:
        return f"{pip} install -e {shlex.quote(f'{_shown(checkout)}[{extra}]')}"
    requirements = _requirements_of(extra)
    if requirements:
        return f"{pip} install {' '.join(shlex.quote(requirement) for requirement in requirements)}"
    return f"{pip} install {shlex.quote(f'{DISTRIBUTION}[{extra}]')}"


def _pip() -> str:
    python = Path(sys.executable)
    pip = python.parent / "pip"
    if pip.exists():
        return shlex.quote(_shown(pip))
    return f"{shlex.quote(_shown(python))} -m pip"


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies inside it (``.venv/bin/pip``), else absolute."""
    try:
        relative = path.relative_to(Path.cwd())
    except ValueError:
        return str(path)
    text = str(relative)
    return text if text == "." or "/" in text else f"./{text}"


def _distributions() -> list[importlib.metadata.Distribution]:
    return list(importlib.metadata.distributions(name=DISTRIBUTION))


def _editable_checkout() -> Path | None:
    for distribution in _distributions():
        text = distribution.read_text("direct_url.json")
        if not text:
            continue
        direct = json.loads(text)
        if direct.get("dir_info", {}).get("editable") and direct.get("url", "").startswith("file://"):
            folder = Path(unquote(urlsplit(direct["url"]).path))
            if (folder / "pyproject.toml").is_file():
                return folder
    return None


def _requirements_of(extra: str) -> list[str]:
    marker = f'extra == "{extra}"'
    for distribution in _distributions():
        found = [line.split(";")[0].strip() for line in distribution.requires or [] if marker in line.replace("'", '"')]
        if found:
            return found
    return []


__all__ = ["MissingExtra", "install_command", "missing"]
