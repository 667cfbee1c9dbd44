"""The Gradescope bundle (`grade.py lms build`), run as Gradescope runs it, on this machine.

Per assignment the bundle is built once (through the CLI), unpacked into a temporary root laid out
like /autograder (source/, submission/, results/, run_autograder copied beside source/ as
Gradescope's image build does), and `run_autograder` grades four submissions in turn: a correct,
a buggy (a corpus entry with a planted bug), a broken (a notebook whose JSON is cut off) and a
hostile one. Every results.json is validated against tests/gradescope_results.schema.json.
The bundle's run_autograder uses this repository's .venv (AUTOGRADER_PYTHON) instead of the venv
setup.sh would install; setup.sh itself is checked by its content and a --dry-run.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from autograder.grading import VISIBILITIES, _task_of
from autograder.lms import pinned_requirements
from autograder.reports.gradescope import overview
from autograder.verdicts import Grade, Verdict

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "corpus"
SCHEMA = json.loads((REPO / "tests" / "gradescope_results.schema.json").read_text())
# Generous for a loaded 2-core machine, short enough that a stuck run ends well inside the test.
LIMITS = ["--cell-timeout", "60", "--timeout", "300"]
ASSIGNMENTS = ["fruits", "scene15", "inception", "catsdogs", "wikiart", "saliency"]
# Corpus entries per assignment, mixing the shapes a Gradescope upload takes: one notebook, one
# module, several files (a folder's contents), one zip.
SUBMISSIONS = {
    "fruits": {"correct": "correct_folder", "buggy": "bug_F5_transposed.ipynb",
               "hostile": "hostile_kernel_crash.ipynb"},
    "scene15": {"correct": "correct_a.ipynb", "buggy": "bug_S7_best_is_score.ipynb",
                "hostile": "hostile_fake_vgg16_builder.ipynb"},
    "inception": {"correct": "correct_module_v2.py", "buggy": "bug_I5_transposed.ipynb",
                  "hostile": "hostile_patched_compare.ipynb"},
    "catsdogs": {"correct": "correct_template_v1.ipynb", "buggy": "bug_C6_padding_k_minus_2.py",
                 "hostile": "hostile_kernel_exit.py"},
    "wikiart": {"correct": "correct_sequential.ipynb", "buggy": "bug_W2_adam.ipynb",
                "hostile": "hostile_fake_summaries.py"},
    "saliency": {"correct": "correct_zipped_folder.zip", "buggy": "bug_M2_train_mode.ipynb",
                 "hostile": "hostile_snoop_reference.py"},
}


# -- running a bundle as Gradescope does -----------------------------------------------------
def unpack(zip_path: Path, target: Path) -> None:
    """Like `unzip`: the files and their permission bits (zipfile.extractall drops them)."""
    with zipfile.ZipFile(zip_path) as bundle:
        for member in bundle.infolist():
            path = Path(bundle.extract(member, target))
            mode = (member.external_attr >> 16) & 0o777
            if mode:
                path.chmod(mode)


class GradescopeRoot:
    """A temporary /autograder: source/ (the unpacked bundle), run_autograder, submission/, results/."""

    def __init__(self, assignment: str, zip_path: Path, root: Path):
        self.assignment, self.zip_path, self.root = assignment, zip_path, root
        unpack(zip_path, root / "source")
        shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
        (root / "submission").mkdir()
        (root / "results").mkdir()

    def run(self, python: str = sys.executable) -> subprocess.CompletedProcess:
        env = {**os.environ, "AUTOGRADER_ROOT": str(self.root), "AUTOGRADER_PYTHON": python}
        return subprocess.run([str(self.root / "run_autograder")], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=900)

    def grade(self, *files: Path) -> tuple[dict, subprocess.CompletedProcess]:
        """Put `files` (a folder: its contents) into submission/, run run_autograder, read results.json."""
        for folder in (self.root / "submission", self.root / "results"):
            shutil.rmtree(folder)
            folder.mkdir()
        for path in files:
            for item in (sorted(path.iterdir()) if path.is_dir() else [path]):
                shutil.copy2(item, self.root / "submission" / item.name)
        completed = self.run()
        results_path = self.root / "results" / "results.json"
        assert results_path.is_file(), completed.stdout[-3000:] + completed.stderr[-3000:]
        return json.loads(results_path.read_text()), completed


def build(assignment: str, out: Path, *extra: str) -> Path:
    completed = subprocess.run([sys.executable, "grade.py", "lms", "build", "--assignment", assignment,
                                "--out", str(out), *LIMITS, *extra], cwd=REPO, capture_output=True, text=True,
                               timeout=900)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return out / f"autograder_{assignment}.zip"


@pytest.fixture(scope="module", params=ASSIGNMENTS)
def gradescope(request, tmp_path_factory):
    """One assignment's bundle, built and unpacked once; removed before the next assignment's
    (module-scoped params run grouped), so at most one 0.5 GB bundle is on disk at a time."""
    base = tmp_path_factory.mktemp(f"lms-{request.param}")
    root = GradescopeRoot(request.param, build(request.param, base / "built"), base / "autograder")
    yield root
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def fruits_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("lms-fruits-quick")
    yield GradescopeRoot("fruits", build("fruits", base / "built"), base / "autograder")
    shutil.rmtree(base, ignore_errors=True)


# -- expectations ----------------------------------------------------------------------------
def task_points(assignment: str) -> dict[str, tuple[float, bool]]:
    config = tomllib.loads((REPO / "graders" / assignment / "assignment.toml").read_text())
    return {task: (float(spec["points"]), bool(spec.get("manual"))) for task, spec in config["tasks"].items()}


def hidden_test_names(assignment: str) -> set[str]:
    """The names (docstring first lines) of the grader tests marked visibility="after_published"."""
    tree = ast.parse((REPO / "graders" / assignment / f"test_{assignment}.py").read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and any(
                        k.arg == "visibility" and k.value.value == "after_published" for k in decorator.keywords):
                    names.add(ast.get_docstring(node).strip().splitlines()[0])
    return names


def corpus_failures(assignment: str, entry: str) -> set[str]:
    return set(tomllib.loads((CORPUS / assignment / "expected.toml").read_text())[entry]["fail"])


def check_common(assignment: str, results: dict) -> None:
    """What every results.json must satisfy, whatever the submission."""
    jsonschema.validate(results, SCHEMA)
    assert abs(results["score"] - sum(t["score"] for t in results["tests"])) < 1e-6
    assert results["output"].strip()
    assert results["extra_data"]["assignment"] == assignment


def check_graded(assignment: str, results: dict, failing: set[str]) -> None:
    """Tasks in `failing` score 0, every other graded task full points, manual ones wait for a TA;
    each test's visibility is the one its grader declares; the output keeps hidden results back."""
    check_common(assignment, results)
    scores: dict[str, float] = {}
    for test in results["tests"]:
        task = test["name"].split()[0]
        scores[task] = scores.get(task, 0.0) + test["score"]
    detail = "\n".join(f"{t['name']}: {t.get('status', 'to mark')} {t['output'][:200]}" for t in results["tests"])
    for task, (points, manual) in task_points(assignment).items():
        expected = 0.0 if manual or task in failing else points
        assert abs(scores.get(task, 0.0) - expected) < 1e-6, f"{task}: {scores.get(task)} != {expected}\n{detail}"
    hidden = hidden_test_names(assignment)
    for test in results["tests"]:
        assert test["visibility"] == ("after_published" if test["name"] in hidden else "visible"), test["name"]
    if hidden:
        assert "published" in results["output"]
        total = sum(points for points, manual in task_points(assignment).values())
        assert f"of {total:g} points" not in results["output"], "the total would give the hidden checks away"
    hidden_failures = {t["name"].split()[0] for t in results["tests"]
                       if t["visibility"] != "visible" and t.get("status") == "failed"}
    visible_failures = {t["name"].split()[0] for t in results["tests"]
                        if t["visibility"] == "visible" and t.get("status") == "failed"}
    for task in hidden_failures - visible_failures:
        assert task not in results["output"], f"the output names {task}, failed on hidden inputs only"
    for task in visible_failures:
        assert task in results["output"]


