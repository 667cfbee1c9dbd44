"""Gradescope's autograder results format (results.json)."""
from __future__ import annotations

import json
from pathlib import Path

from ..verdicts import Grade


def results_json(grade: Grade, execution_time: float, summary: str) -> dict:
    return {
        "score": grade.score,
        "execution_time": round(execution_time, 2),
        "output": summary,
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [
            {"name": v.name, "score": round(v.score, 4), "max_score": v.max_score,
             # Gradescope knows passed/failed only; an item waiting for a TA carries no status.
             **({"status": v.status} if v.status in ("passed", "failed") else {}),
             "output": v.message, "visibility": v.visibility}
            for v in grade.verdicts
        ],
    }


def write_results_json(path: Path, grade: Grade, execution_time: float, summary: str) -> None:
    path.write_text(json.dumps(results_json(grade, execution_time, summary), indent=2))
