"""Manual items: free-text answers listed for a TA, whose marks flow back into every output."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from autograder import assignments
from autograder.intake import module_to_notebook
from autograder.manual import collect_answers, manual_verdicts, read_marks

REPO = Path(__file__).resolve().parent.parent


def test_answers_are_read_from_answer_cells_of_notebooks_and_modules():
    wikiart = assignments.load("wikiart")
    notebook = module_to_notebook("x = 1\n# %% [markdown]\n# ## Answer W5\n# Fine-tune the last layers.\n# %%\ny = 2\n")
    assert collect_answers(notebook, wikiart) == {"W5": "Fine-tune the last layers."}
    assert collect_answers(module_to_notebook("x = 1\n"), wikiart) == {}


def test_marks_are_clamped_and_blank_marks_wait(tmp_path):
    wikiart = assignments.load("wikiart")
    marks_file = tmp_path / "marks.csv"
    marks_file.write_text("id,task,points,comment\nann,W5,99,great\nbob,W5,,\n")
    marks = read_marks(marks_file)
    assert list(marks) == [("ann", "W5")]
    (ann,) = manual_verdicts(wikiart, "ann", {"W5": "text"}, marks)
    assert ann.score == wikiart.task("W5").points and ann.status == "passed" and "great" in ann.message
    (bob,) = manual_verdicts(wikiart, "bob", {}, marks)
    assert bob.score == 0 and bob.status == "to mark" and "no `## Answer W5` cell" in bob.message


def test_to_mark_csv_round_trip_through_the_cli(tmp_path):
    out = tmp_path / "out"
    batch = [sys.executable, "grade.py", "batch", "submissions/wikiart", "--assignment", "wikiart",
             "--out", str(out), "--workers", "2", "--quiet"]
    first = subprocess.run(batch, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stderr[-2000:]
    worksheet = pd.read_csv(out / "to_mark.csv", keep_default_na=False)
    entries = [p for p in (REPO / "submissions" / "wikiart").iterdir() if not p.name.startswith(".")]
    assert set(worksheet["task"]) == {"W5"} and len(worksheet) == len(entries) >= 2
    assert worksheet["answer"].str.len().min() > 0
    gradebook = pd.read_csv(out / "grades.csv", keep_default_na=False).set_index("id")
    assert (gradebook["W5"] == 0).all() and (gradebook["to_mark"] == "W5").all()

    worksheet["points"] = [2.5, 1] + [2] * (len(worksheet) - 2)
    worksheet["comment"] = ["good", "short"] + [""] * (len(worksheet) - 2)
    worksheet.to_csv(out / "to_mark.csv", index=False)
    second = subprocess.run(batch + ["--marks", str(out / "to_mark.csv")], cwd=REPO, capture_output=True,
                            text=True, timeout=1800)
    assert second.returncode == 0, second.stderr[-2000:]
    gradebook = pd.read_csv(out / "grades.csv", keep_default_na=False).set_index("id")
    marked = dict(zip(worksheet["id"], worksheet["points"]))
    for sid, points in marked.items():
        assert gradebook.loc[sid, "W5"] == points and gradebook.loc[sid, "to_mark"] == ""
        results = json.loads((out / sid / "results.json").read_text())
        (w5,) = [t for t in results["tests"] if t["name"].startswith("W5")]
        assert w5["score"] == points and "marked by a TA" in w5["name"]
    # The worksheet keeps the marks, so the same file can be passed back again.
    again = pd.read_csv(out / "to_mark.csv", keep_default_na=False)
    assert dict(zip(again["id"], again["points"].astype(float))) == marked
