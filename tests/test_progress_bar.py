"""The progress rule: bars only on a TTY unless SWEEP_PROGRESS says otherwise; never when disabled."""
from __future__ import annotations

import io

import pytest

from sweep.progress_bar import PROGRESS_ENV, bars_enabled, progress


@pytest.mark.parametrize(("value", "expected"), [("0", True), ("off", True), ("1", False), ("yes", False),
                                                 ("", None), ("maybe", None)])
def test_env_decides_tqdm_disable(monkeypatch: pytest.MonkeyPatch, value: str, expected: object) -> None:
    monkeypatch.setenv(PROGRESS_ENV, value)
    assert bars_enabled() is expected


def test_forced_bar_writes_counts_and_disabled_bar_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "1")
    shown, hidden = io.StringIO(), io.StringIO()
    for _ in progress(range(3), desc="readouts", file=shown):
        pass
    for _ in progress(range(3), desc="readouts", file=hidden, enabled=False):
        pass
    assert "readouts" in shown.getvalue() and "3/3" in shown.getvalue()
    assert hidden.getvalue() == ""


def test_not_a_tty_shows_nothing_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    out = io.StringIO()  # not a TTY, like a SLURM log or a subprocess pipe
    for _ in progress(range(3), desc="sweep", file=out):
        pass
    assert out.getvalue() == ""
