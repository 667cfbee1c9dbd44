"""The student's feedback page (report.html), rendered with jinja2 from templates/report/."""
from __future__ import annotations

import dataclasses
import traceback
from pathlib import Path

import jinja2

from ..assignments import REPO, Assignment
from ..verdicts import Grade
from .gradescope import overview
from .pictures import colour_scale, curves_picture, matrix_picture, reference_matrix_picture

TEMPLATES = REPO / "templates" / "report"
HELD_BACK = "held back"   # a check on hidden inputs, in a page shown before grades are published
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                          autoescape=jinja2.select_autoescape(["html", "j2"]),
                          trim_blocks=True, lstrip_blocks=True)


def task_rows(assignment: Assignment, grade: Grade) -> list[dict]:
    rows = []
    for task in assignment.tasks:
        verdicts = [v for v in grade.verdicts if v.task == task.id]
        score = sum(v.score for v in verdicts)
        rows.append({"id": task.id, "title": task.title, "score": round(score, 2),
                     "max": round(task.points, 2), "manual": task.manual,
                     "to_mark": any(v.status == "to mark" for v in verdicts),
                     "passed": bool(verdicts) and all(v.status == "passed" for v in verdicts),
                     "held_back": any(v.status == HELD_BACK for v in verdicts),
                     "checks": verdicts})
    return rows


def figure_pictures(grade: Grade) -> list[dict]:
    pictures = []
    for figure in grade.figures:
        if figure.kind == "curves":
            continue   # drawn with the student's own logs: curve_pictures
        vmin, vmax = colour_scale(figure.student, figure.reference)
        pictures.append({
            "title": figure.title,
            "student": matrix_picture(figure.student, "Yours", figure.labels, vmin, vmax)
            if figure.student is not None else None,
            "reference": reference_matrix_picture(figure.reference, "Reference", figure.labels, vmin, vmax)
            if figure.reference is not None else None,
        })
    return pictures


def curve_pictures(grade: Grade) -> list[dict]:
    """The harness's runs' scalar series (figures.curves), drawn like the student's own logs."""
    pictures = []
    for figure in (f for f in grade.figures if f.kind == "curves"):
        try:
            pictures.append({"title": figure.title, "picture": curves_picture(figure.series)})
        except Exception:  # noqa: BLE001 - a series that cannot be drawn must not cost the report
            pictures.append({"title": figure.title, "picture": None})
    return pictures


def until_published(grade: Grade) -> Grade:
    """The grade as a student may see it before grades are published (an LMS that shows the page at
    once): checks on hidden inputs keep their names but not their results, messages or pictures."""
    verdicts = [v if v.visibility == "visible" else dataclasses.replace(v, score=0.0, status=HELD_BACK, message="")
                for v in grade.verdicts]
    return dataclasses.replace(grade, verdicts=verdicts,
                               figures=[f for f in grade.figures if f.visibility == "visible"])


def _holds_back(grade: Grade, hide_until_published: bool) -> bool:
    """Whether the page must leave results out: it is shown at once and some checks wait for publication."""
    return hide_until_published and any(v.visibility != "visible" for v in grade.verdicts)


def render_report(assignment: Assignment, grade: Grade, run, weights: list[dict], summary: str,
                  late=None, attachments=None, *, hide_until_published: bool = False) -> str:
    """`attachments`: the student's own logs and documents (autograder.attachments), None when unknown.
    `hide_until_published`: the page goes to the student at once (an LMS's results folder), so
    the checks on hidden inputs show no result yet, and neither does the total."""
    held_back = _holds_back(grade, hide_until_published)
    if held_back:
        summary, grade = overview(grade, summary), until_published(grade)
    return _ENV.get_template("report.html.j2").render(
        assignment=assignment, grade=grade, run=run, weights=weights, summary=summary, late=late,
        held_back=held_back, standins=[w for w in weights if w["kind"] != "real"],
        tasks=task_rows(assignment, grade), pictures=figure_pictures(grade),
        curves=curve_pictures(grade), attachments=attachments,
        manual_ids=[t.id for t in assignment.tasks if t.manual])


def write_report(path: Path, assignment: Assignment, grade: Grade, run, weights: list[dict], summary: str,
                 *, late=None, attachments=None, hide_until_published: bool = False) -> None:
    """report.html; one that cannot be drawn (a harness bug in a picture or the template) becomes a
    short page with the grade, and the error goes beside it in report-error.txt for a TA: the grade
    in results.json and the gradebook stands."""
    try:
        page = render_report(assignment, grade, run, weights, summary, late=late, attachments=attachments,
                             hide_until_published=hide_until_published)
    except Exception:  # noqa: BLE001
        (path.parent / "report-error.txt").write_text(traceback.format_exc())
        held_back = _holds_back(grade, hide_until_published)
        write_plain_report(path, assignment.name, grade.submission_id,
                           None if held_back else grade.score, grade.max_score, weights,
                           f"{overview(grade, summary) if held_back else summary} The detailed report could "
                           "not be drawn; a TA has been told (report-error.txt).")
        return
    path.write_text(page, encoding="utf-8")


def write_plain_report(path: Path, assignment: str, submission: str, score: float | None, max_score: float,
                       weights: list[dict], message: str) -> None:
    """The shortest report: the grade (None: not shown before publication), the weights it was
    computed with, and why there is nothing more."""
    path.write_text(_ENV.get_template("plain_report.html.j2").render(
        assignment=assignment, submission=submission, score=score, max_score=max_score, message=message,
        standins=[w for w in weights if w["kind"] != "real"]), encoding="utf-8")
