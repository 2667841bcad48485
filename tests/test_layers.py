"""The package layering of docs/ARCHITECTURE.md, enforced: a module imports only from its own package, a lower
layer, or a peer of its own layer without a cycle between packages. Every import counts, including imports inside
functions (a lazy import is still a dependency) and ``TYPE_CHECKING`` blocks."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Low to high. A package may import from lower layers and from acyclic peers of its own layer, never upward.
LAYERS: list[tuple[str, ...]] = [
    # base: imports nothing of sweep but each other
    ("sweep", "sweep._lazy", "sweep.errors", "sweep.registry", "sweep.safety", "sweep.jsonio", "sweep.reporting", "sweep.progress_bar"),
    ("sweep.config",),
    ("sweep.metrics", "sweep.data", "sweep.ssl", "sweep.readout"),
    ("sweep.train",),
    ("sweep.integrations",),  # the trainer API (monitor, Lightning callback): records as the train job writes them
    ("sweep.launch",),
    ("sweep.study",),
    ("sweep.selection",),
    ("sweep.demo",),
    ("sweep.cli", "hydra_plugins"),
]
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}

# Known upward imports that another change removes; each names why it is still here. Keep this empty.
ALLOWED: dict[tuple[str, str], str] = {}


def package_of(module: str) -> str | None:
    """The layered package a dotted module belongs to (``sweep.study.sweeper`` -> ``sweep.study``)."""
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in RANK:
            return ".".join(parts[:n])
    if module in RANK:  # a bare top-level name (``sweep``, ``hydra_plugins``), not every module under it
        return module
    if parts[0] == "hydra_plugins":
        return "hydra_plugins"
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted([*(ROOT / "sweep").rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py")])


def imports(path: Path, module: str | None = None) -> Iterator[tuple[int, str]]:
    """(line, absolute module) of every import in the file, function-local ones included."""
    module = module or module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # `from sweep import demo` imports the module sweep.demo
                if package_of(f"{target}.{alias.name}") not in (None, package_of(target)):
                    yield node.lineno, f"{target}.{alias.name}"


def edges() -> list[tuple[str, int, str, str, str]]:
    """(file, line, imported module, from package, to package) for every import between two packages."""
    found = []
    for path in source_files():
        source = package_of(module_name(path))
        assert source is not None, f"{path.relative_to(ROOT)}: not in any layer of LAYERS; add its module"
        for line, target in imports(path):
            to = package_of(target)
            if to is not None and to != source:
                found.append((str(path.relative_to(ROOT)), line, target, source, to))
    return found


def test_every_module_is_in_a_layer() -> None:
    missing = sorted(module_name(p) for p in source_files() if package_of(module_name(p)) is None)
    assert not missing, f"modules in no layer of LAYERS (add them where they belong): {missing}"


def test_no_upward_imports() -> None:
    upward = [f"{file}:{line}: {source} (layer {RANK[source]}) imports {target} (layer {RANK[to]})"
              for file, line, target, source, to in edges()
              if RANK[to] > RANK[source] and (file, target) not in ALLOWED]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_cycles_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for file, line, target, source, to in edges():
        if (file, target) in ALLOWED:
            continue
        graph.setdefault(source, set()).add(to)
        where.setdefault((source, to), f"{file}:{line} imports {target}")
    cycles = []
    for (a, b), site in where.items():
        if _reaches(graph, b, a):
            cycles.append(f"{a} -> {b} ({site}) and {b} reaches {a} back")
    assert not cycles, "package cycles:\n" + "\n".join(sorted(cycles))


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node, ()))
    return False


def test_allowed_exceptions_still_exist() -> None:
    """An entry of ALLOWED whose import is gone must be deleted, so the list only shrinks."""
    present = {(file, target) for file, _, target, _, _ in edges()}
    stale = sorted(set(ALLOWED) - present)
    if stale:
        pytest.fail(f"remove from ALLOWED (the import is gone): {stale}")


def test_the_checker_sees_function_local_and_relative_imports(tmp_path: Path) -> None:
    fake = tmp_path / "fake.py"
    fake.write_text("import os\n\ndef f():\n    from sweep.cli import main\n    from ..study import outcome\n")
    found = list(imports(fake, module="sweep.config.fake"))
    assert (4, "sweep.cli") in found
    assert (5, "sweep.study") in found and (5, "sweep.study.outcome") not in found  # same package as the target
    assert RANK[package_of("sweep.cli")] > RANK[package_of("sweep.config.fake")]
