"""The command line as its users run it: a TA's batch over the bundled examples, a student's check."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "tests" / "gradescope_results.schema.json").read_text())


def _grade(*args, timeout=1200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "grade.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def example_batch(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("examples")
    done = _grade("batch", "submissions/fruits", "--assignment", "fruits", "--out", str(out), "--workers", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "grades.csv" in done.stdout
    return out


def test_batch_writes_every_output(example_batch):
    entries = sorted(p for p in (REPO / "submissions" / "fruits").iterdir() if not p.name.startswith("."))
    assert entries, "submissions/fruits is empty"
    frame = pd.read_csv(example_batch / "grades.csv")
    assert list(frame.columns[:3]) == ["id", "total", "max"]
    assert [f"F{i}" for i in range(1, 9)] == [c for c in frame.columns if c.startswith("F")]
    for entry in entries:
        sid = entry.name.removesuffix(".ipynb").removesuffix(".py").removesuffix(".zip")
        folder = example_batch / sid
        results = json.loads((folder / "results.json").read_text())
        jsonschema.validate(results, SCHEMA)
        assert all(t["name"].split()[0] in {f"F{i}" for i in range(1, 9)} for t in results["tests"])
        assert abs(results["score"] - sum(t["score"] for t in results["tests"])) < 1e-6
        assert sid in set(frame["id"].astype(str))
        html = (folder / "report.html").read_text()
        assert "Stand-in weights" in html  # setup made stand-ins; every report must say so
    # Drawn by the workers on a thread after each grade (pipeline.py): the whole page, pictures and all.
    assert (example_batch / "alice_correct" / "report.html").read_text().count("data:image/png;base64,") >= 2
    assert not list(example_batch.glob("*/report-error.txt"))
    index = (example_batch / "index.html").read_text()
    assert "score histogram" in index and "Per task" in index


def test_correct_example_scores_full_and_buggy_loses_points(example_batch):
    frame = pd.read_csv(example_batch / "grades.csv").set_index("id")
    assert frame.loc["alice_correct", "total"] == frame.loc["alice_correct", "max"]
    assert frame.loc["bob_buggy", "total"] < frame.loc["bob_buggy", "max"]


def test_check_prints_a_task_table(tmp_path):
    done = _grade("check", "tests/corpus/fruits/correct_module_v2.py", "--assignment", "fruits", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for task in [f"F{i}" for i in range(1, 9)]:
        assert any(line.startswith(task) and "passed" in line for line in lines), done.stdout
    assert any(line.startswith("total") and "15/15" in line.replace(" ", "") for line in lines), done.stdout
    assert (tmp_path / "correct_module_v2" / "report.html").is_file()


def test_bad_arguments_get_a_message_not_a_traceback(tmp_path):
    done = _grade("check", str(tmp_path / "nope.ipynb"), "--assignment", "fruits")
    assert done.returncode == 2 and "does not exist" in done.stderr and "Traceback" not in done.stderr
    done = _grade("batch", str(tmp_path / "missing"), "--assignment", "fruits", "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "is not a folder" in done.stderr


# -- the wikiart/saliency handout's bundled examples: one archive for both parts, late days, the student's files
@pytest.fixture(scope="module")
def wikiart_batch(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wikiart")
    done = _grade("batch", "submissions/wikiart", "--assignment", "wikiart", "--out", str(out), "--workers", "2",
                  "--submission-times", "submissions/assignment4_times.csv", "--quiet")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.mark.slow
def test_bundled_wikiart_batch_applies_the_late_policy(wikiart_batch):
    frame = pd.read_csv(wikiart_batch / "grades.csv").set_index("id")
    carol = frame.loc["cs587_carol_assignment4"]
    assert carol["student"] == "carol" and carol["days_late"] == 0 and carol["total"] == carol["raw"] > 0
    bob = frame.loc["bob_buggy"]   # a day and a minute late: two started days of 25 %
    assert bob["days_late"] == 2 and bob["penalty_pct"] == 50 and bob["total"] == pytest.approx(bob["raw"] / 2)
    assert frame.loc["alice_correct", "days_late"] == 0


@pytest.mark.slow
def test_bundled_archive_is_graded_on_its_wikiart_part_with_the_student_s_files(wikiart_batch):
    frame = pd.read_csv(wikiart_batch / "grades.csv").set_index("id")
    alice, carol = frame.loc["alice_correct"], frame.loc["cs587_carol_assignment4"]
    assert [carol[t] for t in ("W1", "W2", "W3", "W4")] == [alice[t] for t in ("W1", "W2", "W3", "W4")]
    page = (wikiart_batch / "cs587_carol_assignment4" / "report.html").read_text()
    assert "runs/last_layer/events.out.tfevents." in page          # the student's own curves, named by run
    assert 'alt="first page of cs587_carol_assignment4/report.pdf" src="data:image/png;base64,' in page
    integrity = (wikiart_batch / "integrity.html").read_text()
    assert "cs587_carol_assignment4" in integrity                 # compared, on its wikiart notebook


@pytest.mark.parametrize("mode,warned", [(0o755, True), (0o750, False)])
def test_a_batch_without_bubblewrap_warns_when_others_may_read_the_submissions(tmp_path, monkeypatch, capsys,
                                                                               mode, warned):
    """Each kernel would see the real file tree as its private uid: the other entries of a folder
    that others may read are within its reach (the grader's own folders it shuts itself)."""
    import os
    from autograder import cli, sandbox
    folder = tmp_path / "submissions"
    folder.mkdir()
    os.chmod(folder, mode)
    monkeypatch.setattr(sandbox, "kernels_see_the_file_tree", lambda isolation: isolation == "uid")
    cli._warn_if_kernels_may_read(folder, "uid", None)
    assert ("readable by other users" in capsys.readouterr().err) is warned
    cli._warn_if_kernels_may_read(folder, "bwrap", None)   # bubblewrap: the kernel sees only its sandbox
    assert capsys.readouterr().err == ""
