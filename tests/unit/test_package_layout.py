"""The house rules of the package, checked on its source so they stay true:

- every SQLite/PostgreSQL difference is spelled in the database layer (`dunning/db/`);
- no module grows past 600 lines (a module that long holds more than one job);
- no two modules import each other, directly or around a circle;
- flows order work and hold no SQL, no database session and no HTTP client; tasks do the work.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dunning"
DATABASE_LAYER = ("db", "migrations")
MAX_LINES = 600

# What asks which database it talks to: the dialect's name, the dialect-specific SQLAlchemy
# constructs, the SQLite driver itself.
DIALECT_CHECKS = re.compile(
    r"dialect\.name|\bis_postgres\(|\bdialect_name\(|sqlalchemy\.dialects|^\s*import sqlite3",
    re.MULTILINE,
)


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def name_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_dialect_checks_live_in_the_database_layer():
    outside = [
        f"{path.relative_to(PACKAGE.parent)}: {match.group(0).strip()}"
        for path in modules()
        if path.relative_to(PACKAGE).parts[0] not in DATABASE_LAYER
        for match in DIALECT_CHECKS.finditer(path.read_text(encoding="utf-8"))
    ]
    assert outside == [], "spell these through dunning.db.dialect"


def test_no_module_is_longer_than_600_lines():
    long = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in modules()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


# What does I/O itself: SQLAlchemy, a database session or engine, an HTTP client, SMTP.
FLOW_IO = re.compile(
    r"\bsqlalchemy\b|\bsession_scope\b|\bget_engine\b|\.execute\(|\bhttpx\b"
    r"|\bhttp_client\b|\bsmtplib\b|\bselect\(",
)


def test_flows_hold_no_sql_and_no_http_client():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted((PACKAGE / "flows").glob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FLOW_IO.search(line)
    ]
    assert found == [], "move this into a task module (dunning/tasks) or the database layer"


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules `path` imports, at load time or inside a function (a deferred
    import that closes a circle is a circle all the same), not for type checking only."""
    package = name_of(path) if path.name == "__init__.py" else name_of(path).rsplit(".", 1)[0]
    found: set[str] = set()

    def absolute(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1])
        return f"{base}.{node.module}" if node.module else base

    def scan(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = absolute(node)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
                scan(node.body)
                scan(node.orelse)
            elif not isinstance(node, ast.If):
                scan([n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt)])

    scan(ast.parse(path.read_text(encoding="utf-8")).body)
    return {name for name in found if name in known}


def test_no_import_circle():
    paths = {name_of(path): path for path in modules()}
    graph = {name: imports_of(path, set(paths)) - {name} for name, path in paths.items()}
    # A package imports its own submodules through __init__: that is not a circle.
    for name in graph:
        graph[name] = {dep for dep in graph[name] if not name.startswith(dep + ".")}
    circles = _strongly_connected(graph)
    assert circles == [], f"modules importing each other: {circles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of two or more modules that reach each other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph.get(node, ()):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


@pytest.mark.parametrize(
    ("graph", "circles"),
    [
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_the_circle_finder_finds_circles(graph, circles):
    assert _strongly_connected(graph) == circles
