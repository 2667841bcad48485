"""The HTML report rendered by a real headless browser (Debian's chromium): it loads without a JavaScript or
console error, every embedded figure decodes, the answer block opens the page, nothing is wider than a
1280 px window, and the screenshot is a page with content, not a blank. The scatter's markers are checked not
to overlap in the figure itself (pixel positions from matplotlib's transforms at the dpi it is saved at).

``launchers/start-test-services.sh`` installs chromium when it runs as root with apt; without it these tests
skip with the reason."""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg
from test_report import make_frames

from sweep.config.schema import SelectionConfig
from sweep.selection.report import build_report
from sweep.selection.report_figures import CONFIGS_GID, marker_diameter_px, scatter_figure, spread_points

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (launchers/start-test-services.sh installs it when run as root)",
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]
# Chromium's own log line for a page's console message / uncaught exception
CONSOLE_ERROR = re.compile(r"CONSOLE\(\d+\)|Uncaught|:ERROR:CONSOLE")
# Records uncaught errors and console.error calls, then after load writes them, and whether every image
# decoded, into attributes that --dump-dom prints.
HOOK = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
const __consoleError = console.error;
console.error = (...a) => { window.__errors.push(a.join(' ')); __consoleError(...a); };
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  document.documentElement.setAttribute('data-images', String(imgs.length));
  document.documentElement.setAttribute('data-images-ok',
      String(imgs.filter(i => i.complete && i.naturalWidth > 0).length));
  document.documentElement.setAttribute('data-errors', JSON.stringify(window.__errors));
  const root = document.documentElement, answer = document.getElementById('answer');
  root.setAttribute('data-scroll-width', String(root.scrollWidth));
  root.setAttribute('data-inner-width', String(window.innerWidth));
  root.setAttribute('data-answer-top', String(answer ? answer.getBoundingClientRect().top + window.scrollY : -1));
  root.setAttribute('data-first-h2', document.querySelector('h2') ? document.querySelector('h2').textContent : '');
  const h2 = Array.from(document.querySelectorAll('h2'));
  root.setAttribute('data-second-h2-top', String(h2.length > 1 ? h2[1].getBoundingClientRect().top : -1));
});
</script>"""


def _chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    profile.mkdir(exist_ok=True)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=180)


def _with_hook(report: Path, extra: str = "") -> Path:
    """A copy of the report next to it with the error hook first in <head> (and ``extra`` in <body>)."""
    text = report.read_text().replace("<head>", "<head>" + HOOK, 1).replace("<body>", "<body>" + extra, 1)
    copy = report.with_name("report_hooked.html")
    copy.write_text(text)
    return copy


def _page_facts(page: Path, tmp_path: Path, width: int = 1280) -> tuple[dict[str, str], str]:
    """The hook's attributes on <html> after load in a ``width`` px wide window, and chromium's stderr."""
    done = _chromium([f"--window-size={width},2000", "--dump-dom", page.as_uri()], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    head = re.search(r"<html([^>]*)>", done.stdout)
    assert head, done.stdout[:500]
    attrs = dict(re.findall(r'(data-[\w-]+)="([^"]*)"', head.group(1)))
    return attrs, done.stderr


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("render")
    trials, readouts = make_frames(tmp)
    for i, name in enumerate(("projector.hidden_dims_of_the_first_layer", "optim.weight_decay_schedule_end",
                              "augment.color_jitter_strength_max", "method.temperature_of_the_softmax")):
        trials[f"params_{name}"] = [0.000123456789 * (i + 1) * (t + 1) for t in range(8)]  # long, many columns
    return build_report(trials, readouts, tmp / "report", SelectionConfig(n_orders=10), n_boot=50)


@needs_chromium
def test_report_loads_without_errors_and_every_figure_decodes(report: Path, tmp_path: Path) -> None:
    attrs, stderr = _page_facts(_with_hook(report), tmp_path)
    assert json.loads(attrs["data-errors"].replace("&quot;", '"')) == []
    # budget, scatter, the other metrics' scatter (behind a toggle), monitoring
    assert int(attrs["data-images"]) == 4 and attrs["data-images-ok"] == attrs["data-images"]
    assert not [line for line in stderr.splitlines() if CONSOLE_ERROR.search(line)]


@needs_chromium
def test_the_error_hook_catches_a_broken_page(report: Path, tmp_path: Path) -> None:
    """The check above can fail: a script error and a broken image are both caught."""
    broken = '<script>undefinedFunction()</script><img src="data:image/png;base64,AAAA">'
    attrs, _ = _page_facts(_with_hook(report, broken), tmp_path)
    errors = json.loads(attrs["data-errors"].replace("&quot;", '"'))
    assert any("undefinedFunction" in e for e in errors)
    assert int(attrs["data-images-ok"]) == int(attrs["data-images"]) - 1


@needs_chromium
def test_screenshot_is_a_page_with_content(report: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    done = _chromium([f"--screenshot={png}", "--window-size=1280,4000", report.as_uri()], tmp_path)
    assert done.returncode == 0 and png.is_file(), done.stderr[-2000:]
    assert _png_size(png) == (1280, 4000)
    assert not [line for line in done.stderr.splitlines() if CONSOLE_ERROR.search(line)]
    pixels = mpimg.imread(png)[..., :3]
    ink = (pixels.mean(axis=2) < 0.5).mean(axis=1)  # share of dark pixels per row
    assert (ink > 0).mean() > 0.3, "most of the page is blank"
    colours = np.unique(pixels.reshape(-1, 3).round(2), axis=0)
    assert len(colours) > 50  # text, tables and coloured figures, not a flat page


@needs_chromium
def test_the_answer_opens_the_page_and_nothing_is_wider_than_the_window(report: Path, tmp_path: Path) -> None:
    attrs, _ = _page_facts(_with_hook(report), tmp_path, width=1280)
    assert attrs["data-first-h2"] == "The answer"
    assert 0 < float(attrs["data-answer-top"]) < float(attrs["data-second-h2-top"]) < 2000  # on the first screen
    assert int(attrs["data-inner-width"]) == 1280
    assert int(attrs["data-scroll-width"]) <= 1280, "a table or figure makes the page scroll sideways"


@needs_chromium
def test_the_width_check_can_fail(report: Path, tmp_path: Path) -> None:
    attrs, _ = _page_facts(_with_hook(report, '<div style="width:3000px">wide</div>'), tmp_path, width=1280)
    assert int(attrs["data-scroll-width"]) > 1280


def _marker_pixels(fig: Any) -> list[np.ndarray]:
    """Per panel, the configs' marker centres in pixels (the collection tagged CONFIGS_GID)."""
    out = []
    for ax in fig.axes:
        for collection in ax.collections:
            if collection.get_gid() == CONFIGS_GID:
                out.append(ax.transData.transform(collection.get_offsets()))
    return out


