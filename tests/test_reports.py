"""The feedback page when drawing it fails: the student still sees their grade and the weights it was
computed with, and a TA gets the error; the grade itself (results.json, the gradebook) stands."""
from __future__ import annotations

import numpy as np

from autograder import assignments
from autograder.reports import html
from autograder.verdicts import Figures, Grade, Verdict

STANDIN = [{"model": "resnet18", "file": "resnet18-f37072fd.pth", "kind": "stand-in", "sha256": "0123"}]


def fruits_grade(sid: str) -> Grade:
    figures = Figures()
    matrix = np.eye(3) * 0.5 + 0.25
    figures.matrices("similarities", matrix, matrix, ["a", "b", "c"])
    verdicts = [Verdict("F5", "F5 similarities", 2.0, 2.0, "passed"),
                Verdict("F7", "F7 accuracy", 0.0, 1.0, "failed", "expected 1.0")]
    return Grade(sid, "fruits", verdicts, figures.items)


def test_a_report_draws_the_student_s_matrix_beside_the_reference(tmp_path):
    html.write_report(tmp_path / "report.html", assignments.load("fruits"), fruits_grade("kim"), None, STANDIN,
                      "2 of 3 points.")
    page = (tmp_path / "report.html").read_text()
    assert "<strong>kim</strong>" in page and "Stand-in weights" in page
    assert page.count("data:image/png;base64,") == 2
    assert not (tmp_path / "report-error.txt").exists()


def test_a_report_that_cannot_be_drawn_still_gives_the_grade_and_says_why(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a colour map that does not exist")

    monkeypatch.setattr(html, "render_report", broken)
    html.write_report(tmp_path / "report.html", assignments.load("fruits"), fruits_grade("kim"), None, STANDIN,
                      "2 of 3 points.")
    page = (tmp_path / "report.html").read_text()
    assert '<p class="score" id="score">2.0 / 3.0</p>' in page and "<strong>kim</strong>" in page
    assert "2 of 3 points. The detailed report could not be drawn" in page and "Stand-in weights" in page
    assert "ValueError: a colour map that does not exist" in (tmp_path / "report-error.txt").read_text()
