"""The public face (``sweep/__init__.py``): every advertised name resolves to the object its module defines, an
unknown one says which names there are, and ``import sweep`` loads neither torch nor Optuna nor pandas (every
module of the package, the driver's and the workers' included, imports it first)."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import sweep


@pytest.mark.parametrize("name", sorted(sweep.PUBLIC))
def test_every_public_name_is_its_module_object(name: str) -> None:
    assert getattr(sweep, name) is getattr(importlib.import_module(sweep.PUBLIC[name]), name)
    assert name in sweep.__all__ and name in dir(sweep)


def test_an_unknown_name_lists_the_public_ones() -> None:
    with pytest.raises(AttributeError, match=r"no attribute .rank_me.; its public names are \[.*.rankme."):
        sweep.rank_me  # noqa: B018


def test_import_sweep_is_light() -> None:
    code = ("import sys, sweep; heavy = [m for m in ('torch', 'optuna', 'pandas', 'sklearn') if m in sys.modules];"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_every_project_error_is_a_sweep_error() -> None:
    """One base: every error class the package defines derives from ``SweepError`` (``cli.main`` turns those into
    one line and exit 2) and from a builtin, so code catching the builtin keeps working."""
    import inspect
    import pkgutil

    from sweep.errors import SweepError

    found, missing = [], []
    for info in pkgutil.walk_packages(sweep.__path__, "sweep."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != info.name or not issubclass(cls, Exception) or issubclass(cls, Warning) \
                    or cls is SweepError:
                continue
            found.append(name)
            builtin = [b for b in cls.__mro__ if b.__module__ == "builtins" and b not in (Exception, BaseException,
                                                                                           object)]
            if not issubclass(cls, SweepError) or not builtin:
                missing.append(f"{info.name}.{name} (bases {[b.__name__ for b in cls.__bases__]})")
    assert len(found) >= 25 and not missing, "errors without SweepError and a builtin base:\n" + "\n".join(missing)


def test_every_except_in_the_cli_names_sweep_error_or_re_raises() -> None:
    """The commands never swallow a bug: each handler catches only project errors (``SweepError`` or its
    subclasses, named or in a tuple with it), Ctrl-C, or raises again."""
    import ast
    import inspect

    import sweep.cli as cli
    from sweep.errors import SweepError

    def caught(node: ast.expr | None) -> list[str]:
        if node is None:
            return ["<bare>"]
        return [ast.unparse(e) for e in node.elts] if isinstance(node, ast.Tuple) else [ast.unparse(node)]

    def project_error(name: str) -> bool:
        value = getattr(cli, name, None)
        if value is None:  # imported inside the function: resolve through the package that defines it
            from sweep.selection import best, table

            value = getattr(best, name, None) or getattr(table, name, None)
        return isinstance(value, type) and issubclass(value, SweepError)

    bad = []
    for node in ast.walk(ast.parse(inspect.getsource(cli))):
        if not isinstance(node, ast.ExceptHandler):
            continue
        names = caught(node.type)
        re_raises = any(isinstance(n, ast.Raise) for n in ast.walk(node))
        if re_raises or "SweepError" in names or names == ["KeyboardInterrupt"] or all(map(project_error, names)):
            continue
        bad.append(f"sweep/cli.py:{node.lineno} except {', '.join(names)}")
    assert not bad, bad
