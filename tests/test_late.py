"""The late policy: days late on the boundaries, course.toml, the LMS's times, Gradescope's metadata,
and the late columns of grades.csv, results.json and the report; one real batch through the CLI."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import jsonschema
import pandas as pd
import pytest

from autograder import assignments, late
from autograder.late import CourseRuleError, Lateness, days_late, late_policy, parse_time
from autograder.pipeline import gradebook_row
from autograder.reports.gradebook import gradebook_frame
from autograder.reports.gradescope import results_json
from autograder.reports.html import render_report
from autograder.verdicts import Grade, Verdict

REPO = Path(__file__).resolve().parent.parent
ATHENS = ZoneInfo("Europe/Athens")
# The wikiart/saliency handout's rule: 25% per late day, nothing more than two days late.
HANDOUT = late_policy({"deadline": "2026-12-11T23:59:00", "timezone": "Europe/Athens",
                       "penalty_percent_per_day": 25, "cutoff_days": 2})
DEADLINE = datetime(2026, 12, 11, 23, 59, tzinfo=ATHENS)


def at(offset: timedelta) -> Lateness:
    return Lateness(DEADLINE + offset, HANDOUT)


# -- days late on the boundaries --------------------------------------------------------------------
@pytest.mark.parametrize("offset, days, penalty, note", [
    (-timedelta(seconds=1), 0, 0, "on time"),
    (timedelta(0), 0, 0, "on time"),                                   # exactly at the deadline
    (timedelta(seconds=1), 1, 25, "1 day late: 25% penalty"),
    (timedelta(hours=24), 1, 25, "1 day late: 25% penalty"),           # a full day is still one day
    (timedelta(hours=24, seconds=1), 2, 50, "2 days late: 50% penalty"),
    (timedelta(hours=48), 2, 50, "2 days late: 50% penalty"),          # the last accepted instant
])
def test_days_late_and_penalty_on_the_boundaries(offset, days, penalty, note):
    lateness = at(offset)
    assert (lateness.days_late, lateness.penalty_percent, lateness.past_cutoff) == (days, penalty, False)
    assert lateness.note == note
    assert lateness.final(8.0) == 8.0 * (1 - penalty / 100)


def test_past_the_cutoff_scores_zero_with_the_reason():
    lateness = at(timedelta(hours=48, seconds=1))
    assert (lateness.days_late, lateness.past_cutoff, lateness.penalty_percent) == (3, True, 100)
    assert lateness.final(8.0) == 0.0
    assert lateness.note == ("past the cut-off: 3 days late, nothing accepted after 2026-12-13 23:59:00 EET; "
                             "scored 0")
    assert lateness.sentence(8, 10) == (
        "Submitted 2026-12-13 23:59:01 EET, 3 days after the deadline (2026-12-11 23:59:00 EET): past the "
        "cut-off (2026-12-13 23:59:00 EET), so it is not accepted and scores 0 (the checks gave 8 / 10).")


def test_a_time_given_in_another_zone_is_the_same_instant():
    # 16:59 in New York (UTC-5) is 23:59 in Athens (UTC+2): exactly the deadline, on time.
    new_york = parse_time("2026-12-11T16:59:00-05:00", ATHENS, "test")
    assert Lateness(new_york, HANDOUT).days_late == 0
    assert Lateness(parse_time("2026-12-11T16:59:01-05:00", ATHENS, "test"), HANDOUT).days_late == 1
    # 21:59:01 UTC is one second after 23:59 in Athens.
    assert Lateness(parse_time("2026-12-11T21:59:01Z", None, "test"), HANDOUT).days_late == 1
    # Without an offset a time is read in the course's zone.
    assert parse_time("2026-12-11 23:59:01", ATHENS, "test") == DEADLINE + timedelta(seconds=1)


def test_a_deadline_with_its_own_offset_needs_no_zone():
    policy = late_policy({"deadline": "2026-12-11T23:59:00+02:00", "penalty_percent_per_day": 25})
    assert Lateness(datetime(2026, 12, 11, 21, 59, tzinfo=timezone.utc), policy).days_late == 0
    assert policy.cutoff is None
    assert Lateness(DEADLINE + timedelta(days=9), policy).penalty_percent == 100   # capped, never negative


def test_a_late_day_is_24_elapsed_hours_across_daylight_saving():
    # Athens leaves summer time on 2026-10-25 at 04:00: that calendar day has 25 hours.
    policy = late_policy({"deadline": "2026-10-24T23:59:00", "timezone": "Europe/Athens"})
    assert days_late(datetime(2026, 10, 25, 22, 59, tzinfo=ATHENS), policy.deadline) == 1   # 24 h later
    assert days_late(datetime(2026, 10, 25, 23, 59, tzinfo=ATHENS), policy.deadline) == 2   # 25 h later


def test_no_penalty_configured_still_counts_the_days():
    policy = late.load_course("fruits").late
    lateness = Lateness(policy.deadline + timedelta(hours=30), policy)
    assert (lateness.days_late, lateness.penalty_percent, lateness.final(15)) == (2, 0, 15)
    assert lateness.note == "2 days late: no late penalty for this assignment"


def test_a_missing_time_is_flagged_and_costs_nothing():
    lateness = Lateness(None, HANDOUT)
    assert (lateness.days_late, lateness.penalty_percent, lateness.final(7)) == (None, 0, 7)
    assert lateness.note.startswith("no submission time")
    assert "not given your submission time" in lateness.sentence(7, 10)


@pytest.mark.parametrize("text, complaint", [
    ("2026-12-11", "not an ISO 8601 date and time"),          # a date alone would mean its midnight
    ("11/12/2026 23:59", "not an ISO 8601 date and time"),
    ("2026-12-11T25:00:00", "not an ISO 8601 date and time"),
])
def test_unreadable_times_are_refused(text, complaint):
    with pytest.raises(CourseRuleError, match=complaint):
        parse_time(text, ATHENS, "deadline")


def test_a_time_without_offset_needs_a_zone():
    with pytest.raises(CourseRuleError, match="no UTC offset and no course time zone"):
        parse_time("2026-12-11T23:59:00", None, "deadline")


# -- course.toml --------------------------------------------------------------------------------
def test_every_assignment_has_a_course_config():
    for name in assignments.names():
        course = late.load_course(name)
        assert course.late.deadline is not None and course.late.deadline.tzinfo is not None, name
    for name in ("wikiart", "saliency"):
        course = late.load_course(name)
        assert course.late.penalty_percent_per_day == 25
        assert course.late.cutoff - course.late.deadline == timedelta(hours=48)
        assert course.id_pattern == "cs587_(?P<id>[^_]+)_assignment4"
    for name in ("fruits", "inception", "catsdogs", "scene15"):
        course = late.load_course(name)
        assert (course.late.penalty_percent_per_day, course.late.cutoff, course.id_pattern) == (0, None, None)


@pytest.mark.parametrize("text, complaint", [
    ('[late]\ndeadline = "2026-12-11T23:59:00"\ntimezone = "Europe/Atlantis"\n', "not an IANA time zone"),
    ('[late]\ndeadline = "2026-12-11T23:59:00+02:00"\npenalty_percent_per_day = 120\n', "between 0 and 100"),
    ('[late]\ndeadline = "2026-12-11T23:59:00+02:00"\ncutoff = 2\n', "unknown key(s) cutoff"),
    ('[late]\npenalty_percent_per_day = 25\n', "needs a deadline"),
    ('[late]\ndeadline = "2026-12-11T23:59:00"\n', "no course time zone"),
    ('[names]\nid_pattern = "cs587_([^_]+)"\n', "no group named id"),
    ('[late\n', "not valid TOML"),
])
def test_a_bad_course_config_is_refused_with_a_reason(tmp_path, text, complaint):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "course.toml").write_text(text)
    with pytest.raises(CourseRuleError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        late.load_course("demo", graders=tmp_path)


# -- the LMS's times -----------------------------------------------------------------------------------
def test_submission_times_are_read_from_the_lms_export(tmp_path):
    path = tmp_path / "times.csv"
    path.write_text("\ufeffId, submitted_at ,name\n"          # a spreadsheet's BOM and loose header
                    "jdoe,2026-12-11 23:59:00,Jane\n"
                    "asmith,2026-12-11T16:59:01-05:00,Ann\n"
                    "bwong,,Bo\n", encoding="utf-8")
    times = late.read_submission_times(path, ATHENS)
    assert times == {"jdoe": DEADLINE, "asmith": DEADLINE + timedelta(seconds=1), "bwong": None}


@pytest.mark.parametrize("text, complaint", [
    ("id,when\njdoe,2026-12-11 23:59\n", "needs the columns id,submitted_at"),
    ("id,submitted_at\njdoe,2026-12-11 23:59\njdoe,2026-12-12 10:00\n", "line 3: 'jdoe' is listed twice"),
    ("id,submitted_at\njdoe,yesterday\n", "line 2: 'yesterday' is not an ISO 8601"),
    ("id,submitted_at\n,2026-12-11 23:59\n", "line 2: no id"),
])
def test_a_bad_times_file_is_refused_with_the_line(tmp_path, text, complaint):
    path = tmp_path / "times.csv"
    path.write_text(text)
    with pytest.raises(CourseRuleError, match=complaint):
        late.read_submission_times(path, ATHENS)


def test_a_missing_times_file_is_refused(tmp_path):
    with pytest.raises(CourseRuleError, match="no such file"):
        late.read_submission_times(tmp_path / "nope.csv", ATHENS)


def test_a_submission_is_found_by_student_then_by_entry_name():
    times = {"jdoe": DEADLINE, "cs587_asmith_assignment4": DEADLINE + timedelta(hours=1)}
    assert late.lateness_for(HANDOUT, times, "jdoe", "cs587_jdoe_assignment4").days_late == 0
    assert late.lateness_for(HANDOUT, times, "asmith", "cs587_asmith_assignment4").days_late == 1
    assert late.lateness_for(HANDOUT, times, None, "notes").submitted_at is None


# -- Gradescope's submission_metadata.json ---------------------------------------------------------
def gradescope_metadata(path: Path, created_at: str, late_due_date: str | None = None) -> Path:
    """The documented shape of /autograder/submission_metadata.json (Gradescope's autograder docs)."""
    path.write_text(json.dumps({
        "id": 123456,
        "created_at": created_at,
        "assignment": {"due_date": "2026-12-11T16:59:00.000000-05:00", "group_size": None,
                       "group_submission": False, "id": 25828, "course_id": 1234,
                       "late_due_date": late_due_date, "release_date": "2026-11-20T00:00:00.000000-05:00",
                       "title": "Assignment 4", "total_points": "10.0"},
        "submission_method": "upload",
        "users": [{"email": "jdoe@example.edu", "id": 1234, "name": "Jane Doe"}],
        "previous_submissions": [],
    }))
    return path


def test_times_are_read_from_gradescope_metadata(tmp_path):
    path = gradescope_metadata(tmp_path / "submission_metadata.json", "2026-12-12T10:22:32.365935-05:00",
                               late_due_date="2026-12-12T16:59:00.000000-05:00")
    times = late.times_from_gradescope_metadata(path)
    assert times.submitted_at == datetime(2026, 12, 12, 15, 22, 32, 365935, tzinfo=timezone.utc)
    assert times.due_date == DEADLINE
    assert times.late_due_date == DEADLINE + timedelta(hours=24)


def test_gradescope_dates_replace_the_configured_ones(tmp_path):
    one_day = late.gradescope_lateness("saliency", gradescope_metadata(
        tmp_path / "a.json", "2026-12-12T10:22:32-05:00"))
    assert (one_day.days_late, one_day.penalty_percent, one_day.past_cutoff) == (1, 25, False)
    assert one_day.policy.cutoff == DEADLINE + timedelta(hours=48)   # course.toml's two days, from due_date
    refused = late.gradescope_lateness("saliency", gradescope_metadata(
        tmp_path / "b.json", "2026-12-12T17:00:00-05:00", late_due_date="2026-12-12T16:59:00-05:00"))
    assert refused.past_cutoff and refused.final(7) == 0   # past Gradescope's own late due date


@pytest.mark.parametrize("content, complaint", [
    (None, "no Gradescope submission metadata"),
    ("{not json", "cannot be read as JSON"),
    ('{"assignment": {}}', "has no created_at"),
    ('{"created_at": "2026-12-12 10:00"}', "no UTC offset"),
])
def test_unusable_gradescope_metadata_is_refused(tmp_path, content, complaint):
    path = tmp_path / "submission_metadata.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CourseRuleError, match=complaint):
        late.times_from_gradescope_metadata(path)


# -- grades.csv, results.json, the report ---------------------------------------------------------------
def saliency_grade(sid: str, m1: float, m2: float) -> Grade:
    verdicts = [Verdict("M1", "M1 compute_saliency", float(m1), 4.0, "passed" if m1 == 4 else "failed"),
                Verdict("M2", "M2 saliency_maps", float(m2), 3.0, "passed" if m2 == 3 else "failed"),
                Verdict("M3", "M3 discussion (to be marked by a TA)", 0.0, 3.0, "to mark")]
    return Grade(sid, "saliency", verdicts)


def cells(frame: pd.DataFrame, sid: str, columns: list[str]) -> tuple:
    """A row's values as read back from grades.csv; a blank cell is None."""
    return tuple(None if pd.isna(value) else value for value in frame.loc[sid, columns])


def test_the_gradebook_shows_raw_days_penalty_and_final_score():
    assignment = assignments.load("saliency")
    rows = [
        gradebook_row(assignment, saliency_grade("cs587_ann_assignment4", 4, 3), "", at(timedelta(seconds=-1)), "ann"),
        gradebook_row(assignment, saliency_grade("cs587_bo_assignment4", 4, 2), "", at(timedelta(hours=24, seconds=1)),
                      "bo"),
        gradebook_row(assignment, saliency_grade("cs587_cy_assignment4", 4, 3), "", at(timedelta(days=3)), "cy"),
        gradebook_row(assignment, saliency_grade("cs587_di_assignment4", 2, 3), "", Lateness(None, HANDOUT), "di"),
        gradebook_row(assignment, saliency_grade("notes", 0, 0), "", None, None),
    ]
    frame = gradebook_frame(assignment, rows)
    assert list(frame.columns[:9]) == ["id", "total", "max", "student", "raw", "days_late", "penalty_pct",
                                      "submitted_at", "late"]
    csv_text = frame.to_csv(index=False)
    assert "\ncs587_bo_assignment4,3.0,10.0,bo,6.0,2,50.0," in csv_text   # whole days, not 2.0
    frame = pd.read_csv(io.StringIO(csv_text)).set_index("id")
    expected = {   # raw, days_late, penalty_pct, total
        "cs587_ann_assignment4": (7, 0, 0, 7),
        "cs587_bo_assignment4": (6, 2, 50, 3),
        "cs587_cy_assignment4": (7, 3, 100, 0),
        "cs587_di_assignment4": (5, None, 0, 5),
        "notes": (0, None, None, 0),
    }
    for sid, values in expected.items():
        assert cells(frame, sid, ["raw", "days_late", "penalty_pct", "total"]) == values, sid
    assert frame.loc["cs587_cy_assignment4", "late"].startswith("past the cut-off: 3 days late")
    assert frame.loc["cs587_di_assignment4", "late"].startswith("no submission time")
    assert frame.loc["notes", "late"] == late.NOT_CHECKED and pd.isna(frame.loc["notes", "student"])
    assert frame.loc["cs587_bo_assignment4", "submitted_at"] == "2026-12-12T23:59:01+02:00"
    assert (frame.loc["cs587_bo_assignment4", ["M1", "M2"]] == [4, 2]).all()   # task columns stay raw


def test_results_json_scores_the_final_score_and_says_the_penalty():
    grade = saliency_grade("cs587_bo_assignment4", 4, 2)
    results = results_json(grade, 1.0, "6 of 10 points.", at(timedelta(hours=24, seconds=1)))
    jsonschema.validate(results, json.loads((REPO / "tests" / "gradescope_results.schema.json").read_text()))
    assert results["score"] == 3.0
    assert sum(t["score"] for t in results["tests"]) == 6.0
    assert results["output"].endswith("2 days after the deadline (2026-12-11 23:59:00 EET): 50% late penalty.")


def test_the_report_tells_the_student_in_one_line():
    assignment = assignments.load("saliency")
    grade = saliency_grade("cs587_bo_assignment4", 4, 2)
    html = render_report(assignment, grade, None, [], "6 of 10 points.", late=at(timedelta(hours=24, seconds=1)))
    line = next(line for line in html.splitlines() if 'id="late"' in line)
    assert "Submitted 2026-12-12 23:59:01 EET, 2 days after the deadline" in line
    assert "50% late penalty: 6 → 3 / 10 points." in line
    assert 'id="late"' not in render_report(assignment, grade, None, [], "6 of 10 points.")


def test_the_batch_summary_lists_what_a_ta_must_look_at():
    assignment = assignments.load("saliency")
    rows = [gradebook_row(assignment, saliency_grade(f"cs587_{s}_assignment4", 4, 3), "", lateness, s)
            for s, lateness in [("ann", at(timedelta(0))), ("bo", at(timedelta(hours=1))),
                                ("cy", at(timedelta(days=3))), ("di", Lateness(None, HANDOUT))]]
    rows.append(gradebook_row(assignment, saliency_grade("notes", 0, 0), "", Lateness(None, HANDOUT), None))
    assert late.batch_summary(rows) == [
        "no student id (the file name does not match the id pattern): notes",
        "late policy: 1 on time, 1 late (1 with a penalty), 1 past the cut-off, 2 without a time",
        "past the cut-off, scored 0: cs587_cy_assignment4",
        "no submission time (no penalty applied; check the LMS): cs587_di_assignment4, notes",
    ]


# -- through the command line ------------------------------------------------------------------
def test_batch_applies_the_late_policy_to_grades_csv(tmp_path):
    """Four saliency entries named as the handout asks: on time, a day and a second late (a tar.gz),
    past the cut-off, and one the LMS has no time for."""
    subs = tmp_path / "subs"
    subs.mkdir()
    correct = REPO / "submissions" / "saliency" / "alice_correct.ipynb"
    shutil.copy(correct, subs / "cs587_ann_assignment4.ipynb")
    with tarfile.open(subs / "cs587_bo_assignment4.tar.gz", "w:gz") as tf:
        tf.add(correct, arcname="cs587_bo_assignment4/saliency.ipynb")
    (subs / "cs587_cy_assignment4.py").write_text("x = 1\n")
    (subs / "readme.txt").write_text("not a submission, and not in the LMS's export\n")
    times = tmp_path / "times.csv"
    times.write_text("id,submitted_at\n"
                     "ann,2026-12-11T23:58:59+02:00\n"                    # one second early
                     "bo,2026-12-12T21:59:01Z\n"                          # 24 h and 1 s late, in UTC
                     "cs587_cy_assignment4,2026-12-14T00:00:00\n")        # by entry name; course zone
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "grade.py", "batch", str(subs), "--assignment", "saliency", "--out",
                           str(out), "--workers", "2", "--quiet", "--submission-times", str(times)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "past the cut-off, scored 0: cs587_cy_assignment4" in done.stdout
    assert "no submission time (no penalty applied; check the LMS): readme.txt" in done.stdout
    assert "no student id (the file name does not match the id pattern): readme.txt" in done.stdout
    frame = pd.read_csv(out / "grades.csv").set_index("id")
    assert list(frame["student"].fillna("")) == ["ann", "bo", "cy", ""]
    columns = ["raw", "days_late", "penalty_pct", "total"]
    assert cells(frame, "cs587_ann_assignment4", columns) == (7, 0, 0, 7)
    assert cells(frame, "cs587_bo_assignment4", columns) == (7, 2, 50, 3.5)
    assert cells(frame, "cs587_cy_assignment4", columns) == (0, 3, 100, 0)
    assert cells(frame, "readme.txt", columns) == (0, None, 0, 0)
    assert frame.loc["cs587_cy_assignment4", "late"].startswith("past the cut-off")
    assert frame.loc["readme.txt", "status"] == "not a submission"
    results = json.loads((out / "cs587_bo_assignment4" / "results.json").read_text())
    assert results["score"] == 3.5 and "50% late penalty" in results["output"]
    report = (out / "cs587_bo_assignment4" / "report.html").read_text()
    assert "50% late penalty: 7 → 3.5 / 10 points." in report


def test_batch_refuses_a_bad_times_file_before_grading(tmp_path):
    times = tmp_path / "times.csv"
    times.write_text("id,submitted_at\nann,soon\n")
    done = subprocess.run([sys.executable, "grade.py", "batch", "submissions/saliency", "--assignment", "saliency",
                           "--out", str(tmp_path / "out"), "--submission-times", str(times)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "line 2: 'soon' is not an ISO 8601 date and time" in done.stderr
    assert not (tmp_path / "out" / "grades.csv").exists()
