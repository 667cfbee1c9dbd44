"""The corpus: every submission under tests/corpus/<assignment>/ gets exactly its expected verdicts.

One batch per assignment through the CLI (`grade.py batch`), as a TA would run it, with correct,
planted-bug and hostile entries mixed: a bad entry must not disturb the others. Expectations live
in tests/corpus/<assignment>/expected.toml: `fail` lists the tasks that must score 0; every other
task must score its full points.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "corpus"
# Generous limits: a loaded CI machine must not turn a slow cell into a timeout verdict.
LIMITS = ["--cell-timeout", "60", "--timeout", "400"]


def _expectations() -> list[tuple[str, str, dict]]:
    cases = []
    for expected in sorted(CORPUS.glob("*/expected.toml")):
        for entry, spec in tomllib.loads(expected.read_text()).items():
            cases.append((expected.parent.name, entry, spec))
    return cases


CASES = _expectations()


def _task_points(assignment: str) -> dict[str, float]:
    """Graded tasks' full points; manual tasks score 0 until a TA marks them, so they count as 0."""
    config = tomllib.loads((REPO / "graders" / assignment / "assignment.toml").read_text())
    return {task: 0.0 if spec.get("manual") else float(spec["points"]) for task, spec in config["tasks"].items()}


class CorpusBatches(dict):
    """assignment -> output folder of its corpus batch, graded once on first use, through the CLI."""

    def __init__(self, tmp_path_factory):
        super().__init__()
        self.tmp_path_factory = tmp_path_factory

    def __missing__(self, assignment: str) -> Path:
        out = self.tmp_path_factory.mktemp(f"corpus-{assignment}")
        completed = subprocess.run(
            [sys.executable, "grade.py", "batch", str(CORPUS / assignment), "--assignment", assignment,
             "--out", str(out), "--workers", "2", "--quiet", "--rerun", *LIMITS],
            cwd=REPO, capture_output=True, text=True, timeout=3600)
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
        self[assignment] = out
        return out


@pytest.fixture(scope="session")
def corpus_batches(tmp_path_factory) -> CorpusBatches:
    return CorpusBatches(tmp_path_factory)


def test_corpus_has_the_required_kinds():
    """Per assignment: three correct entries, a planted bug for every task, hostile entries."""
    assert CASES, "no corpus found"
    for assignment in sorted({case[0] for case in CASES}):
        specs = [spec for a, _e, spec in CASES if a == assignment]
        assert sum(s["kind"] == "correct" for s in specs) >= 3
        bugged = {task for s in specs if s["kind"] == "bug" for task in s["fail"]}
        graded_tasks = {t for t, spec in tomllib.loads(
            (REPO / "graders" / assignment / "assignment.toml").read_text())["tasks"].items()
            if not spec.get("manual")}
        assert graded_tasks <= bugged, f"{assignment}: no planted bug for {sorted(graded_tasks - bugged)}"
        assert all(len(s["fail"]) == 1 for s in specs if s["kind"] == "bug")
        assert any(s["kind"] == "hostile" for s in specs)


@pytest.mark.parametrize("assignment,entry,spec", CASES, ids=[f"{a}/{e}" for a, e, _s in CASES])
def test_entry_gets_its_expected_verdicts(corpus_batches, assignment, entry, spec):
    out = corpus_batches[assignment]
    sid = entry
    for suffix in (".ipynb", ".py", ".zip"):
        sid = sid.removesuffix(suffix)
    results = json.loads((out / sid / "results.json").read_text())
    points = _task_points(assignment)
    scores: dict[str, float] = {}
    for test in results["tests"]:
        task = test["name"].split()[0]
        scores[task] = scores.get(task, 0.0) + test["score"]
    failing = set(spec["fail"])
    wrong = {}
    for task, full in points.items():
        expected = 0.0 if task in failing else full
        if abs(scores.get(task, 0.0) - expected) > 1e-6:
            wrong[task] = (scores.get(task, 0.0), expected)
    detail = "\n".join(f"{t['name']}: {t.get('status', 'to mark')} {t['output'][:300]}" for t in results["tests"])
    assert not wrong, f"{entry}: (got, expected) {wrong}\n{results['output']}\n{detail}"
    if "message" in spec:
        assert spec["message"].lower() in results["output"].lower(), results["output"]
    assert (out / sid / "report.html").is_file()


@pytest.mark.parametrize("assignment", sorted({case[0] for case in CASES}))
def test_gradebook_lists_every_entry(corpus_batches, assignment):
    out = corpus_batches[assignment]
    frame = pd.read_csv(out / "grades.csv")
    entries = {e for a, e, _s in CASES if a == assignment}
    ids = {e.removesuffix(".ipynb").removesuffix(".py").removesuffix(".zip") for e in entries}
    assert ids <= set(frame["id"]), sorted(ids - set(frame["id"]))
    assert {"id", "total", "status"} <= set(frame.columns)
    assert (out / "index.html").is_file()


@pytest.mark.parametrize("assignment,upstream,not_needed,needed", [
    ("fruits", ("upstream:train_features", "upstream:test_features"),
     ("correct_module_v2", "correct_identity_v1", "correct_functional", "correct_folder"),
     ("bug_F1_no_normalize", "bug_F2_swapped_splits", "bug_F3_no_pretrained_weights")),
    ("scene15", ("upstream:X_train", "upstream:X_test"),
     ("correct_a", "correct_module_v2", "correct_functional"),
     ("bug_S3_before_relu", "bug_S4_no_l2_norm")),
])
def test_the_own_upstream_is_re_run_only_for_values_that_are_not_the_reference_s(corpus_batches, assignment,
                                                                                 upstream, not_needed, needed):
    """The harvest's second step (autograder/execution.py): a correct entry's features are the
    reference's, so its pipeline never runs over the data again; an entry whose features follow its
    own mistake upstream (fruits F1-F3, scene15 S3/S4) has it re-run, and keeps the feature task
    (its expected verdicts, test_entry_gets_its_expected_verdicts)."""
    from autograder.artefacts import ON_REQUEST, Artefacts
    out = corpus_batches[assignment]

    def statuses(sid: str) -> list[str]:
        student = Artefacts(out / sid / "artefacts")
        return [student.status(name) for name in upstream]
    for sid in not_needed:
        assert statuses(sid) == [ON_REQUEST, ON_REQUEST], sid
    for sid in needed:
        assert statuses(sid) == ["ok", "ok"], sid
