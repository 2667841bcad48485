"""No circle of files: the module import graph of the ``sweep`` package has no strongly connected component of
more than one module. test_layers.py forbids cycles between packages; this forbids them between the modules inside
one (``selection.pipeline`` -> ``report`` -> ``pipeline``, ``data._cache`` <-> ``data._stream``), where a
function-local import would otherwise hide a circle that still holds both files together. Every import counts:
module level, inside functions, and ``TYPE_CHECKING`` blocks."""
from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

Graph = dict[str, dict[str, str]]  # module -> {imported module: "file:line" of the first such import}


def module_name(path: Path, root: Path) -> str:
    """``sweep/selection/pipeline.py`` -> ``sweep.selection.pipeline``; a package is its ``__init__``."""
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _existing(target: str, modules: set[str]) -> str | None:
    """The module of the package that ``target`` names: itself, or the nearest enclosing one that exists."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def imported_modules(path: Path, module: str, modules: set[str]) -> Iterator[tuple[int, str]]:
    """(line, module of ``modules``) for every import in the file, function-local and relative ones included.
    ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg`` (its __init__)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
        else:
            continue
        for target in targets:
            found = _existing(target, modules)
            if found is not None:
                yield node.lineno, found


def module_graph(root: Path, package: str = "sweep") -> Graph:
    """Every module of ``package`` under ``root`` with the modules of the package it imports."""
    files = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    graph: Graph = {}
    for module, path in files.items():
        edges = graph.setdefault(module, {})
        for line, target in imported_modules(path, module, set(files)):
            if target != module:
                edges.setdefault(target, f"{path.relative_to(root)}:{line}")
    return graph


def _reachable(graph: Graph, start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in graph.get(todo.pop(), {}):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def components(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module, each sorted (a few hundred modules: plain
    reachability is fast enough and plainly right)."""
    reach = {m: _reachable(graph, m) for m in graph}
    out, done = [], set()
    for module in sorted(graph):
        if module in done:
            continue
        scc = sorted(m for m in reach[module] if module in reach[m])
        done.update(scc)
        if len(scc) > 1:
            out.append(scc)
    return out


def a_cycle(graph: Graph, scc: list[str]) -> str:
    """One circle through the component's first module, each step with the import that makes it."""
    start, members = scc[0], set(scc)
    parent: dict[str, str] = {}
    todo = deque([start])
    while todo:
        node = todo.popleft()
        for nxt in sorted(graph[node]):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                steps = [*reversed(path), start]
                return " -> ".join(f"{a} ({graph[a][b]})" for a, b in zip(steps, steps[1:])) + f" -> {start}"
            if nxt in members and nxt not in parent and nxt != start:
                parent[nxt] = node
                todo.append(nxt)
    raise AssertionError(f"no cycle through {start} in {scc}")  # a component of >1 module always has one


def test_no_import_cycles_between_modules() -> None:
    graph = module_graph(ROOT)
    cycles = components(graph)
    assert not cycles, "import cycles (break them: move the shared code into a module both import):\n" + "\n".join(
        f"{', '.join(scc)}\n    e.g. {a_cycle(graph, scc)}" for scc in cycles)


def test_the_checker_sees_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    pkg = tmp_path / "sweep" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "sweep" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from sweep.sub.a import f\n")
    (pkg / "a.py").write_text("from .b import g\n\ndef f():\n    return g()\n")
    (pkg / "b.py").write_text("def g():\n    from sweep.sub import a\n    return a\n")
    (pkg / "c.py").write_text("from sweep.sub import f\n")  # the package's __init__, no circle
    graph = module_graph(tmp_path)
    assert graph["sweep.sub.b"] == {"sweep.sub.a": "sweep/sub/b.py:2"}
    assert graph["sweep.sub.c"] == {"sweep.sub": "sweep/sub/c.py:1"}
    assert components(graph) == [["sweep.sub.a", "sweep.sub.b"]]
    assert a_cycle(graph, ["sweep.sub.a", "sweep.sub.b"]) == (
        "sweep.sub.a (sweep/sub/a.py:1) -> sweep.sub.b (sweep/sub/b.py:2) -> sweep.sub.a")