HIDDEN_PICTURES = ("C1: item 0 of your dataset", "Confusion matrix of a grader-made model",
                   "What your train() logged in the harness's run")


def check_report_holds_back(page: Path, results: dict) -> None:
    """The report.html left in the results folder (another LMS may show it at once) gives away no
    more than results.json does before publication: no hidden check's message, no total."""
    from markupsafe import escape
    text = page.read_text()
    hidden = [t for t in results["tests"] if t["visibility"] != "visible"]
    for test in hidden:
        if test["output"].strip():
            assert str(escape(test["output"].strip()[:60])) not in text, test["name"]
    for test in results["tests"]:
        if test["visibility"] == "visible" and test["output"].strip():
            assert str(escape(test["output"].strip()[:60])) in text, test["name"]
    if hidden:
        assert 'id="held-back"' in text and '<p class="score" id="score">&ndash; /' in text
    for title in HIDDEN_PICTURES:   # drawn by after_published checks (C1, I5, W4)
        assert str(escape(title)) not in text, title


# -- the Gradescope simulation: four submissions per assignment --------------------------------
@pytest.mark.slow
def test_bundle_holds_what_grading_needs(gradescope):
    """Only this assignment's graders, reference and checkpoints; weights stored, not deflated;
    Gradescope's two scripts executable; a Dockerfile beside the zip."""
    a = gradescope.assignment
    with zipfile.ZipFile(gradescope.zip_path) as bundle:
        infos = {i.filename: i for i in bundle.infolist()}
    for script in ("setup.sh", "run_autograder"):
        assert (infos[script].external_attr >> 16) & 0o111, f"{script} is not executable"
    assert f"reference/{a}.py" in infos and f"graders/{a}/test_{a}.py" in infos
    others = [n for n in infos if n.startswith(("graders/", "reference/")) and
              any(f"/{b}" in n for b in ASSIGNMENTS if b != a)]
    assert not others, others
    checkpoints = {n for n in infos if n.startswith("cache/torch/hub/checkpoints/")}
    config = json.loads((gradescope.root / "source" / "bundle.json").read_text())
    assert checkpoints == {f"cache/torch/hub/checkpoints/{w['file']}" for w in config["weights"]}
    models = tomllib.loads((REPO / "graders" / a / "assignment.toml").read_text())["models"]
    assert [w["model"] for w in config["weights"]] == models
    assert all(infos[n].compress_type == zipfile.ZIP_STORED for n in checkpoints)
    assert any(n.startswith(f"data/{a}/") for n in infos)
    assert any(n.startswith(f"cache/reference/{a}/bundled/") for n in infos)
    assert not any("selfcheck" in n or "__pycache__" in n for n in infos)
    dockerfile = (gradescope.zip_path.parent / "Dockerfile").read_text()
    assert f"ARG ASSIGNMENT={a}" in dockerfile and "setup.sh" in dockerfile and "run_autograder" in dockerfile


