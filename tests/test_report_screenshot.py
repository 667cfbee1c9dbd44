"""A student's report as a browser shows it: `grade.py check` on a correct module, then headless chromium."""
from __future__ import annotations

import base64
import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from autograder.weights import CHECKPOINTS
from conftest import CHROMIUM, screenshot_of

WIDTH, HEIGHT = 1200, 2000


@pytest.fixture(scope="module")
def report(tmp_path_factory, repo) -> Path:
    out = tmp_path_factory.mktemp("check")
    python = repo / ".venv" / "bin" / "python"
    done = subprocess.run([str(python if python.exists() else sys.executable), "grade.py", "check",
                           "tests/corpus/fruits/correct_module_v2.py", "--assignment", "fruits", "--out", str(out)],
                          cwd=repo, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    path = out / "correct_module_v2" / "report.html"
    assert path.is_file(), done.stdout[-2000:]
    return path


@pytest.fixture(scope="module")
def page(report) -> str:
    return report.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def screenshot(report, tmp_path_factory) -> Path:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed: no screenshot of the report")
    return screenshot_of(report, tmp_path_factory.mktemp("shot") / "shot.png", WIDTH, HEIGHT)


def test_report_shows_full_marks(page, report):
    assert re.search(r'id="score">\s*15\.0 / 15\.0\s*<', page)
    results = json.loads((report.parent / "results.json").read_text())
    assert results["score"] == 15.0


def test_report_lists_every_task_as_passed(page):
    for number in range(1, 9):
        row = re.search(rf'<tr id="task-F{number}">(.*?)</tr>', page, re.S)
        assert row, f"no row for task F{number}"
        assert "passed" in row.group(1) and "failed" not in row.group(1), f"F{number}: {row.group(1)[:300]}"


def test_report_shows_both_similarity_matrices(page):
    images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', page)
    assert [html.unescape(alt).split(" ")[0] for alt, _ in images] == ["your", "reference"]
    assert all("Similarity matrix" in html.unescape(alt) for alt, _ in images)
    for _, data in images:
        picture = base64.b64decode(data)
        assert picture.startswith(b"\x89PNG\r\n\x1a\n") and len(picture) > 5000


def test_report_says_which_weights_graded_it(page, repo):
    manifest_path = repo / ".cache" / "torch" / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    file_name = CHECKPOINTS["resnet18"].file_name
    banner = re.search(r'<div class="banner [a-z]+" id="weights">(.*?)</div>', page, re.S)
    assert banner, "no weights banner"
    assert file_name in banner.group(1)
    if manifest.get(file_name, {}).get("kind") == "real":
        assert "real torchvision ImageNet checkpoints" in banner.group(1)
    else:
        assert "Stand-in weights." in banner.group(1) and "<code>resnet18</code>" in banner.group(1)


def test_screenshot_is_a_rendered_page(screenshot):
    assert screenshot.is_file(), "chromium wrote no screenshot"
    with Image.open(screenshot) as image:
        assert image.size == (WIDTH, HEIGHT)
        rgb = image.convert("RGB")
    colours = rgb.getcolors(maxcolors=WIDTH * HEIGHT)
    assert len(colours) > 200, f"only {len(colours)} colours: a blank or broken page"
    white = max((count for count, colour in colours if colour == (255, 255, 255)), default=0)
    assert white < 0.97 * WIDTH * HEIGHT
    # The similarity matrices (viridis) are drawn: many pixels far from grey.
    vivid = sum(count for count, (r, g, b) in colours if max(r, g, b) - min(r, g, b) > 80)
    assert vivid > 20000, f"{vivid} colourful pixels: the pictures did not render"
