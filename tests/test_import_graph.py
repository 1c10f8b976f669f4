"""No import cycles inside ``vidcore``: the package's import graph, read from source with ``ast``, is acyclic.

Every ``import`` / ``from ... import`` counts, wherever it sits (inside functions, under
``if TYPE_CHECKING:``): a lazy import only hides a cycle until the day someone moves it to the top.
``from pkg import name`` points at the submodule that defines ``name`` when ``pkg/__init__.py`` merely
re-exports it (at top level or through a lazy module ``__getattr__``), so a submodule that imports a
sibling through its package does not make a trivial "package <-> submodule" cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py under ``root/package``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """Absolute name of ``from <base> import ...`` as written in ``module`` (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    # In a package's __init__, "." is the package itself; in a plain module, "." is its parent.
    keep = len(parts) - node.level + (1 if is_package else 0)
    if keep < 1:
        raise ValueError(f"{module}: relative import beyond the top-level package (level {node.level})")
    base = parts[:keep]
    return ".".join(base + ([node.module] if node.module else []))


def _reexports(module: str, tree: ast.Module, is_package: bool) -> dict[str, str]:
    """Names a package ``__init__`` takes from elsewhere: at top level, or inside a ``def __getattr__``."""
    if not is_package:
        return {}
    nodes: list[ast.AST] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "__getattr__":
            nodes.extend(ast.walk(stmt))
        elif not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            nodes.extend(ast.walk(stmt))
    out = {}
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = _resolve_base(module, True, node)
            for alias in node.names:
                out[alias.asname or alias.name] = f"{base}.{alias.name}" if alias.name != "*" else base
    return out


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Edges ``importer -> imported`` between the modules of ``package`` (found under ``root``)."""
    files = _module_names(root, package)
    trees = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in files.items()}
    is_pkg = {name: path.name == "__init__.py" for name, path in files.items()}
    reexports = {name: _reexports(name, tree, is_pkg[name]) for name, tree in trees.items()}

    def owner(dotted: str) -> str | None:
        """The longest prefix of ``dotted`` that is one of our modules."""
        parts = dotted.split(".")
        for k in range(len(parts), 0, -1):
            candidate = ".".join(parts[:k])
            if candidate in files:
                return candidate
        return None

    def provider(base: str, name: str, seen: frozenset[str] = frozenset()) -> str | None:
        """The module that really provides ``name`` imported from ``base``."""
        if f"{base}.{name}" in files:
            return f"{base}.{name}"
        source = reexports.get(base, {}).get(name)
        if source is not None and base not in seen:
            src_base, _, src_name = source.rpartition(".")
            return provider(src_base, src_name, seen | {base}) or owner(src_base)
        return owner(base)

    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, tree in trees.items():
        for node in ast.walk(tree):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [owner(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve_base(name, is_pkg[name], node)
                targets = [provider(base, alias.name) for alias in node.names]
            graph[name].update(t for t in targets if t is not None and t != name)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (Tarjan 1972), iterative; only those with > 1 module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
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
                    out.append(sorted(component))
    return sorted(out)


def shortest_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the first module of ``component`` (breadth-first), as a closed path."""
    members, start = set(component), component[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if nxt not in parent:
                    parent[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{component} is not strongly connected")


def find_cycles(root: Path, package: str) -> list[str]:
    """One line per strongly connected component: a shortest cycle ``a -> b -> a`` and all its modules."""
    graph = import_graph(root, package)
    lines = []
    for component in strongly_connected(graph):
        cycle = " -> ".join(shortest_cycle(graph, component))
        lines.append(f"{cycle}   (component: {', '.join(component)})")
    return lines


def test_vidcore_has_no_import_cycles() -> None:
    cycles = find_cycles(ROOT, "vidcore")
    assert not cycles, "import cycles in vidcore (move the shared piece into a module both can import):\n" + (
        "\n".join(cycles)
    )


def _write(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_cycles_and_ignores_reexports(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.a import helper\nfrom .b import other\n",
            # a -> sub.c (lazy, inside a function) -> b (relative) -> a (under TYPE_CHECKING): one cycle.
            "pkg/a.py": "def helper():\n    from pkg.sub import c\n    return c\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": "from .. import b\n",
            "pkg/b.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import helper\n"
                "other = 1\n"
            ),
            # Imports through the package's re-exports point at the defining module: no pkg <-> d cycle.
            "pkg/d.py": "from pkg import helper\nimport pkg.sub\n",
            # A two-module cycle written with plain `import` statements.
            "pkg/e.py": "import pkg.f\n",
            "pkg/f.py": "import pkg.e as e\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.d"] == {"pkg.a", "pkg.sub"}
    assert graph["pkg.sub.c"] == {"pkg.b"}
    assert graph["pkg"] == {"pkg.a", "pkg.b"}
    assert find_cycles(tmp_path, "pkg") == [
        "pkg.a -> pkg.sub.c -> pkg.b -> pkg.a   (component: pkg.a, pkg.b, pkg.sub.c)",
        "pkg.e -> pkg.f -> pkg.e   (component: pkg.e, pkg.f)",
    ]


def test_layers_import_downwards_only() -> None:
    """models/ (modules, configs, checkpoint loading) never imports pipelines/, train/, eval/ or the CLI."""
    graph = import_graph(ROOT, "vidcore")
    upper = ("vidcore.pipelines", "vidcore.train", "vidcore.cli", "vidcore.eval")
    bad = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        if a.startswith("vidcore.models")
        for b in targets
        if b.startswith(upper)
    )
    assert any(b.startswith("vidcore.models") for b in graph["vidcore.pipelines.ltx"])  # edges are seen
    assert not bad, "models/ imports upward: " + ", ".join(bad)


if __name__ == "__main__":
    print("\n".join(find_cycles(ROOT, "vidcore")) or "no cycles")