@pytest.mark.slow
def test_correct_submission(gradescope):
    entry = SUBMISSIONS[gradescope.assignment]["correct"]
    results, completed = gradescope.grade(CORPUS / gradescope.assignment / entry)
    check_graded(gradescope.assignment, results, failing=set())
    assert "bundled reference values" in completed.stdout or "reference values ready" in completed.stdout
    check_report_holds_back(gradescope.root / "results" / "report.html", results)


@pytest.mark.slow
def test_buggy_submission(gradescope):
    entry = SUBMISSIONS[gradescope.assignment]["buggy"]
    results, _ = gradescope.grade(CORPUS / gradescope.assignment / entry)
    failing = corpus_failures(gradescope.assignment, entry)
    assert failing
    check_graded(gradescope.assignment, results, failing)
    check_report_holds_back(gradescope.root / "results" / "report.html", results)


@pytest.mark.slow
def test_broken_submission(gradescope, tmp_path):
    """A notebook cut off mid-JSON: zero on every task, and the output says why."""
    text = (REPO / "templates" / f"{gradescope.assignment}.ipynb").read_text()
    broken = tmp_path / f"{gradescope.assignment}.ipynb"
    broken.write_text(text[: len(text) // 2])
    results, _ = gradescope.grade(broken)
    check_common(gradescope.assignment, results)
    assert results["score"] == 0
    assert "JSON is broken" in results["output"]
    assert {t["name"].split()[0] for t in results["tests"]} == set(task_points(gradescope.assignment))
    assert all(t["status"] == "failed" and "not graded" in t["output"] for t in results["tests"])
    assert results["extra_data"]["status"] == "not a submission"


@pytest.mark.slow
def test_hostile_submission(gradescope):
    entry = SUBMISSIONS[gradescope.assignment]["hostile"]
    results, _ = gradescope.grade(CORPUS / gradescope.assignment / entry)
    check_graded(gradescope.assignment, results, corpus_failures(gradescope.assignment, entry))
    spec = tomllib.loads((CORPUS / gradescope.assignment / "expected.toml").read_text())[entry]
    if "message" in spec:
        assert spec["message"].lower() in results["output"].lower()


# -- the scripts around the harness ----------------------------------------------------------
@pytest.mark.slow
def test_setup_dry_run_resolves_the_pins_and_accepts_the_bundled_reference(fruits_root):
    completed = subprocess.run(["bash", str(fruits_root.root / "source" / "setup.sh"), "--dry-run"],
                               env={**os.environ, "AUTOGRADER_PYTHON": sys.executable,
                                    "AUTOGRADER_ROOT": str(fruits_root.root)},
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "Would install" not in completed.stdout, "this venv does not hold the pinned versions"
    assert "bundled reference values match" in completed.stdout
    assert not (fruits_root.root / "venv").exists()


@pytest.mark.slow
def test_run_autograder_writes_results_even_without_python(fruits_root):
    completed = fruits_root.run(python=str(fruits_root.root / "no-such-python"))
    assert completed.returncode != 0
    results = json.loads((fruits_root.root / "results" / "results.json").read_text())
    jsonschema.validate(results, SCHEMA)
    assert results["score"] == 0 and "please tell a TA" in results["output"]


@pytest.mark.slow
def test_a_submission_that_changes_the_grader_gets_no_grade(fruits_root, tmp_path):
    """Without bubblewrap (a Gradescope container) the student's code runs as the grader's user:
    a change to the grader's files while it runs voids the grade. A tiny notebook, no torch."""
    config_path = fruits_root.root / "source" / "bundle.json"
    original = config_path.read_text()
    config_path.write_text(json.dumps({**json.loads(original), "isolation": "none"}))
    target = fruits_root.root / "source" / "graders" / "fruits" / "test_fruits.py"
    saved = target.read_text()
    notebook = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                           "source": f"with open({str(target)!r}, 'a') as f:\n    f.write('\\n# every test passes\\n')"}],
                "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
                "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "fruits.ipynb").write_text(json.dumps(notebook))
    try:
        results, completed = fruits_root.grade(tmp_path / "fruits.ipynb")
    finally:
        config_path.write_text(original)
        target.write_text(saved)
    jsonschema.validate(results, SCHEMA)
    assert results["score"] == 0
    assert "files of the autograder itself changed" in results["output"]
    assert "graders/fruits/test_fruits.py" in results["output"]


def test_setup_installs_exactly_pyprojects_pins():
    """requirements.txt keeps pyproject's own `==` pins and pins every other dependency to the
    version installed here; setup.sh installs that file and nothing else."""
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = pinned_requirements()
    assert len(pinned) == len(dependencies)
    for declared, pin in zip(dependencies, pinned):
        if "==" in declared:
            assert pin == declared
        else:
            name, version = pin.split("==")
            assert name == declared
            from importlib.metadata import version as installed
            assert version == installed(name)
    setup = (REPO / "templates" / "lms" / "setup.sh").read_text()
    installs = [line.strip() for line in setup.splitlines()
                if re.search(r'pip"? install', line) and not line.lstrip().startswith(("#", "echo"))]
    assert len(installs) == 2, installs   # the install, and its --dry-run
    assert all(line.endswith('-r "$SOURCE/requirements.txt"') for line in installs), installs
    assert sum("--dry-run" in line for line in installs) == 1


def test_cli_refuses_bad_arguments_with_a_sentence(tmp_path):
    cases = [
        ["lms", "build", "--assignment", "fruits", "--out", str(tmp_path), "--data", str(tmp_path / "none")],
        ["student-bundle", "--assignment", "fruits", "--out", str(tmp_path / "file.txt")],
    ]
    (tmp_path / "file.txt").write_text("not a folder")
    for argv in cases:
        completed = subprocess.run([sys.executable, "grade.py", *argv], cwd=REPO, capture_output=True, text=True,
                                   timeout=300)
        assert completed.returncode == 2, completed.stderr
        assert "Traceback" not in completed.stderr and completed.stderr.strip()
    outside = subprocess.run([sys.executable, "-m", "autograder.lms", "prepare"], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
    assert outside.returncode == 2 and "bundle.json is missing" in outside.stderr


# -- visibility and the top-level output -------------------------------------------------------
class _Item:
    """What _task_of reads of a collected grader test: its node id and its `task` marker."""

    def __init__(self, *args, **kwargs):
        self.nodeid, self._mark = "graders/x/test_x.py::test_y", SimpleNamespace(args=args, kwargs=kwargs)

    def get_closest_marker(self, name):
        return self._mark if name == "task" else None


def test_task_marker_declares_visibility():
    assert _task_of(_Item("F1")) == ("F1", 1.0, "visible")
    assert _task_of(_Item("F4", share=2, visibility="after_published")) == ("F4", 2.0, "after_published")
    with pytest.raises(pytest.UsageError, match="visibility='later'"):
        _task_of(_Item("F1", visibility="later"))
    assert "after_published" in VISIBILITIES


def test_every_assignment_marks_its_hidden_input_checks():
    """Functions run on the grader's probes are after_published; each assignment has some."""
    for assignment in ASSIGNMENTS:
        assert hidden_test_names(assignment), assignment


def _grade(*verdicts, status="graded"):
    return Grade("s", "fruits", list(verdicts), status=status, message="the JSON is broken")


def test_output_keeps_hidden_results_back():
    grade = _grade(Verdict("F2", "F2 datasets", 2, 2, "passed"),
                   Verdict("F5", "F5 similarities", 0, 2, "failed"),
                   Verdict("F1", "F1 transform", 0, 2, "failed", visibility="after_published"),
                   Verdict("W5", "W5 answers", 0, 3, "to mark"))
    text = overview(grade, "2 of 9 points. 1 cell(s) raised an error or timed out; the first is cell 4: NameError")
    assert "Checks you can see now: 1 of 2 passed (2 of 4 points); failed: F5." in text
    assert "1 check runs your code on inputs you have not seen (2 points)" in text
    assert "Waiting for a TA to mark: W5." in text and "cell 4: NameError" in text
    assert "of 9 points" not in text and "F1" not in text


def test_output_without_hidden_checks_gives_the_total():
    grade = _grade(Verdict("F2", "F2 datasets", 2, 2, "passed"), Verdict("F5", "F5 similarities", 0, 2, "failed"))
    assert overview(grade, "2 of 4 points.") == "2 of 4 points. Checks: 1 of 2 passed (2 of 4 points); failed: F5."
    assert overview(_grade(status="not a submission"), "the JSON is broken") == "the JSON is broken"


def test_unpack_keeps_permissions(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        info = zipfile.ZipInfo("run_autograder")
        info.external_attr = (0o100755) << 16
        bundle.writestr(info, "#!/bin/sh\n")
    unpack(archive, tmp_path / "out")
    assert stat.S_IMODE((tmp_path / "out" / "run_autograder").stat().st_mode) == 0o755


# -- the container's own inputs: Gradescope's metadata, archives, and what the student may read --------
def test_lateness_comes_from_gradescope_metadata(tmp_path):
    from autograder.lms import _lateness
    assert _lateness(tmp_path, "saliency") is None           # no metadata: no policy applied, said so
    (tmp_path / "submission_metadata.json").write_text(json.dumps({
        "created_at": "2026-12-02T12:00:01+00:00",
        "assignment": {"due_date": "2026-12-01T12:00:00+00:00", "late_due_date": None}}))
    lateness = _lateness(tmp_path, "saliency")
    assert lateness.days_late == 2 and not lateness.past_cutoff  # a day and a second late: two started days
    (tmp_path / "submission_metadata.json").write_text("{not json")
    assert _lateness(tmp_path, "saliency") is None           # unreadable: graded without a penalty, said so


def test_a_lone_archive_of_any_supported_kind_is_the_submission(tmp_path):
    import tarfile
    from autograder.lms import _entry
    notebook = tmp_path / "work" / "fruits.ipynb"
    notebook.parent.mkdir()
    notebook.write_text("{}")
    submission = tmp_path / "submission"
    submission.mkdir()
    with tarfile.open(submission / "cs587_ann_assignment4.tar.gz", "w:gz") as archive:
        archive.add(notebook, arcname="fruits.ipynb")
    assert _entry(submission) == submission / "cs587_ann_assignment4.tar.gz"
    shutil.copy(notebook, submission / "fruits.ipynb")
    assert _entry(submission) == submission   # code beside it: the folder is the submission


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="a private uid needs root and setpriv")
def test_without_bubblewrap_the_student_cannot_read_the_reference(tmp_path):
    """A container without namespaces: the kernel runs as a private uid and the bundle's reference,
    graders and cached answers are shut to it. The root sits under a folder others may enter, as
    /autograder does (pytest's own tmp folder is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="autograder-lms-uid-"))
    try:
        os.chmod(base, 0o755)
        root = GradescopeRoot("fruits", build("fruits", base / "built"), base / "autograder")
        config_path = root.root / "source" / "bundle.json"
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "isolation": "uid"}))
        secret = root.root / "source" / "reference" / "fruits.py"
        notebook = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                               "source": f"import os\nprint(os.getuid())\nanswer = open({str(secret)!r}).read()"}],
                    "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
                    "nbformat": 4, "nbformat_minor": 5}
        (tmp_path / "fruits.ipynb").write_text(json.dumps(notebook))
        results, completed = root.grade(tmp_path / "fruits.ipynb")
        jsonschema.validate(results, SCHEMA)
        assert "PermissionError" in results["output"] and "reference/fruits.py" in results["output"], results["output"]
        assert "private unprivileged uid" in completed.stdout
    finally:
        shutil.rmtree(base, ignore_errors=True)
