"""One schema for the study's and trials' user attributes (``sweep/study/attrs.py``): no other module spells an
attribute key as a literal where it reads or writes one, and none reaches into Optuna's private members
(``_storage``, ``_trial_id``, ``_study_id``); the batched writer stores exactly what one call per attr would."""
from __future__ import annotations

import ast
from pathlib import Path

import optuna

from sweep.study import attrs as schema
from sweep.study.storage import make_storage

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = {"_storage", "_trial_id", "_study_id", "_backend", "_cached_frozen_trial"}
ACCESSORS = {"set_user_attr", "set_trial_user_attr", "set_study_user_attr"}


def _places(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE:
            found.append((node.lineno, f"Optuna internal .{node.attr}"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            literal = next((a for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)), None)
            owner = node.func.value
            on_attrs = isinstance(owner, ast.Attribute) and owner.attr == "user_attrs" and node.func.attr == "get"
            if literal is not None and (node.func.attr in ACCESSORS or on_attrs):
                found.append((node.lineno, f"literal attr key {literal.value!r}"))
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "user_attrs" and isinstance(node.slice, ast.Constant):
            found.append((node.lineno, f"literal attr key {node.slice.value!r}"))
    return found


def test_only_the_schema_module_spells_attr_keys_or_touches_optuna_internals() -> None:
    files = [*sorted((ROOT / "sweep" / "study").glob("*.py")), ROOT / "sweep" / "cli.py"]
    bad = [f"{path.relative_to(ROOT)}:{line} {what}" for path in files if path.name != "attrs.py"
           for line, what in _places(ast.parse(path.read_text()))]
    assert not bad, "\n".join(bad)


def test_the_check_finds_a_literal_key_and_an_internal() -> None:
    code = "def f(study, trial):\n    trial.set_user_attr('job_id', 1)\n    return study._storage\n"
    assert [what for _, what in _places(ast.parse(code))] == ["literal attr key 'job_id'", "Optuna internal ._storage"]


def test_batched_attrs_equal_one_call_each(tmp_path: Path) -> None:
    for kind in ("sqlite", "journal"):
        url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else f"journal://{tmp_path / 'j.log'}"
        study = optuna.create_study(study_name=kind, storage=make_storage(url))
        batched, single = study.ask(), study.ask()
        values = {schema.JOB_ID: "123_4", schema.RUN_DIR: "/sweeps/x/0", schema.SUBMITTING: {"job_name": "n"}}
        assert schema.set_user_attrs(study, batched, values) == 3
        assert schema.set_user_attrs(study, batched, values) == 0  # unchanged: nothing written again
        for key, value in values.items():
            single.set_user_attr(key, value)
        fresh = [schema.fresh_trial(study, t).user_attrs for t in (batched, single)]
        assert fresh[0] == fresh[1] == values, kind
