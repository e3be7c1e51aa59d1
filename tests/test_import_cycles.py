"""The package has no import cycle, and its map in the README names every module.

Every import counts, also those inside functions and under TYPE_CHECKING (a deferred import is still
a dependency: it only hides the cycle from Python). `from pkg import name` depends on the module
`pkg.name` when there is one, else on `pkg` itself.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import digestbot

PACKAGE = Path(digestbot.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan), as a readable path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def test_the_walk_sees_imports_of_every_kind() -> None:
    edges = graph()
    assert "digestbot.app" in edges["digestbot.cli"]  # from ..app import App
    assert "digestbot.store.database" in edges["digestbot.store.opening"]  # from .database import ...
    assert "digestbot.config" in edges["digestbot.app"]  # from . import config as config_module
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "import cycles (modules that import each other):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_readme_package_map_names_every_module() -> None:
    """A newcomer finds each module in the README's map ("The package"), which says what it is for."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The package"):readme.index("\n## ", readme.index("## The package") + 1)]
    modules = [p for p in PACKAGE.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py") and "migrations" not in p.parts]
    missing = [str(p.relative_to(PACKAGE)) for p in modules if not re.search(rf"\b{re.escape(p.stem)}\b", section)]
    assert not missing, f"modules missing from the README's package map: {missing}"
