"""The HTML report rendered by a real headless browser (Debian's chromium): it loads without a JavaScript or
console error, every embedded figure decodes, and the screenshot is a page with content, not a blank.

``launchers/start-test-services.sh`` installs chromium when it runs as root with apt; without it these tests
skip with the reason."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from test_report import make_frames

from sweep.config.schema import SelectionConfig
from sweep.selection.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
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


def _page_facts(page: Path, tmp_path: Path) -> tuple[dict[str, str], str]:
    """The hook's attributes on <html> after load, and chromium's stderr."""
    done = _chromium(["--dump-dom", page.as_uri()], tmp_path)
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
    return build_report(trials, readouts, tmp / "report", SelectionConfig(n_orders=10), n_boot=50)


def test_report_loads_without_errors_and_every_figure_decodes(report: Path, tmp_path: Path) -> None:
    attrs, stderr = _page_facts(_with_hook(report), tmp_path)
    assert json.loads(attrs["data-errors"].replace("&quot;", '"')) == []
    assert int(attrs["data-images"]) == 3 and attrs["data-images-ok"] == attrs["data-images"]
    assert not [line for line in stderr.splitlines() if CONSOLE_ERROR.search(line)]


def test_the_error_hook_catches_a_broken_page(report: Path, tmp_path: Path) -> None:
    """The check above can fail: a script error and a broken image are both caught."""
    broken = '<script>undefinedFunction()</script><img src="data:image/png;base64,AAAA">'
    attrs, _ = _page_facts(_with_hook(report, broken), tmp_path)
    errors = json.loads(attrs["data-errors"].replace("&quot;", '"'))
    assert any("undefinedFunction" in e for e in errors)
    assert int(attrs["data-images-ok"]) == int(attrs["data-images"]) - 1


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
