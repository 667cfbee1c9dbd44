"""The path of one grade: entry -> intake -> sandbox run -> safe export -> graders -> reports.

`SubmissionGrader` is made once per worker (the reference values are read once) and grades
entries one after another. Whatever goes wrong with a submission ends in a results.json and a
report that say so; only a bug of the harness itself ends as status "harness error".
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import nbformat

from .artefacts import Artefacts
from .assignments import Assignment
from .attachments import Attachments, collect as collect_attachments
from .execution import RunRecord, SubmissionRunner
from .grading import run_graders
from .intake import NotASubmission, NotebookChoice, contract_names, load_notebook, prepare, submission_id
from .late import CourseRuleError, Lateness, gradebook_columns, load_course
from .manual import collect_answers, manual_verdicts
from .reports import write_report, write_results_json
from .runcache import RunCache
from .sandbox import kernels_see_the_file_tree
from .verdicts import Grade, Verdict
from .workspace import Workspace


class SubmissionGrader:
    def __init__(self, assignment: Assignment, workspace: Workspace, *, isolation: str = "auto",
                 marks: dict | None = None, warm: bool = False, reuse_runs: bool = False,
                 hide_until_published: bool = False, reports_in_background: bool = False):
        """`warm`: keep a spare kernel started ahead for the next entry (a worker grading many).
        `reuse_runs`: grade a kept run again instead of running an unchanged submission (a regrade).
        `hide_until_published`: report.html goes to the student at once (an LMS), so it holds the
        checks on hidden inputs back as results.json does.
        `reports_in_background`: draw each report.html on a thread while the next entry runs (a
        batch worker); grade() returns once results.json is written, close() waits for the reports."""
        self.assignment = assignment
        self.marks = marks or {}   # (id, task) -> (points, comment): a TA's marks of manual items
        self.hide_until_published = hide_until_published
        self.workspace = workspace
        self.reference = Artefacts(workspace.prepare(assignment))
        # Without bubblewrap a kernel sees the real file tree as its private uid: shut our folders.
        self.private_outputs = kernels_see_the_file_tree(isolation)
        if self.private_outputs:
            workspace.hide_from_kernels()
        self.weights = workspace.store.describe(list(assignment.models))
        self.runner = SubmissionRunner(limits=assignment.limits, weight_store=workspace.store.root,
                                       sandbox_base=workspace.sandbox_base, isolation=isolation, warm=warm,
                                       warm_imports=assignment.warm_imports)
        self.choice = notebook_choice(assignment)
        self.run_cache = RunCache(workspace.runs_dir(assignment), inputs=workspace.run_inputs(assignment),
                                  limits=assignment.limits, isolation=isolation,
                                  harvest_source=assignment.harvest_source) if reuse_runs else None
        self._reports = ThreadPoolExecutor(1, thread_name_prefix="report") if reports_in_background else None

    def _data_mounts(self) -> dict[str, Path]:
        return {f"data/{self.assignment.data_name}": self.workspace.data_dir(self.assignment)}

    def close(self) -> None:
        """Stop the spare kernel, if any, and finish the reports: call when no more entries come."""
        self.runner.close()
        if self._reports is not None:
            self._reports.shutdown(wait=True)

    def grade(self, entry: Path, out_root: Path, *, lateness: Lateness | None = None,
              student: str | None = None) -> dict:
        """Grade one entry; writes out_root/<id>/{results.json,report.html}; returns its gradebook row.
        `lateness`: when it came, under the course's late policy (None: not checked)."""
        started = time.monotonic()
        sid = submission_id(Path(entry))
        out = Path(out_root) / sid
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        if self.private_outputs:   # other entries' reports and values, from the kernels beside them
            os.chmod(out_root, 0o700)
        try:
            grade, run, attachments = self._grade(Path(entry), sid, out)
        except Exception:  # noqa: BLE001 - a harness bug must not stop the batch or lose the entry
            (out / "harness-error.txt").write_text(traceback.format_exc())
            grade, run, attachments = self.failed_grade(sid, "harness error",
                                                        "The autograder itself failed on this submission; "
                                                        "a TA has been told (harness-error.txt)."), None, None
        summary = summarise(grade, run)
        write_results_json(out / "results.json", grade, time.monotonic() - started, summary, lateness)
        draw = partial(write_report, out / "report.html", self.assignment, grade, run, self.weights, summary,
                       late=lateness, attachments=attachments, hide_until_published=self.hide_until_published)
        if self._reports is None:
            draw()
        else:   # the grade is final: its page is drawn while the next entry's cells run
            self._reports.submit(draw).add_done_callback(partial(_report_failed, sid))
        return gradebook_row(self.assignment, grade, summary, lateness, student)

    def _grade(self, entry: Path, sid: str, out: Path) -> tuple[Grade, RunRecord | None, Attachments | None]:
        with tempfile.TemporaryDirectory(prefix="intake-") as scratch:
            try:
                submission = prepare(entry, Path(scratch), self.choice)
                notebook = load_notebook(submission)
            except NotASubmission as problem:
                return self.failed_grade(sid, "not a submission", str(problem)), None, None
            # Read while the unpacked files exist.
            attachments = collect_attachments(submission, with_logs=self.assignment.student_logs)
            data_prefix = f"data/{self.assignment.data_name}/"
            files = [f for f in submission.files
                     if not str(f.relative_to(submission.base)).startswith(data_prefix)]
            run, executed = self._run(notebook, sid, files, submission.base, out / "artefacts")
        nbformat.write(executed, str(out / "executed.ipynb"))
        (out / "run.json").write_text(json.dumps(run.to_dict(), indent=2))
        student = Artefacts(out / "artefacts", unavailable_reason=_why_not_collected(run))
        verdicts, figures = run_graders(self.assignment, student, self.reference, run)
        verdicts += manual_verdicts(self.assignment, sid, collect_answers(notebook, self.assignment), self.marks)
        order = {task.id: i for i, task in enumerate(self.assignment.tasks)}
        verdicts.sort(key=lambda v: order.get(v.task, len(order)))
        return Grade(sid, self.assignment.name, verdicts, figures.items), run, attachments

    def _run(self, notebook, sid: str, files: list[Path], base: Path, artefacts: Path):
        """The sandbox run of the submission, or its kept run when nothing that decides it changed."""
        key = self.run_cache.key(sid, notebook, files, base) if self.run_cache else None
        kept = self.run_cache.load(key, artefacts, answers=self._kept_run_answers) if key else None
        if kept is not None:
            return kept
        run, executed = self.runner.run(
            notebook, name=sid, files=files, files_base=base, data=self._data_mounts(),
            probes=self.workspace.probes_dir(self.assignment),
            harvest_source=self.assignment.harvest_source, export_to=artefacts, requests=self._requested_values)
        if key:
            self.run_cache.keep(key, run, executed, artefacts)
        return run, executed

    def _requested_values(self, student: Artefacts) -> set[str]:
        """Between the harvest's steps: the offered values the graders need, beside the reference."""
        return self.assignment.requested_values(student, self.reference)

    def _kept_run_answers(self, artefacts: Path) -> bool:
        """A kept run serves a regrade only if the graders (or the reference) as they are now need
        none of the values its second step was not asked for."""
        try:
            return not self._requested_values(Artefacts(artefacts))
        except Exception:  # noqa: BLE001 - a grader that cannot say: run again rather than miss a value
            return False

    def failed_grade(self, sid: str, status: str, message: str) -> Grade:
        """Zero on every task, each saying why: nothing could be run or collected."""
        verdicts = [Verdict(task=t.id, name=f"{t.id} {t.title}", score=0.0, max_score=t.points,
                            status="failed", message=f"not graded: {message}") for t in self.assignment.tasks]
        return Grade(sid, self.assignment.name, verdicts, status=status, message=message)


