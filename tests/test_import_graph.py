"""The import graph keeps DESIGN's layering (issue 17): no cycles, no upward arrows.

Every ``import`` statement of the project's packages (at module level or inside a function:
a lazy import is still an arrow) is read with :mod:`ast` and resolved to a project module, or
to the top-level name of a third-party package. ``test_the_walk_sees_arrows`` checks the walk
itself on arrows that must exist, so that an empty graph cannot pass the other tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["agent", "storage", "workers", "migrations", "benchmarks", "client"]
INSTALLED = ["agent", "storage", "workers", "migrations", "client"]
SERVER = ["agent", "storage", "workers", "migrations", "benchmarks"]


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:  # relative: from the module's package
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = package[: len(package) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [target] + [f"{target}.{a.name}" for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports, and the top-level names of other packages."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for t in _targets(m, f, node):
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t != m:
                    graph[m].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), plus self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _arrows(graph: dict[str, set[str]], src: list[str], dst: list[str]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                  if m.split(".")[0] in src and t.split(".")[0] in dst)


def test_the_walk_sees_arrows():
    g = import_graph()
    assert "storage.engine" in g["storage.repository"]
    assert "numpy" in g["agent.memory.deltas"]
    assert "ray" in g["workers.runtime"]
    assert any(t.startswith("agent") for t in g["benchmarks.storage"])
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_agent_imports_neither_storage_workers_nor_ray():
    assert _arrows(import_graph(), ["agent"], ["storage", "workers", "ray"]) == []


def test_storage_imports_neither_workers_nor_ray():
    assert _arrows(import_graph(), ["storage"], ["workers", "ray"]) == []


def test_installed_packages_import_neither_benchmarks_nor_tests():
    assert _arrows(import_graph(), INSTALLED, ["benchmarks", "tests"]) == []


def test_client_imports_nothing_of_the_server():
    assert _arrows(import_graph(), ["client"], SERVER) == []


def _wing_arrows(graph: dict[str, set[str]], src: str, dst: list[str]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                  if m.startswith(src + ".") and any(t == d or t.startswith(d + ".") for d in dst))


def test_workers_wings_do_not_import_each_other():
    """actors/ sit above the shared core; the HTTP edge and the CLI above the service; no wing
    reaches sideways into another (the HTTP edge talks to actors only through the service)."""
    g = import_graph()
    top = ["workers.service", "workers.runtime", "workers.metrics"]
    assert _wing_arrows(g, "workers.actors", ["workers.http", "workers.cli", *top]) == []
    assert _wing_arrows(g, "workers.http", ["workers.actors", "workers.cli", "workers.runtime"]) == []
    assert _wing_arrows(g, "workers.cli", ["workers.actors", "workers.http"]) == []
    core = ["workers.settings", "workers.contract", "workers.store", "workers.validation",
            "workers.event_arrays", "workers.agent_cache", "workers.readiness"]
    assert [a for m in core for a in _wing_arrows(
        {m: g[m]}, m.rsplit(".", 1)[0], ["workers.actors", "workers.http", "workers.cli", *top])] == []


def test_the_wing_check_sees_sideways_arrows():
    g = {"workers.actors.x": {"workers.http.app"}, "workers.http.y": {"workers.service"}}
    assert _wing_arrows(g, "workers.actors", ["workers.http"]) == ["workers.actors.x -> workers.http.app"]
    assert _wing_arrows(g, "workers.http", ["workers.actors"]) == []
