"""Gradescope's autograder results format (results.json).

With a late policy applied, the top-level `score` is the final score (the checks' total less the late
penalty; Gradescope takes it over the tests' sum) and `output` ends with the late sentence.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..late import Lateness
from ..verdicts import Grade


def results_json(grade: Grade, execution_time: float, summary: str, late: Lateness | None = None) -> dict:
    output = overview(grade, summary)
    if late is not None:   # without scores: the overview may be holding back the total on purpose
        output = f"{output} {late.sentence()}".strip()
    return {
        "score": grade.score if late is None else late.final(grade.score),
        "execution_time": round(execution_time, 2),
        "output": output,
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


def overview(grade: Grade, summary: str) -> str:
    """The top-level `output`: in words, what the student may see now and what comes later.

    With checks on hidden inputs (visibility other than "visible") the total is left out: with the
    visible points it would give away how those checks went before grades are published.
    """
    if grade.status != "graded":
        return summary
    headline = f"{grade.score:g} of {grade.max_score:g} points."
    remarks = summary.removeprefix(headline).strip()   # the run's account (errors, time limits)
    judged = [v for v in grade.verdicts if v.status in ("passed", "failed")]
    shown = [v for v in judged if v.visibility == "visible"]
    later = [v for v in judged if v.visibility != "visible"]
    to_mark = list(dict.fromkeys(v.task for v in grade.verdicts if v.status not in ("passed", "failed")))
    parts = []
    if later:
        if shown:
            parts.append(_tally("Checks you can see now", shown))
        points = sum(v.max_score for v in later)
        parts.append(f"{len(later)} {'check runs' if len(later) == 1 else 'checks run'} your code on inputs "
                     f"you have not seen ({points:g} points); the results appear when grades are published.")
    else:
        parts += [headline, _tally("Checks", shown)] if shown else [headline]
    if to_mark:
        parts.append(f"Waiting for a TA to mark: {', '.join(to_mark)}.")
    if remarks:
        parts.append(remarks)
    return " ".join(parts)


def _tally(label: str, verdicts: list) -> str:
    passed = sum(v.status == "passed" for v in verdicts)
    score, total = sum(v.score for v in verdicts), sum(v.max_score for v in verdicts)
    failed = list(dict.fromkeys(v.task for v in verdicts if v.status == "failed"))
    text = f"{label}: {passed} of {len(verdicts)} passed ({round(score, 4):g} of {round(total, 4):g} points)"
    return text + (f"; failed: {', '.join(failed)}." if failed else ".")


def write_results_json(path: Path, grade: Grade, execution_time: float, summary: str,
                       late: Lateness | None = None) -> None:
    path.write_text(json.dumps(results_json(grade, execution_time, summary, late), indent=2))
