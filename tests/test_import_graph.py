"""The project's modules import each other one way only: no cycles, and no import that ARCHITECTURE.md forbids.

Every import counts, wherever it is written: at module level, inside a function (the
lazy imports that keep the CLI quick) and under ``if TYPE_CHECKING``. A lazy or type-only
import still makes the importing module depend on the other one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("addresses", "archiver", "indexer", "search_ui", "retention", "storage", "postvault", "bench")

# Folders whose scripts run with the folder itself on sys.path (`python bench/ingest.py`),
# so that `import ingest` there means bench/ingest.py.
SCRIPT_FOLDERS = {"bench"}

# ARCHITECTURE.md, "Packages": who must not import whom.
FORBIDDEN = {
    "indexer": {"archiver", "search_ui"},
    "storage": set(PACKAGES) - {"storage"},
    # The one normaliser every package uses depends on none of them.
    "addresses": set(PACKAGES) - {"addresses"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "migrations" in path.relative_to(REPO).parts:
                continue  # alembic scripts are loaded by alembic, not imported
            modules[module_name(path)] = path
    return modules


def imported_names(path: Path, module: str) -> Iterator[str]:
    """Every module name an import statement in ``path`` names (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            yield prefix
            for alias in node.names:  # `from pkg import module` imports pkg.module
                yield f"{prefix}.{alias.name}"


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(path, module):
            folder = module.split(".")[0]
            if folder in SCRIPT_FOLDERS and name.split(".")[0] not in PACKAGES and f"{folder}.{name.split('.')[0]}" in modules:
                name = f"{folder}.{name}"
            # The deepest project module the name refers to (``a.b.c`` may name a.b's attribute c).
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(f"{name}."):
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def test_the_graph_sees_lazy_type_only_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from storage.blobstore import BlobStore\n"
        "def later():\n    import indexer.outbox\n"
        "from . import sibling\n"
    )
    names = set(imported_names(source, "postvault.sample"))
    assert {"storage.blobstore", "indexer.outbox", "postvault.sibling"} <= names
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_bench_scripts_importing_each_other_by_bare_name_are_edges() -> None:
    graph = import_graph()
    assert "bench.corpus" in graph["bench.ingest"], "bench/ingest.py imports corpus (bench/corpus.py)"


def test_no_module_of_the_project_is_part_of_an_import_cycle() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles (break each so dependencies point one way):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_package_imports_one_that_architecture_md_puts_above_it() -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if target.split(".")[0] in FORBIDDEN.get(module.split(".")[0], set())
    )
    assert wrong == []