def _min_distance(points: np.ndarray) -> float:
    if len(points) < 2:
        return math.inf
    diff = points[:, None, :] - points[None, :, :]
    dist = np.hypot(diff[..., 0], diff[..., 1])
    np.fill_diagonal(dist, np.inf)
    return float(dist.min())


def test_no_two_scatter_markers_overlap() -> None:
    """Crowded panels: 12 configs with identical metrics and accuracies plus a tight cluster; every pair of
    markers ends at least one marker diameter apart, and the check fails on the unspread positions."""
    trials, readouts = make_frames()
    crowd = pd.DataFrame({"trial": range(100, 130), "state": "COMPLETE", "method": ["simclr"] * 30,
                          "rankme": [20.0] * 12 + [20.0 + 0.01 * i for i in range(18)],
                          "alpha": [1.0] * 12 + [1.0 + 0.001 * i for i in range(18)],
                          "test_accuracy": [0.70] * 12 + [0.70 + 0.0001 * i for i in range(18)]})
    merged = pd.concat([trials.merge(readouts, on="trial"), crowd], ignore_index=True)
    fig = scatter_figure(merged, ["rankme", "alpha"], "test_accuracy", {2: ["guided", "oracle"]})
    panels = _marker_pixels(fig)
    assert len(panels) == 4 and sum(len(p) for p in panels) == 2 * len(merged)
    diameter = marker_diameter_px()
    assert all(_min_distance(p) >= diameter for p in panels)
    raw = fig.axes[1].transData.transform(np.column_stack([crowd["rankme"], 100 * crowd["test_accuracy"]]))
    assert _min_distance(raw) < diameter  # without spreading, these markers would hide each other
    plt.close(fig)


def test_spread_points_moves_only_what_overlaps() -> None:
    apart = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    assert np.array_equal(spread_points(apart, 5.0), apart)
    same = spread_points(np.zeros((5, 2)), 5.0)
    assert _min_distance(same) >= 5.0 and np.abs(same).max() < 10.0  # apart, and still near where they were
