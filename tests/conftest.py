"""Shared helpers of the harness's own tests (not the graders': those live in graders/)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `pytest` run without `python -m` from elsewhere
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (computed, never hard-coded)."""
    return REPO


class Payload:
    """Unpickling this creates `marker`: proof that something unpickled data it should not have."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def payload():
    return Payload


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot_of(page: Path, shot: Path, width: int, height: int) -> Path:
    """A headless-Chromium screenshot of a local page, with the flags this closed network needs
    (no background networking: its connections would be refused, many at a time)."""
    shot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={shot.parent / 'profile'}", f"--window-size={width},{height}",
                    f"--screenshot={shot}", Path(page).resolve().as_uri()],
                   capture_output=True, timeout=180, cwd=shot.parent)
    return shot
