"""pyproject.toml declares every third-party module the project imports, in the group that installs it, and nothing unused."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("addresses", "archiver", "indexer", "search_ui", "retention", "storage", "postvault")

# Who may import what: the packages only the core dependencies (a plain `pip install`
# must run them); tests and bench also their extras and the engine client extras.
ALLOWED_GROUPS = {
    **{package: ("dependencies",) for package in PACKAGES},
    "tests": ("dependencies", "test", "postgres", "redis"),
    "bench": ("dependencies", "bench", "postgres", "redis"),
}

# Modules that come from the operating system, not from pip: bench/_search_worker.py runs
# notmuch's searches under /usr/bin/python3 with Debian's python3-notmuch2 (bench/ingest.py
# installs it with apt), as the notmuch being compared is Debian's.
SYSTEM_MODULES = {"bench": {"notmuch2"}}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> dict[str, set[str]]:
    """Distribution names (normalized) of each dependency group in pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    groups = {"dependencies": project["dependencies"], **project.get("optional-dependencies", {})}
    requirement = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
    return {group: {normalized(requirement.match(line).group(1)) for line in lines} for group, lines in groups.items()}  # type: ignore[union-attr]


def top_level_imports(path: Path) -> Iterator[tuple[str, int]]:
    """(top-level module, line) of every absolute import in ``path``, wherever it is written."""
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module.split(".")[0], node.lineno


def is_local(name: str, path: Path) -> bool:
    """The project's own code, or a sibling module that a script or test folder imports by bare name."""
    if name in PACKAGES or name in {"tests", "bench"}:
        return True
    # A folder counts as a package even without __init__.py (Python imports it as a namespace package).
    return any((folder / f"{name}.py").exists() or (folder / name).is_dir() for folder in path.parents
               if REPO in folder.parents or folder == REPO)


def undeclared() -> list[str]:
    groups = declared()
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for folder, allowed in ALLOWED_GROUPS.items():
        names = set().union(*(groups[group] for group in allowed))
        for path in sorted((REPO / folder).rglob("*.py")):
            for module, line in top_level_imports(path):
                if module in sys.stdlib_module_names or module in SYSTEM_MODULES.get(folder, set()) or is_local(module, path):
                    continue
                providers = {normalized(d) for d in distributions.get(module, [])}
                if not providers & names:
                    where = f"{path.relative_to(REPO)}:{line}"
                    installed_by = ", ".join(sorted(providers)) or "no installed distribution"
                    problems.append(f"{where} imports {module} ({installed_by}), not declared in {' / '.join(allowed)}")
    return problems


def test_every_third_party_import_is_declared_where_it_is_installed() -> None:
    problems = undeclared()
    assert problems == [], "\n".join(problems)


# Declared without an import statement of their own, and why.
USED_WITHOUT_IMPORT = {
    "psycopg": "SQLAlchemy loads it for postgresql+psycopg:// URLs",
    "redis": "Celery (kombu) loads it for redis:// broker URLs",
    "pytest-timeout": "a pytest plugin, configured by `timeout` in pyproject.toml",
}
# Which folders' imports use each group.
USERS = {"dependencies": PACKAGES, "test": ("tests",), "bench": ("bench",), "postgres": (), "redis": ()}


def unused() -> list[str]:
    distributions = importlib.metadata.packages_distributions()
    problems = []
    for group, names in declared().items():
        imported: set[str] = set()
        for folder in USERS[group]:
            for path in (REPO / folder).rglob("*.py"):
                for module, _ in top_level_imports(path):
                    imported |= {normalized(d) for d in distributions.get(module, [])}
        for name in sorted(names - imported - set(USED_WITHOUT_IMPORT)):
            problems.append(f"{group}: {name} is declared but nothing in {', '.join(USERS[group]) or '-'} imports it")
    return problems


def test_every_declared_dependency_is_used() -> None:
    """An unused pin is a promise of a feature, and still has to be installed and kept patched."""
    problems = unused()
    assert problems == [], "\n".join(problems)


def test_the_check_sees_a_missing_declaration() -> None:
    """certifi and urllib3 were imported by storage/s3.py and installed only as minio's dependencies."""
    groups = declared()
    assert {"certifi", "urllib3"} <= groups["dependencies"]
    distributions = importlib.metadata.packages_distributions()
    assert {normalized(d) for d in distributions["urllib3"]} == {"urllib3"}
    assert "psycopg" not in groups["dependencies"], "psycopg belongs to the postgres extra only"
    assert not {normalized(d) for d in distributions["psycopg"]} & groups["dependencies"]
