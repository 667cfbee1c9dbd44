"""Run an assignment's pytest graders in the grader's process, against the cached reference.

The graders are ordinary pytest modules (graders/<name>/test_*.py). This module provides their
fixtures (`student`, `reference`, `run`, `figures`) through a plugin object, and turns each test's
report into a Verdict with the task's points: pytest's own hooks, no parsing of its output.

A grader test declares its task, and optionally its share of the task's points and who may see it:

    @pytest.mark.task("F1", share=2, visibility="after_published")

`visibility` is Gradescope's: "visible" (the default) for checks a student may see before the
deadline, "after_published" for checks on the grader's hidden inputs (probes), whose messages
would give those inputs away.
"""
from __future__ import annotations

import contextlib
import io

import pytest

from .assignments import GRADERS, Assignment
from .checks import GradeFailure
from .verdicts import Figures, Verdict

VISIBILITIES = ("visible", "after_published", "after_due_date", "hidden")


class GraderPlugin:
    """Fixtures for one submission's grading, and the collector of its verdicts."""

    def __init__(self, assignment: Assignment, student, reference, run):
        self.assignment = assignment
        self._student, self._reference, self._run = student, reference, run
        self.figures = Figures()
        self.results: list[tuple] = []   # (task, share, title, status, message, visibility)
        self.shares: dict[str, float] = {}

    @pytest.fixture
    def student(self):
        return self._student

    @pytest.fixture
    def reference(self):
        return self._reference

    @pytest.fixture
    def run(self):
        return self._run

    @pytest.fixture(name="figures")
    def figures_fixture(self):
        return self.figures

    def pytest_collection_modifyitems(self, items):
        for item in items:
            task, share, _visibility = _task_of(item)
            self.shares[task] = self.shares.get(task, 0.0) + share

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        """The pictures a check draws take its visibility (one on hidden inputs shows them)."""
        self.figures.visibility = _task_of(item)[2]
        try:
            yield
        finally:
            self.figures.visibility = "visible"

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and not report.passed):
            task, share, visibility = _task_of(item)
            title = (item.function.__doc__ or item.name).strip().splitlines()[0]
            message = "" if report.passed else _message(call.excinfo)
            self.results.append((task, share, title, "passed" if report.passed else "failed", message, visibility))

    def verdicts(self) -> list[Verdict]:
        verdicts = []
        for task_id, share, title, status, message, visibility in self.results:
            points = self.assignment.task(task_id).points * share / self.shares[task_id]
            verdicts.append(Verdict(task=task_id, name=title, score=points if status == "passed" else 0.0,
                                    max_score=round(points, 4), status=status, message=message,
                                    visibility=visibility))
        return verdicts


def _task_of(item) -> tuple[str, float, str]:
    marker = item.get_closest_marker("task")
    if marker is None:
        raise pytest.UsageError(f"grader test {item.nodeid} has no @pytest.mark.task")
    visibility = marker.kwargs.get("visibility", "visible")
    if visibility not in VISIBILITIES:
        raise pytest.UsageError(f"grader test {item.nodeid}: visibility={visibility!r} is not one of "
                                f"{', '.join(VISIBILITIES)}")
    return marker.args[0], float(marker.kwargs.get("share", 1)), visibility


def _message(excinfo) -> str:
    if excinfo is None:
        return "not checked"
    error = excinfo.value
    if isinstance(error, GradeFailure):
        return str(error)
    if isinstance(error, AssertionError):
        return str(error).split("\nassert ")[0]
    # A grader that trips over an unexpected value: the check fails, and says it was the grader.
    return f"the grader could not check this value ({type(error).__name__}: {str(error)[:300]})"


def run_graders(assignment: Assignment, student, reference, run) -> tuple[list[Verdict], Figures]:
    """All of the assignment's graders on one submission; returns verdicts in handout order."""
    plugin = GraderPlugin(assignment, student, reference, run)
    # no:unraisableexception: that plugin collects garbage twice at each session's end, 50 ms of a
    # 90 ms grading in a worker holding torch's objects (the graders' warnings are off anyway).
    args = [str(GRADERS / assignment.name), "-c", str(GRADERS / "pytest.ini"), "--rootdir", str(GRADERS),
            "-q", "-p", "no:warnings", "-p", "no:unraisableexception", "--no-header",
            "-o", "console_output_style=classic"]
    with contextlib.redirect_stdout(io.StringIO()) as output:
        code = pytest.main(args, plugins=[plugin])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise RuntimeError(f"the graders of {assignment.name} could not run (pytest exit {code}):\n"
                           f"{output.getvalue()[-3000:]}")
    order = {task.id: i for i, task in enumerate(assignment.tasks)}
    verdicts = sorted(plugin.verdicts(), key=lambda v: order.get(v.task, len(order)))
    missing = [t.id for t in assignment.tasks if t.id not in plugin.shares and not t.manual]
    if missing:
        raise RuntimeError(f"tasks with no grader test in graders/{assignment.name}: {missing}")
    return verdicts, plugin.figures
