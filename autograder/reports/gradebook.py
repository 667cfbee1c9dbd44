"""The batch's gradebook (grades.csv, pandas) and its one-page overview (index.html)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..assignments import Assignment
from .html import _ENV
from .pictures import histogram_picture


# grades.csv, column by column:
#   id            the entry's name without extension (its folder under the batch's output)
#   total         the FINAL score: raw less the late penalty, 0 past the cut-off (what goes to the LMS)
#   max           the assignment's points
#   student       the student id from the file name (--id-pattern / course.toml); blank: no match
#   raw           the score before any late penalty: the sum of the task columns
#   days_late     ceil((submitted - deadline) / 24 h), 0 when on time; blank: no time or no deadline
#   penalty_pct   percent of raw taken off (100 past the cut-off); blank: lateness not checked
#   submitted_at  the LMS's time, in the course's time zone
#   late          the reason, in words: on time, N days late, past the cut-off, no submission time
#   <task ids>    raw points per task; then to_mark, status, message
LATE_COLUMNS = ["student", "raw", "days_late", "penalty_pct", "submitted_at", "late"]


def gradebook_frame(assignment: Assignment, rows: list[dict]) -> pd.DataFrame:
    """One row per submission: id, total (final), max, the late columns, one per task id, status, message."""
    columns = (["id", "total", "max"] + LATE_COLUMNS + [t.id for t in assignment.tasks]
               + ["to_mark", "status", "message"])
    frame = pd.DataFrame(rows, columns=columns)
    frame["days_late"] = frame["days_late"].astype("Int64")   # whole days; blank, not NaN, when unknown
    return frame.sort_values("id", kind="stable").reset_index(drop=True)


def write_gradebook(out_dir: Path, assignment: Assignment, rows: list[dict]) -> pd.DataFrame:
    frame = gradebook_frame(assignment, rows)
    frame.to_csv(out_dir / "grades.csv", index=False)
    task_ids = [t.id for t in assignment.tasks]
    pass_rates = []
    for task in assignment.tasks:
        column = pd.to_numeric(frame[task.id], errors="coerce")
        full = (column >= task.points - 1e-9).mean() if len(column) else 0.0
        pass_rates.append({"id": task.id, "title": task.title, "rate": round(100 * float(full), 1),
                           "mean": round(float(column.mean()), 2) if len(column) else 0.0, "max": task.points})
    html = _ENV.get_template("index.html.j2").render(
        assignment=assignment, rows=frame.to_dict("records"), task_ids=task_ids, pass_rates=pass_rates,
        histogram=histogram_picture(list(frame["total"].astype(float)), assignment.max_points) if len(frame) else None,
        mean=round(float(frame["total"].mean()), 2) if len(frame) else 0.0)
    (out_dir / "index.html").write_text(html, encoding="utf-8")
    return frame
