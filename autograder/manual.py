"""Manual items: free-text answers collected for a person to mark, and the marks merged back.

A student answers task X in a markdown cell whose first line is `## Answer X` (in a module: a
`# %% [markdown]` cell, jupytext style). The batch lists every answer in `to_mark.csv`; a TA fills
in `points` (and optionally `comment`) and passes the file back with `--marks`, and the next run
puts those points into grades.csv, results.json and the report.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .assignments import Assignment
from .verdicts import Verdict

MAX_ANSWER_CHARS = 20000


def collect_answers(notebook, assignment: Assignment) -> dict[str, str]:
    """task id -> the student's answer text (all of their `## Answer X` cells, in order)."""
    manual = {t.id for t in assignment.tasks if t.manual}
    answers: dict[str, list[str]] = {}
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        lines = str(cell.get("source", "")).strip().splitlines()
        if not lines:
            continue
        match = re.match(r"^#+\s*answer\s+([A-Za-z]+\d*)\b", lines[0].strip(), re.IGNORECASE)
        if match and match.group(1).upper() in manual:
            answers.setdefault(match.group(1).upper(), []).append("\n".join(lines[1:]).strip())
    return {task: "\n\n".join(parts)[:MAX_ANSWER_CHARS] for task, parts in answers.items()}


def read_marks(path: Path | None) -> dict[tuple[str, str], tuple[float, str]]:
    """(submission id, task) -> (points, comment) from a TA's marks CSV (blank points are skipped)."""
    if path is None or not Path(path).is_file():
        return {}
    frame = pd.read_csv(path, dtype={"id": str, "task": str}, keep_default_na=False)
    missing = {"id", "task", "points"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: the marks file needs the columns id, task, points (missing {sorted(missing)})")
    marks = {}
    for row in frame.to_dict("records"):
        if str(row["points"]).strip() == "":
            continue
        marks[(str(row["id"]), str(row["task"]).upper())] = (float(row["points"]), str(row.get("comment", "")))
    return marks


def manual_verdicts(assignment: Assignment, sid: str, answers: dict[str, str],
                    marks: dict[tuple[str, str], tuple[float, str]]) -> list[Verdict]:
    verdicts = []
    for task in (t for t in assignment.tasks if t.manual):
        answer = answers.get(task.id, "")
        shown = answer if answer else f"(no `## Answer {task.id}` cell was found)"
        if (sid, task.id) in marks:
            points, comment = marks[(sid, task.id)]
            points = max(0.0, min(points, task.points))
            verdicts.append(Verdict(task.id, f"{task.id} {task.title} (marked by a TA)", points, task.points,
                                    "passed" if points >= task.points else "failed",
                                    (comment + "\n\n" if comment else "") + f"Your answer:\n{shown}"))
        else:
            verdicts.append(Verdict(task.id, f"{task.id} {task.title} (to be marked by a TA)", 0.0, task.points,
                                    "to mark", f"Your answer:\n{shown}"))
    return verdicts


def write_to_mark(path: Path, rows: list[dict]) -> None:
    """The TA's worksheet: one row per (submission, manual task), points left blank."""
    if rows:
        pd.DataFrame(rows, columns=["id", "task", "points", "comment", "answer"]).to_csv(path, index=False)
