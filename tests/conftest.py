"""Shared helpers of the harness's own tests (not the graders': those live in graders/)."""
from __future__ import annotations

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
