"""The feedback page when drawing it fails: the student still sees their grade and the weights it was
computed with, and a TA gets the error; the grade itself (results.json, the gradebook) stands."""
from __future__ import annotations

import re

import numpy as np
import pytest

from autograder import assignments
from autograder.reports import html, pictures
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


def test_the_student_s_matrix_and_the_reference_share_a_colour_scale_of_round_numbers():
    reference = np.array([[0.9313, 0.4217], [0.5102, 0.8811]])
    low, high = pictures.colour_scale(reference, None)
    assert (low, high) == pytest.approx((0.42, 0.94))
    # A correct answer differs in its last digits: the same scale, so the same reference picture.
    assert pictures.colour_scale(reference + 1e-6, reference) == (low, high)
    wrong = reference - 0.3
    low, high = pictures.colour_scale(wrong, reference)
    assert low <= wrong.min() and high >= reference.max() and (low, high) == pytest.approx((0.12, 0.94))
    # What cannot be drawn on a scale is left out of it; nothing finite leaves the scale to matplotlib.
    assert pictures.colour_scale(np.array([[np.nan, np.inf], [0.5, 0.7]]), None) == pytest.approx((0.5, 0.7))
    assert pictures.colour_scale(np.array([[np.nan]]), None) == (None, None)
    assert pictures.colour_scale(np.full((2, 2), 0.3), None) == (0.3, 0.3)


def test_a_worker_draws_the_reference_picture_once_for_the_entries_that_share_its_scale(tmp_path, monkeypatch):
    drawn = []
    encode = pictures.png_base64
    monkeypatch.setattr(pictures, "png_base64", lambda figure: drawn.append(figure.axes[0].get_title()) or encode(figure))
    pictures._kept_picture.cache_clear()
    pages = {}
    for sid, change in (("kim", 0.0), ("lee", 1e-6), ("max", -0.2)):   # max: a wrong answer, another scale
        grade = fruits_grade(sid)
        grade.figures[0].student = grade.figures[0].student + change
        html.write_report(tmp_path / f"{sid}.html", assignments.load("fruits"), grade, None, STANDIN, "")
        pages[sid] = re.findall(r"data:image/png;base64,([^\"]+)", (tmp_path / f"{sid}.html").read_text())
    assert drawn == ["Yours", "Reference", "Yours", "Yours", "Reference"]
    assert pages["kim"][1] == pages["lee"][1] != pages["max"][1]   # the kept picture, then another scale's
    assert pages["kim"][0] != pages["max"][0]


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


def grade_with_hidden_checks(sid: str) -> Grade:
    """F1 checked on the grader's hidden images (after_published) with a picture of them; F5 visible."""
    figures = Figures()
    matrix = np.eye(3) * 0.5 + 0.25
    figures.matrices("similarities", matrix, matrix, ["a", "b", "c"])
    figures.visibility = "after_published"   # what the grading plugin sets while such a check runs
    figures.images("transform of the hidden image wide.jpg", matrix, matrix)
    verdicts = [Verdict("F1", "F1 transform (on unseen images)", 0.0, 2.0, "failed",
                        "transform(image wide.jpg): pixel 0.731 expected 0.12", visibility="after_published"),
                Verdict("F5", "F5 similarities", 0.0, 2.0, "failed", "`similarities`: expected 0.5, got 0.25")]
    return Grade(sid, "fruits", verdicts, figures.items)


def test_a_report_shown_before_publication_holds_hidden_checks_back_like_results_json(tmp_path):
    """An LMS may show the results folder at once: the page names the hidden-input checks but gives
    neither their result, message or picture, nor the total they are part of."""
    fruits = assignments.load("fruits")
    grade = grade_with_hidden_checks("kim")
    html.write_report(tmp_path / "full.html", fruits, grade, None, STANDIN, "0 of 4 points.")
    html.write_report(tmp_path / "early.html", fruits, grade, None, STANDIN, "0 of 4 points.",
                      hide_until_published=True)
    full, early = (tmp_path / "full.html").read_text(), (tmp_path / "early.html").read_text()
    assert "pixel 0.731 expected 0.12" in full and "hidden image wide.jpg" in full   # a TA's batch: everything
    assert full.count("data:image/png;base64,") == 4
    assert "pixel 0.731" not in early and "wide.jpg" not in early and "0 of 4" not in early
    assert early.count("data:image/png;base64,") == 2   # the visible check's picture only
    assert "F1 transform (on unseen images)" in early and "appears when grades are published" in early
    assert '<p class="score" id="score">&ndash; / 4.0</p>' in early
    assert "expected 0.5, got 0.25" in early   # a visible check's message stays


def test_a_grade_without_hidden_checks_shows_its_total_before_publication_too(tmp_path):
    html.write_report(tmp_path / "report.html", assignments.load("fruits"), fruits_grade("kim"), None, STANDIN,
                      "2 of 3 points.", hide_until_published=True)
    page = (tmp_path / "report.html").read_text()
    assert '<p class="score" id="score">2.0 / 3.0</p>' in page and "expected 1.0" in page
    assert 'id="held-back"' not in page


def test_the_summary_says_when_the_harvest_s_second_step_failed():
    """The student's own upstream re-run killed the kernel: the first step's values were graded, and
    the checks that needed the re-run fell back on the reference; the student is told."""
    from autograder.execution import RunRecord
    from autograder.pipeline import summarise
    failed = RunRecord(outcome="finished", harvest_status="ok",
                       harvest_error="computing upstream:train_features: the kernel died while the grader "
                                     "collected the values (memory limit)")
    summary = summarise(fruits_grade("kim"), failed)
    assert summary.startswith("2 of 3 points.")
    assert "upstream:train_features: the kernel died" in summary and "with the reference's instead" in summary
    assert summarise(fruits_grade("kim"), RunRecord(outcome="finished", harvest_status="ok")) == "2 of 3 points."


def test_a_batch_gives_a_plain_page_to_a_graded_entry_whose_worker_died_before_drawing_it(tmp_path):
    """Batch workers draw report.html on a thread after returning the grade (pipeline.py): a worker
    that died in between must not leave a graded entry without a page."""
    from autograder.batch import BatchJob, _plain_pages_where_missing
    from autograder.pipeline import gradebook_row
    fruits = assignments.load("fruits")
    job = BatchJob("fruits", out=tmp_path / "out", cache=tmp_path / "cache", data_root=tmp_path / "data")
    rows = {sid: gradebook_row(fruits, fruits_grade(sid), "2 of 3 points.") for sid in ("kim", "lee")}
    (job.out / "kim").mkdir(parents=True)
    (job.out / "kim" / "report.html").write_text("kim's drawn page")
    (job.out / "lee").mkdir()
    _plain_pages_where_missing(job, fruits, rows)
    assert (job.out / "kim" / "report.html").read_text() == "kim's drawn page"   # a drawn page is kept
    page = (job.out / "lee" / "report.html").read_text()
    assert '<p class="score" id="score">2.0 / ' in page and "<strong>lee</strong>" in page
    assert "2 of 3 points. The detailed report was not drawn (its grading worker ended)" in page