def _report_failed(sid: str, drawn) -> None:
    """write_report turns a page it cannot draw into a plain one; this is for what is left (a full disk)."""
    if drawn.exception() is not None:
        print(f"autograder: report.html of {sid} not written: {drawn.exception()!r}", file=sys.stderr)


def notebook_choice(assignment: Assignment) -> NotebookChoice:
    """How intake tells this assignment's notebook among several in one entry: course.toml's
    `[names] notebook` pattern, then the names its harvest.py reads."""
    try:
        pattern, problem = load_course(assignment.name).notebook, ""
    except CourseRuleError as error:   # the batch stops on it before grading; `check` grades on
        pattern, problem = None, str(error)
    return NotebookChoice(assignment.name, pattern, contract_names(assignment.harvest_source), problem)


def _why_not_collected(run: RunRecord) -> str:
    if run.harvest_status == "ok":
        return ""   # collected, even when a replay was needed to get there
    if run.outcome != "finished":
        return run.message
    if run.harvest_status != "ok":
        return f"the grader could not collect your values ({run.harvest_error or run.harvest_status})"
    return ""


def summarise(grade: Grade, run: RunRecord | None) -> str:
    """One or two sentences for the top of the report and the gradebook's message column."""
    if grade.status != "graded":
        return grade.message
    parts = [f"{grade.score:g} of {grade.max_score:g} points."]
    if run is not None:
        if run.outcome != "finished":
            parts.append(run.message)
        elif run.harvest_status != "ok":
            parts.append(_why_not_collected(run).capitalize() + ".")
        elif run.harvest_error:   # the harvest's second step: the first step's values were graded
            parts.append(f"Re-running your own code for some checks failed ({run.harvest_error[:200]}); "
                         "those checks compared your values with the reference's instead.")
        errors = [c for c in run.cells if c.status in ("error", "timeout")]
        if errors:
            first = errors[0]
            parts.append(f"{len(errors)} cell(s) raised an error or timed out; the first is cell "
                         f"{first.index + 1}: {first.error[:160]}")
    return " ".join(parts)


def gradebook_row(assignment: Assignment, grade: Grade, summary: str, lateness: Lateness | None = None,
                  student: str | None = None) -> dict:
    row = {"id": grade.submission_id, "student": student or "", "max": assignment.max_points,
           "status": grade.status, "message": summary, **gradebook_columns(lateness, grade.score)}
    scores = grade.task_scores()
    for task in assignment.tasks:
        row[task.id] = scores.get(task.id, 0.0)
    row["to_mark"] = " ".join(v.task for v in grade.verdicts if v.status == "to mark")
    row["_manual"] = [v for v in grade.verdicts if assignment.task(v.task).manual]
    row["_late"] = lateness
    return row
