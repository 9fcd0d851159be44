"""Print the house's shape (issue 17): the wing-level import graph and line counts.

    python scripts/house.py [ROOT]

Wings are the top-level packages, with ``workers`` split into its sub-packages (``actors``,
``http``, ``cli``) and its core. The arrows are every import of one wing's modules by another's,
read with :mod:`ast` by ``tests/test_import_graph.py`` (the same walk the tests check).
"""

from __future__ import annotations

import ast
import sys
from collections import Counter, defaultdict
from pathlib import Path

PACKAGES = ["agent", "storage", "workers", "migrations", "benchmarks", "client"]


def wing(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "workers" and len(parts) >= 2 and parts[1] in ("actors", "http", "cli"):
        return "workers." + parts[1]
    return "workers(core)" if parts[0] == "workers" else parts[0]


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = f.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(mod: str, path: Path, mods: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in names:
            while t not in mods and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in mods and t != mod:
                found.add(t)
    return found


def long_functions(path: Path, limit: int = 60) -> int:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return sum(1 for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
               and n.end_lineno - n.lineno + 1 > limit)


def main(root: Path) -> None:
    mods = modules(root)
    arrows: Counter[tuple[str, str]] = Counter()
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # files, lines, max, >60
    for m, f in mods.items():
        w = wing(m)
        n = len(f.read_text(encoding="utf-8").splitlines())
        s = stats[w]
        s[0], s[1], s[2], s[3] = s[0] + 1, s[1] + n, max(s[2], n), s[3] + long_functions(f)
        for t in imports(m, f, mods):
            if wing(t) != w:
                arrows[(w, wing(t))] += 1
    print("| wing | files | lines | largest file | functions > 60 lines |")
    print("| --- | --- | --- | --- | --- |")
    for w in sorted(stats):
        print(f"| {w} | {stats[w][0]} | {stats[w][1]:,} | {stats[w][2]} | {stats[w][3]} |")
    print("\nimports between wings (from -> to: number of module arrows)")
    for (a, b), n in sorted(arrows.items()):
        print(f"  {a} -> {b}: {n}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent))
